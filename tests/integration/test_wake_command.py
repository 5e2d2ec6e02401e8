"""`esxi-suspend wake [HOST]`, the installed command, against a real UDP listener.

SAFETY: every packet goes to 127.0.0.1 (ESXI_WOL_BROADCAST=127.0.0.1, ESXI_WOL_PORT the
listener's port, a port the kernel picked); never to a broadcast or LAN address.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from wol import Listener, magic

from esxi_suspend.errors import ExitCode

COMMAND = Path(sys.executable).with_name("esxi-suspend")  # .venv/bin/esxi-suspend
MACS = {"esxi1": "aa:bb:cc:dd:ee:01", "esxi2": "AA-BB-CC-DD-EE-02"}


def env_file(tmp_path: Path, port: int, wol_mac: str) -> Path:
    key = tmp_path / "id_ed25519"
    key.write_text("wake never reads the key\n")
    key.chmod(0o600)
    known = tmp_path / "known_hosts"
    known.write_text("")
    env = tmp_path / "esxi-suspend.env"
    env.write_text(
        f"ESXI_HOST=esxi1, root@esxi2:2222, esxi3\nESXI_KEY_FILE={key}\n"
        f"ESXI_KNOWN_HOSTS={known}\nESXI_WOL_MAC={wol_mac}\n"
        f"ESXI_WOL_BROADCAST=127.0.0.1\nESXI_WOL_PORT={port}\nUPS_SERVICE=none\n"
    )
    env.chmod(0o600)
    return env


def wake(env: Path, *args: str) -> subprocess.CompletedProcess[str]:
    if not COMMAND.exists():
        pytest.fail(f"{COMMAND} not found: pip install -e . into this venv first")
    environ = {k: v for k, v in os.environ.items() if k != "ESXI_SUSPEND_ENV"}
    return subprocess.run(
        [str(COMMAND), "wake", "--env-file", str(env), *args],
        env=environ,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


ALL = f"esxi1={MACS['esxi1']}, esxi2:2222={MACS['esxi2']}"


def test_wake_one_host(tmp_path: Path, listener: Listener) -> None:
    done = wake(env_file(tmp_path, listener.port, ALL), "root@esxi2:2222")
    assert done.returncode == ExitCode.OK, done.stderr
    assert listener.received() == [magic(MACS["esxi2"])] * 3
    assert done.stdout.splitlines() == [
        f"esxi2: magic packet for aa:bb:cc:dd:ee:02 to 127.0.0.1 port {listener.port} sent "
        "(3 copies); it powers on if Wake-on-LAN is enabled in its firmware and NIC",
        "result: 1 sent, 0 without ESXI_WOL_MAC, 0 failed (exit 0 OK)",
    ]
    assert "ERROR" not in done.stderr and "WARNING" not in done.stderr  # (INFO: no syslog)


def test_wake_every_host_with_a_mac(tmp_path: Path, listener: Listener) -> None:
    done = wake(env_file(tmp_path, listener.port, ALL), "-v")
    assert done.returncode == ExitCode.OK, done.stderr
    assert listener.received() == [magic(MACS["esxi1"])] * 3 + [magic(MACS["esxi2"])] * 3
    assert "result: 2 sent, 1 without ESXI_WOL_MAC, 0 failed (exit 0 OK)" in done.stdout
    assert (
        "INFO: wake: host esxi3: not woken: no usable ESXI_WOL_MAC entry (to wake it, add "
        "esxi3=MAC, its NIC's MAC; on the host: esxcli network nic list)"
    ) in done.stderr
    assert "Traceback" not in done.stderr


def test_dry_run_sends_nothing(tmp_path: Path, listener: Listener) -> None:
    done = wake(env_file(tmp_path, listener.port, ALL), "--dry-run")
    assert done.returncode == ExitCode.OK, done.stderr
    assert listener.received() == []
    assert "result: 2 would be sent (dry run), 1 without ESXI_WOL_MAC" in done.stdout


def test_a_bad_mac_leaves_that_host_out_and_says_so(tmp_path: Path, listener: Listener) -> None:
    env = env_file(tmp_path, listener.port, f"esxi1=aa:bb:cc, esxi2={MACS['esxi2']}")
    done = wake(env)
    assert done.returncode == ExitCode.CONFIG
    assert listener.received() == [magic(MACS["esxi2"])] * 3  # the other host still woken
    assert (
        "entry 'esxi1=aa:bb:cc': not a MAC address; write 6 two-digit hex octets separated by "
        "':' or '-', e.g. aa:bb:cc:dd:ee:ff; esxi1 is not woken when power returns"
    ) in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("host", "code", "message"),
    [
        ("esxi9", ExitCode.USAGE, "esxi9 is not in ESXI_HOST (it has: esxi1, esxi2:2222, esxi3)"),
        ("esxi3", ExitCode.CONFIG, "host esxi3 has no usable ESXI_WOL_MAC entry; nothing sent"),
    ],
)
def test_a_host_that_cannot_be_woken_sends_nothing(
    tmp_path: Path, listener: Listener, host: str, code: ExitCode, message: str
) -> None:
    done = wake(env_file(tmp_path, listener.port, ALL), host)
    assert done.returncode == code
    assert listener.received() == []
    assert message in done.stderr
    assert "Traceback" not in done.stderr
