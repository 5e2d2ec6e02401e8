"""nut/deadline.py: ESXI_DEADLINE=auto from the UPSes' battery.runtime (a fake upsc), the margin,
the smallest of several, the fallback when none reports it; nut/early.py: upssched's timer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from test_config import GOOD, write_env

from esxi_suspend.nut import deadline, early, ups
from esxi_suspend.settings.envfile import load_settings
from esxi_suspend.settings.model import RestartSettings, Settings


def _settings(files: dict[str, Path], body: str = "ESXI_DEADLINE=auto\n") -> Settings:
    return load_settings(write_env(files, GOOD + "UPS_NAME=a@h,b@h\n" + body))


def _upsc(answers: dict[str, str]) -> Callable[..., str]:
    def upsc(name: str, variable: str, timeout: float) -> str:
        assert variable == "battery.runtime" and timeout == deadline.RUNTIME_TIMEOUT
        answer = answers[name]
        if answer.startswith("!"):
            raise ups.UpsUnreadable(answer[1:])
        return answer

    return upsc


def test_auto_is_read_and_the_fixed_value_is_not(files: dict[str, Path]) -> None:
    settings = _settings(files)
    assert settings.deadline_auto and settings.deadline == 240 and settings.runtime_margin == 30
    fixed = _settings(files, "ESXI_DEADLINE=600\n")
    assert not fixed.deadline_auto
    resolved = deadline.resolve(fixed, upsc=_upsc({}))
    assert (resolved.seconds, resolved.ok) == (600, True)


def test_the_smallest_runtime_minus_the_margin(files: dict[str, Path]) -> None:
    settings = _settings(files, "ESXI_DEADLINE=auto\nUPS_RUNTIME_MARGIN=45\n")
    resolved = deadline.resolve(
        settings, upsc=_upsc({"a@h": "900", "b@h": "300.5"}), now=lambda: settings.called_at
    )
    assert resolved.seconds == 255 and resolved.ok
    assert "battery.runtime 300 s (b@h) - UPS_RUNTIME_MARGIN 45 s" in resolved.source


def test_time_since_the_call_counts_and_one_silent_ups_is_said(files: dict[str, Path]) -> None:
    settings = _settings(files)
    resolved = deadline.resolve(
        settings,
        upsc=_upsc({"a@h": "!`upsc a@h battery.runtime` exited 1 (Variable not supported)",
                    "b@h": "200"}),
        now=lambda: settings.called_at + 3.0,
    )  # fmt: skip
    assert resolved.seconds == 173  # 3 + 200 - 30: from upsmon's call, as ESXI_DEADLINE
    assert "3.0 s since upsmon's call" in resolved.source
    assert "not counted: `upsc a@h battery.runtime` exited 1" in resolved.source


@pytest.mark.parametrize("answers", [{"a@h": "!no", "b@h": "!no"}, {"a@h": "n/a", "b@h": "!x"}])
def test_no_runtime_falls_back_and_says_how_to_fix(
    files: dict[str, Path], answers: dict[str, str]
) -> None:
    resolved = deadline.resolve(_settings(files), upsc=_upsc(answers))
    assert (resolved.seconds, resolved.ok) == (240, False)
    assert "using the fallback 240 s; set ESXI_DEADLINE to seconds" in resolved.source


def test_an_almost_flat_battery_still_gets_the_minimum(files: dict[str, Path]) -> None:
    settings = _settings(files)
    resolved = deadline.resolve(
        settings, upsc=_upsc({"a@h": "25", "b@h": "40"}), now=lambda: settings.called_at
    )
    assert resolved.seconds == deadline.MIN_DEADLINE
    assert f"(at least {deadline.MIN_DEADLINE} s)" in resolved.source


def test_apply_replaces_the_deadline(files: dict[str, Path]) -> None:
    settings = replace(_settings(files), called_at=0.0)
    applied, resolved = deadline.apply(settings, upsc=_upsc({"a@h": "100", "b@h": "100"}))
    assert applied.deadline == resolved.seconds and applied.deadline_auto


def test_no_ups_known_falls_back(files: dict[str, Path]) -> None:
    settings = replace(_settings(files), restart=RestartSettings(ups_names=("none",)))
    resolved = deadline.resolve(settings, upsc=_upsc({}))
    assert not resolved.ok and "UPS_NAME=none" in resolved.source


# -- nut/early.py -------------------------------------------------------------------------------

UPSMON = "NOTIFYCMD /usr/sbin/upssched\nNOTIFYFLAG ONBATT SYSLOG+EXEC\nNOTIFYFLAG ONLINE EXEC\n"
TIMER = "AT ONBATT * START-TIMER early-shutdown 300\nAT ONLINE * CANCEL-TIMER early-shutdown\n"


def _nut(tmp_path: Path, upsmon: str, upssched: str | None) -> list[Path]:
    (tmp_path / "upsmon.conf").write_text(upsmon)
    if upssched is not None:
        (tmp_path / "upssched.conf").write_text(upssched)
    return [tmp_path / "upsmon.conf"]


def test_the_timer_as_install_sh_writes_it(tmp_path: Path) -> None:
    found = early.read(_nut(tmp_path, UPSMON, "# install.sh\nCMDSCRIPT /x\n" + TIMER))
    assert (found.seconds, found.problem) == (300, "")
    assert early.describe(300, found)[0]
    ok, text = early.describe(120, found)
    assert not ok and "UPS_EARLY_SHUTDOWN=120, but" in text and "says 300 s" in text


@pytest.mark.parametrize(
    ("upsmon", "why"),
    [
        ("NOTIFYCMD /usr/local/bin/my-notify\n", "NOTIFYCMD is /usr/local/bin/my-notify"),
        ("NOTIFYFLAG ONBATT SYSLOG\n", "NOTIFYCMD is not set"),
        ("NOTIFYCMD /sbin/upssched\nNOTIFYFLAG ONBATT SYSLOG+EXEC\n", "ONLINE lack(s) EXEC"),
        ('NOTIFYCMD "/sbin/upssched"\nNOTIFYFLAG ONBATT SYSLOG\nNOTIFYFLAG ONLINE EXEC\n',
         "ONBATT lack(s) EXEC"),
    ],
)  # fmt: skip
def test_a_timer_that_upsmon_never_starts_is_said(tmp_path: Path, upsmon: str, why: str) -> None:
    found = early.read(_nut(tmp_path, upsmon, TIMER))
    ok, text = early.describe(300, found)
    assert not ok and why in text and "install.sh --configure-upsmon" in text


def test_no_timer_and_off(tmp_path: Path) -> None:
    found = early.read(_nut(tmp_path, UPSMON, None))
    assert found.seconds is None and "upssched.conf: not found" in found.where
    assert not early.describe(300, found)[0]
    assert early.describe(0, found) == (
        True,
        "off (UPS_EARLY_SHUTDOWN=0): the shutdown starts at low battery (OB LB)",
    )
    commented = early.read(_nut(tmp_path, UPSMON, "# " + TIMER))
    assert commented.seconds is None
    assert not early.describe(0, early.read(_nut(tmp_path, UPSMON, TIMER)))[0]
