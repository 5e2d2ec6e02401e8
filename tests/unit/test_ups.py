"""nut/ups.py: upsmon.conf's MONITOR lines, UPS_NAME, `upsc` (a fake one on PATH: status, failure,
hang), what several UPSes say together, and the wait for power; outage_record.py's record."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from esxi_suspend.nut import record as outage_record
from esxi_suspend.nut import ups
from esxi_suspend.nut.outage import upsd_host
from esxi_suspend.settings import values

MONITOR_CASES = [
    ("MONITOR ups@localhost 1 monuser pass primary\n", ["ups@localhost"]),
    ("MONITOR ups@localhost 1 monuser pass secondary\n", ["ups@localhost"]),
    ("MONITOR myups@bigserver:3493 1 upsmon pw master\n", ["myups@bigserver:3493"]),
    ("MONITOR su700@10.0.0.2 1 upsmon pw slave\n", ["su700@10.0.0.2"]),
    ("  monitor ups@[fe80::1]:3493 1 u p Primary  # trailing comment\n", ["ups@[fe80::1]:3493"]),
    ('MONITOR ups@h 1 monuser "pass with spaces" secondary\n', ["ups@h"]),
    ("# MONITOR ups@commented 1 u p primary\n", []),
    ("MONITOR ups@h 1 u p observer\n", []),  # not a type upsmon knows
    ("MONITOR ups@h one u p primary\n", []),
    ("MONITOR ups@h 1 u\n", []),  # too short
    ('MONITOR ups@h 1 u "unbalanced primary\n', []),
    ('MINSUPPLIES 1\nSHUTDOWNCMD "/sbin/shutdown -h +0"\n', []),
    (  # two UPSes, one only watched (power value 0): the feeding one is the one asked
        "MONITOR a@h 1 u p primary\nMONITOR b@h 0 u p secondary\n",
        ["a@h"],
    ),
    ("MONITOR b@h 0 u p secondary\n", ["b@h"]),  # only watched ones: asked all the same
    ("MONITOR a@h 1 u p primary\nMONITOR c@h2 2 u p secondary\n", ["a@h", "c@h2"]),
    ("MONITOR a@h 1 u p primary\nMONITOR a@h 1 u p primary\n", ["a@h"]),
]


@pytest.mark.parametrize(("text", "names"), MONITOR_CASES)
def test_monitor_lines(text: str, names: list[str]) -> None:
    assert ups.parse_monitor_lines(text) == names


@pytest.mark.parametrize(
    ("value", "names"),
    [
        ("auto", ()),
        ("AUTO", ()),
        ("none", ("none",)),
        ("ups", ("ups",)),
        ("ups@host", ("ups@host",)),
        ("ups@host:3493, other@10.0.0.2", ("ups@host:3493", "other@10.0.0.2")),
        ("ups@[fe80::1]:3493", ("ups@[fe80::1]:3493",)),
        ("a@h, a@h", ("a@h",)),
    ],
)
def test_ups_name_setting(value: str, names: tuple[str, ...]) -> None:
    assert values.parse_ups_names(value) == names


@pytest.mark.parametrize(
    "value", ["ups@host:0", "ups@host:99999", "ups:3493", "ups@", "u ps@h", "ups@h;rm", ",", ""]
)
def test_bad_ups_name(value: str) -> None:
    with pytest.raises(ValueError):
        values.parse_ups_names(value)


def test_upsmon_conf_from_nut_confpath(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "upsmon.conf").write_text("MONITOR dummy@127.0.0.1:3493 1 u p primary\n")
    monkeypatch.setenv("NUT_CONFPATH", str(tmp_path))
    assert ups.upsmon_conf_paths() == [tmp_path / "upsmon.conf"]
    assert ups.ups_names(()) == ["dummy@127.0.0.1:3493"]
    assert ups.ups_names(("other@h",)) == ["other@h"]  # UPS_NAME wins


def test_no_ups_known(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NUT_CONFPATH", str(tmp_path))
    status = ups.read_status(())
    assert status.unreadable and not status.on_battery and not status.online
    assert "no UPS known" in status.describe() and "set UPS_NAME" in status.describe()
    assert ups.read_status(("none",)).unreadable


def test_default_conf_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NUT_CONFPATH", raising=False)
    assert ups.upsmon_conf_paths() == [
        Path("/etc/nut/upsmon.conf"),
        Path("/etc/ups/upsmon.conf"),
    ]


def test_no_upsc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ups, "which", lambda program: None)
    with pytest.raises(ups.UpsUnreadable, match="upsc not found"):
        ups.upsc("dummy@h", "ups.status")


def test_fsd_after_power_is_back_is_told_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(ups, "STEP", 0.01)
    forced = ups.UpsStatus((("u@h", "FSD OL"),))
    assert forced.forced and forced.on_battery and not forced.online
    _calls, read = _reader(forced, forced, forced, ONLINE)
    result = ups.wait_for_power((), 0.02, 60, lambda: False, read=read)
    assert result.outcome == "online"
    told = [r for r in caplog.records if "still has FSD" in r.getMessage()]
    assert len(told) == 1


# -- the outage record -----------------------------------------------------------------------


def _record(*hosts: str) -> outage_record.OutageRecord:
    return outage_record.OutageRecord(
        tuple(outage_record.PoweredOff(h, "root", 22) for h in hosts), 1e9, 4242
    )


def test_record_round_trip(tmp_path: Path) -> None:
    path = outage_record.write_record(_record("esxi1", "esxi2"), tmp_path / "state")
    assert path == tmp_path / "state" / "outage.json"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert oct((tmp_path / "state").stat().st_mode & 0o777) == "0o700"
    record = outage_record.read_record(tmp_path / "state")
    assert record == _record("esxi1", "esxi2")
    assert record.covers("esxi1", 22) and not record.covers("esxi1", 2222)
    assert "esxi1:22, esxi2:22 at " in record.describe() and "(pid 4242)" in record.describe()
    assert sorted(os.listdir(tmp_path / "state")) == ["outage.json"]  # no temporary file left


def test_stale_record_is_removed(tmp_path: Path) -> None:
    path = outage_record.write_record(_record("esxi1"), tmp_path)
    old = time.time() - outage_record.RECORD_FRESH - 5
    os.utime(path, (old, old))
    assert outage_record.read_record(tmp_path) is None
    assert not path.exists()


def test_touch_keeps_a_record_fresh(tmp_path: Path) -> None:
    path = outage_record.write_record(_record("esxi1"), tmp_path)
    old = time.time() - outage_record.RECORD_FRESH - 5
    os.utime(path, (old, old))
    outage_record.touch_record(tmp_path)
    assert outage_record.read_record(tmp_path) == _record("esxi1")


@pytest.mark.parametrize("text", ["", "{", "[]", '{"hosts": [{"host": "x"}], "at": 1, "pid": 2}'])
def test_malformed_record_is_removed(tmp_path: Path, text: str) -> None:
    (tmp_path / "outage.json").write_text(text)
    assert outage_record.read_record(tmp_path) is None
    assert not (tmp_path / "outage.json").exists()


def test_no_record(tmp_path: Path) -> None:
    assert outage_record.read_record(tmp_path / "nothing") is None
    assert outage_record.claim_record(tmp_path / "nothing") is None
    assert not outage_record.remove_record(tmp_path / "nothing")


def test_claim_is_had_once(tmp_path: Path) -> None:
    outage_record.write_record(_record("esxi1"), tmp_path)
    assert outage_record.claim_record(tmp_path) == _record("esxi1")
    assert outage_record.claim_record(tmp_path) is None  # a second waiting run: nothing to wake
    assert os.listdir(tmp_path) == []


def test_record_file_shape(tmp_path: Path) -> None:
    path = outage_record.write_record(_record("esxi1"), tmp_path)
    assert json.loads(path.read_text()) == {
        "hosts": [{"host": "esxi1", "user": "root", "port": 22}],
        "at": 1e9,
        "pid": 4242,
        "shutdown_seconds": 0.0,
        "wake": "",
        "back_at": 0.0,
    }


def test_a_record_of_an_older_version_reads(tmp_path: Path) -> None:
    """A record written before the pending wake existed: no wake, no measured shutdown."""
    (tmp_path / "outage.json").write_text(
        '{"hosts": [{"host": "esxi1", "user": "root", "port": 22}], "at": 1e9, "pid": 4242}'
    )
    assert outage_record.read_record(tmp_path) == _record("esxi1")


def test_a_pending_wake_round_trips(tmp_path: Path) -> None:
    record = outage_record.OutageRecord(_record("esxi1").hosts, 1e9, 4242, 65.5, "abc", 2e9)
    outage_record.write_record(record, tmp_path)
    assert outage_record.read_record(tmp_path) == record
    assert "wake pending" in record.describe()


# -- the wait --------------------------------------------------------------------------------

ON_BATTERY = ups.UpsStatus((("u@h", "OB LB"),))
ONLINE = ups.UpsStatus((("u@h", "OL"),))
UNREADABLE = ups.UpsStatus((), ("`upsc u@h ups.status` exited 1 (Error: Unknown UPS)",))


def _reader(
    *answers: ups.UpsStatus,
) -> tuple[list[int], Callable[[tuple[str, ...]], ups.UpsStatus]]:
    calls: list[int] = []

    def read(names: tuple[str, ...]) -> ups.UpsStatus:
        calls.append(1)
        return answers[min(len(calls), len(answers)) - 1]

    return calls, read


def test_wait_ends_when_power_is_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ups, "STEP", 0.01)
    calls, read = _reader(ON_BATTERY, ON_BATTERY, ONLINE)
    looks: list[int] = []
    result = ups.wait_for_power(
        (),
        0.05,
        60,
        lambda: False,
        on_look=lambda: looks.append(1),
        read=read,
    )
    assert result.outcome == "online" and "u@h: OL" in result.detail
    assert len(calls) == 3 and len(looks) == 3


def test_wait_polls_at_its_interval_not_busily() -> None:
    calls, read = _reader(ON_BATTERY)
    started = time.monotonic()
    result = ups.wait_for_power((), 0.2, 1, lambda: False, read=read)
    assert result.outcome == "limit" and "still on battery after" in result.detail
    assert 1 <= time.monotonic() - started < 2
    assert 3 <= len(calls) <= 6


def test_wait_ends_after_unreadable_looks_in_a_row(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ups, "STEP", 0.01)
    calls, read = _reader(ON_BATTERY, UNREADABLE, ON_BATTERY, UNREADABLE, UNREADABLE, UNREADABLE)
    result = ups.wait_for_power((), 0.02, 60, lambda: False, read=read)
    assert result.outcome == "unreadable" and "Unknown UPS" in result.detail
    assert len(calls) == 6  # the count starts again after a status that could be read


def test_sigterm_ends_the_wait_soon() -> None:
    calls, read = _reader(ON_BATTERY)
    started = time.monotonic()
    stop_at = started + 0.3
    result = ups.wait_for_power(
        (),
        30,
        600,
        lambda: time.monotonic() > stop_at,
        read=read,
    )
    assert result.outcome == "stopped"
    assert time.monotonic() - started < 1
    assert calls == []


@pytest.mark.parametrize(
    ("name", "host"),
    [
        ("ups", ""),
        ("ups@localhost", ""),
        ("ups@localhost:3493", ""),
        ("ups@127.0.0.1:40000", ""),
        ("ups@[::1]:3493", ""),
        ("ups@nut-server.lan", "nut-server.lan"),
        ("ups@10.0.0.2:3493", "10.0.0.2"),
        ("ups@[fe80::1]:3493", "fe80::1"),
    ],
)
def test_whose_upsd_keeps_the_fsd_flag(name: str, host: str) -> None:
    """Only a upsd on this machine is restarted to clear FSD (nut/outage.py)."""
    assert upsd_host(name) == host
