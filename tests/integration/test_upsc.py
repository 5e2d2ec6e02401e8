"""`upsc` as nut/ups.py runs it: a fake one first on PATH (a real process, bounded), its status,
its failure in one line, a hang cut short, and what several UPSes say together."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from esxi_suspend.nut import ups


@pytest.fixture
def fake_upsc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `upsc` first on PATH; its behaviour per UPS from files in `tmp_path/ups`."""
    states = tmp_path / "ups"
    states.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "upsc"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >>{states}/calls\n'
        f'f={states}/"$1"\n'
        'if [ -f "$f.hang" ]; then exec sleep 30; fi\n'
        'if [ -f "$f" ]; then cat "$f"; exit 0; fi\n'
        'echo "Error: Unknown UPS" >&2; exit 1\n'
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    return states


def test_upsc_reads_the_status(fake_upsc: Path) -> None:
    (fake_upsc / "dummy@h").write_text("OB LB\n")
    assert ups.upsc("dummy@h", "ups.status") == "OB LB"
    assert (fake_upsc / "calls").read_text() == "dummy@h ups.status\n"


def test_upsc_failure_is_one_line(fake_upsc: Path) -> None:
    with pytest.raises(ups.UpsUnreadable, match=r"`upsc nope@h ups.status` exited 1 \(Error: "):
        ups.upsc("nope@h", "ups.status")


def test_upsc_that_hangs_is_bounded(fake_upsc: Path) -> None:
    (fake_upsc / "dummy@h.hang").write_text("")
    started = time.monotonic()
    with pytest.raises(ups.UpsUnreadable, match=r"gave no answer within 0\.5 s"):
        ups.upsc("dummy@h", "ups.status", timeout=0.5)
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(
    ("files", "on_battery", "online", "unreadable"),
    [
        ({"a@h": "OL"}, False, True, False),
        ({"a@h": "OL CHRG"}, False, True, False),
        ({"a@h": "OB DISCHRG"}, True, False, False),
        ({"a@h": "OB LB"}, True, False, False),
        ({"a@h": "OL", "b@h": "OB"}, True, False, False),  # any on battery: power is cut
        ({}, False, False, True),
        ({"a@h": "FSD OB LB"}, True, False, False),
        ({"a@h": "FSD OL"}, True, False, False),  # upsd keeps FSD: the outage is not over
    ],
)
def test_several_upses(
    fake_upsc: Path, files: dict[str, str], on_battery: bool, online: bool, unreadable: bool
) -> None:
    for name, text in files.items():
        (fake_upsc / name).write_text(text + "\n")
    names = tuple(files) or ("a@h",)
    status = ups.read_status(names)
    assert (status.on_battery, status.online, status.unreadable) == (
        on_battery,
        online,
        unreadable,
    )


def test_one_on_battery_one_unreadable_is_on_battery(fake_upsc: Path) -> None:
    (fake_upsc / "a@h").write_text("OB\n")
    status = ups.read_status(("a@h", "b@h"))
    assert status.on_battery and not status.online and not status.unreadable


def test_one_unreadable_among_online_is_not_online(fake_upsc: Path) -> None:
    (fake_upsc / "a@h").write_text("OL\n")
    status = ups.read_status(("a@h", "b@h"))
    assert not status.online and status.unreadable
    assert "a@h: OL" in status.describe() and "b@h" in status.describe()
