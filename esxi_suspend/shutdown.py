"""The steps on one host: autostop, then poweroff; or, in a dry run, the plan and its proof.

A step that fails is recorded and the next one still runs: the battery decides, not us.
"""

from __future__ import annotations

import logging
import unicodedata
from dataclasses import dataclass, field
from typing import Callable, Optional, Protocol

from esxi_suspend import esxi
from esxi_suspend.config import Settings
from esxi_suspend.errors import (
    EsxiSuspendError,
    ExitCode,
    RemoteCommandFailed,
    RemoteTimeout,
    SessionDropped,
)
from esxi_suspend.remote import CommandResult

log = logging.getLogger(__name__)


class Remote(Protocol):
    """What the steps need from a connected host (remote.RemoteHost, or a fake in unit tests)."""

    name: str

    def run(self, command: str, timeout: int) -> CommandResult: ...


# Opens a fresh session to the same host (after the host dropped ours); None if not possible.
Reconnect = Callable[[], Optional[Remote]]


@dataclass
class StepResult:
    name: str
    exit_code: ExitCode
    detail: str

    @property
    def ok(self) -> bool:
        return self.exit_code == ExitCode.OK


@dataclass
class HostResult:
    """What happened on one host, step by step; its exit code is the worst of its steps."""

    host: str
    steps: list[StepResult] = field(default_factory=list)

    def add(self, name: str, exit_code: ExitCode, detail: str) -> StepResult:
        step = StepResult(name, exit_code, detail)
        self.steps.append(step)
        if step.ok:
            log.info("host %s: %s: %s", self.host, name, detail)
        else:
            log.error("host %s: %s: %s", self.host, name, detail)
        return step

    @property
    def exit_code(self) -> ExitCode:
        return max((step.exit_code for step in self.steps), default=ExitCode.OK)

    def summary(self) -> str:
        parts = [f"{s.name} {'ok' if s.ok else 'FAILED'}" for s in self.steps]
        return f"host {self.host}: {', '.join(parts) or 'nothing done'}"


def shutdown_host(
    remote: Remote, settings: Settings, result: HostResult, reconnect: Reconnect
) -> None:
    """autostop, then poweroff whatever autostop did; a session lost at poweroff is success."""
    timeout = settings.command_timeout
    log.info("host %s: running `%s` (bound %d s)", remote.name, esxi.AUTOSTOP, timeout)
    session_lost = False
    try:
        done = remote.run(esxi.AUTOSTOP, timeout)
    except RemoteTimeout as exc:
        result.add("autostop", exc.exit_code, f"{exc}; VMs still running will be powered off")
    except SessionDropped as exc:
        session_lost = True
        result.add("autostop", exc.exit_code, f"{exc}; reconnecting to power the host off")
    else:
        if done.ok:
            result.add("autostop", ExitCode.OK, "all VMs in the autostart sequence stopped")
        else:
            result.add(
                "autostop",
                ExitCode.REMOTE_COMMAND,
                f"`{esxi.AUTOSTOP}` exited {done.exit_status} ({done.error_tail()}); "
                "powering off anyway",
            )
    target: Remote | None = reconnect() if session_lost else remote
    if target is None:
        result.add("poweroff", ExitCode.CONNECTION, "not sent: could not reconnect to the host")
        return
    power_off(target, timeout, result)


def power_off(remote: Remote, timeout: int, result: HostResult) -> None:
    log.info("host %s: running `%s`", remote.name, esxi.POWEROFF)
    try:
        done = remote.run(esxi.POWEROFF, timeout)
    except SessionDropped:
        result.add("poweroff", ExitCode.OK, "host closed the session: it is going down")
        return
    except RemoteCommandFailed as exc:
        result.add("poweroff", exc.exit_code, f"{exc}; check the host's console")
        return
    if done.ok:
        result.add("poweroff", ExitCode.OK, "host accepted poweroff: it is going down")
    else:
        result.add(
            "poweroff",
            ExitCode.REMOTE_COMMAND,
            f"`{esxi.POWEROFF}` exited {done.exit_status} ({done.error_tail()}); the host is "
            "still up: power it off from its console",
        )


@dataclass
class VmPlan:
    vm: esxi.Vm
    state: esxi.PowerState | None
    action: str
    worst_seconds: int = 0
    hard_killed: bool = False


@dataclass
class HostPlan:
    """The dry run's findings: each VM, its state, what autostop will do to it."""

    host: str
    vms: list[VmPlan] = field(default_factory=list)
    defaults: esxi.AutostartDefaults | None = None
    poweroff_path: str = ""

    @property
    def autostop_worst_seconds(self) -> int:
        return sum(vm.worst_seconds for vm in self.vms)


def inspect_host(remote: Remote, settings: Settings, result: HostResult) -> HostPlan:
    """Read-only: inventory, power states and the autostart sequence, turned into the plan."""
    plan = HostPlan(remote.name)
    timeout = settings.command_timeout

    def read(step: str, command: str) -> str | None:
        try:
            done = remote.run(command, timeout)
        except EsxiSuspendError as exc:
            result.add(step, exc.exit_code, str(exc))
            return None
        if not done.ok:
            result.add(
                step,
                ExitCode.REMOTE_COMMAND,
                f"`{command}` exited {done.exit_status} ({done.error_tail()})",
            )
            return None
        return done.stdout

    inventory = read("inventory", esxi.GETALLVMS)
    defaults_text = read("autostart defaults", esxi.GET_DEFAULTS)
    sequence_text = read("autostart sequence", esxi.GET_AUTOSTARTSEQ)
    poweroff_path = read("poweroff present", esxi.FIND_POWEROFF)
    if poweroff_path is not None:
        plan.poweroff_path = poweroff_path.strip()
        result.add("poweroff present", ExitCode.OK, f"found {_printable(plan.poweroff_path)}")
    if inventory is None or defaults_text is None or sequence_text is None:
        return plan
    try:
        vms = esxi.parse_getallvms(inventory)
        plan.defaults = esxi.parse_defaults(defaults_text)
        sequence = {entry.vmid: entry for entry in esxi.parse_autostartseq(sequence_text)}
    except esxi.ParseError as exc:
        result.add("inventory", ExitCode.REMOTE_COMMAND, f"unexpected host output: {exc}")
        return plan
    result.add("inventory", ExitCode.OK, f"{len(vms)} VM(s), {len(sequence)} in autostart")
    for vm in vms:
        state_text = read(f"power state of VM {vm.vmid}", esxi.power_getstate(vm.vmid))
        state: esxi.PowerState | None = None
        if state_text is not None:
            try:
                state = esxi.parse_power_state(state_text)
            except esxi.ParseError as exc:
                result.add(f"power state of VM {vm.vmid}", ExitCode.REMOTE_COMMAND, str(exc))
        plan.vms.append(_plan_vm(vm, state, sequence.get(vm.vmid), plan.defaults))
    return plan


def _plan_vm(
    vm: esxi.Vm,
    state: esxi.PowerState | None,
    entry: esxi.AutostartEntry | None,
    defaults: esxi.AutostartDefaults,
) -> VmPlan:
    if state is None:
        return VmPlan(vm, state, "unknown: its power state could not be read")
    if state is not esxi.PowerState.ON:
        return VmPlan(vm, state, "nothing: not running")
    if entry is None:
        return VmPlan(
            vm,
            state,
            "HARD POWER-OFF when the host powers off: not in the autostart list",
            hard_killed=True,
        )
    action, delay = esxi.effective_stop(entry, defaults)
    return VmPlan(
        vm,
        state,
        f"{action}, then waits up to {delay} s (autostart order {entry.start_order})",
        worst_seconds=delay,
    )


def _printable(text: str) -> str:
    """Host text made safe for a terminal and a log: control characters become '?'."""
    return "".join("?" if unicodedata.category(ch)[0] == "C" else ch for ch in text)


def render_plan(plan: HostPlan, settings: Settings, restart: str) -> str:
    """The dry run's report for a person: each VM, its state, what will happen to it."""
    lines = [f"host {plan.host} ({settings.user}@{settings.host}:{settings.port})"]
    if plan.defaults is not None:
        lines.append(
            f"  autostart defaults: stop action {_printable(plan.defaults.stop_action)}, "
            f"stop delay {plan.defaults.stop_delay} s"
        )
    lines.append(f"  VMs: {len(plan.vms)}")
    width = max([len(_printable(vm.vm.name)) for vm in plan.vms] + [4])
    width = min(width, 40)
    lines.append(f"    {'id':>5}  {'state':<12} {'name':<{width}}  what autostop will do")
    for vm in plan.vms:
        state = vm.state.value if vm.state else "?"
        name = _printable(vm.vm.name)
        lines.append(f"    {vm.vm.vmid:>5}  {state:<12} {name:<{width}}  {vm.action}")
    hard = [vm for vm in plan.vms if vm.hard_killed]
    worst = plan.autostop_worst_seconds
    lines.append(
        f"  autostop: up to {worst} s (sum of stop delays); "
        f"ESXI_COMMAND_TIMEOUT={settings.command_timeout} s"
    )
    if worst > settings.command_timeout:
        lines.append(
            "  WARNING: autostop may outlast ESXI_COMMAND_TIMEOUT: poweroff would then cut "
            "the VMs still stopping"
        )
    if hard:
        lines.append(f"  WARNING: {len(hard)} running VM(s) would be hard powered off")
    lines.append(f"  would run: {esxi.AUTOSTOP} (dry run; not run)")
    lines.append(f"  would run: {esxi.POWEROFF} (dry run; not run)")
    lines.append(f"  local: would run: {restart} (dry run; not run)")
    return "\n".join(lines)
