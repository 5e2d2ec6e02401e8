"""The shutdown plan for one host, and the host-side script that carries it out. Pure: no I/O.

The plan is a few phases of VM stop actions with time budgets that fit ESXI_DEADLINE, then the
final step: stragglers suspended (or powered off), this machine's own VM last, host poweroff.
The host script runs it detached on the host, on its own clock, so the host finishes even if
our session dies; while we are connected we only follow it and move it along early.
Every command line is built from constants and VM ids (integers): never from host text.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from esxi_suspend import esxi
from esxi_suspend.config import Settings
from esxi_suspend.inventory import Inventory, VmInfo

SUSPEND_SECONDS = 20  # what one suspend may take (RAM written to the datastore)
POWEROFF_SECONDS = 5  # what a hard VM power-off, or the host's own poweroff, may take
LOG_PREFIX = "esxi-suspend:"
# The host's own /tmp (ESXi keeps it in RAM): the host script's log, followed while we can.
HOST_LOG_PREFIX = "/tmp/esxi-suspend-"  # noqa: S108 - on the ESXi host, named by us


class Action(Enum):
    SHUTDOWN = "shutdown"
    SUSPEND = "suspend"
    POWEROFF = "poweroff"

    def command(self, vmid: int) -> str:
        return {
            Action.SHUTDOWN: esxi.power_shutdown,
            Action.SUSPEND: esxi.power_suspend,
            Action.POWEROFF: esxi.power_off,
        }[self](vmid)


# ESXi's stop actions (case varies by version) as ours; `none` and unknown words map to None.
_ESXI_ACTIONS = {
    "guestshutdown": Action.SHUTDOWN,
    "suspend": Action.SUSPEND,
    "poweroff": Action.POWEROFF,
}


@dataclass(frozen=True)
class VmStep:
    """One VM's stop: its actions in order (each tried if the one before fails)."""

    vmid: int
    actions: tuple[Action, ...]
    seconds: int

    def command(self) -> str:
        return " || ".join(action.command(self.vmid) for action in self.actions)


@dataclass(frozen=True)
class Phase:
    label: str
    steps: tuple[VmStep, ...]
    budget: int
    wanted: int
    autostop: bool = False


@dataclass(frozen=True)
class ShutdownPlan:
    strategy: str
    deadline: int
    phases: tuple[Phase, ...]
    watched: tuple[int, ...]
    straggler_action: Action
    self_vm: int | None
    notes: tuple[str, ...]

    @property
    def straggler_wait(self) -> int:
        """How long the final step gives the stragglers' suspends (a sixth of a short deadline).

        With ESXI_STRAGGLER_ACTION=poweroff nothing is issued: the host's poweroff stops them
        just as hard, and a VM already suspended keeps its state.
        """
        if not self.watched or self.straggler_action is not Action.SUSPEND:
            return 0
        return min(SUSPEND_SECONDS, max(1, self.deadline // 6))

    @property
    def final_seconds(self) -> int:
        own = SUSPEND_SECONDS if self.self_vm is not None else 0
        return self.straggler_wait + own + POWEROFF_SECONDS

    @property
    def worst_case(self) -> int:
        """Seconds to host poweroff if every VM takes all the time it is allowed."""
        return sum(phase.wanted for phase in self.phases) + self.final_seconds

    @property
    def fits(self) -> bool:
        return self.worst_case <= self.deadline

    @property
    def scheduled(self) -> int:
        """When the host script issues poweroff at the latest, in seconds from its start."""
        return sum(phase.budget for phase in self.phases) + self.final_seconds


def _stop_delay(info: VmInfo, inventory: Inventory) -> int:
    if info.autostart is not None:
        return esxi.effective_stop(info.autostart, inventory.defaults)[1]
    return inventory.defaults.stop_delay


def choose_step(info: VmInfo, inventory: Inventory, settings: Settings) -> VmStep:
    """Guest shutdown, else suspend, as ESXI_STOP_ACTIONS orders them; the sequence's own
    clean action (guest shutdown or suspend) first when the VM has one.

    Guest shutdown is left out when VMware Tools are known not to run: it would only fail.
    A hard power-off is never a fallback: after a failed suspend it could be a VM that is
    already suspended, and power-off would throw its saved state away (the host's own poweroff
    does the same to a VM still running). It is the action only for a VM that has no other.
    """
    preferred: list[Action] = []
    if info.autostart is not None:
        esxi_action, _delay = esxi.effective_stop(info.autostart, inventory.defaults)
        mapped = _ESXI_ACTIONS.get(esxi_action.lower())
        if mapped in (Action.SHUTDOWN, Action.SUSPEND):
            preferred.append(mapped)
    preferred += [Action(name) for name in settings.stop_actions]
    clean: list[Action] = []
    for action in preferred:
        if action is Action.SHUTDOWN and info.tools_running is False:
            continue
        if action is not Action.POWEROFF and action not in clean:
            clean.append(action)
    actions = tuple(clean) or (Action.POWEROFF,)
    seconds = {
        Action.SHUTDOWN: _stop_delay(info, inventory),
        Action.SUSPEND: SUSPEND_SECONDS,
        Action.POWEROFF: POWEROFF_SECONDS,
    }[actions[0]]
    return VmStep(info.vmid, actions, seconds)


def autostop_stops_cleanly(info: VmInfo, inventory: Inventory) -> bool:
    """Will autostop stop this VM, and without a hard power-off or a failing guest shutdown?

    Outside the sequence, or with stop action `none`, it is left running and dies hard at host
    poweroff; a guest shutdown without VMware Tools fails and leaves it running too.
    """
    if info.autostart is None:
        return False
    action = _ESXI_ACTIONS.get(esxi.effective_stop(info.autostart, inventory.defaults)[0].lower())
    if action is None or action is Action.POWEROFF:
        return False
    return not (action is Action.SHUTDOWN and info.tools_running is False)


def find_self_vm(
    inventory: Inventory, settings: Settings, smbios_uuid: str | None
) -> tuple[int | None, str]:
    """This machine's own VM on the host, if it is one: by ESXI_SELF_VM, else by BIOS UUID."""
    if settings.self_vm:
        wanted = settings.self_vm
        for info in inventory.vms:
            if str(info.vmid) == wanted or info.vm.name == wanted:
                return info.vmid, f"ESXI_SELF_VM={wanted}"
        return None, f"ESXI_SELF_VM={wanted} is not a VM on this host"
    if smbios_uuid:
        for info in inventory.vms:
            if info.bios_uuid and esxi.uuid_matches(smbios_uuid, info.bios_uuid):
                return info.vmid, "this machine's SMBIOS UUID"
    return None, ""


def _resolve_groups(
    settings: Settings, running: list[VmInfo], notes: list[str]
) -> list[list[VmInfo]]:
    """ESXI_VM_ORDER groups of running VMs; VMs named nowhere stop with the first group."""
    groups: list[list[VmInfo]] = []
    placed: set[int] = set()
    for group in settings.vm_order:
        members: list[VmInfo] = []
        for wanted in group:
            found = [i for i in running if str(i.vmid) == wanted or i.vm.name == wanted]
            if not found:
                notes.append(f"ESXI_VM_ORDER: no running VM named or numbered {wanted!r}")
            for info in found:
                if info.vmid not in placed:
                    members.append(info)
                    placed.add(info.vmid)
        groups.append(members)
    rest = [info for info in running if info.vmid not in placed]
    if groups:
        groups[0] = rest + groups[0]
    else:
        groups = [rest]
    return [group for group in groups if group]


def make_plan(inventory: Inventory, settings: Settings, self_vm: int | None) -> ShutdownPlan:
    """Phases and budgets for this host, from what is running on it now."""
    notes: list[str] = []
    running = [info for info in inventory.vms if info.running and info.vmid != self_vm]
    phases: list[Phase] = []
    if settings.strategy == "autostop":
        # First the VMs autostop would not stop cleanly, all at once; then autostop itself.
        own = [info for info in running if not autostop_stops_cleanly(info, inventory)]
        if own:
            steps = tuple(choose_step(info, inventory, settings) for info in own)
            wanted = max(step.seconds for step in steps)
            phases.append(Phase("before autostop", steps, wanted, wanted))
        rest = [info for info in running if info not in own]
        sequential = sum(_stop_delay(info, inventory) for info in rest)
        phases.append(Phase("autostop", (), sequential, sequential, autostop=True))
        if self_vm is not None and any(
            info.vmid == self_vm and info.autostart is not None for info in inventory.vms
        ):
            notes.append(
                f"this machine's VM {self_vm} is in the autostart sequence: autostop will stop "
                "it in its turn (the host finishes without us); ESXI_STRATEGY=parallel keeps "
                "it for last"
            )
    else:
        groups = _resolve_groups(settings, running, notes)
        for number, group in enumerate(groups, start=1):
            steps = tuple(choose_step(info, inventory, settings) for info in group)
            wanted = max(step.seconds for step in steps)
            phases.append(Phase(f"group {number}/{len(groups)}", steps, wanted, wanted))
    straggler = Action(settings.straggler_action)
    plan = ShutdownPlan(
        strategy=settings.strategy,
        deadline=settings.deadline,
        phases=tuple(phases),
        watched=tuple(info.vmid for info in running),
        straggler_action=straggler,
        self_vm=self_vm,
        notes=tuple(notes),
    )
    return _fit_budgets(plan)


def _fit_budgets(plan: ShutdownPlan) -> ShutdownPlan:
    """Scale the phases' budgets down, in proportion, until the whole plan fits the deadline."""
    available = max(plan.deadline - plan.final_seconds, len(plan.phases))
    total = sum(phase.wanted for phase in plan.phases)
    if total <= available:
        return plan
    phases = tuple(
        Phase(p.label, p.steps, max(1, p.wanted * available // total), p.wanted, p.autostop)
        for p in plan.phases
    )
    return ShutdownPlan(
        plan.strategy,
        plan.deadline,
        phases,
        plan.watched,
        plan.straggler_action,
        plan.self_vm,
        (*plan.notes, f"the plan wants {plan.worst_case} s: budgets cut to fit the deadline"),
    )


def _echo(text: str) -> str:
    # Our own words only: no quote, no host text, nothing the shell would expand.
    if not all(ch.isalnum() or ch in " :/.,()=-" for ch in text):
        raise ValueError(f"not an echo-safe text: {text!r}")
    return f'echo "{LOG_PREFIX} {text}"'


def phase_commands(phase: Phase, number: int, total: int) -> list[str]:
    """One phase: its steps started concurrently (each `cmd &`), autostop last if it has it."""
    what = "the autostart sequence" if phase.autostop else f"{len(phase.steps)} VM(s)"
    commands = [_echo(f"phase {number}/{total} {phase.label}: {what}")]
    commands += [f'sh -c "{step.command()}" &' for step in phase.steps]
    if phase.autostop:
        commands.append(f"{esxi.AUTOSTOP} &")
    return commands


def final_commands(plan: ShutdownPlan, stragglers: tuple[int, ...]) -> list[str]:
    """Stragglers suspended, this machine's VM suspended, host poweroff.

    Suspending a VM already off or suspended only fails: it is safe to give it to every VM.
    """
    suspend = plan.straggler_action is Action.SUSPEND
    commands = [_echo(f"final: {len(stragglers)} VM(s) may still run")]
    if suspend and stragglers:
        commands += [f"{esxi.power_suspend(vmid)} &" for vmid in stragglers]
        commands.append(f"sleep {plan.straggler_wait}")
    if plan.self_vm is not None:
        commands.append(_echo(f"final: suspending our own VM {plan.self_vm}"))
        commands.append(esxi.power_suspend(plan.self_vm))
    commands.append(_echo("host poweroff"))
    commands.append(esxi.POWEROFF)
    return commands


def host_script(plan: ShutdownPlan) -> str:
    """The whole sequence, on the host's clock: phases with their budgets, then the final."""
    total = len(plan.phases)
    commands = [
        'trap "" HUP',
        _echo(f"host sequence started: strategy {plan.strategy}, deadline {plan.deadline} s"),
    ]
    for number, phase in enumerate(plan.phases, start=1):
        commands += phase_commands(phase, number, total)
        commands.append(f"sleep {phase.budget}")
    commands += final_commands(plan, plan.watched)
    return join(commands)


def join(commands: list[str]) -> str:
    """`a & b; c`: a command ending in `&` is already separated from the next one."""
    text = ""
    for command in commands:
        if text and not text.endswith("&"):
            text += ";"
        text += (" " if text else "") + command
    return text


def detached(script: str, log_path: str, has_nohup: bool) -> str:
    """Run `script` on the host in the background, surviving our session, output to its log."""
    if "'" in script or not log_path.startswith(HOST_LOG_PREFIX):
        raise ValueError("refusing to build a detached command from unexpected parts")
    runner = "nohup sh -c" if has_nohup else "sh -c"
    return f"{runner} '{script}' >> {log_path} 2>&1 < /dev/null &"


def log_path(stamp: int, pid: int) -> str:
    return f"{HOST_LOG_PREFIX}{int(stamp)}-{int(pid)}.log"
