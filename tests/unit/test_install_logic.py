"""setup/install.py without a venv or a real /etc: a --root tree under tmp_path, the upssched
lookup given as a function, what it says captured. The NUT edits themselves: test_nutconf.py."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest

from esxi_suspend.setup import nutconf, nutsteps
from esxi_suspend.setup.files import InstallError, Layout, Report
from esxi_suspend.setup.install import Installer

SOURCE = Path(__file__).resolve().parents[2]
UPSMON = "MONITOR myups@localhost 1 upsmon secret primary\n"


def no_program(_: str) -> str | None:
    return None


def tree(tmp_path: Path, upsmon: str | None = UPSMON) -> Layout:
    layout = Layout(SOURCE, str(tmp_path))
    if upsmon is not None:
        conf = tmp_path / "etc/nut/upsmon.conf"
        conf.parent.mkdir(parents=True)
        conf.write_text(upsmon)
    return layout


def run_upsmon(
    layout: Layout, which: Callable[[str], str | None], configure: bool = True
) -> tuple[str, str]:
    report = Report(io.StringIO(), io.StringIO())
    Installer(layout, report, configure_upsmon=configure, which=which).upsmon()
    assert isinstance(report.out, io.StringIO) and isinstance(report.err, io.StringIO)
    return report.out.getvalue(), report.err.getvalue()


def test_the_trees_shutdowncmd_names_its_env_file(tmp_path: Path) -> None:
    """Fault 1: under --root, SHUTDOWNCMD without --env-file read /etc/esxi-suspend's."""
    layout = tree(tmp_path)
    run_upsmon(layout, no_program)
    [line] = nutconf.active((tmp_path / "etc/nut/upsmon.conf").read_text(), "SHUTDOWNCMD")
    assert line == (
        f'SHUTDOWNCMD "{tmp_path}/usr/local/sbin/esxi-suspend shutdown --env-file '
        f'{tmp_path}/etc/esxi-suspend/esxi-suspend.env"'
    )
    assert Layout(SOURCE).shutdowncmd == 'SHUTDOWNCMD "/usr/local/sbin/esxi-suspend shutdown"'


@pytest.mark.parametrize(
    ("in_tree", "on_path", "expected"),
    [
        ("usr/sbin", "/usr/sbin/upssched", "{root}/usr/sbin/upssched"),  # the tree's first
        ("sbin", None, "{root}/sbin/upssched"),
        (None, "/usr/sbin/upssched", "/usr/sbin/upssched"),  # fault 2: the system's
        (None, None, None),
    ],
)
def test_upssched_is_the_trees_else_the_systems(
    tmp_path: Path, in_tree: str | None, on_path: str | None, expected: str | None
) -> None:
    if in_tree is not None:
        program = tmp_path / in_tree / "upssched"
        program.parent.mkdir(parents=True)
        program.write_text("#!/bin/sh\n")
        program.chmod(0o755)
    found = nutsteps.find_upssched(Layout(SOURCE, str(tmp_path)), lambda name: on_path)
    assert found == (expected.format(root=tmp_path) if expected else None)


@pytest.mark.parametrize("configure", [True, False])
def test_no_upssched_anywhere_is_a_warning_naming_what_to_install(
    tmp_path: Path, configure: bool
) -> None:
    """Fault 2: never silently unset. The WARNING goes to stderr, the early shutdown is
    not set, and the lines to add are printed."""
    layout = tree(tmp_path)
    out, err = run_upsmon(layout, no_program, configure)
    [warning] = err.splitlines()
    assert warning.startswith(f"WARNING: no upssched in {tmp_path}/usr/sbin and {tmp_path}/sbin")
    assert "apt-get install nut-client" in warning and "dnf install nut-client" in warning
    assert "      NOTIFYCMD /usr/sbin/upssched" in out.splitlines()
    assert not (tmp_path / "etc/nut/upssched.conf").exists()
    if configure:
        assert "early shutdown not set: no upssched found" in out
    assert "NOTIFYCMD" not in "".join(
        nutconf.active((tmp_path / "etc/nut/upsmon.conf").read_text(), "NOTIFYCMD")
    )


def test_no_warning_when_the_early_shutdown_is_off(tmp_path: Path) -> None:
    layout = tree(tmp_path)
    layout.etc.mkdir(parents=True)
    layout.env_file.write_text("UPS_EARLY_SHUTDOWN=0\n")
    out, err = run_upsmon(layout, no_program)
    assert err == ""
    assert "early shutdown off (UPS_EARLY_SHUTDOWN=0)" in out


def test_no_monitor_line_is_a_warning(tmp_path: Path) -> None:
    layout = tree(tmp_path, 'SHUTDOWNCMD "/sbin/shutdown -h +0"\n')
    _, err = run_upsmon(layout, lambda name: "/usr/sbin/upssched")
    assert "has no MONITOR line" in err


@pytest.mark.parametrize(
    ("line", "seconds"),
    [
        (None, 300),
        ("UPS_EARLY_SHUTDOWN=", 300),
        ("UPS_EARLY_SHUTDOWN=0", 0),
        ("UPS_EARLY_SHUTDOWN=045", 45),
        ("export UPS_EARLY_SHUTDOWN='120'  # two minutes", 120),
        ("UPS_EARLY_SHUTDOWN=86400", 86400),
    ],
)
def test_early_shutdown_setting(tmp_path: Path, line: str | None, seconds: int) -> None:
    env_file = tmp_path / "esxi-suspend.env"
    if line is not None:
        env_file.write_text(f"ESXI_KEY_FILE=/k\n{line}\n")
    assert nutsteps.read_early_shutdown(env_file) == seconds


@pytest.mark.parametrize("value", ["abc", "-5", "86401", "1.5", "0x10", "1234567"])
def test_a_bad_early_shutdown_names_the_file_and_the_fix(tmp_path: Path, value: str) -> None:
    env_file = tmp_path / "esxi-suspend.env"
    env_file.write_text(f"UPS_EARLY_SHUTDOWN={value}\n")
    with pytest.raises(InstallError) as raised:
        nutsteps.read_early_shutdown(env_file)
    assert str(raised.value).startswith(f"UPS_EARLY_SHUTDOWN={value} in {env_file}: ")
    assert str(raised.value).endswith("fix it, then rerun")


def test_a_crlf_upsmon_conf_stays_crlf_and_comes_back_whole(tmp_path: Path) -> None:
    text = UPSMON.replace("\n", "\r\n") + 'SHUTDOWNCMD "/sbin/shutdown -h +0"\r\n'
    layout = tree(tmp_path, text)
    conf = tmp_path / "etc/nut/upsmon.conf"
    run_upsmon(layout, no_program)
    written = conf.read_bytes()
    assert written.count(b"\n") == written.count(b"\r\n") > 3
    report = Report(io.StringIO(), io.StringIO())
    Installer(layout, report).unconfigure_upsmon()
    assert conf.read_bytes() == text.encode()
