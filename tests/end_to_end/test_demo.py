"""`esxi-suspend demo` as a newcomer runs it: a subprocess, no host, no network, no syslog."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from esxi_suspend import clock
from esxi_suspend.demo import command as demo_module

COMMAND = Path(sys.executable).parent / "esxi-suspend"
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
# A line of the timeline: simulated seconds, who, text.
TIMELINE_LINE = re.compile(r"^ +\d+\.\d  (host|esxi-suspend) +\S", re.MULTILINE)
EXEC_LINE = re.compile(r"^ +\d+\.\d  host +exec: ", re.MULTILINE)


def command() -> str:
    if not COMMAND.exists():
        pytest.fail(f"{COMMAND} is not installed (pip install -e .)", pytrace=False)
    return str(COMMAND)


def demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [command(), "demo", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=ENV,
        cwd="/",
        stdin=subprocess.DEVNULL,
        check=False,
    )


def test_demo_runs_the_shutdown_path_end_to_end() -> None:
    done = demo()
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "Traceback" not in output
    assert "timeline (simulated seconds):" in done.stdout
    assert "[host] esxi-suspend: host sequence started: strategy autostop" in done.stdout
    assert "host powered off (poweroff)" in done.stdout
    # db-01's guest shutdown is long: done in time, or suspended by the final step.
    assert re.search(r"db-01 \[primary\] +(clean shutdown|suspended)\n", done.stdout)
    assert "legacy-erp                      suspended" in done.stdout  # no VMware Tools
    assert "hard-killed at host power-off (autostop left them running): 0" in done.stdout
    # Piped: plain lines, no terminal control codes; the commands sent only with -v.
    assert "\x1b" not in done.stdout and "\r" not in done.stdout
    assert not EXEC_LINE.search(done.stdout), done.stdout
    # What it runs, as a command one can paste; no temporary env file to paste.
    assert "\nrunning: esxi-suspend demo --strategy autostop\n" in done.stdout
    assert "--env-file" not in done.stdout


def test_demo_counts_the_deadline_in_simulated_seconds() -> None:
    done = demo()
    assert done.returncode == 0, done.stdout + done.stderr
    # "N s since we were called" is on the simulated clock of the timeline it is printed in.
    found = re.search(
        r"^ +(\d+\.\d)  esxi-suspend +host \S+: inventory: .*; (\d+) s since we were called: "
        r"(\d+) s of ESXI_DEADLINE=240 s left",
        done.stdout,
        re.MULTILINE,
    )
    assert found, done.stdout
    stamp, spent, left = float(found[1]), int(found[2]), int(found[3])
    assert spent - 2 <= stamp <= spent + 1, found[0]
    assert spent + left == 240
    assert f"host sequence started: strategy autostop, poweroff within {left} s" in done.stdout


def test_demo_prints_as_it_goes() -> None:
    """A timeline line arrives while the demo still runs, not all of it at the end."""
    process = subprocess.Popen(
        [command(), "demo", "--time-scale", "0.02"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
        cwd="/",
        stdin=subprocess.DEVNULL,
    )
    try:
        assert process.stdout is not None
        seen: list[str] = []
        started = time.monotonic()
        for line in process.stdout:
            seen.append(line)
            if TIMELINE_LINE.match(line):
                still_running = process.poll() is None
                break
            assert time.monotonic() - started < 60, "".join(seen)
        else:
            pytest.fail("no timeline line:\n" + "".join(seen))
        assert still_running, f"the first timeline line came only at the end: {line!r}"
        rest, errors = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, "".join(seen) + rest + errors
    assert "each VM's fate:" in rest


def test_demo_verbose_shows_the_commands_sent(capsys: pytest.CaptureFixture[str]) -> None:
    before = clock.now
    code = demo_module.run(None, dry_run=False, verbose=True)
    out = capsys.readouterr().out
    assert code == 0, out
    assert EXEC_LINE.search(out), out
    # A command's further lines go under its first, in the text column.
    assert re.search(r"^ {26}call vmsvc/getallvms ", out, re.MULTILINE), out
    assert "\nrunning: esxi-suspend demo --strategy autostop --verbose\n" in out
    assert clock.now() == pytest.approx(time.monotonic(), abs=1)  # the real clock is back
    assert clock.now is before


def test_demo_parallel_is_faster_and_kills_nothing() -> None:
    done = demo("--strategy", "parallel")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Web Server (prod)               clean shutdown" in done.stdout
    assert "hard-killed at host power-off (autostop left them running): 0" in done.stdout
    assert "local NUT monitor restart (stand-in command): ran" in done.stdout
    assert "is confirmed off by its power state" in done.stdout  # what a BMC would add
    assert "each host is powered on by its BMC, else by Wake-on-LAN" in done.stdout
    assert "esxi-suspend exit 0 (OK)" in done.stdout
    assert "\nrunning: esxi-suspend demo --strategy parallel\n" in done.stdout


def test_demo_dry_run_shows_the_plan_only() -> None:
    done = demo("--dry-run")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "would run on the host, detached (dry run; not run):" in done.stdout
    assert "(dry run; not run)" in done.stdout
    assert "result: ready (exit 0 OK)" in done.stdout
    assert "exec: poweroff" not in done.stdout and "hard-killed  <--" not in done.stdout
    assert "nothing was changed on the host" in done.stdout
    # check's rehearsal on the simulated host: its shell ran the host script with stand-ins
    assert "rehearsal on this host, read-only: " in done.stdout
    for probe in ("busybox: ok: BusyBox v1.29.3", "vim-cmd latency: ok:", "rehearsal: ok:"):
        assert f"    {probe}" in done.stdout, done.stdout
    assert "    detached job: ok:" in done.stdout
    assert "clean shutdown" not in done.stdout and "suspended  " not in done.stdout


def test_demo_with_a_fleet_file(tmp_path: Path) -> None:
    fleet = {
        "name": "tiny",
        "vms": [
            {"id": 7, "name": "only one", "autostart": 1, "stop_action": "guestShutdown",
             "shutdown_seconds": 12},
        ],
    }  # fmt: skip
    path = tmp_path / "fleet.json"
    path.write_text(json.dumps(fleet))
    done = demo("--fleet", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "only one                        clean shutdown" in done.stdout
    assert "(autostop left them running): 0" in done.stdout


def test_demo_with_a_bad_fleet_file(tmp_path: Path) -> None:
    path = tmp_path / "fleet.json"
    path.write_text('{"vms": [{"id": "x"}]}')
    done = demo("--fleet", str(path))
    assert done.returncode == 6
    assert "problem(s)" in done.stdout and "Traceback" not in done.stdout + done.stderr
