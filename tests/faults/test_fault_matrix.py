"""The fault matrix: every fault we can inject, one table, the installed command run as upsmon.

For every row: the run ends within the row's bound, exits with the row's code, logs one line
matching the row's pattern (it names the cause and the fix), still restarts the local NUT
monitor, prints no secret (conftest.py checks every output at the end of the session) and no
traceback. docs/fault-matrix.md is this table (`test_docs_list_the_matrix`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import bmc as bmcs
import outputs
import pytest
from bmc import SimulatedBmc
from sshservers import CLIENT_PASSPHRASE, SshServer, free_port
from wol import listening, magic

from esxi_suspend import lock
from esxi_suspend.host.esxi import CALL_TRIES
from esxi_suspend.simulator import Fate, SimulatedHost, load_fleet

COMMAND = Path(sys.executable).parent / "esxi-suspend"
UPSMON_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
MATRIX_DOC = Path(__file__).resolve().parents[2] / "docs" / "fault-matrix.md"
AUTOSTOP = "vim-cmd hostsvc/autostartmanager/autostop"
POWEROFF = "poweroff"


@dataclass
class Run:
    """One esxi-suspend process as upsmon starts it: no terminal, stdin closed, PATH only."""

    process: subprocess.Popen[str]
    started: float
    returncode: int = -1
    stdout: str = ""
    stderr: str = ""
    seconds: float = 0.0

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def finish(self, timeout: float = 120) -> Run:
        try:
            self.stdout, self.stderr = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.stdout, self.stderr = self.process.communicate()
            pytest.fail(f"esxi-suspend ran over {timeout} s:\n{self.stderr}")
        self.returncode = self.process.returncode
        self.seconds = time.monotonic() - self.started
        outputs.record("fault matrix run", self.output)
        return self


@dataclass
class Ctx:
    """What a row's setup gets: the fake host, a scratch directory, a bin dir first on PATH."""

    server: SshServer
    tmp: Path
    settings: dict[str, str | None] = field(default_factory=dict)
    passphrase: bool = True
    env_mode: int = 0o600
    env_text: str | None = None  # the env file's whole text, instead of write_env
    env_file: Path | None = None
    argv: list[str] = field(default_factory=lambda: ["shutdown"])
    syslog: str | None = None  # "absent", "stale" or "listening": run in a private /dev
    syslog_lines: list[str] = field(default_factory=list)
    bmc: SimulatedBmc | None = None  # the rows with a BMC (Fault.bmc): ipmi_sim, tests/bmc.py
    stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    sim: SimulatedHost | None = None  # the rows on the simulator (`_on_simulator`)

    @property
    def bin(self) -> Path:
        path = self.tmp / "bin"
        path.mkdir(exist_ok=True)
        return path

    def script(self, name: str, body: str) -> Path:
        path = self.tmp / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)
        return path

    def write_env(self) -> Path:
        if self.env_file is not None:
            return self.env_file
        path = self.tmp / "esxi-suspend.env"
        if self.env_text is not None:
            path.write_text(self.env_text)
            path.chmod(self.env_mode)
            return path
        return self.server.write_env(
            path, passphrase=self.passphrase, mode=self.env_mode, settings=self.settings
        )

    def start(self, *extra: str) -> Run:
        # `service` and `systemctl` stand-ins, for rows whose UPS_SERVICE is auto
        marker = shlex.quote(str(self.server.restart_marker))
        self.bin.mkdir(exist_ok=True)
        for fake in ("service", "systemctl"):
            self.script(f"bin/{fake}", f'echo "restarted {fake} $*" >>{marker}')
        env = {"PATH": f"{self.bin}:{UPSMON_PATH}"}
        argv = [str(COMMAND), *self.argv, "--env-file", str(self.write_env()), *extra]
        if self.syslog is not None:
            argv = private_dev(self.tmp, self.syslog, argv)
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd="/",
            start_new_session=True,  # no controlling terminal
        )
        return Run(process, time.monotonic())


def private_dev(tmp: Path, syslog: str, argv: list[str]) -> list[str]:
    """argv run in a private mount namespace whose /dev is a tmpfs holding null, zero, urandom…
    and, for `listening` or `stale`, a /dev/log symlink to tmp/syslog.sock. The real /dev is
    never touched."""
    real = tmp / "realdev"
    real.mkdir(exist_ok=True)
    q = shlex.quote
    log_link = f"ln -s {q(str(tmp / 'syslog.sock'))} /dev/log" if syslog != "absent" else ":"
    script = f"""set -e
mount -n --bind /dev {q(str(real))}
mount -n -t tmpfs -o mode=0755,size=64k tmpfs /dev
for n in null zero full random urandom tty; do
    touch /dev/$n; mount -n --bind {q(str(real))}/$n /dev/$n
done
ln -s /proc/self/fd /dev/fd
{log_link}
umount -l {q(str(real))}
exec "$@"
"""
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *argv]


# -- the rows --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    row: int
    case: str  # pytest id and docs wording of this variant
    bound: float  # seconds from start to exit
    exit: int
    log: str  # regex: the one line naming the cause and the fix
    result: str  # docs: what happens
    setup: Callable[[Ctx], object] = lambda ctx: None
    check: Callable[[Ctx, Run], None] = lambda ctx, run: None
    runner: Callable[[Ctx], Run] | None = None  # rows that drive more than one plain run
    restarts: int = 1  # restart marker lines after the run; -1: the row's check decides
    kinds: tuple[str, ...] = ("openssh",)
    passphrase: bool = True  # the env file holds ESXI_KEY_PASSPHRASE: the secret to leak
    bmc: bool = False  # the host has a BMC (a real ipmi_sim), its password another secret

    @property
    def id(self) -> str:
        return f"{self.row:02d}-{re.sub(r'[^a-z0-9]+', '-', self.case.lower()).strip('-')}"


def _nothing_ran(ctx: Ctx, run: Run) -> None:
    assert ctx.server.commands() == [], ctx.server.commands()


def _powered_off(ctx: Ctx, run: Run) -> None:
    commands = ctx.server.commands()
    assert AUTOSTOP in commands and POWEROFF in commands, commands
    assert commands.index(AUTOSTOP) < commands.index(POWEROFF)
    assert commands.count(POWEROFF) == 1


@contextlib.contextmanager
def blackhole() -> Iterator[int]:
    """A port that accepts TCP and never says a word (holds each connection open)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                held.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join(2)
        for conn in held:
            conn.close()
        listener.close()


def _blackhole_run(ctx: Ctx) -> Run:
    with blackhole() as port:
        ctx.settings.update(ESXI_PORT=str(port), ESXI_CONNECT_TIMEOUT="2")
        return ctx.start().finish()


def _fingerprint(pub: str, tmp: Path) -> str:
    path = tmp / "fp.pub"
    path.write_text(pub + "\n")
    out = subprocess.run(["ssh-keygen", "-lf", str(path)], capture_output=True, text=True)
    return out.stdout.split()[1]


def _both_fingerprints(ctx: Ctx, run: Run) -> None:
    _nothing_ran(ctx, run)
    real = _fingerprint(ctx.server.host_pub, ctx.tmp)
    pinned = _fingerprint(ctx.server.keys.other_host_pub, ctx.tmp)
    assert real in run.stderr and pinned in run.stderr, run.stderr


def _copy_key(ctx: Ctx, mode: int) -> str:
    key = ctx.tmp / "key"
    shutil.copy(ctx.server.passphrase_key_file, key)
    key.chmod(mode)
    return str(key)


def _auto_restart_attempted(ctx: Ctx, run: Run) -> None:
    """UPS_SERVICE=auto (no settings): the restart goes through our `service` stand-in, or
    says that no NUT monitor service exists on this machine."""
    assert ctx.server.restarts() or "no NUT monitor service found" in run.stderr, run.stderr
    assert re.search(r"(?m)^esxi-suspend: (INFO|ERROR): local: ", run.stderr), run.stderr


def _lock_run(ctx: Ctx) -> Run:
    ctx.server.write_fake("autostop_seconds", "3")
    first = ctx.start()
    _wait_for(lambda: AUTOSTOP in ctx.server.commands(), 15, "first run's autostop")
    second = ctx.start().finish(timeout=30)
    first.finish()
    assert first.returncode == 0, first.output
    assert "Traceback" not in first.output
    return second


def _one_sequence(ctx: Ctx, run: Run) -> None:
    assert ctx.server.commands().count(AUTOSTOP) == 1, ctx.server.commands()
    assert ctx.server.commands().count(POWEROFF) == 1, ctx.server.commands()
    assert len(ctx.server.restarts()) == 1  # by the first run, none by the second


def _sigterm_run(ctx: Ctx) -> Run:
    ctx.server.write_fake("autostop_seconds", "30")
    ctx.settings["ESXI_COMMAND_TIMEOUT"] = "60"
    run = ctx.start()
    _wait_for(lambda: AUTOSTOP in ctx.server.commands(), 15, "autostop")
    time.sleep(0.3)
    signalled = time.monotonic()
    run.process.send_signal(signal.SIGTERM)
    run.finish(timeout=30)
    assert time.monotonic() - signalled < 5, "SIGTERM did not stop the run promptly"
    return run


def _host_finishes_alone(ctx: Ctx, run: Run) -> None:
    assert "summary:" in run.stderr
    _wait_for(lambda: POWEROFF in ctx.server.commands(), 30, "the host sequence's poweroff")
    _powered_off(ctx, run)


def _drop_during_autostop(ctx: Ctx) -> Run:
    """The host drops our session while autostop runs: kill every connection's server process."""
    ctx.server.write_fake("autostop_seconds", "3")
    run = ctx.start()
    _wait_for(lambda: AUTOSTOP in ctx.server.commands(), 15, "autostop")
    ctx.server.drop_sessions()
    return run.finish(timeout=30)


def _sigterm_in_restart(ctx: Ctx) -> None:
    # what `systemctl --no-block restart nut-monitor` leads to: systemd SIGTERMs our process
    marker = shlex.quote(str(ctx.server.restart_marker))
    script = ctx.script("restart-then-term", f'echo restarted >>{marker}\nkill -TERM "$PPID"')
    ctx.settings["UPS_RESTART_COMMAND"] = str(script)


def _wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"waited {seconds} s for {what}")
        time.sleep(0.05)


HOSTILE_LISTING = (
    "Vmid   Name                 File                       Guest OS      Version   Annotation\n"
    "1      a;poweroff;b         [datastore1] a/a.vmx       otherGuest    vmx-13\n"
    "2      $(touch {mark})     [datastore1] b/b.vmx       otherGuest    vmx-13    `touch {mark}`\n"
    '3      it\'s "quoted" \\     [ds 2] c/c.vmx             otherGuest    vmx-13    line one\n'
    "  continued annotation; 4 $(touch {mark}) [ds] x.vmx\n"
    "4      Ünïcode «VM» 日本 \x1b[31mred  [ds] d/d.vmx       otherGuest    vmx-13    ${{IFS}}\n"
)


def _hostile_names(ctx: Ctx) -> None:
    mark = ctx.tmp / "pwned"
    ctx.server.write_fake("getallvms.txt", HOSTILE_LISTING.format(mark=mark))
    ctx.argv = ["shutdown", "--dry-run"]


READ_ONLY = ("power.getstate", "get.guest", "get.config", "get.summary")


def _hostile_checked(ctx: Ctx, run: Run) -> None:
    assert not (ctx.tmp / "pwned").exists()
    allowed = {
        "vim-cmd vmsvc/getallvms",
        "vim-cmd hostsvc/autostartmanager/get_defaults",
        "vim-cmd hostsvc/autostartmanager/get_autostartseq",
        "esxcli vm process list",
    } | {f"vim-cmd vmsvc/{what} {vmid}" for vmid in (1, 2, 3, 4) for what in READ_ONLY}
    assert set(ctx.server.commands()) <= allowed, ctx.server.commands()
    assert "\x1b" not in run.output  # terminal escapes from the host are neutralised
    assert "Ünïcode «VM» 日本" in run.stdout
    assert "a;poweroff;b" in run.stdout


def _syslog_listening(ctx: Ctx) -> Run:
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(ctx.tmp / "syslog.sock"))
    receiver.settimeout(0.5)
    done = threading.Event()

    def read() -> None:  # as a syslog daemon does: all the time, or our sends time out
        while not done.is_set():
            with contextlib.suppress(OSError):
                ctx.syslog_lines.append(receiver.recv(65536).decode("utf-8", "replace"))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        run = ctx.start().finish()
    finally:
        done.set()
        reader.join(5)
        receiver.close()
    outputs.record("fault matrix syslog", "\n".join(ctx.syslog_lines))
    return run


def _syslog_has_steps(ctx: Ctx, run: Run) -> None:
    text = "\n".join(ctx.syslog_lines)
    for step in ("connect:", "sequence:", "poweroff:", "summary:"):
        assert step in text, text
    assert "summary:" not in run.stderr  # INFO goes to syslog, stderr keeps warnings


def _stuck_syslog(ctx: Ctx) -> Run:
    """A syslog daemon that stopped reading: its queue fills, a blocking send would hang us."""
    stuck = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    stuck.bind(str(ctx.tmp / "syslog.sock"))
    ctx.syslog = "listening"
    ctx.argv = ["shutdown", "-v"]
    try:
        return ctx.start().finish()
    finally:
        stuck.close()


def _stale_syslog(ctx: Ctx) -> None:
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    dead.bind(str(ctx.tmp / "syslog.sock"))
    dead.close()  # the file stays, nobody reads: connect() is refused
    ctx.syslog = "stale"


def _leak_run(ctx: Ctx) -> Run:
    """A hundred dry runs in a row; the host's process table and descriptors come back."""
    ctx.server.write_fake("getallvms.txt", "Vmid   Name   File   Guest OS   Version   Annotation")
    ctx.argv = ["shutdown", "--dry-run"]
    listener = ctx.server.process.pid
    # at rest: the fixture's readiness probe leaves a session process for a moment
    _wait_for(lambda: _server_state(listener)[0] == 0, 30, "the listener at rest")
    before = _server_state(listener)
    last: Run | None = None
    for _ in range(100):
        last = ctx.start().finish()
        assert last.returncode == 0, last.output
        assert "Traceback" not in last.output
    assert last is not None
    try:
        _wait_for(lambda: _server_state(listener) == before, 60, "the server's state to settle")
    except BaseException:
        left = [
            f"{pid}: {_cmdline(pid)}"
            for pid in map(int, filter(str.isdigit, os.listdir("/proc")))
            if _descends_from(pid, listener)
        ]
        fds = sorted(
            os.readlink(f"/proc/{listener}/fd/{fd}") for fd in os.listdir(f"/proc/{listener}/fd")
        )
        pytest.fail(
            f"server state {_server_state(listener)}, before {before}; under the listener: "
            f"{left}; its descriptors: {fds}\n{ctx.server.log()[-3000:]}"
        )
    assert not _our_processes(ctx), _our_processes(ctx)
    return last


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:200]
    except OSError:
        return "(gone)"


def _server_state(pid: int) -> tuple[int, int]:
    """(processes under the listener, open descriptors of the listener)."""
    children = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _descends_from(int(entry.name), pid):
            children += 1
    return children, len(os.listdir(f"/proc/{pid}/fd"))


def _descends_from(pid: int, ancestor: int) -> bool:
    while pid > 1:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        pid = int(stat.rsplit(")", 1)[1].split()[1])
        if pid == ancestor:
            return True
    return False


def _our_processes(ctx: Ctx) -> list[str]:
    env_file = str(ctx.tmp / "esxi-suspend.env").encode()
    found = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if entry.name.isdigit() and env_file in (entry / "cmdline").read_bytes():
                found.append(entry.name)
    return found


def _shut_down_check_refuses(ctx: Ctx, run: Run, also: str = "") -> None:
    """A problem a shutdown works around: the host went down, the run said which default it
    used (and `also`), and `check` with the same file still says NOT ready, contacting nothing.
    """
    _powered_off(ctx, run)
    assert re.search(
        r"(?m)ERROR: configuration \S+ has \d+ problem\(s\); the shutdown goes on", run.stderr
    ), run.stderr
    assert not also or re.search(also, run.stderr), run.stderr
    before = ctx.server.commands()
    ctx.argv = ["check"]
    check = ctx.start().finish()
    assert check.returncode == 6, check.output
    assert "result: NOT ready (exit 6 CONFIG)" in check.stdout, check.output
    assert "this shutdown" not in check.output
    assert ctx.server.commands() == before
    assert "Traceback" not in check.output


def _one_bad_entry(ctx: Ctx) -> None:
    ctx.settings["ESXI_HOST"] = f"{ctx.server.host}, root@esxi2 lan"
    ctx.argv = ["shutdown", "-v"]  # the summary on stderr even where a syslog socket exists


OUTAGE_RECORD = Path("/run/esxi-suspend/outage.json")  # esxi_suspend.nut.record.record_path()
WAITING = "on battery: the NUT monitor is restarted once power is back"


def _fake_upsc(ctx: Ctx, status: str) -> Path:
    """A `upsc` first on PATH answering `status` (the file it returns) for any UPS."""
    path = ctx.tmp / "ups.status"
    path.write_text(status + "\n")
    ctx.bin.mkdir(exist_ok=True)
    ctx.script("bin/upsc", f"cat {shlex.quote(str(path))}")
    ctx.settings.update(UPS_NAME="ups@upsd.invalid", UPS_POLL_INTERVAL="1", UPS_WAKE_STEADY="1")
    return path


def _wake_over(ctx: Ctx, seconds: float = 30) -> None:
    """The detached wake after power back has ended: the outage record gone, no process of
    ours left."""
    _wait_for_sleeping(
        lambda: not OUTAGE_RECORD.exists() and not _our_processes(ctx), seconds, "the wake's end"
    )


def _second_run_same_outage(ctx: Ctx) -> Run:
    """The first run powers the host off and waits (UPS on battery); a second run (an admin
    restarting the monitor by hand) contacts no host and waits too; power back: both end."""
    assert not OUTAGE_RECORD.exists(), "an outage record of this machine is in the way"
    status = _fake_upsc(ctx, "OB LB")
    first = ctx.start()
    try:
        _wait_for_sleeping(OUTAGE_RECORD.exists, 30, "the first run's outage record")
        second = ctx.start()
        time.sleep(3)
        assert second.process.poll() is None and first.process.poll() is None
        assert ctx.server.restarts() == []  # both wait for power
        status.write_text("OL\n")
        second.finish(timeout=30)
        first.finish(timeout=30)
        _wake_over(ctx)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(first.process.pid, signal.SIGKILL)
        OUTAGE_RECORD.unlink(missing_ok=True)
    assert first.returncode == 0 and WAITING in first.stderr, first.output
    assert "Traceback" not in first.output
    assert "connecting as" not in second.stderr, second.stderr
    assert "not contacted (shut down earlier in this outage)" in second.stderr
    return second


def _contacted_once(ctx: Ctx, run: Run) -> None:
    assert ctx.server.commands().count(AUTOSTOP) == 1, ctx.server.commands()
    assert ctx.server.commands().count(POWEROFF) == 1, ctx.server.commands()
    assert len(ctx.server.restarts()) == 2  # each run re-arms the monitor once power is back
    assert not OUTAGE_RECORD.exists()


def _ups_unreadable(ctx: Ctx) -> None:
    ctx.settings.update(UPS_NAME=f"ups@127.0.0.1:{free_port()}")


def _wait_for_sleeping(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"waited {seconds} s for {what}")
        time.sleep(0.1)


def _runtime_missing(ctx: Ctx) -> None:
    """upsd answers the status but the UPS reports no battery.runtime (NUT's own message)."""
    _fake_upsc(ctx, "OL")
    ctx.script(
        "bin/upsc",
        'if [ "$2" = battery.runtime ]; then echo "Error: Variable not supported by UPS" >&2; '
        f"exit 1; fi\ncat {shlex.quote(str(ctx.tmp / 'ups.status'))}",
    )
    ctx.settings.update(ESXI_DEADLINE="auto")


def _runtime_fallback_used(ctx: Ctx, run: Run) -> None:
    _powered_off(ctx, run)
    assert "of ESXI_DEADLINE=240 s left for the host sequence" in run.stderr, run.stderr


WOL_MAC = "aa:bb:cc:dd:ee:21"


def _power_back_during_sequence(ctx: Ctx) -> Run:
    """upsmon calls us on battery; mains returns while the host sequence runs: the sequence
    finishes (the host goes down: its SSH port closes), then the host gets its magic packet,
    then the monitor is restarted."""
    status = _fake_upsc(ctx, "OB")
    ctx.server.set_latency(1.0)  # time to switch the UPS back on line mid-sequence
    ctx.server.write_fake("poweroff_mode", "halt")
    with listening() as listener:
        ctx.settings.update(
            ESXI_WOL_MAC=f"{ctx.server.env_settings()['ESXI_HOST']}={WOL_MAC}",
            ESXI_WOL_BROADCAST="127.0.0.1",
            ESXI_WOL_PORT=str(listener.port),
        )
        run = ctx.start()
        _wait_for_sleeping(lambda: AUTOSTOP in ctx.server.commands(), 30, "autostop")
        status.write_text("OL\n")
        run.finish(timeout=120)
        assert listener.poll(0.05) is None  # the run itself wakes nobody
        _wake_over(ctx, 60)
        packets = listener.received()
    assert packets and set(packets) == {magic(WOL_MAC)}, packets
    text = run.stderr
    assert "stay off until mains is steady and the battery recharged" in text, text
    assert "magic packet for" not in text, text  # sent by the detached wake, later
    assert ctx.server.process.poll() is not None  # the host is off: its SSH server ended
    return run


def _with_bmc(ctx: Ctx, **extra: str) -> SimulatedBmc:
    """The host's BMC in the env file (ESXI_IPMI_HOST, _USER, _PASSWORD) and `extra`."""
    assert ctx.bmc is not None, "a row with a BMC needs Fault(bmc=True)"
    ctx.settings.update(ctx.bmc.settings(ctx.server.env_settings()["ESXI_HOST"]), **extra)
    return ctx.bmc


def _ipmi_power_back(ctx: Ctx) -> Run:
    """An outage with a BMC: the host sequence powers the host off, its BMC confirms it off,
    the run waits for power; power back: the BMC powers the host on, and its SSH port answers
    again."""
    assert not OUTAGE_RECORD.exists(), "an outage record of this machine is in the way"
    status = _fake_upsc(ctx, "OB")
    ctx.server.write_fake("poweroff_mode", "halt")
    bmc = _with_bmc(ctx, ESXI_BOOT_WAIT="30")
    bmc.follow(ctx.server)  # the host is off once its SSH server ends
    bmc.boots_on(ctx.server.port, seconds=1.0)
    run = ctx.start()
    try:
        _wait_for_sleeping(OUTAGE_RECORD.exists, 60, "the outage record (hosts off)")
        assert not bmc.on
        status.write_text("OL\n")
        run.finish(timeout=120)
        assert "set power 1" not in bmc.calls()  # the run itself powers nothing on
        _wake_over(ctx, 60)  # the detached wake, once mains is steady (UPS_WAKE_STEADY=1)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.process.pid, signal.SIGKILL)
        OUTAGE_RECORD.unlink(missing_ok=True)
    assert "set power 1" in bmc.calls(), bmc.calls()
    assert bmc.on
    assert re.search(r"summary: host \S+: .*poweroff ok, .*off confirmed by BMC", run.stderr)
    return run


def _ssh_gone(ctx: Ctx, **extra: str) -> None:
    """sshd stopped: nothing listens on the host's SSH port; the host has a BMC."""
    ctx.settings.update(ESXI_PORT=str(free_port()))
    _with_bmc(ctx, **extra)


def _soft_off(ctx: Ctx, run: Run) -> None:
    assert ctx.bmc is not None and not ctx.bmc.on
    assert "set shutdown 1" in ctx.bmc.calls() and "set power 0" not in ctx.bmc.calls()
    assert "connect FAILED, ipmi soft-off ok, poweroff ok (BMC)" in run.stderr, run.stderr


def _ignores_the_button(ctx: Ctx, **extra: str) -> None:
    _ssh_gone(ctx, ESXI_DEADLINE="10", **extra)
    assert ctx.bmc is not None
    ctx.bmc.ignore_soft_off()


def _cut_hard(ctx: Ctx, run: Run) -> None:
    assert ctx.bmc is not None and not ctx.bmc.on
    assert ctx.bmc.calls().index("set shutdown 1") < ctx.bmc.calls().index("set power 0")


def _left_on(ctx: Ctx, run: Run) -> None:
    assert ctx.bmc is not None and ctx.bmc.on
    assert "set power 0" not in ctx.bmc.calls(), ctx.bmc.calls()


def _untouched(ctx: Ctx, run: Run) -> None:
    assert ctx.bmc is not None and ctx.bmc.on
    assert ctx.bmc.calls() == [], ctx.bmc.calls()  # refused before any command
    assert "wrong-bmc-pw" not in run.output


def _bmc_silent(ctx: Ctx) -> None:
    ctx.settings.update(
        ESXI_PORT=str(free_port()),
        ESXI_CONNECT_TIMEOUT="3",
        ESXI_IPMI_HOST=f"{ctx.server.env_settings()['ESXI_HOST']}=127.0.0.1:{bmcs.free_udp_port()}",
        ESXI_IPMI_USER=bmcs.USER,
        ESXI_IPMI_PASSWORD=bmcs.PASSWORD,
    )


def _restricted_elsewhere(ctx: Ctx) -> None:
    """Both client keys' lines say from= an address this machine never has (TEST-NET-1)."""
    lines = ctx.server.keys.authorized_keys.splitlines()
    text = "".join(f'from="192.0.2.7",no-pty {line}\n' for line in lines)
    ctx.server.authorized_keys.write_text(text)
    ctx.argv = ["check"]


def _not_ready_nothing_ran(ctx: Ctx, run: Run) -> None:
    _nothing_ran(ctx, run)
    assert "result: NOT ready (exit 5 CONNECTION)" in run.stdout, run.stdout


def _check_with(knob: str, text: str) -> Callable[[Ctx], None]:
    """`check` on a host with one of the fake host's knobs set (tests/fakehost/sh)."""

    def setup(ctx: Ctx) -> None:
        ctx.server.write_fake(knob, text)
        ctx.argv = ["check"]

    return setup


def _not_ready_changed_nothing(ctx: Ctx, run: Run) -> None:
    changing = [
        c
        for c in ctx.server.commands()
        if c.startswith((AUTOSTOP, POWEROFF)) or ("vmsvc/power." in c and "getstate" not in c)
    ]
    assert changing == [], changing
    assert "result: NOT ready (exit 4 REMOTE_COMMAND)" in run.stdout, run.stdout
    assert "check --capture" in run.stdout, run.stdout  # the fix names a capture
    left = {p.name for p in (ctx.server.fake_dir / "tmp").glob("esxi-suspend-*")}
    # A script the host killed cannot clean up after itself: check does, by the names of its
    # call slots and autostop's done-file (after the script's own file): nothing is left.
    assert left == set(), left


def _rehearsed(ctx: Ctx, run: Run) -> None:
    assert "result: ready (exit 0 OK)" in run.stdout, run.stdout
    for probe in ("busybox: ok: BusyBox v", "vim-cmd latency: ok:", "rehearsal: ok:",
                  "detached job: ok:"):  # fmt: skip
        assert f"    {probe}" in run.stdout, run.stdout
    assert "rehearsal on this host, read-only: " in run.stdout
    assert not any("power." in c and "getstate" not in c for c in ctx.server.commands())
    assert AUTOSTOP not in ctx.server.commands() and POWEROFF not in ctx.server.commands()
    assert list((ctx.server.fake_dir / "tmp").glob("esxi-suspend-*")) == []


def _daily(ctx: Ctx, **settings: str) -> None:
    ctx.argv = ["check", "--daily"]
    ctx.syslog = "listening"
    ctx.settings.update(settings)


def _daily_warned(ctx: Ctx, run: Run) -> None:
    """One WARNING in syslog, nothing else there; the reasons printed for cron to mail."""
    assert len(ctx.syslog_lines) == 1, ctx.syslog_lines
    assert run.stdout.startswith("esxi-suspend daily check (") and "NOT ready" in run.stdout
    assert "refused our key" in run.stdout and run.stderr == "", run.output


def _daily_on_battery(ctx: Ctx) -> None:
    _daily(ctx)
    _fake_upsc(ctx, "OB")


def _daily_silent(ctx: Ctx, run: Run) -> None:
    assert run.stdout == "" and run.stderr == "", run.output
    assert len(ctx.syslog_lines) == 1, ctx.syslog_lines


def _daily_left_alone(ctx: Ctx, run: Run) -> None:
    _daily_silent(ctx, run)
    _nothing_ran(ctx, run)


def _daily_while_locked(ctx: Ctx) -> Run:
    """A shutdown run holds the host's lock (this test process stands in for it)."""
    fd = lock.acquire(ctx.server.host, ctx.server.port)
    assert fd is not None
    try:
        return _syslog_listening(ctx)
    finally:
        os.close(fd)


def _env_text(ctx: Ctx, extra: str) -> None:
    settings = ctx.server.env_settings()
    ctx.env_text = "".join(f"{k}='{v}'\n" for k, v in settings.items()) + extra


FALLBACK = r": FALLING BACK to the plain path: autostop, then poweroff, detached on the host"


def _fell_back(ctx: Ctx, run: Run) -> None:
    """The plain path went out detached: autostop, then poweroff, on the host without us."""
    _wait_for(lambda: POWEROFF in ctx.server.commands(), 30, "the plain path's poweroff")
    _powered_off(ctx, run)
    assert "fallback: autostop, then poweroff, started on the host" in run.stderr, run.stderr


def _many_vms(ctx: Ctx, count: int = 40) -> None:
    rows = [f"{i:<6} vm-{i:03d}   [ds1] vm-{i:03d}/vm-{i:03d}.vmx   otherGuest   vmx-13"
            for i in range(1, count + 1)]  # fmt: skip
    header = "Vmid   Name   File   Guest OS   Version   Annotation"
    ctx.server.write_fake("getallvms.txt", "\n".join([header, *rows]))
    ctx.server.write_fake("get_autostartseq.txt", "(vim.host.AutoStartManager.AutoPowerInfo) []")


def _many_vms_and_a_4kb_limit(ctx: Ctx) -> None:
    _many_vms(ctx)
    ctx.server.write_fake("arg_limit", "4096")


def _all_down(ctx: Ctx, run: Run) -> None:
    """Every VM of the listing off or suspended before the host poweroff; poweroff once."""
    commands = ctx.server.commands()
    assert commands.count(POWEROFF) == 1, commands
    listing = (ctx.server.fake_dir / "getallvms.txt").read_text()
    ids = re.findall(r"(?m)^(\d+)\s", listing)
    state = ctx.server.fake_dir / "state"
    left = [i for i in ids if not (state / i).exists() or "on" in (state / i).read_text()]
    assert not left, f"still on at poweroff: {left}"


def _no_final_newline(ctx: Ctx) -> None:
    path = ctx.server.fake_dir / "getallvms.txt"
    path.write_text((ctx.server.fakehost / "data" / "getallvms.txt").read_text().rstrip("\n"))
    ctx.server.write_fake("no_final_newline", "yes")


def _busy_hostd(ctx: Ctx) -> None:
    _many_vms(ctx, 8)
    ctx.server.write_fake("hostd_slots", "4")  # half of our CALLS_AT_ONCE
    ctx.server.set_latency(0.3)


def _resets_retried(ctx: Ctx, run: Run) -> None:
    _all_down(ctx, run)
    resets = (ctx.server.fake_dir / "resets.log").read_text().splitlines()
    assert resets, "hostd never turned a call away: the row proves nothing"
    commands = ctx.server.commands()
    for line in resets:
        call = line.split("\treset: ", 1)[1]
        # every call hostd turned away was made again (one log line per attempt), but for the
        # last of its CALL_TRIES tries: `call` gives up then
        turned_away = sum(r.endswith(call) for r in resets)
        made = commands.count(call)
        assert made > turned_away or turned_away % CALL_TRIES == 0, (call, made)


def _fault_exit0(ctx: Ctx) -> None:
    """VM 12's guest shutdown fails (no Tools, as the fault says) but vim-cmd exits 0; its
    summary, read before, said Tools ran: the plan tries the shutdown first."""
    fake = ctx.server.fakehost / "vim-cmd"
    env = {**os.environ, "FAKE_ESXI_DIR": str(ctx.server.fake_dir)}
    summary = subprocess.run(
        [str(fake), "vmsvc/get.summary", "12"], env=env, capture_output=True, text=True, check=True
    ).stdout
    ctx.server.write_fake("summary/12", summary)
    (ctx.server.fake_dir / "commands.log").unlink()
    ctx.server.write_fake("tools/12", "guestToolsNotRunning")
    ctx.server.write_fake("fault_exit0", "yes")
    ctx.settings.update(ESXI_STRATEGY="parallel")


def _suspended_after_the_fault(ctx: Ctx, run: Run) -> None:
    commands = ctx.server.commands()
    shutdown, suspend = "vim-cmd vmsvc/power.shutdown 12", "vim-cmd vmsvc/power.suspend 12"
    assert shutdown in commands and suspend in commands, commands
    assert commands.index(shutdown) < commands.index(suspend) < commands.index(POWEROFF)
    assert (ctx.server.fake_dir / "state" / "12").read_text().strip() == "Suspended"
    assert "final: suspending" not in run.stderr.split("VM 12")[0]  # not left to the end


# -- rows on the built-in simulator: each a knob of its fleet file (simulator/fleet.py) ------
SIMULATED = {"simulator": "openssh"}  # whose restart marker and client keys a row uses
SIM_SCALE = 0.05  # real seconds per simulated second: a 240 s deadline is 12 s


def _sim_fleet(count: int, **knobs: object) -> dict[str, object]:
    """A fleet file's content: `count` running VMs (1 in 4 without Tools, stop action
    powerOff), all in the autostart sequence, guest shutdowns of 10 to 28 s, and `knobs`."""
    vms = [{"id": i, "name": f"vm-{i:03d}", "tools": i % 4 != 0, "autostart": i,
            "shutdown_seconds": 10 + (i * 7) % 19,
            "stop_action": "guestShutdown" if i % 4 else "powerOff", "stop_delay": 60}
           for i in range(1, count + 1)]  # fmt: skip
    return {"name": "esxi-sim", "vms": vms, **knobs}


def _on_simulator(
    fleet: dict[str, object], hung: int | None = None, **settings: str
) -> Callable[[Ctx], Run]:
    """Run the installed command against a simulated host built from `fleet` (written to a
    fleet file and read back, as `demo --fleet` does); it stays up for the row's check.
    `hung`: that VM's Tools are reported running, yet its guest shutdown fails."""

    def runner(ctx: Ctx) -> Run:
        path = ctx.tmp / "fleet.json"
        vms = fleet["vms"]
        assert isinstance(vms, list)
        for vm in vms:
            vm["tools_hung"] = vm["id"] == hung
        path.write_text(json.dumps(fleet))
        public = Path(f"{ctx.server.keys.passphrase_key}.pub")
        host = SimulatedHost(load_fleet(path), authorized_key=public, time_scale=SIM_SCALE)
        ctx.sim = ctx.stack.enter_context(host)
        known = ctx.tmp / "simulator_known_hosts"
        known.write_text(host.known_hosts_line())
        ctx.settings.update(
            ESXI_HOST=host.address, ESXI_PORT=str(host.port), ESXI_KNOWN_HOSTS=str(known),
            ESXI_DEADLINE="240", ESXI_STRATEGY="parallel", ESXI_COMMAND_TIMEOUT="60",
            ESXI_POLL_INTERVAL=f"{5 * SIM_SCALE:g}",
        )  # fmt: skip
        ctx.settings.update(settings)
        run = ctx.start().finish()
        host.wait_powered_off(30)
        return run

    return runner


def _sim(ctx: Ctx) -> SimulatedHost:
    assert ctx.sim is not None
    return ctx.sim


def _none_killed(ctx: Ctx, run: Run) -> None:
    """The host powered off, every VM it had stopped first: none hard-killed."""
    host = _sim(ctx)
    assert host.powered_off, "the host is still on"
    fates = host.fates()
    assert Fate.HARD_KILLED not in fates.values(), fates


def _sim_resets_retried(ctx: Ctx, run: Run) -> None:
    """hostd turned calls away; each one turned away was made again, unless it was its
    call's last try (esxi.CALL_TRIES: the two before it turned away too); no VM hard-killed."""
    _none_killed(ctx, run)
    tries: dict[str, list[bool]] = {}  # each command's attempts in order: turned away or not
    for event in _sim(ctx).events:
        if event.kind == "hostd":
            how, command = event.text.split(": ", 1)
            tries.setdefault(command, []).append(how == "reset")
    assert any(any(t) for t in tries.values()), "hostd never turned a call away"
    for command, turned in tries.items():
        for i, reset in enumerate(turned):
            last_try = i >= CALL_TRIES - 1 and all(turned[i - CALL_TRIES + 1 : i + 1])
            assert not reset or i + 1 < len(turned) or last_try, f"not retried: {command}"


def _sim_lines_short(ctx: Ctx, run: Run) -> None:
    _none_killed(ctx, run)
    execs = [e.text.removeprefix("exec: ") for e in _sim(ctx).events if e.kind == "exec"]
    assert execs and all(len(line.encode()) <= 4096 for line in execs), [len(x) for x in execs]


def _sim_suspended_at_once(ctx: Ctx, run: Run) -> None:
    """VM 1's guest shutdown failed (a fault, exit 0): it was suspended right after, long
    before its stop delay (60 s) was spent."""
    host = _sim(ctx)
    assert host.fates()[1] is Fate.SUSPENDED, host.fates()
    faulted = [e.at for e in host.events if e.text == "call: vim-cmd vmsvc/power.shutdown 1"]
    suspend = [e.at for e in host.events if e.text == "call: vim-cmd vmsvc/power.suspend 1"]
    assert faulted and suspend and suspend[0] - faulted[0] < 5, (faulted, suspend)


def _sim_4x(ctx: Ctx, run: Run) -> None:
    """No nohup, no `command`: the script was still started detached, the host went down."""
    _none_killed(ctx, run)
    log = next(text for path, text in _sim(ctx).files.items() if "esxi-suspend-" in path
               and path.endswith(".log") and "host sequence started" in text)  # fmt: skip
    assert "esxi-suspend: host poweroff" in log, log  # said by the script as it ran


def _summaries(ctx: Ctx) -> list[str]:
    return [e.text for e in _sim(ctx).events if e.kind == "hostd" and "get.summary" in e.text]


def _sim_one_call(ctx: Ctx, run: Run) -> None:
    _none_killed(ctx, run)
    assert _summaries(ctx) == [], _summaries(ctx)


def _sim_each_read(ctx: Ctx, run: Run) -> None:
    _none_killed(ctx, run)
    assert len(_summaries(ctx)) >= 12, _summaries(ctx)


def _sim_fell_back(ctx: Ctx, run: Run) -> None:
    """The script was killed: the plain path (autostop, then poweroff) went out, detached."""
    host = _sim(ctx)
    assert host.powered_off, "the host is still on"
    killed = [e for e in host.events if "killed with its jobs" in e.text]
    assert killed, "the script was never killed: the row proves nothing"
    autostops = [e.at for e in host.events if e.text.endswith(AUTOSTOP)]
    assert any(at > killed[0].at for at in autostops), "no autostop after the script died"
    assert "fallback: autostop, then poweroff, started on the host" in run.stderr, run.stderr


FAULTS: list[Fault] = [
    Fault(1, "host name does not resolve", 15, 5,
          r"host \S+\.invalid: name (does not resolve|lookup took longer).*ESXI_HOST",
          "refused before any SSH; ends within ESXI_CONNECT_TIMEOUT",
          setup=lambda c: c.settings.update(ESXI_HOST="esxi-suspend-test.invalid",
                                            ESXI_CONNECT_TIMEOUT="3")),
    Fault(2, "nothing listens on the port", 10, 5,
          r"cannot connect \(127\.0\.0\.1: Connection refused\); check that the host is up",
          "refused at TCP connect",
          setup=lambda c: c.settings.update(ESXI_PORT=str(free_port()))),
    Fault(3, "port accepts TCP, never speaks SSH", 15, 5,
          r"SSH handshake failed \(.*\); check that an SSH server answers there",
          "banner wait bounded by ESXI_CONNECT_TIMEOUT (2 s here)",
          runner=_blackhole_run),
    Fault(4, "auth refused (wrong key)", 15, 5,
          r"user root refused our key .*; add .*\.pub to the host's authorized keys",
          "nothing run on the host", passphrase=False,
          setup=lambda c: c.settings.update(ESXI_KEY_FILE=str(c.server.keys.stranger_key)),
          check=_nothing_ran, kinds=("openssh", "dropbear")),
    Fault(5, "unknown host key", 15, 5,
          r"unknown host key ssh-ed25519 SHA256:\S+, not in ESXI_KNOWN_HOSTS "
          r".*pin it: esxi-suspend trust",
          "refused, fingerprint logged, nothing run",
          setup=lambda c: c.settings.update(ESXI_KNOWN_HOSTS=str(c.server.empty_known_hosts)),
          check=_nothing_ran, kinds=("openssh", "dropbear")),
    Fault(6, "changed host key (MITM)", 15, 5,
          r"HOST KEY CHANGED: it shows ssh-ed25519 SHA256:\S+, but .* pins ssh-ed25519 SHA256:",
          "refused, old and new fingerprints logged, nothing run",
          setup=lambda c: c.settings.update(ESXI_KNOWN_HOSTS=str(c.server.wrong_known_hosts)),
          check=_both_fingerprints, kinds=("openssh", "dropbear")),
    Fault(7, "key file missing", 10, 6,
          r"ESXI_KEY_FILE='/nonexistent/key': file not found; create one with: ssh-keygen",
          "configuration error, host not contacted",
          setup=lambda c: c.settings.update(ESXI_KEY_FILE="/nonexistent/key")),
    Fault(7, "key file unreadable (a directory)", 10, 6,
          r"ESXI_KEY_FILE='/tmp': is not a regular file",
          "configuration error, host not contacted",
          setup=lambda c: c.settings.update(ESXI_KEY_FILE="/tmp")),
    Fault(7, "key file not a key", 10, 6,
          r"ESXI_KEY_FILE=\S+: is not an OpenSSH/PEM private key",
          "configuration error, host not contacted", passphrase=False,
          setup=lambda c: c.settings.update(
              ESXI_KEY_FILE=str(c.script("not-a-key", "garbage")))),
    Fault(7, "wrong passphrase", 10, 6,
          r"ESXI_KEY_FILE=\S+: cannot be decrypted or parsed: wrong ESXI_KEY_PASSPHRASE",
          "configuration error, host not contacted",
          setup=lambda c: c.settings.update(ESXI_KEY_PASSPHRASE="not the passphrase")),
    Fault(7, "passphrase missing", 10, 6,
          r"is protected by a passphrase; set ESXI_KEY_PASSPHRASE",
          "configuration error, host not contacted",
          setup=lambda c: c.settings.update(ESXI_KEY_PASSPHRASE=None)),
    Fault(7, "key file group-readable", 15, 0,
          r"WARNING: ESXI_KEY_FILE \(the private key\) \S+ is readable .*0640\); run: chmod 600",
          "warning; shutdown done",
          setup=lambda c: c.settings.update(ESXI_KEY_FILE=_copy_key(c, 0o640)),
          check=_powered_off),
    Fault(8, "env file missing", 10, 6,
          r"no-such\.env: file not found; create it \(install\.sh writes a template\)",
          "configuration error; UPS_SERVICE=auto restart",
          setup=lambda c: setattr(c, "env_file", c.tmp / "no-such.env"),
          check=_auto_restart_attempted, restarts=-1),
    Fault(8, "env file empty", 10, 6,
          r"ESXI_HOST: missing; it is required",
          "configuration error (every problem listed); UPS_SERVICE=auto restart",
          setup=lambda c: setattr(c, "env_text", ""),
          check=_auto_restart_attempted, restarts=-1),
    Fault(8, "unparseable line", 15, 6,
          r"line \d+: cannot be parsed; write it as KEY=value; this shutdown ignores it",
          "the line ignored; host shut down; exit 6",
          setup=lambda c: _env_text(c, "this is not a setting\n"), check=_shut_down_check_refuses),
    Fault(8, "bad numbers", 15, 6,
          r"ESXI_COMMAND_TIMEOUT='-5': not a whole number; use an integer from 1 to 86400; "
          r"this shutdown uses the default ESXI_COMMAND_TIMEOUT=300",
          "each default used and logged; host shut down; exit 6",
          setup=lambda c: c.settings.update(ESXI_CONNECT_TIMEOUT="5s", ESXI_COMMAND_TIMEOUT="-5"),
          check=lambda c, r: _shut_down_check_refuses(c, r, (
              r"ESXI_CONNECT_TIMEOUT='5s': not a whole number; use an integer from 1 to 600; "
              r"this shutdown uses the default ESXI_CONNECT_TIMEOUT=10"))),
    Fault(8, "bad optional value (ESXI_STRATEGY=paralel)", 15, 6,
          r"ESXI_STRATEGY='paralel': use one of: autostop, parallel; this shutdown uses the "
          r"default ESXI_STRATEGY=autostop",
          "default used; host shut down by autostop; exit 6",
          setup=lambda c: c.settings.update(ESXI_STRATEGY="paralel"),
          check=_shut_down_check_refuses),
    Fault(8, "unknown key", 15, 6,
          r"ESXI_DEADLIN: unknown setting \(did you mean ESXI_DEADLINE\?\); this shutdown "
          r"ignores it and uses the default ESXI_DEADLINE=240",
          "ignored, default used; host shut down; exit 6",
          setup=lambda c: c.settings.update(ESXI_DEADLIN="300", ESXI_DEADLINE=None),
          check=_shut_down_check_refuses),
    Fault(8, "bad port", 10, 6,
          r"ESXI_PORT='22x': not a whole number; use an integer from 1 to 65535; this shutdown "
          r"does not contact '\S+' \(no port is guessed\): no host can be contacted",
          "the port is part of the address: host not contacted",
          setup=lambda c: c.settings.update(ESXI_PORT="22x"), check=_nothing_ran),
    Fault(8, "one bad ESXI_HOST entry among several", 15, 6,
          r"entry 'root@esxi2 lan': not \[user@\]host\[:port\]; separate hosts with ','; "
          r"this shutdown does not contact 'root@esxi2 lan'; the other hosts go on",
          "that entry left out; the other host shut down; exit 6",
          setup=_one_bad_entry,
          check=lambda c, r: _shut_down_check_refuses(c, r, (
              r"summary: host \S+: connect ok, [^;]*poweroff ok[^;]*; "
              r"ESXI_HOST entry 'root@esxi2 lan': not contacted \(configuration\);"))),
    Fault(9, "vim-cmd missing (exit 127)", 15, 4,
          r"autostop: `vim-cmd hostsvc/autostartmanager/autostop` exited 127 \(sh: vim-cmd: "
          r"not found\); powering off anyway",
          "poweroff still sent",
          setup=lambda c: c.server.write_fake("vim_cmd_missing", "yes"),
          check=_powered_off, kinds=("openssh", "dropbear")),
    Fault(10, "autostop hangs past ESXI_DEADLINE", 25, 0,
          r"\[host\] esxi-suspend: final: suspending the VMs still running",
          "the host's own sequence suspends what still runs and powers off by the deadline",
          setup=lambda c: (c.server.write_fake("autostop_seconds", "60"),
                           c.settings.update(ESXI_DEADLINE="10")),
          check=_powered_off, kinds=("openssh", "dropbear")),
    Fault(10, "autostop hangs past ESXI_COMMAND_TIMEOUT (plain path)", 15, 4,
          r"did not finish within ESXI_COMMAND_TIMEOUT=2 s; VMs still running will be powered off",
          "host output not understood: plain autostop, bounded; poweroff still sent after 2 s",
          setup=lambda c: (c.server.write_fake("autostop_seconds", "30"),
                           c.server.write_fake("get_defaults.txt", "garbage\n"),
                           c.settings.update(ESXI_COMMAND_TIMEOUT="2")),
          check=_powered_off, kinds=("openssh", "dropbear")),
    Fault(11, "session dropped during autostop", 25, 0,
          r"lost the session \(.*\); reconnecting",
          "reconnect, follow the host sequence to its poweroff",
          runner=_drop_during_autostop, check=_powered_off, kinds=("openssh", "dropbear")),
    Fault(12, "session dropped by poweroff", 15, 0,
          r"poweroff: (host closed the session|the host sequence ran poweroff): it is going down",
          "success",
          setup=lambda c: c.server.write_fake("poweroff_mode", "drop"),
          check=_powered_off, kinds=("openssh", "dropbear")),
    Fault(13, "second shutdown while one runs", 10, 7,
          r"another esxi-suspend run \(pid \d+\) is already shutting it down .*this run does "
          r"nothing",
          "second exits at once; the host gets one sequence, one local restart",
          runner=_lock_run, check=_one_sequence, restarts=-1),
    Fault(14, "SIGTERM during autostop", 15, 143,
          r"SIGTERM received: stopped, nothing more is sent to the host \(a host sequence "
          r"already started goes on there\)",
          "we stop at once, local restart, exit logged; the host finishes its sequence alone",
          runner=_sigterm_run, check=_host_finishes_alone, kinds=("openssh", "dropbear")),
    Fault(14, "SIGTERM during the local restart", 15, 0,
          r"SIGTERM received after the host steps: exiting now, exit 0",
          "restart and summary finish, exit logged",
          setup=_sigterm_in_restart, check=_powered_off),
    Fault(15, "hostile VM names in getallvms", 20, 0,
          r"inventory: 4 VM\(s\)",
          "dry run: names shown inert, only integer ids reach the host",
          setup=_hostile_names, check=_hostile_checked, restarts=0),
    Fault(16, "local restart command fails", 15, 3,
          r"local: `\S+` exited 9 \(boom\); restart the NUT monitor by hand",
          "host shut down; exit 3",
          setup=lambda c: c.settings.update(UPS_RESTART_COMMAND=str(c.script(
              "failing-restart",
              f"echo restarted >>{shlex.quote(str(c.server.restart_marker))}\n"
              "echo boom >&2; exit 9"))),
          check=_powered_off),
    Fault(17, "syslog socket absent", 15, 0,
          r"INFO: summary: host \S+: connect ok, inventory ok, sequence ok, poweroff ok",
          "every step on stderr at INFO",
          setup=lambda c: setattr(c, "syslog", "absent"), check=_powered_off),
    Fault(17, "syslog socket stale (nobody reads)", 15, 0,
          r"INFO: summary: host \S+: connect ok, inventory ok, sequence ok, poweroff ok",
          "every step on stderr at INFO",
          setup=_stale_syslog, check=_powered_off),
    Fault(17, "syslog daemon stuck (its queue full)", 30, 0,
          r"INFO: summary: host \S+: connect ok, inventory ok, sequence ok, poweroff ok",
          "each send to syslog waits 0.2 s at most: no hang; -v keeps the steps on stderr",
          runner=_stuck_syslog, check=_powered_off),
    Fault(17, "syslog socket listening", 15, 0,
          r"summary: host \S+: connect ok, inventory ok, sequence ok, poweroff ok",
          "every step in syslog",
          setup=lambda c: setattr(c, "syslog", "listening"), runner=_syslog_listening,
          check=_syslog_has_steps),
    Fault(18, "100 dry runs in a row", 300, 0,
          r"inventory: 0 VM\(s\)",
          "no leaked process, session or descriptor on the host; none left locally",
          runner=_leak_run, restarts=0),
    Fault(19, "UPS status unreadable (upsd not answering)", 20, 0,
          r"ups: status cannot be read \(.upsc ups@127\.0\.0\.1:\d+ ups\.status. exited 1 "
          r"\(.*\)\): restarting the NUT monitor at once",
          "host shut down; the monitor restarted at once, as without a UPS to ask",
          setup=_ups_unreadable, check=_powered_off),
    Fault(20, "second run during the same outage", 60, 0,
          r"outage: this machine already shut down \S+ in this outage \(.*\) and the UPS is "
          r"still on battery \(.*\): not contacting them; waiting for power",
          "host contacted by the first run only; both wait for OL, then restart the monitor",
          runner=_second_run_same_outage, check=_contacted_once, restarts=-1),
    Fault(21, "runtime missing (ESXI_DEADLINE=auto)", 20, 0,
          r"deadline: ESXI_DEADLINE=auto: no battery\.runtime \(.upsc \S+ battery\.runtime. "
          r"exited 1 \(Error: Variable not supported by UPS\)\): using the fallback 240 s; "
          r"set ESXI_DEADLINE to seconds",
          "the stated fallback (240 s) used and logged; host shut down",
          setup=_runtime_missing, check=_runtime_fallback_used),
    Fault(22, "power returns during the host sequence", 120, 0,
          r"ups: \S+: OL: power came back during the host steps: the host sequences "
          r"were let finish; restarting the NUT monitor; the hosts powered off in this outage "
          r"are woken once mains is steady",
          "the sequence finishes, the monitor is restarted; the host gets its magic packets "
          "once off and mains steady (UPS_WAKE_STEADY), from the detached wake",
          runner=_power_back_during_sequence, check=_powered_off),
    Fault(32, "IPMI: power back after an outage", 90, 0,
          r"summary: host \S+: .*off confirmed by BMC.*the wake waits for steady mains",
          "the host sequence powers the host off, its BMC confirms it off; power back: the "
          "detached wake, once mains is steady, has the BMC power it on; its SSH port answers "
          "again",
          runner=_ipmi_power_back, check=_powered_off, bmc=True),
    Fault(33, "IPMI: SSH gone at shutdown (sshd stopped)", 30, 5,
          r"ipmi soft-off: SSH is gone: its BMC pressed the power button \(ACPI soft-off",
          "the BMC presses the power button; the host goes off by itself in a few seconds "
          "(power state watched); summary `poweroff ok (BMC)`",
          setup=_ssh_gone, check=_soft_off, bmc=True),
    Fault(34, "IPMI: SSH gone, power button ignored, ESXI_IPMI_HARD_OFF=yes", 40, 5,
          r"still on at ESXI_DEADLINE \d+ s after soft-off: its BMC powers it off hard "
          r"\(ESXI_IPMI_HARD_OFF=yes\)",
          "the BMC cuts the power at ESXI_DEADLINE, as asked",
          setup=lambda c: _ignores_the_button(c, ESXI_IPMI_HARD_OFF="yes"), check=_cut_hard,
          bmc=True),
    Fault(35, "IPMI: SSH gone, power button ignored, hard off not asked", 50, 5,
          r"poweroff: its power state is still on \d+ s after soft-off, at ESXI_DEADLINE: left "
          r"on \(ESXI_IPMI_HARD_OFF=no\)",
          "left on, said with the setting that would cut it",
          setup=_ignores_the_button, check=_left_on, bmc=True),
    Fault(36, "IPMI: SSH gone, wrong BMC password", 15, 5,
          r"ipmi soft-off: not sent: the BMC at 127\.0\.0\.1:\d+ refused user admin or its "
          r"password: check ESXI_IPMI_USER and ESXI_IPMI_PASSWORD",
          "nothing sent; the password in no output",
          setup=lambda c: _ssh_gone(c, ESXI_IPMI_PASSWORD="wrong-bmc-pw"), check=_untouched,
          bmc=True),
    Fault(37, "IPMI: SSH gone, BMC unreachable", 15, 5,
          r"ipmi soft-off: not sent: no answer from the BMC at 127\.0\.0\.1:\d+ within 3 s: "
          r"check ESXI_IPMI_HOST",
          "bounded by ESXI_CONNECT_TIMEOUT; the fix named (address, network, IPMI over LAN)",
          setup=_bmc_silent),
    Fault(38, "host script refused by the host's shell", 35, 4,
          r"the host sequence did not start: no line from it within 10 s .*" + FALLBACK,
          "seen within 10 s; the plain path goes out detached (autostop, then poweroff by the "
          "deadline); we do not wait for it",
          setup=lambda c: (c.server.write_fake("sh_refuses_files", "/bin/sh: File too large"),
                           c.settings.update(ESXI_DEADLINE="60")),
          check=_fell_back, kinds=("openssh", "dropbear")),
    Fault(39, "host script killed 3 s in, with its jobs", 40, 4,
          r"the host sequence stopped: nothing from it for 10 s .*" + FALLBACK,
          "its watchdog's alive line stops: the plain path goes out within 10 s, detached",
          setup=lambda c: (c.server.write_fake("script_dies_after", "3"),
                           c.server.write_fake("shutdown_seconds", "30"),
                           c.settings.update(ESXI_DEADLINE="60")),
          check=_fell_back, kinds=("openssh", "dropbear")),
    Fault(40, "host refuses a command line over 4 KB (40 VMs)", 60, 0,
          r"inventory: 40 VM\(s\), 40 running",
          "the script goes to a file on the host, run as `sh FILE`: the command line we send "
          "is the same for any number of VMs",
          setup=_many_vms_and_a_4kb_limit,
          check=_all_down),
    Fault(41, "outputs without a final newline", 25, 0,
          r"inventory: 3 VM\(s\), 3 running",
          "each marker on a line of its own; the last VM row and a fault's last line kept",
          setup=_no_final_newline, check=_powered_off, kinds=("openssh", "dropbear")),
    Fault(42, "busy hostd (4 calls at once, logins reset beyond)", 60, 0,
          r"inventory: 8 VM\(s\), 8 running",
          "8 calls at most in flight; each reset retried after 1 s, then 2 s; every VM down "
          "before the host poweroff",
          setup=_busy_hostd, check=_resets_retried),
    Fault(43, "a fault printed with exit status 0", 25, 0,
          r"\[host\] esxi-suspend: > \(vim\.fault\.ToolsUnavailable\) \{",
          "the fault is known by its text: the next action (suspend) runs at once",
          setup=_fault_exit0, check=_suspended_after_the_fault),
    Fault(44, "key restricted to another address (from=), check", 15, 5,
          r"user root refused our key \S+ \(a from= on its line must allow the address the host "
          r"sees us at: we connected from 127\.0\.0\.1\)",
          "check: NOT ready, naming from= and the address we connected from; nothing run",
          setup=_restricted_elsewhere, check=_not_ready_nothing_ran, restarts=0),
    Fault(45, "daily check, key refused", 15, 5,
          r"WARNING: daily check: NOT ready \(exit 5 CONNECTION\): host \S+: connect: user "
          r"root refused our key",
          "one WARNING to syslog, nothing else there; the reasons printed (cron mails them)",
          passphrase=False,
          setup=lambda c: _daily(c, ESXI_KEY_FILE=str(c.server.keys.stranger_key)),
          runner=_syslog_listening, check=_daily_warned, restarts=0,
          kinds=("openssh", "dropbear")),
    Fault(46, "daily check, path ready", 15, 0,
          r"INFO: daily check: ready",
          "nothing printed; one INFO line to syslog",
          setup=_daily, runner=_syslog_listening, check=_daily_silent, restarts=0,
          kinds=("openssh", "dropbear")),
    Fault(47, "daily check while a run holds the host's lock", 10, 0,
          r"daily check: not run: a run holds host 127\.0\.0\.1:\d+",
          "the host is not contacted, nothing printed",
          setup=_daily, runner=_daily_while_locked, check=_daily_left_alone, restarts=0),
    Fault(48, "daily check while the UPS is on battery", 10, 0,
          r"daily check: not run: the UPS is on battery \(ups@upsd\.invalid: OB\)",
          "the host is not contacted, nothing printed",
          setup=_daily_on_battery, runner=_syslog_listening,
          check=_daily_left_alone, restarts=0),
    Fault(49, "busy hostd, 12 VMs (`hostd_concurrency` 3, `hostd_overflow` reset)", 60, 0,
          r"inventory: 12 VM\(s\), 12 running",
          "each login reset made again (after 1 s, then 2 s: 3 tries a call); no VM hard-killed",
          runner=_on_simulator(_sim_fleet(12, hostd_concurrency=3, hostd_overflow="reset")),
          check=_sim_resets_retried, kinds=("simulator",)),
    Fault(50, "latency jitter, 0.5 to 3 s a call, 12 VMs (`command_jitter` 2.5)", 60, 0,
          r"summary: host \S+: connect ok, inventory ok, sequence ok, poweroff ok",
          "no wait of ours assumes a call's time: every VM down, none hard-killed",
          runner=_on_simulator(_sim_fleet(12, command_jitter=2.5)),
          check=_none_killed, kinds=("simulator",)),
    Fault(51, "one argument over 4 KB refused, 40 VMs (`arg_limit` 4096)", 60, 0,
          r"inventory: 40 VM\(s\), 40 running",
          "every command line we send is under 4 KB (the script goes in a file): 40 VMs down, "
          "none hard-killed",
          runner=_on_simulator(_sim_fleet(40, arg_limit=4096)),
          check=_sim_lines_short, kinds=("simulator",)),
    Fault(52, "a fault printed with exit status 0 (`fault_exit0`, a VM's `tools_hung`)", 40, 0,
          r"\[host\] esxi-suspend: > \(vim\.fault\.ToolsUnavailable\) \{",
          "the fault is known by its text: the VM is suspended at once, not after its stop delay",
          runner=_on_simulator(_sim_fleet(4, fault_exit0=True), hung=1),
          check=_sim_suspended_at_once, kinds=("simulator",)),
    Fault(53, "outputs without a final newline (`no_final_newline`)", 40, 0,
          r"inventory: 6 VM\(s\), 6 running",
          "each marker on a line of its own: the inventory whole, every VM down",
          runner=_on_simulator(_sim_fleet(6, no_final_newline=True)),
          check=_none_killed, kinds=("simulator",)),
    Fault(54, "busybox without nohup and command, 4.x-like (`missing_commands`)", 40, 0,
          r"summary: host \S+: connect ok, inventory ok, sequence ok, poweroff ok",
          "nohup tried, not looked up: the script starts detached without it; the host goes "
          "down, no VM hard-killed",
          runner=_on_simulator(_sim_fleet(6, missing_commands=["nohup", "command"])),
          check=_sim_4x, kinds=("simulator",)),
    Fault(55, "host script killed 3 s in, with its jobs (`script_dies_after` 3)", 40, 4,
          r"the host sequence stopped: nothing from it for 10 s .*" + FALLBACK,
          "its alive line stops: the plain path (autostop, then poweroff) goes out detached",
          runner=_on_simulator(_sim_fleet(6, script_dies_after=3)),
          check=_sim_fell_back, kinds=("simulator",)),
    Fault(56, "which VMs run, in one call, 40 VMs (esxcli vm process list)", 60, 0,
          r"power states: esxcli vm process list: 40 of 40 VM\(s\) running",
          "no get.summary at all: one hostd round for the whole inventory; every VM down, none "
          "hard-killed",
          runner=_on_simulator(_sim_fleet(40)),
          check=_sim_one_call, kinds=("simulator",)),
    Fault(57, "esxcli without its `vm` namespace, 4.x-like (`esxcli_namespace_missing`)", 60, 0,
          r"power states: vim-cmd vmsvc/get\.summary per VM \(esxcli vm process list: Error: "
          r"Unknown command or namespace vm process list\)",
          "each VM read by get.summary instead; every VM down, none hard-killed",
          runner=_on_simulator(_sim_fleet(12, esxcli_namespace_missing=True)),
          check=_sim_each_read, kinds=("simulator",)),
    Fault(58, "check: esxcli and get.summary disagree on which VMs run", 30, 4,
          r"one-call look: `esxcli vm process list` and `vim-cmd vmsvc/get\.summary` disagree "
          r"on which VMs run \(VM 12 15\)",
          "check: NOT ready, with the fix (check again; a capture for a bug report); nothing "
          "changed on the host",
          setup=_check_with("esxcli_output", "nut-client\n   UUID: 56 4d 00\n"
                            "   Config File: /vmfs/volumes/ds/nut-client/nut-client.vmx\n"),
          check=_not_ready_changed_nothing, restarts=0, kinds=("openssh", "dropbear")),
    Fault(60, "check: the host's shell refuses `sh FILE`", 40, 4,
          r"rehearsal: the host script did not run through on this host's shell; the host's "
          r"shell said: sh: cannot run it",
          "check: NOT ready: the rehearsal, the applet `sh` and the detached job each fail, with "
          "the fix (a capture for a bug report); nothing changed on the host, no file left",
          setup=_check_with("sh_refuses_files", "sh: cannot run it\n"),
          check=_not_ready_changed_nothing, restarts=0, kinds=("openssh", "dropbear")),
    Fault(61, "check: the host kills the host script 1 s in", 40, 4,
          r"rehearsal: the host script did not run through on this host's shell;.* missing: its ",
          "check: NOT ready: the rehearsal stopped before its watchdog or its last line (6 s of "
          "silence at most); nothing changed on the host, no file left (the killed script's "
          "call slots removed by their names)",
          setup=_check_with("script_dies_after", "1\n"),
          check=_not_ready_changed_nothing, restarts=0),
    Fault(62, "check rehearses on the host", 30, 0,
          r"rehearsal: the host script ran detached on this host's shell, stand-ins for its \d+ "
          r"state-changing command\(s\)",
          "check: ready: busybox version and applets, vim-cmd latency, a detached job outliving "
          "its session, the host script run with stand-ins; nothing changed, no file left",
          setup=lambda c: setattr(c, "argv", ["check"]),
          check=_rehearsed, restarts=0, kinds=("openssh", "dropbear")),
]  # fmt: skip

CASES = [
    pytest.param(fault, kind, id=f"{fault.id}-{kind}") for fault in FAULTS for kind in fault.kinds
]


@pytest.mark.parametrize(("fault", "kind"), CASES)
def test_fault(fault: Fault, kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    # a row on the simulator still uses the fake host's restart marker and keys
    server: SshServer = request.getfixturevalue(f"{SIMULATED.get(kind, kind)}_esxi")
    ctx = Ctx(server, tmp_path, passphrase=fault.passphrase)
    request.addfinalizer(ctx.stack.close)
    if fault.bmc:
        ctx.bmc = request.getfixturevalue("bmc")
    fault.setup(ctx)

    run = fault.runner(ctx) if fault.runner else ctx.start().finish()

    assert run.returncode == fault.exit, run.output
    assert run.seconds < fault.bound, f"ran {run.seconds:.1f} s, bound {fault.bound} s"
    assert "Traceback" not in run.output, run.output
    lines = run.stderr.splitlines() + ctx.syslog_lines
    assert any(re.search(fault.log, line) for line in lines), run.stderr
    if fault.restarts >= 0:
        assert len(server.restarts()) == fault.restarts, (server.restarts(), run.stderr)
    assert CLIENT_PASSPHRASE not in run.output + "".join(ctx.syslog_lines)
    fault.check(ctx, run)


def test_secret_check_finds_a_secret() -> None:
    """The session-wide secrets check (conftest.py) would see a leaked passphrase."""
    hits = outputs.find_secrets([("x", f"a {CLIENT_PASSPHRASE} b")], [CLIENT_PASSPHRASE])
    assert hits == ["x: contains secret correc…"]


def render_table() -> str:
    lines = [
        "| # | fault | bound (s) | exit | log line (pattern) | what happens |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for f in FAULTS:
        pattern = f.log.replace("|", "\\|")
        kinds = " + dropbear" if "dropbear" in f.kinds else ""
        kinds = ", simulator" if f.kinds == ("simulator",) else kinds
        lines.append(
            f"| {f.row} | {f.case}{kinds} | {f.bound:g} | {f.exit} | `{pattern}` | {f.result} |"
        )
    return "\n".join(lines) + "\n"


def test_docs_list_the_matrix() -> None:
    """docs/fault-matrix.md is this table; on failure, paste the table printed here."""
    table = render_table()
    assert table in MATRIX_DOC.read_text(), f"docs/fault-matrix.md needs this table:\n{table}"


CHAIN_TEST = Path(__file__).resolve().parents[1] / "end_to_end" / "test_nut_chain.py"


def test_docs_list_the_chain_rows() -> None:
    """docs/fault-matrix.md's chain rows name tests that exist in the chain test."""
    doc = MATRIX_DOC.read_text()
    names = re.findall(r"^\| \d+ \| [^|]+ \| `(test_\w+)` \|", doc, re.MULTILINE)
    assert len(names) >= 4, names
    chain = CHAIN_TEST.read_text()
    for name in names:
        assert f"def {name}(" in chain, name
