"""The real NUT chain: dummy-ups driver → upsd → upsmon → SHUTDOWNCMD → esxi-suspend → host.

Debian's own programs (`nut-server`, `nut-client`), started by hand as root with their
configuration and state in a temporary directory (NUT_CONFPATH, NUT_STATEPATH,
NUT_ALTPIDPATH; /etc/nut is never read). The UPS goes from `OL` to `OB LB` by rewriting the
driver's `.dev` file; upsmon then runs the installed `esxi-suspend shutdown` through a wrapper
that appends its stderr to a log file (no syslog socket here: every step is on stderr).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import outputs
import pytest
from conftest import unavailable
from sshservers import SshServer, free_port

COMMAND = Path(sys.executable).parent / "esxi-suspend"
NUT_BIN = Path("/lib/nut")
CHAIN_BOUND = 30.0  # seconds from OB LB to the restart marker
AUTOSTOP = "vim-cmd hostsvc/autostartmanager/autostop"
OWN_STEP = "vim-cmd vmsvc/power.shutdown"


def _write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def _status(dev: Path, status: str) -> None:
    tmp = dev.with_suffix(".new")
    tmp.write_text(f"ups.status: {status}\nbattery.charge: 100\n")
    os.replace(tmp, dev)
    # dummy-ups re-reads the file when its mtime changes: make sure it does
    later = time.time() + 1
    os.utime(dev, (later, later))


@contextlib.contextmanager
def nut_chain(tmp: Path, server: SshServer) -> Iterator[tuple[Path, Path]]:
    """Driver, upsd and upsmon running; yields the `.dev` file and the SHUTDOWNCMD log."""
    for program in ("dummy-ups", "upsd", "upsmon"):
        if not os.access(NUT_BIN / program, os.X_OK):
            unavailable(f"{NUT_BIN / program} not found (apt-get install nut-server nut-client)")
    conf = tmp / "nut-conf"
    state = tmp / "nut-state"
    conf.mkdir()
    state.mkdir(mode=0o700)
    dev = tmp / "ups.dev"
    _status(dev, "OL")
    port = free_port()
    log = tmp / "shutdowncmd.log"
    env_file = server.write_env(tmp / "esxi-suspend.env")
    wrapper = _write(
        tmp / "shutdowncmd",
        "#!/bin/sh\n"
        f"{shlex.quote(str(COMMAND))} shutdown --env-file {shlex.quote(str(env_file))} "
        f"</dev/null >>{shlex.quote(str(log))} 2>&1\n"
        f'echo "esxi-suspend exit $?" >>{shlex.quote(str(log))}\n',
        0o755,
    )
    _write(conf / "nut.conf", "MODE=standalone\n")
    _write(conf / "ups.conf", f'[dummy]\n  driver = dummy-ups\n  port = {dev}\n  desc = "test"\n')
    _write(conf / "upsd.conf", f"LISTEN 127.0.0.1 {port}\n")
    _write(conf / "upsd.users", "[monuser]\n  password = monpass\n  upsmon primary\n")
    _write(
        conf / "upsmon.conf",
        f"MONITOR dummy@127.0.0.1:{port} 1 monuser monpass primary\n"
        "MINSUPPLIES 1\n"
        f'SHUTDOWNCMD "{wrapper}"\n'
        "POLLFREQ 1\nPOLLFREQALERT 1\nHOSTSYNC 1\nDEADTIME 3\nFINALDELAY 0\n"
        f"POWERDOWNFLAG {tmp / 'killpower'}\n"
        "RUN_AS_USER root\n",
    )
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "NUT_CONFPATH": str(conf),
        "NUT_STATEPATH": str(state),
        "NUT_ALTPIDPATH": str(state),
    }
    processes: list[subprocess.Popen[bytes]] = []
    nut_log = (tmp / "nut.log").open("ab")

    def start(*argv: str) -> None:
        processes.append(
            subprocess.Popen(
                list(argv),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=nut_log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=str(tmp),
            )
        )

    try:
        start(str(NUT_BIN / "dummy-ups"), "-a", "dummy", "-u", "root", "-F")
        _wait(lambda: any(state.iterdir()), 10, "the driver's socket", tmp)
        start(str(NUT_BIN / "upsd"), "-u", "root", "-F")
        _wait(lambda: _listening(port), 10, "upsd", tmp)
        start(str(NUT_BIN / "upsmon"), "-p", "-F")
        time.sleep(2)  # upsmon logs in and sees OL
        yield dev, log
    finally:
        for process in reversed(processes):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
        nut_log.close()


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _wait(condition: object, seconds: float, what: str, tmp: Path) -> None:
    assert callable(condition)
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            nut_log = (tmp / "nut.log").read_text(errors="replace")
            pytest.fail(f"waited {seconds} s for {what}; NUT's output:\n{nut_log}")
        time.sleep(0.1)


@pytest.mark.parametrize("kind", ["openssh", "dropbear"])
def test_on_battery_low_upsmon_shuts_the_host_down(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    server: SshServer = request.getfixturevalue(f"{kind}_esxi")
    with nut_chain(tmp_path, server) as (dev, log):
        assert server.commands() == []  # OL: nothing happens
        _status(dev, "OB LB")
        flipped = time.monotonic()
        _wait(lambda: "esxi-suspend exit" in _read(log), CHAIN_BOUND, "SHUTDOWNCMD", tmp_path)
        elapsed = time.monotonic() - flipped

    text = _read(log)
    outputs.record(f"nut chain {kind}", text)
    assert "esxi-suspend exit 0" in text, text
    assert elapsed < CHAIN_BOUND
    changing = [c for c in server.commands() if c.startswith((AUTOSTOP, "poweroff", OWN_STEP))]
    # VMs autostop would hard power off get their own guest shutdown first (12, 15), then
    # autostop, then the host's poweroff: once, last.
    assert sorted(changing[:2]) == [f"{OWN_STEP} 12", f"{OWN_STEP} 15"], changing
    assert changing[2:] == [AUTOSTOP, "poweroff"], changing
    assert len(server.restarts()) == 1
    for step in ("connect: host key", "sequence: started on the host", "poweroff:", "summary:"):
        assert step in text, text
    assert "Traceback" not in text
    assert text.count("esxi-suspend exit") == 1  # upsmon ran SHUTDOWNCMD once


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
