"""Power back, safely: the hosts are woken once mains is steady and the battery can carry
another clean shutdown, not the moment the UPS reads `OL`.

Power often flickers back and fails again within minutes, and the battery that carried the
shutdown is nearly flat. The run that sees power come back re-arms the NUT monitor at once (a
second outage must be seen) and hands the wake to a detached process, `esxi-suspend
power-back` (`start`): under systemd a transient unit (systemd-run), because restarting
nut-monitor.service stops every process of that unit, ours too; elsewhere a process in its own
session. It waits (`wait_then_wake`) until the UPS has been on line UPS_WAKE_STEADY s with no
`OB` in between and holds UPS_WAKE_CHARGE % (and, where it reports `battery.runtime`, the
hosts' last measured shutdown plus UPS_RUNTIME_MARGIN), at most UPS_WAKE_LIMIT s.

The outage record (record.py) carries the pending wake's token: a run of a second outage
(upsmon calls us again) takes the record over, which cancels this wait; the wake claims the
record before it wakes anyone, so the hosts are woken once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType

from esxi_suspend import __version__, clock
from esxi_suspend.errors import ExitCode
from esxi_suspend.machine import run_program, start_detached, which
from esxi_suspend.nut import record as outage_record
from esxi_suspend.nut import ups
from esxi_suspend.power import wake
from esxi_suspend.settings.envfile import validate
from esxi_suspend.settings.model import RestartSettings, Settings, Target, env_file_path
from esxi_suspend.settings.values import match_target

log = logging.getLogger("esxi_suspend")

COMMAND = "power-back"  # the hidden subcommand the detached process runs (cli.py)
REPORT_EVERY = 300.0  # seconds between two "still waiting" lines
BATTERY_TIMEOUT = 2.0  # seconds one `upsc UPS battery.*` may take (a look is never a hang)
SYSTEMD_RUN_TIMEOUT = 15.0
UNIT_PREFIX = "esxi-suspend-power-back"


def new_token() -> str:
    return secrets.token_hex(8)


# -- the detached process ----------------------------------------------------------------------


def start(env_file: Path, token: str) -> str:
    """Start `esxi-suspend power-back` detached from upsmon's lifecycle; say where it runs.
    Raise OSError when it cannot be started."""
    argv = [
        sys.executable,
        "-m",
        "esxi_suspend",
        COMMAND,
        "--env-file",
        os.path.abspath(env_file),
        "--token",
        token,
    ]
    systemd_run = which("systemd-run") if Path("/run/systemd/system").is_dir() else None
    if systemd_run is not None:
        unit = f"{UNIT_PREFIX}-{os.getpid()}"
        setenv = [
            f"--setenv={name}={os.environ[name]}"
            for name in (ups.CONFPATH_VARIABLE, "PATH")
            if os.environ.get(name)
        ]
        call = [systemd_run, "--quiet", f"--unit={unit}", *setenv, "--", *argv]
        try:
            done = run_program(call, SYSTEMD_RUN_TIMEOUT)
            if done.returncode == 0:
                return f"systemd unit {unit}.service (journalctl -u {unit})"
            lines = (done.stderr.strip() or done.stdout.strip()).splitlines()
            why = lines[-1][:200] if lines else f"exit {done.returncode}"
        except subprocess.TimeoutExpired:
            why = f"no answer within {SYSTEMD_RUN_TIMEOUT:g} s"
        except OSError as exc:
            why = exc.strerror or str(exc)
        log.warning(
            "power back: systemd-run could not start the wait (%s): it runs as our own child "
            "instead, and restarting nut-monitor.service may stop it (then run: esxi-suspend "
            "wake)",
            why,
        )
    pid = start_detached(argv)
    return f"pid {pid}"


def run(env_file: str | None, token: str) -> ExitCode:
    """`esxi-suspend power-back`: the detached wait, then the wake; never raises."""
    path = env_file_path(env_file)
    log.info(
        "esxi-suspend %s: power-back (the wake after an outage), settings from %s",
        __version__,
        path,
    )
    validation = validate(path)
    if validation.problems:
        for line in validation.report("the wait goes on as said", "no host can be woken"):
            log.error("%s", line)
    stop = _Stop()
    with contextlib.suppress(ValueError):  # not the main thread (tests)
        signal.signal(signal.SIGTERM, stop)
    return wait_then_wake(validation.settings, validation.restart, token, lambda: stop.received)


class _Stop:
    """SIGTERM (systemctl stop of the unit, the machine going down): stop waiting."""

    def __init__(self) -> None:
        self.received = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.received = True


# -- the wait ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Battery:
    """One look at the battery of every UPS: the smallest charge (%) and runtime (s) reported,
    and the UPSes that report neither."""

    charge: float | None
    runtime: float | None
    silent: tuple[str, ...] = ()

    def describe(self) -> str:
        parts = []
        if self.charge is not None:
            parts.append(f"battery.charge {self.charge:g} %")
        if self.runtime is not None:
            parts.append(f"battery.runtime {self.runtime:g} s")
        return ", ".join(parts) or "no battery.charge or battery.runtime reported"


def read_battery(
    configured: tuple[str, ...],
    timeout: float = BATTERY_TIMEOUT,
    upsc_: Callable[..., str] | None = None,
) -> Battery:
    """`battery.charge` and `battery.runtime` of every UPS (`upsc`, bounded); never raises."""
    values: dict[str, dict[str, float]] = {}
    names: list[str] = []
    for variable in ("battery.charge", "battery.runtime"):
        read, _problems = ups.read_values(configured, variable, timeout, upsc_)
        for name, value in read:
            try:
                number = float(value)
            except ValueError:
                continue
            values.setdefault(name, {})[variable] = number
        if not names:
            try:
                names = ups.ups_names(configured)
            except ups.UpsUnreadable:
                names = []
    charges = [v["battery.charge"] for v in values.values() if "battery.charge" in v]
    runtimes = [v["battery.runtime"] for v in values.values() if "battery.runtime" in v]
    silent = tuple(name for name in names if name not in values)
    return Battery(min(charges, default=None), min(runtimes, default=None), silent)


@dataclass(frozen=True)
class Needs:
    """What the wake waits for: seconds of steady mains, the charge, the runtime."""

    steady: float
    charge: float  # 0: no battery condition
    runtime: float  # the last shutdown plus UPS_RUNTIME_MARGIN

    def battery_ok(self, battery: Battery) -> bool:
        if self.charge <= 0:
            return True
        charge_ok = battery.charge is None or battery.charge >= self.charge
        runtime_ok = battery.runtime is None or battery.runtime >= self.runtime
        return charge_ok and runtime_ok

    def describe(self, shutdown: float, measured: bool, margin: int) -> str:
        steady = f"mains has been steady for {self.steady:g} s (UPS_WAKE_STEADY)"
        if self.charge <= 0:
            return f"{steady}; no battery condition (UPS_WAKE_CHARGE=0)"
        what = "the hosts' last shutdown" if measured else "ESXI_DEADLINE (no shutdown measured)"
        return (
            f"{steady} and the battery holds enough for another clean shutdown: "
            f"battery.charge at least {self.charge:g} % (UPS_WAKE_CHARGE) and, where the UPS "
            f"reports it, battery.runtime at least {self.runtime:.0f} s ({what} {shutdown:.0f} s "
            f"+ UPS_RUNTIME_MARGIN {margin} s)"
        )


@dataclass
class Looks:
    """How the UPS and the battery are read (fakes in the unit tests)."""

    status: Callable[[tuple[str, ...]], ups.UpsStatus] = ups.read_status
    battery: Callable[[tuple[str, ...]], Battery] = read_battery
    record_dir: Path = outage_record.STATE_DIR
    now: Callable[[], float] = time.monotonic
    pause: Callable[[float, Callable[[], bool]], None] = clock.pause


def wait_then_wake(
    settings: Settings | None,
    restart: RestartSettings,
    token: str,
    stopped: Callable[[], bool],
    looks: Looks | None = None,
) -> ExitCode:
    """Wait for steady mains and battery, then wake the record's hosts; never raises."""
    try:
        return _Wait(settings, restart, token, stopped, looks or Looks()).run()
    except Exception as exc:  # a bug: said, the hosts left off
        log.critical(
            "power back: internal error: %s; the hosts are not woken (run: esxi-suspend wake)",
            exc,
            exc_info=True,
        )
        return ExitCode.INTERNAL


class _Wait:
    def __init__(
        self,
        settings: Settings | None,
        restart: RestartSettings,
        token: str,
        stopped: Callable[[], bool],
        looks: Looks,
    ) -> None:
        self.settings, self.restart, self.token = settings, restart, token
        self.stopped, self.looks = stopped, looks

    def _ours(self) -> outage_record.OutageRecord | None:
        """The record while the wake is still ours; None (and the line saying why) when not."""
        record = outage_record.read_record(self.looks.record_dir)
        if record is None:
            log.info(
                "power back: the outage record is gone (a shutdown or `esxi-suspend wake` by "
                "hand, or it went stale): the wake is cancelled"
            )
            return None
        if record.wake != self.token:
            log.info(
                "power back: another shutdown run (pid %d) took the outage record over: this "
                "wait is cancelled; that run wakes the hosts once power is back",
                record.pid,
            )
            return None
        return record

    def run(self) -> ExitCode:
        record = self._ours()
        if record is None:
            return ExitCode.OK
        restart = self.restart
        names = ", ".join(h.host for h in record.hosts)
        measured = record.shutdown_seconds > 0
        shutdown = record.shutdown_seconds or float(
            self.settings.deadline if self.settings else 240
        )
        needs = Needs(restart.wake_steady, restart.wake_charge, shutdown + restart.runtime_margin)
        already = max(0.0, time.time() - record.back_at) if record.back_at else 0.0
        started = self.looks.now() - already  # power came back then
        log.info(
            "power back: %s will be woken once %s; a look every %d s, for at most %d s from "
            "power back (UPS_WAKE_LIMIT; then %s)",
            names,
            needs.describe(shutdown, measured, restart.runtime_margin),
            restart.ups_poll_interval,
            restart.wake_limit,
            "wake anyway" if restart.wake_at_limit == "wake" else "they stay off",
        )
        steady_since: float | None = started
        failed_again = 0
        told_silent = told_unreadable = False
        reported = self.looks.now()
        first = True
        while True:
            if not first:
                self.looks.pause(restart.ups_poll_interval, self.stopped)
            first = False
            if self.stopped():
                log.info(
                    "power back: SIGTERM received: stopped waiting; %s not woken (run: "
                    "esxi-suspend wake)",
                    names,
                )
                return ExitCode.TERMINATED
            record = self._ours()
            if record is None:
                return ExitCode.OK
            outage_record.touch_record(self.looks.record_dir)
            now = self.looks.now()
            elapsed = now - started
            status = self.looks.status(restart.ups_names)
            battery = Battery(None, None)
            if status.on_battery:
                if steady_since is not None:
                    failed_again += 1
                    log.warning(
                        "power back: %s: mains failed again %.0f s after power came back: no "
                        "host is woken into a failing supply; the NUT monitor, re-armed, "
                        "handles a new outage; the wake waits for steady mains again",
                        status.describe(),
                        elapsed,
                    )
                steady_since = None
            elif status.online:
                if steady_since is None:
                    steady_since = now
                    log.info(
                        "power back: %s: on line again: the steady mains wait starts over",
                        status.describe(),
                    )
                told_unreadable = False
                battery = self.looks.battery(restart.ups_names)
                if battery.silent and not told_silent and needs.charge > 0:
                    told_silent = True
                    log.info(
                        "power back: %s report(s) neither battery.charge nor battery.runtime: "
                        "for %s, the steady mains wait alone",
                        ", ".join(battery.silent),
                        "it" if len(battery.silent) == 1 else "them",
                    )
                steady = now - steady_since
                if steady >= needs.steady and needs.battery_ok(battery):
                    log.info(
                        "power back: mains steady for %.0f s, %s: waking %s",
                        steady,
                        battery.describe(),
                        names,
                    )
                    return self._wake(record)
            elif not told_unreadable:
                told_unreadable = True
                log.warning(
                    "power back: status cannot be read (%s): the hosts are not woken until it can",
                    status.describe(),
                )
            if elapsed >= restart.wake_limit:
                return self._at_limit(record, status, battery, elapsed)
            if now - reported >= REPORT_EVERY:
                reported = now
                steady_text = (
                    f"mains steady for {now - steady_since:.0f} s of {needs.steady:g} s"
                    if steady_since is not None
                    else "on battery again"
                )
                log.info(
                    "power back: still waiting to wake %s (%.0f s of UPS_WAKE_LIMIT %d s): %s; %s",
                    names,
                    elapsed,
                    restart.wake_limit,
                    steady_text,
                    battery.describe() if status.online else status.describe(),
                )

    def _at_limit(
        self,
        record: outage_record.OutageRecord,
        status: ups.UpsStatus,
        battery: Battery,
        elapsed: float,
    ) -> ExitCode:
        names = ", ".join(h.host for h in record.hosts)
        now_text = battery.describe() if status.online else status.describe()
        if self.restart.wake_at_limit == "wake" and status.online:
            log.warning(
                "power back: UPS_WAKE_LIMIT (%d s) reached without steady mains and a "
                "recharged battery (%s): waking %s anyway (UPS_WAKE_AT_LIMIT=wake)",
                self.restart.wake_limit,
                now_text,
                names,
            )
            return self._wake(record)
        why = (
            "UPS_WAKE_AT_LIMIT=stay-off"
            if self.restart.wake_at_limit != "wake"
            else "the UPS is not on line now"
        )
        log.warning(
            "power back: UPS_WAKE_LIMIT (%d s) reached (%s; %.0f s since power came back): %s "
            "not woken (%s); wake them by hand: esxi-suspend wake",
            self.restart.wake_limit,
            now_text,
            elapsed,
            names,
            why,
        )
        outage_record.claim_record(self.looks.record_dir)
        return ExitCode.OK

    def _wake(self, record: outage_record.OutageRecord) -> ExitCode:
        claimed = outage_record.claim_record(self.looks.record_dir)
        if claimed is None or claimed.wake != self.token:
            if claimed is not None:  # taken over a moment ago: put it back for its new owner
                outage_record.write_record(claimed, self.looks.record_dir)
            log.info("power back: the outage record was taken over: the wake is cancelled")
            return ExitCode.OK
        if self.settings is None:
            log.error(
                "power back: %s not woken: the env file has problems (above); fix them, then "
                "run: esxi-suspend wake",
                ", ".join(h.host for h in claimed.hosts),
            )
            return ExitCode.CONFIG
        return wake_hosts(self.settings, list(claimed.hosts), self.stopped)


def wake_hosts(
    settings: Settings, hosts: list[outage_record.PoweredOff], stopped: Callable[[], bool]
) -> ExitCode:
    """Power back on the hosts powered off in this outage (power/wake.py); never raises."""
    if not hosts:
        return ExitCode.OK
    targets = [ups_target(settings, host) for host in hosts]
    try:
        return wake.wake_powered_off(settings, targets, stopped)
    except Exception as exc:  # a bug there must not go unsaid
        log.critical("wake: internal error: %s", exc, exc_info=True)
        return ExitCode.INTERNAL


def ups_target(settings: Settings, host: outage_record.PoweredOff) -> Target:
    """The ESXI_HOST entry a recorded host is (its own user and port when no longer listed)."""
    for target in settings.all_targets:
        if target.host == host.host and target.port == host.port:
            return target
    return Target(host.host, host.user, host.port)


def woken_by_hand(host: str | None, directory: Path = outage_record.STATE_DIR) -> None:
    """`esxi-suspend wake [HOST]` by hand: those hosts leave the pending wake (all of them:
    the record goes, and the waiting process ends at its next look); never raises."""
    try:
        record = outage_record.read_record(directory)
    except OSError:
        return
    if record is None or not record.wake:
        return
    kept: tuple[outage_record.PoweredOff, ...] = ()
    if host is not None:
        try:
            found = match_target(host, tuple(Target(h.host, h.user, h.port) for h in record.hosts))
        except ValueError:
            return
        kept = tuple(h for h in record.hosts if (h.host, h.port) != (found.host, found.port))
    try:
        if kept:
            outage_record.write_record(replace(record, hosts=kept), directory)
        else:
            outage_record.remove_record(directory)
    except OSError as exc:
        log.warning("power back: outage record not updated (%s)", exc.strerror or exc)
        return
    gone = ", ".join(h.host for h in record.hosts if h not in kept)
    log.info(
        "power back: %s woken by hand: left out of the pending wake after power back%s",
        gone,
        "" if kept else " (nothing left: it is cancelled)",
    )
