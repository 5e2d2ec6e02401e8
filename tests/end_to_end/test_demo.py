"""`esxi-suspend demo` as a newcomer runs it: a subprocess, no host, no network, no syslog."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

COMMAND = Path(sys.executable).parent / "esxi-suspend"


def demo(*args: str) -> subprocess.CompletedProcess[str]:
    if not COMMAND.exists():
        pytest.fail(f"{COMMAND} is not installed (pip install -e .)", pytrace=False)
    return subprocess.run(
        [str(COMMAND), "demo", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
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
    assert "db-01 [primary]                 clean shutdown" in done.stdout
    assert "legacy-erp                      suspended" in done.stdout  # no VMware Tools
    assert "hard-killed at host power-off (autostop left them running): 0" in done.stdout


def test_demo_parallel_is_faster_and_kills_nothing() -> None:
    done = demo("--strategy", "parallel")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Web Server (prod)               clean shutdown" in done.stdout
    assert "hard-killed at host power-off (autostop left them running): 0" in done.stdout
    assert "local NUT monitor restart (stand-in command): ran" in done.stdout
    assert "esxi-suspend exit 0 (OK)" in done.stdout


def test_demo_dry_run_shows_the_plan_only() -> None:
    done = demo("--dry-run")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "would run on the host, detached (dry run; not run):" in done.stdout
    assert "(dry run; not run)" in done.stdout
    assert "result: ready (exit 0 OK)" in done.stdout
    assert "exec: poweroff" not in done.stdout and "hard-killed  <--" not in done.stdout
    assert "nothing was changed on the host" in done.stdout


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
