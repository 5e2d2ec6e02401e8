"""The simulated host's state: VMs, in-memory files, running jobs, event log, host power.

No networking and no parsing here: `shell/` turns command lines into calls on `HostModel`,
`server.py` serves it over SSH. Beside it: `vm.py` (one VM), `clock.py` (simulated time:
every wait), `hostd.py` (the cost of each hostd call), `autostop.py` (the autostart manager's
stop sequence). All state is guarded by one condition variable (the clock's); waits are scaled
(`time_scale` real seconds per simulated second) and end early when the host powers off
(`HostDown`) or the job's session is dropped (`Interrupted`).
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from esxi_suspend.simulator.clock import SimClock
from esxi_suspend.simulator.fleet import Fleet, VmSpec
from esxi_suspend.simulator.hostd import Hostd, HostdBusy
from esxi_suspend.simulator.vm import (
    OFF,
    ON,
    SUSPENDED,
    Fate,
    Vm,
    invalid_power_state,
    tools_unavailable,
)


class HostDown(Exception):
    """The host powered off: whatever was running on it stops here, with no exit status."""


class Interrupted(Exception):
    """The job's SSH session was dropped (foreground jobs die with their session)."""


@dataclass(frozen=True)
class Event:
    """One line of the host's log. `at` is in simulated seconds since the host started."""

    at: float
    kind: str  # login, exec, exit, logout, dropped, vm, autostop, background, poweroff, ...
    text: str
    session: int | None = None
    vmid: int | None = None
    fate: Fate | None = None

    def __str__(self) -> str:
        who = f"session {self.session}" if self.session is not None else "host"
        return f"t={self.at:8.1f}  {who:<10}  {self.text}"


@dataclass
class Job:
    """One command line running on the host: a session's foreground, or a `&` job."""

    jid: int
    command: str
    session: int | None
    background: bool
    parent: int | None = None  # the job that started it (`&`, a killed `sh FILE`)
    cancelled: bool = False
    done: bool = False
    thread: threading.Thread | None = field(default=None, repr=False)


_FATE_OF = {"shutdown": Fate.CLEAN_SHUTDOWN, "suspend": Fate.SUSPENDED, "off": Fate.POWERED_OFF}
_STATE_AFTER = {"shutdown": OFF, "suspend": SUSPENDED, "off": OFF}


class HostModel:
    """Everything the simulated host knows and does; thread-safe."""

    def __init__(self, fleet: Fleet, time_scale: float = 0.01) -> None:
        self.clock = SimClock(time_scale)
        self.fleet = fleet
        self.time_scale = time_scale
        self.cond = self.clock.cond
        self._events: list[Event] = []
        self.vms: dict[int, Vm] = {}
        for spec in fleet.vms:
            vm = Vm(spec, spec.power, spec.tools and spec.power == ON)
            if spec.power != ON:
                vm.fate = Fate.WAS_OFF
            self.vms[spec.vmid] = vm
        self.files: dict[str, str] = {}
        self.jobs: dict[int, Job] = {}
        self._ids = itertools.count(1000)
        self.powered_off = False
        self.powered_off_at: float | None = None
        self.on_power_off: list[Callable[[], None]] = []
        self.on_drop: list[Callable[[], int]] = []
        self._hostd = Hostd(self.clock, fleet)
        self._stopping = False
        self._ticker = threading.Thread(target=self._tick, name="esxi-sim-ticker", daemon=True)
        self._ticker.start()

    # -- time ---------------------------------------------------------------------------
    def now(self) -> float:
        """Simulated seconds since the host started."""
        return self.clock.now()

    def wall_clock(self) -> int:
        """The host's `date +%s`: a fixed epoch plus the simulated seconds since the start."""
        return self.clock.wall_clock()

    def check(self, job: Job | None) -> None:
        if self.powered_off:
            raise HostDown
        if job is not None and job.cancelled:
            raise Interrupted

    def sleep(
        self, seconds: float, job: Job | None, until: Callable[[], bool] | None = None
    ) -> bool:
        """Wait `seconds` simulated seconds, or less if `until()` becomes true (returns True);
        `HostDown` if the host powers off meanwhile, `Interrupted` if `job` is cancelled."""
        return self.clock.sleep(seconds, lambda: self.check(job), until)

    def hostd_call(self, job: Job | None, call: str = "", may_reset: bool = True) -> bool:
        """The cost of one call to hostd (each `vim-cmd`, `esxcli`, `vmware -v`): `command_latency`
        simulated seconds in one of `hostd_concurrency` slots, waiting for a free slot first.
        A shutdown's timing on a real host is mostly these round trips. False: hostd turned
        it away (`hostd_overflow` "reset"); `call` (the command) is in the event log either
        way, kind "hostd"."""
        session = job.session if job is not None else None
        try:
            self._hostd.call(lambda: self.check(job), may_reset)
        except HostdBusy:
            self.record("hostd", f"reset: {call}", session)
            return False
        if call:
            self.record("hostd", f"call: {call}", session)
        return True

    def _tick(self) -> None:
        """Complete VM operations when they are due, so events appear in time order."""
        with self.cond:
            while not self._stopping:
                self.settle()
                due = [vm.busy_until for vm in self.vms.values() if vm.pending]
                wait = 0.25
                if due:
                    wait = max(0.0, min(wait, (min(due) - self.now()) * self.time_scale))
                self.cond.wait(wait)

    def stop(self) -> None:
        """Stop the host's own thread (the simulation is over); jobs are cancelled."""
        with self.cond:
            self._stopping = True
            for job in self.jobs.values():
                job.cancelled = True
            self.cond.notify_all()
        self._ticker.join(2)

    # -- events -------------------------------------------------------------------------
    def record(
        self,
        kind: str,
        text: str,
        session: int | None = None,
        vmid: int | None = None,
        fate: Fate | None = None,
        at: float | None = None,
    ) -> Event:
        with self.cond:
            event = Event(self.now() if at is None else at, kind, text, session, vmid, fate)
            self._events.append(event)
            self.cond.notify_all()
            return event

    @property
    def events(self) -> list[Event]:
        with self.cond:
            return sorted(self._events, key=lambda event: event.at)

    # -- VMs ----------------------------------------------------------------------------
    def settle(self) -> None:
        """Apply every pending VM operation whose time has come."""
        with self.cond:
            now = self.now()
            for vm in self.vms.values():
                if vm.pending and vm.busy_until <= now and not self.powered_off:
                    op, vm.pending = vm.pending, None
                    vm.power = _STATE_AFTER[op]
                    vm.tools = False
                    vm.fate = _FATE_OF[op]
                    self.record(
                        "vm",
                        f"{vm.label}: {vm.fate.value} (now {vm.power.lower()})",
                        vmid=vm.spec.vmid,
                        fate=vm.fate,
                        at=vm.busy_until,
                    )

    def vm(self, vmid: int) -> Vm | None:
        with self.cond:
            self.settle()
            return self.vms.get(vmid)

    def guest_shutdown(self, vm: Vm, session: int | None) -> None:
        """`power.shutdown`: starts the guest OS shutdown and returns at once."""
        with self.cond:
            self.settle()
            if vm.power != ON:
                raise invalid_power_state(vm.power)
            if not vm.tools or vm.spec.tools_hung:
                raise tools_unavailable()
            if vm.pending is None:
                vm.pending, vm.busy_until = "shutdown", self.now() + vm.spec.shutdown_seconds
                self.record(
                    "vm",
                    f"{vm.label}: guest shutdown started ({vm.spec.shutdown_seconds:g} s)",
                    session,
                    vm.spec.vmid,
                )

    def _timed_operation(self, vm: Vm, op: str, seconds: float, job: Job | None) -> None:
        with self.cond:
            self.settle()
            allowed = (ON,) if op == "suspend" else (ON, SUSPENDED)
            if vm.power not in allowed:
                raise invalid_power_state(vm.power)
            if op == "off" and vm.power == SUSPENDED:
                vm.power, vm.pending = OFF, None
                vm.fate = Fate.POWERED_OFF
                self.record(
                    "vm",
                    f"{vm.label}: powered off (was suspended)",
                    job.session if job else None,
                    vm.spec.vmid,
                    vm.fate,
                )
                return
            if vm.pending in (None, "shutdown") or (op == "off" and vm.pending != "off"):
                vm.pending, vm.busy_until = op, self.now() + seconds
                verb = "suspending" if op == "suspend" else "powering off (hard)"
                self.record("vm", f"{vm.label}: {verb}", job.session if job else None, vm.spec.vmid)
        self.sleep(seconds + 1e-6, job, until=lambda: vm.pending != op)

    def suspend(self, vm: Vm, job: Job | None) -> None:
        """`power.suspend`: returns when the VM is suspended."""
        self._timed_operation(vm, "suspend", self.fleet.suspend_seconds, job)

    def power_off_vm(self, vm: Vm, job: Job | None) -> None:
        """`power.off`: a hard power-off, done in `power_off_seconds`."""
        self._timed_operation(vm, "off", self.fleet.power_off_seconds, job)

    def power_on(self, vm: Vm, job: Job | None) -> None:
        with self.cond:
            self.settle()
            if vm.power == ON:
                raise invalid_power_state(vm.power, "poweredOff")
            vm.power, vm.tools, vm.pending, vm.fate = ON, vm.spec.tools, None, Fate.RUNNING
            self.record("vm", f"{vm.label}: powered on", job.session if job else None, vm.spec.vmid)

    def effective_stop(self, spec: VmSpec) -> tuple[str, int]:
        action = spec.stop_action
        if action.lower() == "systemdefault":
            action = self.fleet.stop_action
        delay = self.fleet.stop_delay if spec.stop_delay < 0 else spec.stop_delay
        return action, delay

    # -- host power ---------------------------------------------------------------------
    def power_off_host(self, session: int | None, how: str = "poweroff") -> None:
        """The host goes down: VMs still running are hard-killed, every job and session ends."""
        with self.cond:
            if self.powered_off:
                return
            self.settle()
            for vm in self.vms.values():
                if vm.power == ON:
                    what = {"shutdown": "guest shutdown", "off": "power-off"}.get(
                        vm.pending or "", vm.pending
                    )
                    was = f" ({what} was still running)" if vm.pending else ""
                    vm.power, vm.pending, vm.fate = OFF, None, Fate.HARD_KILLED
                    self.record(
                        "vm",
                        f"{vm.label}: HARD-KILLED by host power-off{was}",
                        session,
                        vm.spec.vmid,
                        Fate.HARD_KILLED,
                    )
            self.powered_off = True
            self.powered_off_at = self.now()
            self.record("poweroff", f"host powered off ({how}); every session closed", session)
            for job in self.jobs.values():
                job.cancelled = True
            self.cond.notify_all()
        for callback in list(self.on_power_off):
            callback()

    def wait_powered_off(self, timeout: float) -> bool:
        """Wait up to `timeout` real seconds for the host to power off."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while not self.powered_off:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(min(left, 0.25))
        return True

    # -- jobs -----------------------------------------------------------------------------
    def new_job(
        self, command: str, session: int | None, background: bool, parent: int | None = None
    ) -> Job:
        with self.cond:
            job = Job(next(self._ids), command, session, background, parent)
            self.jobs[job.jid] = job
            return job

    def kill_after(self, job: Job, seconds: float) -> None:
        """`seconds` simulated seconds from now, unless it ended, `job` is killed with every
        job it started (and theirs): as a host out of memory kills a script and its children."""

        def kill() -> None:
            try:
                if self.sleep(seconds, None, until=lambda: job.done):
                    return
            except HostDown:
                return
            with self.cond:
                doomed = {job.jid}
                grew = True
                while grew:
                    more = {j.jid for j in self.jobs.values() if j.parent in doomed}
                    grew = not more <= doomed
                    doomed |= more
                for jid in doomed:
                    if jid in self.jobs:
                        self.jobs[jid].cancelled = True
                self.cond.notify_all()
            self.record("background", f"job {job.jid} killed with its jobs: {job.command}")

        threading.Thread(target=kill, name=f"esxi-sim-kill-{job.jid}", daemon=True).start()

    def end_job(self, job: Job) -> None:
        with self.cond:
            job.done = True
            self.jobs.pop(job.jid, None)
            self.cond.notify_all()

    def cancel_session_jobs(self, session: int) -> None:
        """Foreground jobs die with their session; `&` jobs keep running."""
        with self.cond:
            for job in self.jobs.values():
                if job.session == session and not job.background:
                    job.cancelled = True
            self.cond.notify_all()

    def background_jobs(self) -> list[Job]:
        with self.cond:
            return [job for job in self.jobs.values() if job.background and not job.done]

    # -- files ----------------------------------------------------------------------------
    def write_file(self, path: str, text: str, append: bool = False) -> None:
        with self.cond:
            self.files[path] = (self.files.get(path, "") if append else "") + text

    def read_file(self, path: str) -> str | None:
        with self.cond:
            return self.files.get(path)

    # -- what tests and the demo read -----------------------------------------------------
    def fates(self) -> dict[int, Fate]:
        with self.cond:
            self.settle()
            return {vmid: vm.fate for vmid, vm in self.vms.items()}

    def power_states(self) -> dict[int, str]:
        with self.cond:
            self.settle()
            return {vmid: vm.power for vmid, vm in self.vms.items()}
