"""The real NUT chain: dummy-ups driver → upsd → upsmon → SHUTDOWNCMD → esxi-suspend → host.

Debian's own programs (`nut-server`, `nut-client`), started by hand as root with their
configuration and state in a temporary directory (NUT_CONFPATH, NUT_STATEPATH,
NUT_ALTPIDPATH; /etc/nut is never read). The UPS goes from `OL` to `OB LB` by rewriting the
driver's `.dev` file; upsmon then runs the installed `esxi-suspend shutdown` through a wrapper
that appends its stderr to a log file.

The three programs run in a private mount namespace with an empty tmpfs over /run
(privaterun.py): upsmon 2.8 writes `/run/nut/upsmon.pid` whatever NUT_ALTPIDPATH says, and
an admin's own upsmon, its pid file, syslog and terminals are never touched. No syslog socket
is seen in there: esxi-suspend logs every step on stderr.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import leftovers
import outputs
import pytest
from bmc import SimulatedBmc
from conftest import unavailable
from privaterun import PrivateRun, Unavailable, private_run
from sshservers import (
    ClientKeys,
    ServerUnavailable,
    SshServer,
    free_port,
    running_server,
    stop_process,
)
from wol import Listener, magic

COMMAND = Path(sys.executable).parent / "esxi-suspend"
SOURCE = Path(__file__).resolve().parents[2]
SCHED_SAMPLE = SOURCE / "upssched.conf.sample"
SCHED_SCRIPT = SOURCE / "upssched-cmd"  # as install.sh installs it: upssched's CMDSCRIPT
NUT_BIN = Path("/lib/nut")
UPSSCHED = Path("/sbin/upssched")  # nut-client's; install.sh's NOTIFYCMD (/sbin: /usr/sbin)
SCHED_PIPE = "/run/nut/upssched.pipe"  # the sample's PIPEFN: the namespace's private /run
EARLY = 4  # seconds: the chain's UPS_EARLY_SHUTDOWN, rendered into upssched.conf
EARLY_CANCELLED = 10  # the cancel test's: OL reaches upssched well before it (a loaded CI)
CHAIN_BOUND = 30.0  # seconds from OB LB to the restart marker
AUTOSTOP = "vim-cmd hostsvc/autostartmanager/autostop"
OWN_STEP = "vim-cmd vmsvc/power.shutdown"
UPSMON_PID = "/run/nut/upsmon.pid"  # compiled into upsmon 2.8: NUT_ALTPIDPATH does not move it
# upsmon 2.8.0's events: each only logged (on stderr: it runs with -F), never sent by `wall`
NOTIFY = (
    "ONLINE", "ONBATT", "LOWBATT", "FSD", "COMMOK",
    "COMMBAD", "SHUTDOWN", "REPLBATT", "NOCOMM", "NOPARENT",
)  # fmt: skip
ALREADY_RUNNING = "A previous upsmon instance is already running"
WAITING = "on battery: the NUT monitor is restarted once power is back"
OUTAGE_RECORD = "/run/esxi-suspend/outage.json"  # esxi_suspend.nut.record.record_path()
FINALDELAY = 0  # upsmon.conf's: seconds before SHUTDOWNCMD (Debian's default: 5)
STEADY = 3  # the chain's UPS_WAKE_STEADY: seconds of steady mains before the hosts are woken


def _write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def _status(dev: Path, status: str, runtime: int | None = None, charge: int | None = 100) -> None:
    """The UPS as dummy-ups serves it: `ups.status`, and `battery.charge`, `battery.runtime`
    when given (None: the UPS does not report it)."""
    tmp = dev.with_suffix(".new")
    extra = f"battery.runtime: {runtime}\n" if runtime is not None else ""
    extra += f"battery.charge: {charge}\n" if charge is not None else ""
    tmp.write_text(f"ups.status: {status}\n{extra}")
    os.replace(tmp, dev)
    # dummy-ups re-reads the file when its mtime changes: make sure it does
    later = time.time() + 1
    os.utime(dev, (later, later))


def _require_nut() -> None:
    for program in ("dummy-ups", "upsd", "upsmon"):
        if not os.access(NUT_BIN / program, os.X_OK):
            unavailable(f"{NUT_BIN / program} not found (apt-get install nut-server nut-client)")


@contextlib.contextmanager
def _private_run(log: Path, outside: PrivateRun | None = None) -> Iterator[PrivateRun]:
    """`private_run`; a machine that cannot make one skips the test (fails it when CI=true)."""
    stack = contextlib.ExitStack()
    try:
        run = stack.enter_context(private_run(log, outside))
    except Unavailable as error:
        unavailable(str(error))
    with stack:
        yield run


def _upsmon_conf(
    monitor: str, shutdown_command: Path, tmp: Path, role: str = "primary", early: bool = False
) -> str:
    """`early`: NOTIFYCMD upssched and EXEC on ONBATT and ONLINE, as install.sh sets them."""
    exec_events = ("ONBATT", "ONLINE") if early else ()
    return (
        f"MONITOR {monitor} 1 monuser monpass {role}\n"
        "MINSUPPLIES 1\n"
        f'SHUTDOWNCMD "{shutdown_command}"\n'
        f"POLLFREQ 1\nPOLLFREQALERT 1\nHOSTSYNC 1\nDEADTIME 3\nFINALDELAY {FINALDELAY}\n"
        f"POWERDOWNFLAG {tmp / 'killpower'}\n"
        "RUN_AS_USER root\n"
        + (f"NOTIFYCMD {UPSSCHED}\n" if early else "")
        + "".join(
            f"NOTIFYFLAG {event} SYSLOG{'+EXEC' if event in exec_events else ''}\n"
            for event in NOTIFY
        )
    )


def _upssched_conf(seconds: int) -> str:
    """Our upssched.conf.sample as install.sh renders it: CMDSCRIPT the timer script, the
    delay on the ONBATT line."""
    text = re.sub(r"(?m)^CMDSCRIPT .*$", f"CMDSCRIPT {SCHED_SCRIPT}", SCHED_SAMPLE.read_text())
    text, count = re.subn(
        r"(?m)^(AT ONBATT \* START-TIMER early-shutdown) [0-9]+$", rf"\g<1> {seconds}", text
    )
    assert count == 1, text
    return text


LOGGER = """\
#!/bin/sh
# logger as the timer script calls it: the line goes to a file the test reads
echo "logger $*" >>{log}
"""


class Programs:
    """Processes started in a PrivateRun, their output appended to `log`; stopped on close."""

    def __init__(self, run: PrivateRun, env: dict[str, str], log: Path) -> None:
        self.run, self.env, self.log_path = run, env, log
        self.log = log.open("ab")
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, *argv: str) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            self.run.argv(*argv),
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=str(self.log_path.parent),
        )
        self.started.append(process)
        return process

    def close(self) -> None:
        for process in reversed(self.started):
            stop_process(process)
        self.log.close()


@dataclass
class Chain:
    dev: Path  # the driver's `.dev` file: the UPS status
    log: Path  # what SHUTDOWNCMD (esxi-suspend) wrote
    nut_log: Path  # what the NUT programs wrote
    run: PrivateRun
    upsmon: subprocess.Popen[bytes]
    monitor: str  # the MONITOR line's UPS: upsmon's UPSNAME
    logger_log: Path  # what the early shutdown's timer script logged (logger), if any
    upsd: subprocess.Popen[bytes]


@contextlib.contextmanager
def nut_chain(
    tmp: Path,
    server: SshServer,
    outside: PrivateRun | None = None,
    settings: dict[str, str] | None = None,
    early_shutdown: int | None = None,
    role: str = "secondary",
    charge: bool = True,
) -> Iterator[Chain]:
    """Driver, upsd and upsmon running in a private namespace (made inside `outside` if
    given); yields once upsmon has written its pid file there and sees the UPS on line.

    esxi-suspend finds the UPS as upsmon does (NUT_CONFPATH's upsmon.conf, its MONITOR line);
    `settings` go into its env file. `early_shutdown` (seconds): the early shutdown as
    install.sh --configure-upsmon sets it, NUT's real upssched with our upssched.conf.sample
    and timer script; a `logger` first on the PATH writes to `Chain.logger_log`. `role`: upsmon's
    (a primary sets FSD before its SHUTDOWNCMD)."""
    _require_nut()
    if early_shutdown is not None and not os.access(UPSSCHED, os.X_OK):
        unavailable(f"{UPSSCHED} not found (apt-get install nut-client)")
    tmp.mkdir(exist_ok=True)
    conf = tmp / "nut-conf"
    state = tmp / "nut-state"
    conf.mkdir()
    state.mkdir(mode=0o700)
    dev = tmp / "ups.dev"
    _status(dev, "OL", charge=100 if charge else None)
    port = free_port()
    log = tmp / "shutdowncmd.log"
    nut_log = tmp / "nut.log"
    env_file = server.write_env(
        tmp / "esxi-suspend.env",
        settings={
            "UPS_NAME": "auto",
            "UPS_POLL_INTERVAL": "1",
            "UPS_WAKE_STEADY": str(STEADY),
            **(settings or {}),
        },
    )
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
    # by default a secondary, as on a VM watching the UPS through another machine's upsd: a
    # primary sets FSD, which upsd keeps after power is back (UPS_CLEAR_FSD: nut/outage.py)
    _write(conf / "upsd.users", f"[monuser]\n  password = monpass\n  upsmon {role}\n")
    monitor = f"dummy@127.0.0.1:{port}"
    early = early_shutdown is not None
    _write(conf / "upsmon.conf", _upsmon_conf(monitor, wrapper, tmp, role, early))
    path = "/usr/sbin:/usr/bin:/sbin:/bin"
    logger_log = tmp / "logger.log"
    if early_shutdown is not None:
        _write(conf / "upssched.conf", _upssched_conf(early_shutdown))
        fake_bin = tmp / "bin"
        fake_bin.mkdir()
        _write(fake_bin / "logger", LOGGER.format(log=shlex.quote(str(logger_log))), 0o755)
        path = f"{fake_bin}:{path}"
    env = {
        "PATH": path,
        "NUT_CONFPATH": str(conf),
        "NUT_STATEPATH": str(state),
        "NUT_ALTPIDPATH": str(state),
    }
    with _private_run(tmp / "namespace.log", outside) as run:
        programs = Programs(run, env, nut_log)
        try:
            programs.start(str(NUT_BIN / "dummy-ups"), "-a", "dummy", "-u", "root", "-F")
            _wait(lambda: any(state.iterdir()), 10, "the driver's socket", nut_log)
            upsd = programs.start(str(NUT_BIN / "upsd"), "-u", "root", "-F")
            _wait(lambda: _listening(port), 10, "upsd", nut_log)
            upsmon = programs.start(str(NUT_BIN / "upsmon"), "-p", "-F")
            pid_file = run.path(UPSMON_PID)
            _wait(lambda: _read(pid_file).strip() == str(upsmon.pid), 10, "upsmon", nut_log)
            # each runs in the namespace, upsmon's pid file is its own /run/nut/upsmon.pid
            assert all(run.contains(process.pid) for process in programs.started)
            time.sleep(2)  # upsmon logs in and sees OL
            yield Chain(dev, log, nut_log, run, upsmon, monitor, logger_log, upsd)
        finally:
            programs.close()


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _wait(condition: Callable[[], bool], seconds: float, what: str, nut_log: Path) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"waited {seconds} s for {what}; NUT's output:\n{_read(nut_log)}")
        time.sleep(0.1)


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def _shut_down_on_battery_low(server: SshServer, tmp: Path, outside: PrivateRun | None) -> None:
    """The chain from OL to OB LB: upsmon runs esxi-suspend once, the host goes down in order;
    every NUT program ran in the chain's namespace, and the machine's /run/nut is as before."""
    machine_nut = leftovers.listing(leftovers.NUT_RUN)
    with nut_chain(tmp, server, outside) as chain:
        assert server.commands() == []  # OL: nothing happens
        _status(chain.dev, "OB LB")
        flipped = time.monotonic()
        # the host is down; the run waits for power before it restarts the monitor
        _wait(lambda: WAITING in _read(chain.log), CHAIN_BOUND, "SHUTDOWNCMD", chain.nut_log)
        elapsed = time.monotonic() - flipped
        _status(chain.dev, "OL")
        _wait(lambda: "esxi-suspend exit" in _read(chain.log), 15, "power back", chain.nut_log)
        outside_pid_file = outside.path(UPSMON_PID) if outside else Path(UPSMON_PID)
        assert _read(outside_pid_file).strip() != str(chain.upsmon.pid)

    text = _read(chain.log)
    outputs.record(f"nut chain {server.kind}", text)
    assert "esxi-suspend exit 0" in text, f"{text}\nNUT's output:\n{_read(chain.nut_log)}"
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
    assert "ups: power is back (dummy@127.0.0.1:" in text, text
    assert leftovers.listing(leftovers.NUT_RUN) == machine_nut


RESTART_MONITOR = """\
#!/bin/sh
# What `systemctl --no-block restart nut-monitor` does: it returns at once; then the monitor
# is stopped (SIGTERM; upsmon ends once its SHUTDOWNCMD has returned) and a new one started.
echo "restarted $*" >>{marker}
old=$(cat /run/nut/upsmon.pid 2>/dev/null)
(
    if [ -n "$old" ]; then
        kill -TERM "$old" 2>/dev/null
        i=0
        while [ -d "/proc/$old" ] && ! grep -q '^State:.*Z' "/proc/$old/status" \
            && [ "$i" -lt 200 ]; do
            sleep 0.1; i=$((i + 1))
        done
        # systemd reaps it; here it is the test's child: its pid file must not name a zombie
        rm -f /run/nut/upsmon.pid
    fi
    exec {upsmon} -p -F
) </dev/null >>{log} 2>&1 &
"""


def _fresh_upsmon(chain: Chain) -> int:
    """Wait (25 s at most) for the upsmon our restart command started; its pid."""
    _wait(
        lambda: _upsmon_running(chain, chain.upsmon.pid) is not None,
        25,
        "a fresh upsmon",
        chain.nut_log,
    )
    fresh = _upsmon_running(chain, chain.upsmon.pid)
    assert fresh is not None
    return fresh


def _restart_monitor(server: SshServer, tmp_path: Path) -> Path:
    """UPS_RESTART_COMMAND for a chain under `tmp_path / "chain"`: RESTART_MONITOR."""
    return _write(
        tmp_path / "restart-monitor",
        RESTART_MONITOR.format(
            marker=shlex.quote(str(server.restart_marker)),
            upsmon=shlex.quote(str(NUT_BIN / "upsmon")),
            log=shlex.quote(str(tmp_path / "chain" / "nut.log")),
        ),
        0o755,
    )


def _upsmon_running(chain: Chain, old: int) -> int | None:
    """The pid of a live upsmon other than `old` that wrote the namespace's pid file."""
    text = _read(chain.run.path(UPSMON_PID)).strip()
    if not text.isdigit() or int(text) == old:
        return None
    pid = int(text)
    status = _read(Path(f"/proc/{pid}/status"))
    alive = status and not re.search(r"(?m)^State:\s+Z", status)
    return pid if alive and chain.run.contains(pid) else None


def test_one_shutdown_per_outage_then_the_monitor_is_rearmed(
    openssh_esxi: SshServer, tmp_path: Path
) -> None:
    """upsmon ends after its SHUTDOWNCMD, and a monitor restarted while the UPS is still
    `OB LB` calls it again at once. Over 45 s of `OB LB` after the host is down, the one run
    waits: the host is contacted by that run only, no `connect FAILED`; once the UPS is `OL`
    the run restarts the monitor (a real stop and start of upsmon), which stays quiet, and
    the outage record is gone."""
    server = openssh_esxi
    restart = _restart_monitor(server, tmp_path)
    settings = {"UPS_RESTART_COMMAND": str(restart)}
    with nut_chain(tmp_path / "chain", server, settings=settings) as chain:
        _status(chain.dev, "OB LB")
        _wait(lambda: WAITING in _read(chain.log), CHAIN_BOUND, "the run's wait", chain.nut_log)
        down = time.monotonic()
        assert server.commands().count("poweroff") == 1
        record = chain.run.path(OUTAGE_RECORD)
        assert record.exists()
        while time.monotonic() - down < 45:  # the outage goes on: nothing more happens
            time.sleep(1)
            assert "esxi-suspend exit" not in _read(chain.log), _read(chain.log)
        assert _upsmon_running(chain, -1) == chain.upsmon.pid  # not restarted meanwhile
        assert server.restarts() == []

        _status(chain.dev, "OL")
        _wait(lambda: "esxi-suspend exit" in _read(chain.log), 15, "power back", chain.nut_log)
        fresh = _fresh_upsmon(chain)
        assert chain.upsmon.poll() is not None  # the old one ended
        time.sleep(3)  # the fresh upsmon logs in and sees OL: it calls nobody
        assert _upsmon_running(chain, chain.upsmon.pid) == fresh
        _wait(lambda: not record.exists(), STEADY + 15, "the wake after power back", chain.nut_log)
        text = _read(chain.log)

    outputs.record("nut chain: one shutdown per outage", text)
    assert "Traceback" not in text
    assert "connect FAILED" not in text, text
    assert text.count("esxi-suspend exit") == 1, text
    assert text.count("esxi-suspend exit 0") == 1, text
    assert text.count(": connecting as ") == 1, text  # one run contacted the host
    assert server.commands().count(AUTOSTOP) == 1
    assert server.commands().count("poweroff") == 1
    assert len(server.restarts()) == 1
    assert "ups: power is back (dummy@127.0.0.1:" in text, text


@pytest.mark.parametrize("kind", ["openssh", "dropbear"])
def test_on_battery_low_upsmon_shuts_the_host_down(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    server: SshServer = request.getfixturevalue(f"{kind}_esxi")
    _shut_down_on_battery_low(server, tmp_path, None)


def test_an_admins_upsmon_is_left_alone(openssh_esxi: SshServer, tmp_path: Path) -> None:
    """An admin's upsmon already runs (its pid file in /run/nut names it): the chain passes,
    and that upsmon, its pid file and its SHUTDOWNCMD are untouched.

    The "machine" is a private namespace too, so that this machine's real /run/nut is not the
    one at stake: the admin's upsmon runs there, and the chain starts from there.
    """
    _require_nut()
    admin = tmp_path / "admin"
    admin.mkdir()
    marker = admin / "shutdowncmd-ran"
    command = _write(admin / "shutdowncmd", f"#!/bin/sh\ntouch {shlex.quote(str(marker))}\n", 0o755)
    # it watches a UPS nobody serves: it keeps running, reconnecting, and never shuts down
    _write(admin / "upsmon.conf", _upsmon_conf(f"ups@127.0.0.1:{free_port()}", command, admin))
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "NUT_CONFPATH": str(admin)}
    nut_log = admin / "nut.log"
    with _private_run(admin / "namespace.log") as machine:
        programs = Programs(machine, env, nut_log)
        try:
            stray = programs.start(str(NUT_BIN / "upsmon"), "-p", "-F")
            pid_file = machine.path(UPSMON_PID)
            _wait(
                lambda: _read(pid_file).strip() == str(stray.pid), 10, "the admin's upsmon", nut_log
            )
            before = pid_file.stat()

            # Without a namespace of its own, a second upsmon refuses to start next to it
            # (or would take over its pid file): the hazard the chain's namespace removes.
            control = subprocess.run(
                machine.argv(str(NUT_BIN / "upsmon"), "-p", "-F"),
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=10,
            )
            assert control.returncode != 0, control
            assert ALREADY_RUNNING in control.stdout + control.stderr, control

            _shut_down_on_battery_low(openssh_esxi, tmp_path / "chain", machine)

            assert stray.poll() is None, _read(nut_log)
            after = pid_file.stat()
            assert _read(pid_file).strip() == str(stray.pid)
            assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
            assert not marker.exists()
        finally:
            programs.close()


def test_early_shutdown_after_the_delay_on_battery(openssh_esxi: SshServer, tmp_path: Path) -> None:
    """`OB` without `LB`: upsmon runs upssched on ONBATT, whose timer fires EARLY s later; our
    timer script asks upsmon for the shutdown (`upsmon -c fsd`), and upsmon runs SHUTDOWNCMD:
    the host goes down in order, once. Nothing starts before the delay. `OL` ends the run."""
    server = openssh_esxi
    with nut_chain(tmp_path, server, early_shutdown=EARLY) as chain:
        _status(chain.dev, "OB")
        flipped = time.monotonic()
        pipe = chain.run.path(SCHED_PIPE)
        _wait(pipe.exists, 10, "upssched's timer (its pipe)", chain.nut_log)
        # upssched counts whole seconds: the timer may fire up to 1 s before EARLY s
        while time.monotonic() - flipped < EARLY - 1.5:
            assert _read(chain.log) == "" and server.commands() == [], _read(chain.log)
            time.sleep(0.1)
        _wait(lambda: _read(chain.log) != "", EARLY + 15, "SHUTDOWNCMD", chain.nut_log)
        started = time.monotonic() - flipped
        _wait(lambda: WAITING in _read(chain.log), CHAIN_BOUND, "the host down", chain.nut_log)
        _status(chain.dev, "OL")
        _wait(lambda: "esxi-suspend exit" in _read(chain.log), 15, "power back", chain.nut_log)
        assert not pipe.exists()  # the timer fired: upssched's daemon is gone
        text = _read(chain.log)
        logged = _read(chain.logger_log)
        nut_output = _read(chain.nut_log)

    outputs.record("nut chain: early shutdown", text)
    assert "esxi-suspend exit 0" in text, f"{text}\nNUT's output:\n{nut_output}"
    assert EARLY - 1 <= started < EARLY + 15, started
    changing = [c for c in server.commands() if c.startswith((AUTOSTOP, "poweroff", OWN_STEP))]
    assert sorted(changing[:2]) == [f"{OWN_STEP} 12", f"{OWN_STEP} 15"], changing
    assert changing[2:] == [AUTOSTOP, "poweroff"], changing
    assert len(server.restarts()) == 1
    assert "Traceback" not in text
    assert text.count("esxi-suspend exit") == 1  # upsmon ran SHUTDOWNCMD once
    assert "ups: power is back (dummy@127.0.0.1:" in text, text
    # the timer script's one line, and upsmon took the request
    assert logged.count("logger ") == 1, logged
    assert (
        f"logger -t esxi-suspend -- early shutdown: UPS {chain.monitor} on battery for "
        f"{EARLY} s (upssched timer early-shutdown, UPS_EARLY_SHUTDOWN): asking upsmon for "
        "the shutdown now (upsmon -c fsd)"
    ) in logged, logged
    assert "User requested FSD" in nut_output, nut_output


def test_power_back_before_the_delay_cancels_the_early_shutdown(
    openssh_esxi: SshServer, tmp_path: Path
) -> None:
    """`OB`, then `OL` before the timer fires (upssched's ONLINE cancels it): past the delay
    nothing has run, the host got no command, the timer script never ran."""
    server = openssh_esxi
    with nut_chain(tmp_path, server, early_shutdown=EARLY_CANCELLED) as chain:
        _status(chain.dev, "OB")
        pipe = chain.run.path(SCHED_PIPE)
        _wait(pipe.exists, 10, "upssched's timer (its pipe)", chain.nut_log)
        timer = time.monotonic()  # the timer runs from (about) now
        _status(chain.dev, "OL")
        _wait(lambda: not pipe.exists(), 10, "upssched's cancel", chain.nut_log)
        assert time.monotonic() - timer < EARLY_CANCELLED - 1, "the cancel came too late"
        while time.monotonic() - timer < EARLY_CANCELLED + 4:
            time.sleep(0.2)
        assert chain.upsmon.poll() is None  # still watching the UPS
        text = _read(chain.log)
        logged = _read(chain.logger_log)
        nut_output = _read(chain.nut_log)

    assert text == "", text
    assert logged == "", logged
    assert server.commands() == []
    assert "User requested FSD" not in nut_output, nut_output


# Set to a file path to keep upsmon's FINALDELAY line, the timeline and the run's log, an empty
# line between them (tools/refresh_docs.py makes docs/outage.md's Outage timeline of them).
TIMELINE_VARIABLE = "ESXI_SUSPEND_TIMELINE"
WOL_MAC = "aa:bb:cc:dd:ee:10"
RUNTIME = 200  # dummy-ups's battery.runtime while on battery: ESXI_DEADLINE=auto reads it
BMC_HOST = "127.0.0.2"  # the timeline's second host, the one with a BMC: an address of its own
BACK = f"host {BMC_HOST}: SSH port answers: host back"  # + the run's figure: `after N s`


@contextlib.contextmanager
def _second_host(tmp: Path, client_keys: ClientKeys) -> Iterator[SshServer]:
    """Another fake ESXi host (OpenSSH), on BMC_HOST; skipped as the fixtures' are."""
    stack = contextlib.ExitStack()
    try:
        server = stack.enter_context(running_server("openssh", tmp, client_keys, BMC_HOST))
    except ServerUnavailable as error:
        unavailable(str(error))
    with stack:
        yield server


def test_outage_timeline(
    openssh_esxi: SshServer,
    tmp_path: Path,
    listener: Listener,
    bmc: SimulatedBmc,
    client_keys: ClientKeys,
) -> None:
    """The whole outage, every part real but the hosts: ONBATT → upssched's timer → upsmon -c
    fsd → esxi-suspend shutdown (ESXI_DEADLINE=auto from dummy-ups's battery.runtime) → both
    hosts off (their SSH ports close; the second one's BMC, an ipmi_sim, confirms it by its
    power state) → the run waits → OL → the NUT monitor restarted (a fresh upsmon, quiet on
    OL) → mains steady: the first host's magic packet (to a listener on 127.0.0.1), the second
    powered on by its BMC, its SSH port back.

    Each milestone is stamped in seconds from ONBATT (docs/outage.md, Outage timeline, shows one).
    """
    server = openssh_esxi
    with _second_host(tmp_path / "esxi-bmc", client_keys) as second:
        for host in (server, second):
            host.write_fake("poweroff_mode", "halt")
        bmc.follow(second)  # its power goes off once its SSH server has ended
        bmc.boots_on(second.port, 1.0, second.host)  # powered on: its SSH port back 1 s later
        known = tmp_path / "known_hosts"
        known.write_text(server.known_hosts.read_text() + second.known_hosts.read_text())
        settings = {
            "ESXI_HOST": f"{server.host}:{server.port},{second.host}:{second.port}",
            "ESXI_KNOWN_HOSTS": str(known),
            "UPS_RESTART_COMMAND": str(_restart_monitor(server, tmp_path)),
            "ESXI_DEADLINE": "auto",
            "ESXI_WOL_MAC": f"{server.host}={WOL_MAC}",
            "ESXI_WOL_BROADCAST": "127.0.0.1",
            "ESXI_WOL_PORT": str(listener.port),
            **bmc.settings(second.host),
            "ESXI_BOOT_WAIT": "30",
        }
        stamps, text, packets = _outage(server, second, bmc, listener, tmp_path, settings)

    outputs.record("nut chain: outage timeline", text)
    assert text.count("esxi-suspend exit 0") == 1, text
    assert "Traceback" not in text and "connect FAILED" not in text, text
    assert re.search(rf"deadline: ESXI_DEADLINE=auto: \d+ s = battery.runtime {RUNTIME} s", text)
    assert packets[0] == magic(WOL_MAC)
    assert all(packet == magic(WOL_MAC) for packet in packets)  # the BMC host gets none
    assert server.commands().count("poweroff") == 1
    assert second.commands().count("poweroff") == 1
    assert len(server.restarts()) == 1
    assert bmc.on and bmc.calls().count("set power 1") == 1
    assert "set shutdown 1" not in bmc.calls()  # SSH worked: the power button stays unpressed
    back = re.search(rf"host {BMC_HOST}: powered on by its BMC; host back after (\d+) s", text)
    assert back, text
    stamps = [(at, f"{what} after {back[1]} s" if what == BACK else what) for at, what in stamps]
    timeline = "\n".join(f"t+{at:5.1f} s  {what}" for at, what in stamps)
    order = [what for _, what in stamps]
    power_back = order.index("power back (OL)")
    assert order.index(f"host {BMC_HOST}: off confirmed by its BMC (its power state)") < power_back
    assert order.index(f"host {server.host}: off (SSH port closed)") < power_back
    times = dict((what, at) for at, what in stamps)
    for woken in (f"host {server.host}: magic", f"host {BMC_HOST}: powered on by its BMC"):
        at = next(at for what, at in times.items() if what.startswith(woken))
        assert at - times["power back (OL)"] >= STEADY
    keep = os.environ.get(TIMELINE_VARIABLE)
    if keep:  # only a run that passed
        Path(keep).write_text(f"FINALDELAY {FINALDELAY}\n\n{timeline}\n\n{text}")


def _outage(
    server: SshServer,
    second: SshServer,
    bmc: SimulatedBmc,
    listener: Listener,
    tmp_path: Path,
    settings: dict[str, str],
) -> tuple[list[tuple[float, str]], str, list[bytes]]:
    """test_outage_timeline's outage: its milestones stamped (seconds from ONBATT, in the
    order they were seen), the run's log, the magic packets received."""
    stamps: list[tuple[float, str]] = []
    packets: list[bytes] = []
    wol, other = server.host, second.host
    with nut_chain(tmp_path / "chain", server, settings=settings, early_shutdown=EARLY) as c:
        t0 = time.monotonic()

        def stamp(what: str) -> None:
            stamps.append((time.monotonic() - t0, what))

        def watch(milestones: dict[str, Callable[[], bool]], seconds: float) -> None:
            """Stamp each milestone once it holds (they happen at once: all looked at every
            0.1 s); until all have, `seconds` at most. `milestones` in the order they happen:
            the last looked at first, so an effect is never stamped before its cause."""
            pending = dict(milestones)
            deadline = time.monotonic() + seconds
            while pending:
                held = {what for what, holds in reversed(pending.items()) if holds()}
                for what in [what for what in pending if what in held]:
                    stamp(what)
                    del pending[what]
                if pending and time.monotonic() > deadline:
                    pytest.fail(
                        f"waited {seconds} s for: {'; '.join(pending)}\nesxi-suspend's output:\n"
                        f"{_read(c.log)}\nNUT's output:\n{_read(c.nut_log)}"
                    )
                time.sleep(0.1)

        def logged(words: str) -> Callable[[], bool]:
            return lambda: words in _read(c.log)

        def packet() -> bool:
            got = listener.poll(0.02)
            if got is not None:
                packets.append(got)
            return bool(packets)

        _status(c.dev, "OB", RUNTIME)
        stamp(f"UPS on battery (OB, battery.runtime {RUNTIME} s): upsmon → upssched ONBATT")
        watch(
            {
                "timer fired: upsmon -c fsd": lambda: _read(c.logger_log) != "",
                "upsmon runs SHUTDOWNCMD: esxi-suspend": lambda: _read(c.log) != "",
                f"host {wol}: sequence started, detached": logged(
                    f"host {wol}: sequence: started on the host"
                ),
                f"host {other}: sequence started, detached": logged(
                    f"host {other}: sequence: started on the host"
                ),
                f"host {wol}: poweroff": lambda: "poweroff" in server.commands(),
                f"host {other}: poweroff": lambda: "poweroff" in second.commands(),
                f"host {wol}: off (SSH port closed)": lambda: server.process.poll() is not None,
                f"host {other}: off (SSH port closed)": lambda: second.process.poll() is not None,
                f"host {other}: off confirmed by its BMC (its power state)": logged(
                    f"host {other}: off: confirmed by its BMC"
                ),
                "run waits for power": logged(WAITING),
            },
            EARLY + 15 + 2 * CHAIN_BOUND,
        )
        time.sleep(2)
        _status(c.dev, "OL")
        stamp("power back (OL)")
        watch(
            {
                "esxi-suspend exits": logged("esxi-suspend exit"),
                "a fresh upsmon: monitoring re-armed": lambda: (
                    _upsmon_running(c, c.upsmon.pid) is not None
                ),
            },
            25,
        )
        fresh = _upsmon_running(c, c.upsmon.pid)
        assert not packets and listener.poll(0.05) is None  # no host woken yet
        assert "set power 1" not in bmc.calls()
        watch(
            {
                f"mains steady {STEADY} s (UPS_WAKE_STEADY), battery.charge 100 %: wake": (
                    logged("mains steady for")
                ),
                f"host {wol}: magic packet received": packet,
                f"host {other}: powered on by its BMC (chassis power on)": lambda: (
                    "set power 1" in bmc.calls()
                ),
                BACK: logged(f"host {other}: powered on by its BMC; host back after"),
            },
            STEADY + 40,
        )
        time.sleep(2)  # the fresh upsmon sees OL: it calls nobody
        assert _upsmon_running(c, c.upsmon.pid) == fresh
        _wait(lambda: not c.run.path(OUTAGE_RECORD).exists(), 10, "the wake's end", c.nut_log)
        packets.extend(iter(lambda: listener.poll(0.05), None))
        return stamps, _read(c.log), packets


CLEAR_FSD = """\
#!/bin/sh
# What `systemctl restart nut-server` does for FSD: upsd stopped, started again, ready when
# this returns. It runs inside the chain's namespace (as esxi-suspend's child).
echo "clear-fsd $*" >>{marker}
old=$(cat {pid_file})
kill -TERM "$old"
i=0
while [ -d "/proc/$old" ] && ! grep -q '^State:.*Z' "/proc/$old/status" && [ "$i" -lt 100 ]; do
    sleep 0.1; i=$((i + 1))
done
( exec {upsd} -u root -F ) </dev/null >>{log} 2>&1 &
i=0
until upsc {ups} ups.status >/dev/null 2>&1 || [ "$i" -ge 100 ]; do sleep 0.1; i=$((i + 1)); done
"""


def test_a_primarys_fsd_is_cleared_when_power_is_back(
    openssh_esxi: SshServer, tmp_path: Path
) -> None:
    """upsmon as a primary sets FSD before it calls us, and upsd keeps it after power is back:
    a monitor restarted then would shut down again. The run restarts NUT's server (here
    upsd, by UPS_CLEAR_FSD) once power is back, then re-arms the monitor, which stays quiet."""
    server = openssh_esxi
    marker = tmp_path / "clear-fsd.log"
    pid_file = tmp_path / "upsd.pid"
    chain_dir = tmp_path / "chain"
    restart = _restart_monitor(server, tmp_path)
    settings = {"UPS_RESTART_COMMAND": str(restart)}
    with nut_chain(chain_dir, server, settings=settings, role="primary") as chain:
        clear = _write(
            tmp_path / "clear-fsd",
            CLEAR_FSD.format(
                marker=shlex.quote(str(marker)),
                pid_file=shlex.quote(str(pid_file)),
                upsd=shlex.quote(str(NUT_BIN / "upsd")),
                log=shlex.quote(str(chain.nut_log)),
                ups=shlex.quote(chain.monitor),
            ),
            0o755,
        )
        env_file = chain_dir / "esxi-suspend.env"
        env_file.write_text(env_file.read_text() + f"UPS_CLEAR_FSD={clear}\n")
        pid_file.write_text(f"{chain.upsd.pid}\n")
        _status(chain.dev, "OB LB")
        _wait(lambda: WAITING in _read(chain.log), CHAIN_BOUND, "the run's wait", chain.nut_log)
        assert "FSD" in _read(chain.log), _read(chain.log)  # the primary set it
        _status(chain.dev, "OL")
        _wait(lambda: "esxi-suspend exit" in _read(chain.log), 30, "power back", chain.nut_log)
        fresh = _fresh_upsmon(chain)
        time.sleep(3)  # the fresh primary sees OL without FSD: it calls nobody
        assert _upsmon_running(chain, chain.upsmon.pid) == fresh
        text = _read(chain.log)

    outputs.record("nut chain: a primary's FSD cleared", text)
    assert text.count("esxi-suspend exit 0") == 1, text
    assert "Traceback" not in text
    assert _read(marker).count("clear-fsd") == 1
    assert "keeps the FSD (forced shutdown) flag a primary upsmon set" in text, text
    assert "ups: NUT's server restarted: FSD cleared" in text, text
    assert "ups: power is back (dummy@127.0.0.1:" in text, text
    assert server.commands().count("poweroff") == 1
    assert len(server.restarts()) == 1


# -- power back, safely: the wake waits for steady mains and a recharged battery ---------------

WAKING = "power back: mains steady for"
WAKE_MAC = "aa:bb:cc:dd:ee:22"


@contextlib.contextmanager
def _waiting_wake(
    server: SshServer, tmp_path: Path, listener: Listener, charge: bool = True, **settings: str
) -> Iterator[Chain]:
    """A chain whose outage is over: OB LB, the host off (its SSH port closed), OL at
    battery.charge 20 %, the run ended and the monitor re-armed (a fresh upsmon); the wake
    waits, detached. `charge`: False, a UPS that reports no battery.charge (dummy-ups keeps
    a variable once served). `settings`: the env file's, over the chain's."""
    server.write_fake("poweroff_mode", "halt")
    restart = _restart_monitor(server, tmp_path)
    env = {
        "UPS_RESTART_COMMAND": str(restart),
        "ESXI_WOL_MAC": f"127.0.0.1={WAKE_MAC}",
        "ESXI_WOL_BROADCAST": "127.0.0.1",
        "ESXI_WOL_PORT": str(listener.port),
        **settings,
    }
    with nut_chain(tmp_path / "chain", server, settings=env, charge=charge) as chain:
        _status(chain.dev, "OB LB", charge=40 if charge else None)
        _wait(lambda: WAITING in _read(chain.log), CHAIN_BOUND, "the run's wait", chain.nut_log)
        _wait(lambda: server.process.poll() is not None, 30, "the host off", chain.nut_log)
        _status(chain.dev, "OL", charge=20 if charge else None)
        _wait(lambda: "esxi-suspend exit" in _read(chain.log), 20, "power back", chain.nut_log)
        _fresh_upsmon(chain)
        yield chain


def _no_packet_for(listener: Listener, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        assert listener.poll(0.2) is None, "a host was woken"


def _woken(chain: Chain, listener: Listener, seconds: float) -> bytes:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        packet = listener.poll(0.2)
        if packet is not None:
            return packet
    pytest.fail(f"no magic packet within {seconds} s:\n{_read(chain.log)}")


def _wake_ended(chain: Chain) -> str:
    """The log, once the wake is over (the outage record gone)."""
    record = chain.run.path(OUTAGE_RECORD)
    _wait(lambda: not record.exists(), 20, "the wake's end", chain.nut_log)
    time.sleep(0.5)
    return _read(chain.log)


def test_a_flicker_wakes_nobody_and_the_second_outage_leaves_the_host_alone(
    openssh_esxi: SshServer, tmp_path: Path, listener: Listener
) -> None:
    """OL, then OB LB within the steady window: the wake is cancelled (no packet), the
    re-armed upsmon calls a new run, which contacts no host (the record says it is off) and
    waits; OL again: the host is woken once, after the steady window."""
    server = openssh_esxi
    with _waiting_wake(server, tmp_path, listener, UPS_WAKE_STEADY="8", UPS_WAKE_CHARGE="0") as c:
        _status(c.dev, "OB LB", charge=15)  # a second outage, within the 8 s
        _wait(lambda: _read(c.log).count("esxi-suspend exit") == 1, 1, "", c.nut_log)
        _wait(lambda: _read(c.log).count(WAITING) == 2, CHAIN_BOUND, "the second run", c.nut_log)
        _no_packet_for(listener, 3)
        _status(c.dev, "OL", charge=60)
        back = time.monotonic()
        assert _woken(c, listener, 30) == magic(WAKE_MAC)
        assert time.monotonic() - back >= 8
        text = _wake_ended(c)

    outputs.record("nut chain: a flicker during the wake", text)
    assert "Traceback" not in text
    assert text.count("esxi-suspend exit 0") == 2, text  # upsmon called us twice
    assert text.count(": connecting as ") == 1, text  # only the first run contacted the host
    assert server.commands().count("poweroff") == 1
    assert "not contacted (shut down earlier in this outage)" in text, text
    assert text.count("the wake is cancelled, no host is powered on") == 1, text
    assert text.count("mains failed again") <= 1, text  # the wait's own line, if it saw OB
    assert text.count(WAKING) == 1, text
    assert len(server.restarts()) == 2


def test_a_slow_recharge_wakes_only_past_the_threshold(
    openssh_esxi: SshServer, tmp_path: Path, listener: Listener
) -> None:
    """Mains steady, battery.charge 20 % then 45 %: no wake; 55 % (UPS_WAKE_CHARGE=50): wake."""
    with _waiting_wake(openssh_esxi, tmp_path, listener, UPS_WAKE_CHARGE="50") as c:
        _no_packet_for(listener, STEADY + 3)
        _status(c.dev, "OL", charge=45)
        _no_packet_for(listener, 4)
        _status(c.dev, "OL", charge=55)
        assert _woken(c, listener, 20) == magic(WAKE_MAC)
        text = _wake_ended(c)

    outputs.record("nut chain: slow recharge", text)
    assert "battery.charge at least 50 % (UPS_WAKE_CHARGE)" in text, text
    assert re.search(rf"{WAKING} \d+ s, battery\.charge 55 %", text), text
    assert "Traceback" not in text


def test_a_ups_without_charge_wakes_on_steady_mains_alone(
    openssh_esxi: SshServer, tmp_path: Path, listener: Listener
) -> None:
    """dummy-ups reports neither battery.charge nor battery.runtime: the steady wait alone,
    said in the log."""
    with _waiting_wake(openssh_esxi, tmp_path, listener, charge=False) as c:
        assert _woken(c, listener, STEADY + 20) == magic(WAKE_MAC)
        text = _wake_ended(c)

    outputs.record("nut chain: no battery.charge", text)
    assert "report(s) neither battery.charge nor battery.runtime" in text, text
    assert "the steady mains wait alone" in text, text


def test_the_wake_ceiling_wakes_anyway_with_a_warning(
    openssh_esxi: SshServer, tmp_path: Path, listener: Listener
) -> None:
    """The battery never reaches UPS_WAKE_CHARGE: at UPS_WAKE_LIMIT the host is woken anyway
    (UPS_WAKE_AT_LIMIT=wake), with a WARNING."""
    with _waiting_wake(openssh_esxi, tmp_path, listener, UPS_WAKE_LIMIT="10") as c:
        assert _woken(c, listener, 40) == magic(WAKE_MAC)
        text = _wake_ended(c)

    outputs.record("nut chain: the wake's ceiling", text)
    assert "WARNING: power back: UPS_WAKE_LIMIT (10 s) reached" in text, text
    assert "waking 127.0.0.1 anyway (UPS_WAKE_AT_LIMIT=wake)" in text, text
