"""The plan in words: log lines for a real run, the report `check` prints for a person."""

from __future__ import annotations

from esxi_suspend.host.autostart import effective_stop
from esxi_suspend.host.inventory import Inventory, VmInfo
from esxi_suspend.host.plan import (
    Action,
    ShutdownPlan,
    autostop_stops_cleanly,
    self_vm_by_autostop,
)
from esxi_suspend.host.script import sequence_script
from esxi_suspend.settings.model import Settings

# What autostop does to this machine's VM when it takes it in its turn (see self_vm_by_autostop).
_AUTOSTOP_TAKES = {
    Action.SHUTDOWN: "guest shutdown",
    Action.SUSPEND: "suspend",
    Action.POWEROFF: "hard power-off",
}


def printable(text: str) -> str:
    """Host text made safe for a terminal and a log: control characters become '?'."""
    return "".join(ch if ch.isprintable() else "?" for ch in text)


def vm_fate(info: VmInfo, plan: ShutdownPlan, inventory: Inventory) -> str:
    """What the plan does to one VM, in a few words."""
    if info.vmid == plan.self_vm and info.running:
        taken = self_vm_by_autostop(plan, inventory)
        if taken is None:
            return "this machine: suspended last, just before host poweroff"
        order = info.autostart.start_order if info.autostart is not None else "?"
        return (
            f"this machine: autostop: {_AUTOSTOP_TAKES[taken]} (order {order}) in its turn, "
            "not last"
        )
    if not info.running:
        return "nothing: not running" if info.state else "unknown: power state not readable"
    for number, phase in enumerate(plan.phases, start=1):
        for step in phase.steps:
            if step.vmid == info.vmid:
                chain = ", else ".join(action.value for action in step.actions)
                where = f"phase {number} ({phase.label})"
                return f"{chain}, {where}; waits up to {step.seconds} s"
    if info.autostart is not None:
        action, delay = effective_stop(info.autostart, inventory.defaults)
        fate = f"autostop: {action} (order {info.autostart.start_order}), waits up to {delay} s"
        if any(info.vmid in phase.tools_looks for phase in plan.phases):
            # check read the Tools: it says what the host's look will find
            if info.tools_running is False:
                return "suspend, phase 1 (before autostop): no VMware Tools (the host looks first)"
            if info.tools_running is None:
                fate += "; suspended before autostop if its VMware Tools do not run"
        return fate
    return "?"


def describe_plan(inventory: Inventory, plan: ShutdownPlan, self_why: str) -> list[str]:
    """One log line per VM and per phase, then the timing and any warning."""
    lines = [
        f"strategy {plan.strategy}, host poweroff within {plan.deadline} s ({plan.spent} s "
        f"since we were called already spent), worst case {plan.worst_case} s"
    ]
    if plan.self_vm is not None:
        taken = self_vm_by_autostop(plan, inventory)
        fate = (
            "it goes last, by suspend"
            if taken is None
            else f"autostop stops it in its turn ({_AUTOSTOP_TAKES[taken]}), not last"
        )
        lines.append(f"this machine is VM {plan.self_vm} ({printable(self_why)}): {fate}")
    elif self_why:
        lines.append(printable(self_why))
    for info in inventory.vms:
        lines.append(
            f"VM {info.vmid} ({printable(info.vm.name)}): {vm_fate(info, plan, inventory)}"
        )
    for number, phase in enumerate(plan.phases, start=1):
        what = (
            "ESXi's autostop, in sequence order" if phase.autostop else f"{len(phase.steps)} VM(s)"
        )
        if phase.tools_looks:
            what += (
                f", and a look at the VMware Tools of {len(phase.tools_looks)} VM(s) autostop "
                "would shut down (those without are suspended here)"
            )
        lines.append(
            f"phase {number} {phase.label}: {what}, "
            f"budget {phase.budget} s (wants {phase.wanted} s)"
        )
    lines.append(
        f"final: VMs still running get {plan.straggler_action.value}, then host poweroff, "
        f"at the latest {plan.deadline} s after the start (the host's own watchdog)"
    )
    if not plan.fits:
        lines.append(
            f"WARNING: the plan wants {plan.worst_case} s, more than the {plan.deadline} s "
            f"left of ESXI_DEADLINE: VMs still running then get {plan.straggler_action.value}"
        )
    lines += [f"note: {note}" for note in plan.notes]
    return lines


def render_check(
    inventory: Inventory,
    plan: ShutdownPlan,
    settings: Settings,
    self_why: str,
    took: float,
) -> str:
    """What `check` prints for one host: each VM, its state and fate, timing, what would run
    on the host. The local restart is not the host's: the caller prints it once per run."""
    lines = [f"host {settings.host} ({settings.user}@{settings.host}:{settings.port})"]
    lines.append(
        f"  inventory read in {took:.1f} s; ESXI_DEADLINE={settings.deadline} s counts from "
        f"upsmon's call: {plan.spent} s spent by then, {plan.deadline} s left for the host "
        "sequence"
    )
    defaults = inventory.defaults
    lines.append(
        f"  autostart defaults: stop action {printable(defaults.stop_action)}, "
        f"stop delay {defaults.stop_delay} s"
    )
    # The name comes last and whole: it is free text of any length, never cut to a column.
    fates = [printable(vm_fate(info, plan, inventory)) for info in inventory.vms]
    width = max([len(fate) for fate in fates] + [4])
    lines.append(f"  VMs: {len(inventory.vms)}")
    lines.append(f"    {'id':>5}  {'state':<11}  {'tools':<5}  {'plan':<{width}}  name")
    for info, fate in zip(inventory.vms, fates):
        state = info.state.value if info.state else "?"
        tools = {True: "yes", False: "no", None: "-"}[info.tools_running]
        name = printable(info.vm.name)
        lines.append(f"    {info.vmid:>5}  {state:<11}  {tools:<5}  {fate:<{width}}  {name}")
    described = describe_plan(inventory, plan, self_why)
    lines += [f"  {line}" for line in described if not line.startswith("VM ")]
    own = [i for i in inventory.vms if i.running and not autostop_stops_cleanly(i, inventory)]
    if own and plan.strategy == "autostop":
        lines.append(
            f"  {len(own)} running VM(s) ESXi's autostop alone would leave running (outside the "
            "autostart list, no VMware Tools, or stop action none/powerOff) and so hard power "
            "off: they get their own stop action before autostop"
        )
    lines.append("  would run on the host, detached (dry run; not run):")
    lines += [f"    | {line}" for line in sequence_script(plan).splitlines()]
    return "\n".join(lines)
