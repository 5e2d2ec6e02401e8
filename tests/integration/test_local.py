"""Choosing and running the local NUT monitor restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from esxi_suspend.errors import LocalRestartFailed
from esxi_suspend.nut import service
from esxi_suspend.settings.model import RestartSettings


def test_restart_command_replaces_the_service(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    plan = service.plan_restart(RestartSettings(command=("touch", str(marker))))
    assert plan.argv is not None and plan.argv[0].endswith("/touch")
    assert service.run_restart(plan).endswith(str(marker))
    assert marker.exists()


def test_none_does_nothing() -> None:
    plan = service.plan_restart(RestartSettings(service="none"))
    assert plan.argv is None
    assert service.run_restart(plan) == "nothing (UPS_SERVICE=none)"


def test_missing_program_is_named() -> None:
    with pytest.raises(LocalRestartFailed, match="'no-such-program' not found"):
        service.plan_restart(RestartSettings(command=("no-such-program",)))


def test_failing_command_reports_its_exit_and_output() -> None:
    plan = service.plan_restart(RestartSettings(command=("sh", "-c", "echo nope >&2; exit 3")))
    with pytest.raises(LocalRestartFailed, match=r"exited 3 \(nope\)"):
        service.run_restart(plan)


@pytest.fixture
def init_d(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A machine without systemd, its SysV scripts in an empty directory of the test's."""
    scripts = tmp_path / "init.d"
    scripts.mkdir()
    monkeypatch.setattr(service, "SYSTEMD_RUNNING", tmp_path / "no-systemd")
    monkeypatch.setattr(service, "INIT_D", scripts)
    return scripts


def test_auto_finds_systemd_unit_or_sysv_script(init_d: Path) -> None:
    with pytest.raises(LocalRestartFailed, match="no NUT monitor service found"):
        service.plan_restart(RestartSettings())
    (init_d / "ups").write_text("#!/bin/sh\n")
    plan = service.plan_restart(RestartSettings())
    assert plan.argv is not None and plan.argv[-2:] == ("ups", "restart")
    (init_d / "nut-client").write_text("#!/bin/sh\n")
    plan = service.plan_restart(RestartSettings())
    assert plan.argv is not None and plan.argv[-2:] == ("nut-client", "restart")


def test_clearing_fsd_restarts_nuts_server(init_d: Path) -> None:
    """UPS_CLEAR_FSD: none does nothing, a command is found on PATH, auto finds nut-server."""
    assert service.plan_clear_fsd(RestartSettings(clear_fsd=("none",))).argv is None
    plan = service.plan_clear_fsd(RestartSettings(clear_fsd=("sh", "-c", "exit 4")))
    assert plan.argv is not None and plan.argv[0].endswith("/sh")
    with pytest.raises(LocalRestartFailed, match=r"exited 4 .*; restart upsd"):
        service.run_restart(plan, "restart upsd")
    with pytest.raises(LocalRestartFailed, match="UPS_CLEAR_FSD: program 'nope' not found"):
        service.plan_clear_fsd(RestartSettings(clear_fsd=("nope",)))
    with pytest.raises(LocalRestartFailed, match="no NUT server service found"):
        service.plan_clear_fsd(RestartSettings())
    (init_d / "nut-server").write_text("#!/bin/sh\n")
    plan = service.plan_clear_fsd(RestartSettings())
    assert plan.argv is not None and plan.argv[-2:] == ("nut-server", "restart")
