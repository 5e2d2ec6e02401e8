"""Benchmarks (not part of the test suite's pass/fail): `python benchmarks/run.py`.

P1 fixed overhead: wall time and peak RSS of `esxi-suspend shutdown` against a host with no
   VMs, versus the original shell script's one line (`ssh root@host "vim-cmd
   hostsvc/autostartmanager/autostop ; poweroff"`, OpenSSH client), both against the same
   local OpenSSH sshd with the fake vim-cmd/poweroff of tests/fakehost; alternated, medians.
P2 fleet time: simulated seconds from the first command to host power-off, and VMs
   hard-killed, for fleets of 1, 4, 12 and 40 VMs (esxi_suspend.simulator.generated_fleet),
   for each strategy in STRATEGIES, every host command costing 0.5 simulated s; the floor
   (slowest clean stop), and the parallel run with our session lost right after the start;
   then where the time beyond the VMs' own goes (before the first VM stop, after the last).
   `--fleets 1,4 --time-scale 0.2` measures small fleets with less of our real milliseconds'
   stretch.
P3 many hosts: wall time of one run against 1, then 10 simulated hosts.
P4 time to start: real seconds from the call of `esxi-suspend shutdown` (a new process, as
   upsmon runs it) to the host sequence started, on the simulator at real time (time scale 1)
   with 0.5 s per host command, for 1, 40 and 100 VMs; and the SSH commands it took.
P5 busy hostd: 40 VMs, parallel, hostd serving 8 calls at once and resetting the logins
   beyond (then 3 at once, where resets happen): VMs hard-killed, logins reset, resets left
   unretried (not a call's last try), and the time to host power-off against the floor.

Needs openssh-server and openssh-client for P1 (P1 is skipped without them) and root (sshd).
Prints Markdown tables for docs/benchmarks.md. About 5 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import leftovers  # noqa: E402
from simhelpers import sequence_started  # noqa: E402
from sshservers import ServerUnavailable, make_client_keys, running_server  # noqa: E402

from esxi_suspend import runner  # noqa: E402
from esxi_suspend.demo.command import prepare_env  # noqa: E402
from esxi_suspend.errors import RemoteCommandFailed, SessionDropped  # noqa: E402
from esxi_suspend.host.esxi import CALL_TRIES, CALLS_AT_ONCE  # noqa: E402
from esxi_suspend.host.script import STARTED  # noqa: E402
from esxi_suspend.host.shutdown import HostResult, shutdown_host  # noqa: E402
from esxi_suspend.settings.envfile import load_settings  # noqa: E402
from esxi_suspend.simulator import (  # noqa: E402
    Fate,
    Fleet,
    SimulatedHost,
    generate_ed25519,
    generated_fleet,
)
from esxi_suspend.ssh.remote import CommandResult, Exchange, RemoteHost  # noqa: E402

COMMAND = Path(sys.executable).parent / "esxi-suspend"
ORIGINAL = "vim-cmd hostsvc/autostartmanager/autostop ; poweroff"
FLEET_SIZES = (1, 4, 12, 40)
# simulated seconds a P2 run may take in all: ESXI_DEADLINE (240 s), the host's poweroff, room
WHOLE_RUN_SECONDS = 300
P4_SIZES = (1, 40, 100)


def measure(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one run of `argv`.

    The peak is the child's own VmHWM, sampled from /proc every millisecond: `ru_maxrss` from
    wait4 would report the parent Python's peak, inherited at exec.
    """
    devnull = [
        (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0),
        (os.POSIX_SPAWN_OPEN, 2, "/dev/null", os.O_WRONLY, 0),
    ]
    started = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, env, file_actions=devnull)
    peak_kb = 0
    status_file = f"/proc/{pid}/status"
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        try:
            with open(status_file) as status_text:
                for line in status_text:
                    if line.startswith("VmHWM:"):
                        peak_kb = max(peak_kb, int(line.split()[1]))
        except (OSError, ValueError):
            pass
        time.sleep(0.001)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{argv[0]} exited {os.waitstatus_to_exitcode(status)}")
    return wall, peak_kb / 1024


P1_LATENCIES = (0.0, 0.5)  # the fake vim-cmd's cost: none, then a real host's


def p1(runs: int) -> list[str]:
    with tempfile.TemporaryDirectory(prefix="esxi-bench-") as tmp:
        root = Path(tmp)
        try:
            keys = make_client_keys(root / "keys")
            with running_server("openssh", root / "sshd", keys) as server:
                server.write_fake("getallvms.txt", "Vmid   Name   File   Guest OS   Version\n")
                env_file = server.write_env(UPS_RESTART_COMMAND="/bin/true")
                ours = [str(COMMAND), "shutdown", "--env-file", str(env_file)]
                ssh = shutil.which("ssh") or "/usr/bin/ssh"
                theirs = [ssh, *server.ssh_argv()[1:], ORIGINAL]
                env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
                measure(ours, env), measure(theirs, env)  # warm the page cache
                results: dict[tuple[float, str], list[tuple[float, float]]] = {}
                for latency in P1_LATENCIES:
                    server.set_latency(latency)
                    for _ in range(runs):
                        results.setdefault((latency, "ours"), []).append(measure(ours, env))
                        results.setdefault((latency, "script"), []).append(measure(theirs, env))
        except ServerUnavailable as exc:
            return [f"P1 skipped: {exc}"]
    lines = [
        f"P1 fixed overhead, no-VM host, local OpenSSH sshd, {runs} alternated runs, medians:",
        "",
        "| each vim-cmd costs | command | wall time | peak RSS (VmHWM) |",
        "| --- | --- | ---: | ---: |",
    ]
    for latency in P1_LATENCIES:
        ours_wall = statistics.median(w for w, _ in results[(latency, "ours")])
        ours_rss = statistics.median(r for _, r in results[(latency, "ours")])
        script_wall = statistics.median(w for w, _ in results[(latency, "script")])
        script_rss = statistics.median(r for _, r in results[(latency, "script")])
        cost = f"{latency:g} s"
        lines += [
            f"| {cost} | `esxi-suspend shutdown` | {ours_wall * 1000:.0f} ms | {ours_rss:.1f} MB |",
            f'| {cost} | `ssh root@host "{ORIGINAL}"` | {script_wall * 1000:.0f} ms | '
            f"{script_rss:.1f} MB |",
            f"| {cost} | ratio | {ours_wall / script_wall:.2f}x (target <= 1.3) | "
            f"{ours_rss / script_rss:.1f}x (target: <= 60 MB) |",
        ]
    return lines


def original_script(host: SimulatedHost, directory: Path, private_key: str) -> None:
    """The line the project replaces: autostop, then poweroff, in one session."""
    env = prepare_env(directory, host, private_key)
    settings = load_settings(env)
    with RemoteHost(settings) as remote, contextlib.suppress(RemoteCommandFailed):
        remote.run(ORIGINAL, 3600)


def strategy(name: str) -> Callable[[SimulatedHost, Path, str], None]:
    """esxi-suspend shutdown (the real runner.run path) with ESXI_STRATEGY=name."""

    def run(host: SimulatedHost, directory: Path, private_key: str) -> None:
        env = prepare_env(directory, host, private_key, host.model.time_scale, name)
        runner.run(str(env), dry_run=False)

    return run


class _LostAfterStart:
    """Our session to the host, lost for good once the host sequence has been started: the
    shutdown command's channel is closed as soon as the host says it started the script."""

    def __init__(self, remote: RemoteHost) -> None:
        self.remote = remote
        self.name = remote.name

    def run(self, command: str, timeout: int) -> CommandResult:
        return self.remote.run(command, timeout)

    def close(self) -> None:
        self.remote.close()

    @contextlib.contextmanager
    def exchange(self, command: str, timeout: int, label: str = "") -> Iterator[_CutTalk]:
        with self.remote.exchange(command, timeout, label) as talk:
            yield _CutTalk(talk)


class _CutTalk:
    def __init__(self, talk: Exchange) -> None:
        self.talk = talk
        self.started = False

    def read_until(self, marker: str, deadline: float) -> str:
        text = self.talk.read_until(marker, deadline)
        self.started = marker.endswith(f" {STARTED}")
        return text

    def lines(self, deadline: float) -> Iterator[str]:
        if self.started:
            self.talk.close()
            raise SessionDropped("benchmark: session lost after the start", "shutdown command")
        yield from self.talk.lines(deadline)

    def send(self, text: str) -> None:
        self.talk.send(text)

    @property
    def exited(self) -> bool:
        return self.talk.exited


def parallel_session_lost(host: SimulatedHost, directory: Path, private_key: str) -> None:
    """ESXI_STRATEGY=parallel, our session lost right after the host sequence started."""
    env = prepare_env(directory, host, private_key, host.model.time_scale, "parallel")
    settings = load_settings(env)
    with RemoteHost(settings) as remote:
        result = HostResult(settings.host)
        shutdown_host(_LostAfterStart(remote), settings, result, lambda: None)


PARALLEL = "esxi-suspend, ESXI_STRATEGY=parallel"
STRATEGIES: dict[str, Callable[[SimulatedHost, Path, str], None]] = {
    "original script (`autostop ; poweroff`)": original_script,
    "esxi-suspend, ESXI_STRATEGY=autostop": strategy("autostop"),
    PARALLEL: strategy("parallel"),
    "esxi-suspend, parallel, our session lost after the start": parallel_session_lost,
}


def floor_seconds(fleet: Fleet) -> float:
    """The slowest clean stop of a running VM (guest shutdown, else suspend), then the host's
    own poweroff: no shutdown sequence can have the host off sooner."""
    slowest = max(
        (vm.shutdown_seconds if vm.tools else fleet.suspend_seconds)
        for vm in fleet.vms
        if vm.power == "Powered on"
    )
    return slowest + fleet.host_poweroff_seconds


def _fleet_header(sizes: tuple[int, ...]) -> list[str]:
    names = (f"{n} VM{'s' if n > 1 else ''}" for n in sizes)
    return ["| strategy | " + " | ".join(names) + " |", "| --- |" + " ---: |" * len(sizes)]


_STOPPED = (Fate.CLEAN_SHUTDOWN, Fate.SUSPENDED, Fate.POWERED_OFF)


def time_split(host: SimulatedHost, first_command: float) -> str:
    """Where a run's time beyond the VMs' own went: from the first command to the first VM
    stop begun on the host, and from the last VM stopped to the host's `poweroff` called."""
    if host.powered_off_at is None:
        return "-"
    starts = [e.at for e in host.events if e.kind == "vm" and e.fate is None]
    poweroff_called = host.powered_off_at - host.fleet.host_poweroff_seconds
    stops = [e.at for e in host.events if e.fate in _STOPPED and e.at <= poweroff_called]
    if not starts or not stops:
        return "-"
    return f"{min(starts) - first_command:.1f} s, {poweroff_called - max(stops):.1f} s"


def p2(time_scale: float, sizes: tuple[int, ...] = FLEET_SIZES) -> list[str]:
    logger = logging.getLogger("esxi_suspend")
    logger.handlers[:] = [logging.NullHandler()]
    logger.propagate = False
    logging.getLogger("paramiko").setLevel(logging.CRITICAL + 1)
    lines = [
        f"P2 fleet time (simulator, time scale {time_scale:g}): simulated seconds from the "
        "first command to host power-off; then VMs hard-killed at host power-off, VMs hard "
        "powered off by a stop action, VMs suspended (ESXI_DEADLINE 240 s, the default; every "
        "vim-cmd costs 0.5 simulated s, 16 at once; the host's poweroff takes 10 s). "
        "Fleets: 1 in 4 VMs "
        "without tools (stop action powerOff), 1 in 5 outside the autostart sequence, guest "
        "shutdowns of 15-105 s, stop delay 120 s.",
        "",
        *_fleet_header(sizes),
        "| floor: slowest clean stop of a VM, then the host's poweroff | "
        + " | ".join(f"{floor_seconds(generated_fleet(n)):.0f} s" for n in sizes)
        + " |",
    ]
    ratios: list[str] = []
    splits: list[str] = []
    for name, run in STRATEGIES.items():
        cells = []
        split_cells = []
        for size in sizes:
            fleet = generated_fleet(size)
            private, public = generate_ed25519()
            with (
                tempfile.TemporaryDirectory(prefix="esxi-bench-") as tmp,
                SimulatedHost(fleet, authorized_key=public, time_scale=time_scale) as host,
            ):
                run(host, Path(tmp), private)
                # a host left to go on alone (our session lost) may need the whole deadline
                host.wait_powered_off(10 + WHOLE_RUN_SECONDS * time_scale)
                execs = [e.at for e in host.events if e.kind == "exec"]
                if host.powered_off_at is None or not execs:
                    cells.append("no power-off")
                    split_cells.append("-")
                    continue
                fates = list(host.fates().values())
                killed = sum(f is Fate.HARD_KILLED for f in fates)
                hard_off = sum(f is Fate.POWERED_OFF for f in fates)
                suspended = sum(f is Fate.SUSPENDED for f in fates)
                seconds = host.powered_off_at - execs[0]
                split_cells.append(time_split(host, execs[0]))
                if name == PARALLEL:
                    ratios.append(f"{seconds / floor_seconds(fleet):.2f}x")
                cells.append(f"{seconds:.1f} s; {killed}, {hard_off}, {suspended}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
        splits.append(f"| {name} | " + " | ".join(split_cells) + " |")
    lines.append("| parallel / floor (target <= 1.2) | " + " | ".join(ratios) + " |")
    lines += [
        "",
        "Where the time beyond the VMs' own goes: simulated seconds from the first command to "
        "the first VM stop begun on the host, then from the last VM stopped to the host's "
        "`poweroff` called.",
        "",
        *_fleet_header(sizes),
        *splits,
    ]
    return lines


# P2's one-VM target (no later than the plain line plus 2 s) is about seconds that real
# milliseconds of the simulator's own Python shell, stretched by the time scale, would swamp:
# it is measured again at a time scale that stretches them 5 times, not 50.
ONE_VM_TIME_SCALE = 0.2
P2_ONE_VM_NOTE = (
    f"P2 on 1 VM again, at time scale {ONE_VM_TIME_SCALE:g} (the simulator's shell stretched "
    "5 times, not 50): the target, no later than the plain line plus 2 s."
)


def p3(time_scale: float, hosts: int = 10) -> list[str]:
    """Wall time of one run against 1 simulated host, then against `hosts` of them."""
    logger = logging.getLogger("esxi_suspend")
    logger.handlers[:] = [logging.NullHandler()]
    walls = {}
    for count in (1, hosts):
        private, public = generate_ed25519()
        with contextlib.ExitStack() as stack:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="esxi-bench-")))
            fleet = generated_fleet(4)
            sims = [
                stack.enter_context(
                    SimulatedHost(fleet, authorized_key=public, time_scale=time_scale)
                )
                for _ in range(count)
            ]
            env = prepare_env(tmp, sims[0], private, time_scale, "parallel")
            (tmp / "known_hosts").write_text("".join(s.known_hosts_line() for s in sims))
            text = env.read_text().replace(
                f"ESXI_HOST='{sims[0].address}'",
                "ESXI_HOST='" + ",".join(f"{s.address}:{s.port}" for s in sims) + "'",
            )
            env.write_text(text)
            started = time.perf_counter()
            runner.run(str(env), dry_run=False)
            walls[count] = time.perf_counter() - started
            assert all(s.wait_powered_off(10) for s in sims), "a host was not powered off"
    return [
        f"P3 many hosts (simulator, time scale {time_scale:g}, 4 VMs each, parallel): wall time "
        "of one `esxi-suspend shutdown` run:",
        "",
        f"| 1 host | {hosts} hosts | ratio |",
        "| ---: | ---: | ---: |",
        f"| {walls[1]:.2f} s | {walls[hosts]:.2f} s | {walls[hosts] / walls[1]:.2f}x "
        "(target <= 1.3) |",
    ]


def p4(runs: int = 3) -> list[str]:
    """Real seconds from the call to the host sequence started, at time scale 1."""
    logging.getLogger("paramiko").setLevel(logging.CRITICAL + 1)
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    cells, trips = [], []
    for size in P4_SIZES:
        fleet = generated_fleet(size)
        seconds, commands = [], 0
        for _ in range(runs):
            private, public = generate_ed25519()
            with (
                tempfile.TemporaryDirectory(prefix="esxi-bench-") as tmp,
                SimulatedHost(fleet, authorized_key=public, time_scale=1.0) as host,
            ):
                env_file = prepare_env(Path(tmp), host, private, 1.0, "parallel")
                called = host.simulated_now()
                argv = [str(COMMAND), "shutdown", "--env-file", str(env_file)]
                with subprocess.Popen(
                    argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                ) as child:  # fmt: skip
                    started = _wait_for_sequence(host, 60)
                    child.terminate()
                    try:
                        child.wait(30)
                    except subprocess.TimeoutExpired:
                        child.kill()
                        raise RuntimeError("P4: still running 30 s after SIGTERM") from None
                if started is None:
                    raise RuntimeError(f"P4: no host sequence started with {size} VMs")
                seconds.append(started - called)
                commands = sum(1 for e in host.events if e.kind == "exec" and e.at <= started)
        cells.append(f"{statistics.median(seconds):.2f} s")
        trips.append(str(commands))
    header = " | ".join(f"{n} VM{'s' if n > 1 else ''}" for n in P4_SIZES)
    return [
        f"P4 time to start (simulator at time scale 1, 0.5 s per host command, hostd serving "
        f"16 at once, our host text holding {CALLS_AT_ONCE}; {runs} runs, medians): seconds "
        "from the call of `esxi-suspend shutdown` (a new process) to the host sequence "
        "started, and the SSH commands sent until then:",
        "",
        f"| | {header} |",
        "| --- |" + " ---: |" * len(P4_SIZES),
        "| call to sequence started | " + " | ".join(cells) + " |",
        "| SSH commands | " + " | ".join(trips) + " |",
    ]


P5_SLOTS = (8, 3)  # calls hostd serves at once: the target's, then fewer than our 4
P5_VMS = 40


def unretried_resets(host: SimulatedHost) -> tuple[int, int]:
    """Logins hostd reset, and those never made again although the call had tries left
    (esxi.CALL_TRIES a call: a reset after two resets in a row was its last)."""
    tries: dict[str, list[bool]] = {}
    for event in host.events:
        if event.kind == "hostd":
            how, command = event.text.split(": ", 1)
            tries.setdefault(command, []).append(how == "reset")
    resets = unretried = 0
    for turned in tries.values():
        for i, reset in enumerate(turned):
            if not reset:
                continue
            resets += 1
            last = i >= CALL_TRIES - 1 and all(turned[i - CALL_TRIES + 1 : i + 1])
            unretried += i + 1 == len(turned) and not last
    return resets, unretried


def p5(time_scale: float) -> list[str]:
    """Busy hostd: logins reset beyond its slots; 40 VMs, parallel."""
    logger = logging.getLogger("esxi_suspend")
    logger.handlers[:] = [logging.NullHandler()]
    logger.propagate = False
    logging.getLogger("paramiko").setLevel(logging.CRITICAL + 1)
    rows = []
    for slots in P5_SLOTS:
        fleet = replace(generated_fleet(P5_VMS), hostd_concurrency=slots, hostd_overflow="reset")
        private, public = generate_ed25519()
        with (
            tempfile.TemporaryDirectory(prefix="esxi-bench-") as tmp,
            SimulatedHost(fleet, authorized_key=public, time_scale=time_scale) as host,
        ):
            strategy("parallel")(host, Path(tmp), private)
            host.wait_powered_off(10 + WHOLE_RUN_SECONDS * time_scale)
            execs = [e.at for e in host.events if e.kind == "exec"]
            if host.powered_off_at is None or not execs:
                rows.append(f"| {slots} | no power-off | | | | |")
                continue
            killed = sum(f is Fate.HARD_KILLED for f in host.fates().values())
            resets, unretried = unretried_resets(host)
            seconds = host.powered_off_at - execs[0]
            floor = floor_seconds(fleet)
            rows.append(
                f"| {slots} | {killed} | {resets} | {unretried} | {seconds:.0f} s "
                f"(floor {floor:.0f} s) | {seconds / floor:.2f}x |"
            )
    return [
        f"P5 busy hostd (simulator, time scale {time_scale:g}; {P5_VMS} VMs as in P2, "
        "ESXI_STRATEGY=parallel, 0.5 s per vim-cmd; hostd serves N calls at once and resets "
        "the login of any call beyond, at once): VMs hard-killed, logins reset, resets left "
        "unretried (a call with tries left not made again), host off against the floor:",
        "",
        "| hostd serves at once | hard-killed | logins reset | left unretried | host off "
        "| / floor (target <= 1.2) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
        *rows,
    ]


def _wait_for_sequence(host: SimulatedHost, timeout: float) -> float | None:
    """Simulated time at which the host sequence's log said it started."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sequence_started(host):
            return host.simulated_now()
        time.sleep(0.005)
    return None


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{platform.system()} {platform.release()}, {cpu}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="P1 runs of each command")
    parser.add_argument("--time-scale", type=float, default=0.02, help="P2, P3 time scale")
    parser.add_argument("--only", choices=["p1", "p2", "p3", "p4", "p5"], help="run one benchmark")
    parser.add_argument(
        "--fleets",
        type=lambda text: tuple(int(n) for n in text.split(",")),
        default=FLEET_SIZES,
        help="P2 fleet sizes, comma-separated (default 1,4,12,40)",
    )
    args = parser.parse_args()
    print(f"Measured {datetime.date.today().isoformat()} on {machine()}.\n")
    before = leftovers.snapshot(ROOT)
    try:
        if args.only in (None, "p1"):
            print("\n".join(p1(args.runs)) + "\n")
        if args.only in (None, "p2"):
            print("\n".join(p2(args.time_scale, args.fleets)) + "\n")
        if args.only is None or (args.only == "p2" and args.fleets == FLEET_SIZES):
            print(P2_ONE_VM_NOTE + "\n")
            print("\n".join(p2(ONE_VM_TIME_SCALE, (1,))) + "\n")
        if args.only in (None, "p3"):
            print("\n".join(p3(args.time_scale)) + "\n")
        if args.only in (None, "p4"):
            print("\n".join(p4()) + "\n")
        if args.only in (None, "p5"):
            print("\n".join(p5(args.time_scale)))
    finally:  # the shutdown runs leave their HOST:PORT.lock files (as the tests' do)
        leftovers.clean(before)
    return 0


if __name__ == "__main__":
    sys.exit(main())
