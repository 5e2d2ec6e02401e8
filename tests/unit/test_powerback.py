"""nut/powerback.py: the wait after power is back, on a fake clock and fake looks at the UPS.

Each look is one status and one battery reading from a script; the clock moves by the poll
interval at every pause. The wake itself (power/wake.py) is replaced by a recorder."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from test_wake import settings_with

from esxi_suspend.errors import ExitCode
from esxi_suspend.nut import powerback, ups
from esxi_suspend.nut import record as outage_record
from esxi_suspend.nut.powerback import Battery, Looks
from esxi_suspend.settings.model import RestartSettings, Settings, Target

OL = ups.UpsStatus((("u@h", "OL"),))
OL_CHRG = ups.UpsStatus((("u@h", "OL CHRG"),))
OB = ups.UpsStatus((("u@h", "OB"),))
UNREADABLE = ups.UpsStatus((), ("`upsc u@h ups.status` exited 1 (Error: Unknown UPS)",))
FULL = Battery(100.0, 3000.0)
TOKEN = "t0ken"
HOSTS = (
    outage_record.PoweredOff("esxi1", "root", 22),
    outage_record.PoweredOff("esxi2", "root", 22),
)


def settings() -> Settings:
    return replace(
        settings_with(), targets=(Target("esxi1", "root", 22), Target("esxi2", "root", 22))
    )


class Script:
    """Fake looks: a list of (status, battery) per look; the clock moves `step` s a pause."""

    def __init__(self, looks: list[tuple[ups.UpsStatus, Battery]], step: float = 10.0) -> None:
        self.looks = looks
        self.step = step
        self.clock = 1000.0
        self.index = 0
        self.at: list[float] = []  # the clock at each look

    def _next(self) -> tuple[ups.UpsStatus, Battery]:
        look = self.looks[min(self.index, len(self.looks) - 1)]
        return look

    def status(self, names: tuple[str, ...]) -> ups.UpsStatus:
        self.at.append(self.clock)
        status = self._next()[0]
        if not status.online:
            self.index += 1
        return status

    def battery(self, names: tuple[str, ...]) -> Battery:
        battery = self._next()[1]
        self.index += 1
        return battery

    def pause(self, seconds: float, stopped: object) -> None:
        self.clock += self.step

    def make(self, directory: Path) -> Looks:
        return Looks(self.status, self.battery, directory, lambda: self.clock, self.pause)


@pytest.fixture
def woken(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[list[str]]]:
    calls: list[list[str]] = []

    def fake(settings: Settings, targets: list[Target], stopped: object) -> ExitCode:
        calls.append([t.host for t in targets])
        return ExitCode.OK

    monkeypatch.setattr("esxi_suspend.power.wake.wake_powered_off", fake)
    yield calls


def pending(directory: Path, shutdown: float = 60.0, token: str = TOKEN) -> None:
    record = outage_record.OutageRecord(HOSTS, 1e9, 4242, shutdown, token, 0.0)
    outage_record.write_record(record, directory)


def restart(**kw: object) -> RestartSettings:
    values: dict[str, object] = {"ups_poll_interval": 10, "wake_steady": 120, "wake_charge": 50}
    values.update(kw)
    return RestartSettings(**values)  # type: ignore[arg-type]


def wait(script: Script, directory: Path, **kw: object) -> ExitCode:
    return powerback.wait_then_wake(
        settings(), restart(**kw), TOKEN, lambda: False, script.make(directory)
    )


def test_steady_mains_and_a_charged_battery_wake_once_and_end_the_record(
    tmp_path: Path, woken: list[list[str]], caplog: pytest.LogCaptureFixture
) -> None:
    pending(tmp_path)
    script = Script([(OL, FULL)])
    with caplog.at_level(logging.INFO, "esxi_suspend"):
        assert wait(script, tmp_path) == ExitCode.OK
    assert woken == [["esxi1", "esxi2"]]
    assert script.at[-1] - script.at[0] >= 120  # never before UPS_WAKE_STEADY
    assert script.at[-1] - script.at[0] < 130
    assert outage_record.read_record(tmp_path) is None
    assert "esxi1, esxi2 will be woken once mains has been steady for 120 s" in caplog.text
    assert "battery.charge at least 50 % (UPS_WAKE_CHARGE)" in caplog.text
    assert "battery.runtime at least 90 s (the hosts' last shutdown 60 s" in caplog.text


def test_a_flicker_starts_the_steady_wait_over_and_wakes_nobody_into_it(
    tmp_path: Path, woken: list[list[str]], caplog: pytest.LogCaptureFixture
) -> None:
    pending(tmp_path)
    script = Script([(OL, FULL)] * 5 + [(OB, FULL)] + [(OL, FULL)] * 20)
    with caplog.at_level(logging.INFO, "esxi_suspend"):
        wait(script, tmp_path)
    assert woken == [["esxi1", "esxi2"]]
    back_again = script.at[6]
    assert script.at[-1] - back_again >= 120
    assert caplog.text.count("mains failed again") == 1
    assert "no host is woken into a failing supply" in caplog.text
    assert caplog.text.count("the steady mains wait starts over") == 1


def test_a_slow_recharge_wakes_only_past_the_threshold(
    tmp_path: Path, woken: list[list[str]], caplog: pytest.LogCaptureFixture
) -> None:
    pending(tmp_path)
    charges = [Battery(c, 3000.0) for c in (10, 20, 30, 40, 45, 49, 49, 49, 49, 49, 49, 49, 49)]
    script = Script([(OL_CHRG, b) for b in charges] + [(OL, Battery(51, 3000.0))])
    with caplog.at_level(logging.INFO, "esxi_suspend"):
        wait(script, tmp_path)
    assert woken == [["esxi1", "esxi2"]]
    assert script.index == len(charges) + 1  # the look at 51 %
    assert "battery.charge 51 %" in caplog.text


def test_runtime_too_short_for_another_shutdown_waits(
    tmp_path: Path, woken: list[list[str]]
) -> None:
    """Charge enough, but battery.runtime below the last shutdown + margin (60 + 30 s)."""
    pending(tmp_path, shutdown=60.0)
    short = [(OL, Battery(80, 85.0))] * 20
    script = Script([*short, (OL, Battery(80, 95.0))])
    wait(script, tmp_path)
    assert woken == [["esxi1", "esxi2"]]
    assert script.index == len(short) + 1


def test_a_ups_reporting_no_charge_wakes_on_steady_mains_alone(
    tmp_path: Path, woken: list[list[str]], caplog: pytest.LogCaptureFixture
) -> None:
    pending(tmp_path)
    script = Script([(OL, Battery(None, None, ("u@h",)))])
    with caplog.at_level(logging.INFO, "esxi_suspend"):
        wait(script, tmp_path)
    assert woken == [["esxi1", "esxi2"]]
    assert script.at[-1] - script.at[0] >= 120
    assert caplog.text.count("report(s) neither battery.charge nor battery.runtime") == 1
    assert "the steady mains wait alone" in caplog.text


@pytest.mark.parametrize(
    ("at_limit", "last", "woke", "said"),
    [
        ("wake", OL, True, "waking esxi1, esxi2 anyway (UPS_WAKE_AT_LIMIT=wake)"),
        ("stay-off", OL, False, "not woken (UPS_WAKE_AT_LIMIT=stay-off)"),
        ("wake", OB, False, "not woken (the UPS is not on line now)"),
    ],
)
def test_the_ceiling(
    tmp_path: Path,
    woken: list[list[str]],
    caplog: pytest.LogCaptureFixture,
    at_limit: str,
    last: ups.UpsStatus,
    woke: bool,
    said: str,
) -> None:
    pending(tmp_path)
    low = Battery(20, 3000.0)
    script = Script([(OL, low)] * 30 + [(last, low)])
    with caplog.at_level(logging.INFO, "esxi_suspend"):
        assert wait(script, tmp_path, wake_limit=300, wake_at_limit=at_limit) == ExitCode.OK
    assert woken == ([["esxi1", "esxi2"]] if woke else [])
    assert said in caplog.text
    assert outage_record.read_record(tmp_path) is None
    assert script.at[-1] - script.at[0] >= 300


def test_still_waiting_is_said_every_few_minutes_with_the_charge(
    tmp_path: Path, woken: list[list[str]], caplog: pytest.LogCaptureFixture
) -> None:
    pending(tmp_path)
    script = Script([(OL, Battery(20, 3000.0))] * 100 + [(OL, FULL)])
    with caplog.at_level(logging.INFO, "esxi_suspend"):
        wait(script, tmp_path)
    lines = [line for line in caplog.messages if "still waiting to wake" in line]
    assert len(lines) == 3  # 1000 s of waiting, a line every 300 s
    assert "battery.charge 20 %" in lines[0]


def test_a_new_outage_taking_the_record_over_cancels_the_wake(
    tmp_path: Path, woken: list[list[str]], caplog: pytest.LogCaptureFixture
) -> None:
    pending(tmp_path)

    class TakeOver(Script):
        def status(self, names: tuple[str, ...]) -> ups.UpsStatus:
            if self.index == 3:  # upsmon called a new shutdown run: it took the record over
                pending(tmp_path, token="")
            return super().status(names)

    script = TakeOver([(OL, FULL)] * 2 + [(OB, FULL)] * 40)
    with caplog.at_level(logging.INFO, "esxi_suspend"):
        assert wait(script, tmp_path) == ExitCode.OK
    assert woken == []
    assert "took the outage record over: this wait is cancelled" in caplog.text
    record = outage_record.read_record(tmp_path)
    assert record is not None and record.hosts == HOSTS  # the new run's, left alone


def test_a_record_gone_cancels_the_wake(tmp_path: Path, woken: list[list[str]]) -> None:
    assert wait(Script([(OL, FULL)]), tmp_path) == ExitCode.OK
    assert woken == []


def test_unreadable_status_wakes_nobody_until_it_reads(
    tmp_path: Path, woken: list[list[str]], caplog: pytest.LogCaptureFixture
) -> None:
    pending(tmp_path)
    script = Script([(UNREADABLE, FULL)] * 20 + [(OL, FULL)])
    with caplog.at_level(logging.INFO, "esxi_suspend"):
        wait(script, tmp_path)
    assert woken == [["esxi1", "esxi2"]]
    assert script.index == 21
    assert caplog.text.count("status cannot be read") == 1


def test_woken_by_hand_leaves_the_pending_wake(tmp_path: Path) -> None:
    pending(tmp_path)
    powerback.woken_by_hand("esxi2", tmp_path)
    record = outage_record.read_record(tmp_path)
    assert record is not None and record.hosts == HOSTS[:1]
    powerback.woken_by_hand(None, tmp_path)
    assert outage_record.read_record(tmp_path) is None


def test_woken_by_hand_leaves_a_record_on_battery_alone(tmp_path: Path) -> None:
    pending(tmp_path, token="")
    powerback.woken_by_hand(None, tmp_path)
    assert outage_record.read_record(tmp_path) is not None


def test_read_battery_takes_the_smallest_and_names_the_silent() -> None:
    answers = {
        ("a@h", "battery.charge"): "80",
        ("a@h", "battery.runtime"): "900",
        ("b@h", "battery.charge"): "35.5",
    }

    def upsc(name: str, variable: str, timeout: float) -> str:
        if (name, variable) in answers:
            return answers[(name, variable)]
        raise ups.UpsUnreadable(
            f"`upsc {name} {variable}` exited 1 (Error: Variable not supported)"
        )

    battery = powerback.read_battery(("a@h", "b@h", "c@h"), upsc_=upsc)
    assert battery == Battery(35.5, 900.0, ("c@h",))
