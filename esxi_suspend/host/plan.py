"""The shutdown plan for one host. Pure: no I/O.

The plan is a few phases of VM stop actions with time budgets that fit what is left of
ESXI_DEADLINE once the host is read, then the final step: stragglers suspended (or left to the
host poweroff), this machine's own VM last, host poweroff. script.py turns it into the
script the host runs on its own; every command in it is built from constants and VM ids.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from enum import Enum

from esxi_suspend.host import esxi
from esxi_suspend.host.autostart import effective_stop
from esxi_suspend.host.inventory import Inventory, VmInfo
from esxi_suspend.host.vmstate import uuid_matches
from esxi_suspend.settings.model import Settings

SUSPEND_SECONDS = 20  # what one suspend may take (RAM written to the datastore)
POWEROFF_SECONDS = 5  # what a hard VM power-off, or the host's own poweroff, may take
HOST_CALL_SECONDS = 1  # one `vim-cmd` round trip to hostd, with room to spare
# What the host sequence gets at least, even when reading the host ate the whole deadline.
MIN_SEQUENCE_SECONDS = 10


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
    """`tools_looks`: VMs whose VMware Tools are unknown (the one-call look does not say) and
    that autostop would stop by guest shutdown: the host looks at each, and suspends in this
    phase those without Tools (autostop's guest shutdown would fail on them)."""

    label: str
    steps: tuple[VmStep, ...]
    budget: int
    wanted: int
    autostop: bool = False
    tools_looks: tuple[int, ...] = ()


@dataclass(frozen=True)
class ShutdownPlan:
    """`deadline`: seconds from the start of the host sequence to the host poweroff, i.e.
    ESXI_DEADLINE less `spent`, the seconds since upsmon called us (the inventory included)."""

    strategy: str
    deadline: int
    phases: tuple[Phase, ...]
    watched: tuple[int, ...]
    straggler_action: Action
    self_vm: int | None
    notes: tuple[str, ...]
    unknown: tuple[int, ...] = ()
    spent: int = 0

    @property
    def final_check(self) -> tuple[int, ...]:
        """The VMs the final step looks at: those we stop, and those whose state was unreadable."""
        return self.watched + tuple(v for v in self.unknown if v not in self.watched)

    @property
    def suspends_stragglers(self) -> bool:
        """With ESXI_STRAGGLER_ACTION=poweroff nothing is issued: the host's poweroff stops
        them just as hard, and a VM already suspended keeps its state."""
        return self.straggler_action is Action.SUSPEND

    @property
    def final_seconds(self) -> int:
        """The final step's time: its suspends run esxi.CALLS_AT_ONCE at a time, so the
        stragglers take as many rounds as that needs; then our own VM, then the poweroff."""
        suspend = HOST_CALL_SECONDS + SUSPEND_SECONDS
        rounds = -(-len(self.final_check) // esxi.CALLS_AT_ONCE) if self.suspends_stragglers else 0
        own = suspend if self.self_vm is not None else 0
        return rounds * suspend + own + POWEROFF_SECONDS

    @property
    def worst_case(self) -> int:
        """Seconds to host poweroff if every VM takes all the time it is allowed."""
        return sum(phase.wanted for phase in self.phases) + self.final_seconds

    @property
    def fits(self) -> bool:
        return self.worst_case <= self.deadline

    @property
    def stops_nothing(self) -> bool:
        """No VM to stop or look at: the host sequence is only its poweroff."""
        return not self.phases and not self.final_check and self.self_vm is None


def _stop_delay(info: VmInfo, inventory: Inventory) -> int:
    if info.autostart is not None:
        return effective_stop(info.autostart, inventory.defaults)[1]
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
        esxi_action, _delay = effective_stop(info.autostart, inventory.defaults)
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
    action = _ESXI_ACTIONS.get(effective_stop(info.autostart, inventory.defaults)[0].lower())
    if action is None or action is Action.POWEROFF:
        return False
    return not (action is Action.SHUTDOWN and info.tools_running is False)


def find_self_vm(
    inventory: Inventory, settings: Settings, smbios_uuid: str | None
) -> tuple[int | None, str]:
    """This machine's own VM on the host, if it is one: by ESXI_SELF_VM, else by BIOS UUID.

    Returns the VM id (or None) and one line saying how it was found, or why not and what to
    do: ESXI_SELF_VM naming no VM here is a mistake `check` fails on (see `self_vm_missing`).
    """
    if settings.self_vm:
        wanted = settings.self_vm
        for info in inventory.vms:
            if str(info.vmid) == wanted or info.vm.name == wanted:
                return info.vmid, f"ESXI_SELF_VM={wanted}"
        return None, self_vm_missing(inventory, wanted)
    if smbios_uuid:
        for info in inventory.vms:
            if info.bios_uuid and uuid_matches(smbios_uuid, info.bios_uuid):
                return info.vmid, "this machine's SMBIOS UUID"
        how = f"no VM here has this machine's SMBIOS UUID {smbios_uuid}"
    else:
        how = "SMBIOS UUID unreadable: not a VMware VM, or not root"
    return None, (
        f"this machine's own VM: not found (ESXI_SELF_VM unset; {how}): so it is not stopped "
        "last by us; if this machine is a VM on this host, set ESXI_SELF_VM to its id or name"
    )


# How many VMs a message lists by id before it only counts the rest.
_LISTED_VMS = 20


def self_vm_missing(inventory: Inventory, wanted: str) -> str:
    """ESXI_SELF_VM names no VM on this host: which value, the VMs there are, the fix."""
    listed = [f"{info.vmid} {info.vm.name}" for info in inventory.vms[:_LISTED_VMS]]
    more = len(inventory.vms) - len(listed)
    vms = ", ".join(listed) + (f" and {more} more" if more > 0 else "") if listed else "none"
    return (
        f"ESXI_SELF_VM={wanted} names no VM on this host (its VMs by id: {vms}): set "
        "ESXI_SELF_VM to this machine's VM id or name as listed, or remove it to find this "
        "machine by its SMBIOS UUID"
    )


def autostop_action(info: VmInfo, inventory: Inventory) -> Action | None:
    """What ESXi's autostop does to this VM in its turn, or None when it leaves it running:
    outside the sequence, stop action `none` (or unknown), guest shutdown without Tools."""
    if info.autostart is None:
        return None
    action = _ESXI_ACTIONS.get(effective_stop(info.autostart, inventory.defaults)[0].lower())
    if action is Action.SHUTDOWN and info.tools_running is False:
        return None
    return action


def self_vm_by_autostop(plan: ShutdownPlan, inventory: Inventory) -> Action | None:
    """This machine's VM is stopped by autostop in its turn, not last: how; else None.

    The case of ESXI_STRATEGY=autostop with our VM in the autostart sequence and autostop run
    (other VMs are left for it). Without an action of autostop's, our VM is suspended last.
    """
    if plan.self_vm is None or not any(phase.autostop for phase in plan.phases):
        return None
    info = inventory.by_id().get(plan.self_vm)
    if info is None or not info.running:
        return None
    return autostop_action(info, inventory)


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


def make_plan(
    inventory: Inventory, settings: Settings, self_vm: int | None, spent: float = 0.0
) -> ShutdownPlan:
    """Phases and budgets for this host, from what is running on it now.

    `spent`: seconds since upsmon called us; ESXI_DEADLINE counts from that call.
    """
    notes: list[str] = []
    running = [info for info in inventory.vms if info.running and info.vmid != self_vm]
    phases: list[Phase] = []
    if settings.strategy == "autostop":
        # First the VMs autostop would not stop cleanly, all at once; then autostop itself.
        own = [info for info in running if not autostop_stops_cleanly(info, inventory)]
        rest = [info for info in running if info not in own]
        unsure = tuple(
            info.vmid
            for info in rest
            if info.tools_running is None and autostop_action(info, inventory) is Action.SHUTDOWN
        )
        if own or unsure:
            steps = tuple(choose_step(info, inventory, settings) for info in own)
            # a VM the Tools look finds without Tools is suspended in this phase
            wanted = max([step.seconds for step in steps] + ([SUSPEND_SECONDS] if unsure else []))
            phases.append(Phase("before autostop", steps, wanted, wanted, tools_looks=unsure))
        if rest:  # autostop has nothing to do when no other VM runs
            sequential = sum(_stop_delay(info, inventory) for info in rest)
            phases.append(Phase("autostop", (), sequential, sequential, autostop=True))
        own_vm = inventory.by_id().get(self_vm) if self_vm is not None else None
        taken = autostop_action(own_vm, inventory) if own_vm is not None and rest else None
        if own_vm is not None and own_vm.running and taken is not None:
            how = {
                Action.SHUTDOWN: "shuts it down",
                Action.SUSPEND: "suspends it",
                Action.POWEROFF: "powers it off hard",
            }[taken]
            notes.append(
                f"this machine's VM {self_vm} is in the autostart sequence: autostop {how} in "
                "its turn, not last (the host sequence finishes without us); "
                "ESXI_STRATEGY=parallel, or taking it out of the sequence, keeps it for last"
            )
    else:
        groups = _resolve_groups(settings, running, notes)
        for number, group in enumerate(groups, start=1):
            steps = tuple(choose_step(info, inventory, settings) for info in group)
            wanted = max(step.seconds for step in steps)
            phases.append(Phase(f"group {number}/{len(groups)}", steps, wanted, wanted))
    straggler = Action(settings.straggler_action)
    used = math.ceil(max(0.0, spent))
    plan = ShutdownPlan(
        strategy=settings.strategy,
        deadline=max(MIN_SEQUENCE_SECONDS, settings.deadline - used),
        phases=tuple(phases),
        watched=tuple(info.vmid for info in running),
        straggler_action=straggler,
        self_vm=self_vm,
        notes=tuple(notes),
        unknown=tuple(i.vmid for i in inventory.vms if i.state is None and i.vmid != self_vm),
        spent=used,
    )
    return _fit_budgets(plan)


def _fit_budgets(plan: ShutdownPlan) -> ShutdownPlan:
    """Scale the phases' budgets down, in proportion, until the whole plan fits the deadline."""
    available = max(plan.deadline - plan.final_seconds, len(plan.phases))
    total = sum(phase.wanted for phase in plan.phases)
    if total <= available:
        return plan
    phases = tuple(replace(p, budget=max(1, p.wanted * available // total)) for p in plan.phases)
    note = f"the plan wants {plan.worst_case} s: budgets cut to fit the deadline"
    return replace(plan, phases=phases, notes=(*plan.notes, note))
