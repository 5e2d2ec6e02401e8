"""The plan, from inventories built here: pure, no host."""

from __future__ import annotations

from dataclasses import replace

import pytest
from test_shutdown import SETTINGS

from esxi_suspend.host.autostart import AutostartDefaults, AutostartEntry
from esxi_suspend.host.inventory import Inventory, VmInfo
from esxi_suspend.host.plan import MIN_SEQUENCE_SECONDS, Action, find_self_vm, make_plan
from esxi_suspend.host.report import describe_plan, vm_fate
from esxi_suspend.host.script import sequence_script
from esxi_suspend.host.vmlist import Vm
from esxi_suspend.host.vmstate import PowerState

DEFAULTS = AutostartDefaults(stop_delay=120, stop_action="PowerOff", enabled=True)


def vm(
    vmid: int,
    name: str,
    *,
    on: bool = True,
    tools: bool | None = True,
    order: int | None = None,
    stop: str = "systemDefault",
    delay: int = -1,
    uuid: str | None = None,
) -> VmInfo:
    entry = AutostartEntry(vmid, order, delay, stop) if order is not None else None
    return VmInfo(
        Vm(vmid, name, "ds1", f"{vmid}/{vmid}.vmx", "otherGuest", "vmx-13", ""),
        PowerState.ON if on else PowerState.OFF,
        tools if on else None,
        entry,
        uuid,
    )


def inventory(*vms: VmInfo) -> Inventory:
    return Inventory(tuple(vms), DEFAULTS, "/bin/poweroff")


FLEET = inventory(
    vm(1, "nut-client", order=3, stop="suspend", delay=30),
    vm(2, "web", order=1, stop="guestShutdown", delay=90),
    vm(3, "db", order=2, stop="GuestShutdown", delay=200),
    vm(4, "legacy no tools", tools=False),
    vm(5, "lab with tools", tools=True),
    vm(6, "off", on=False),
)


def steps_by_vm(plan_phases: object) -> dict[int, tuple[Action, ...]]:
    assert isinstance(plan_phases, tuple)
    return {step.vmid: step.actions for phase in plan_phases for step in phase.steps}


def test_autostop_fixes_the_quirk_for_vms_outside_the_sequence() -> None:
    plan = make_plan(FLEET, replace(SETTINGS, deadline=900), self_vm=None)
    own, autostop = plan.phases
    assert not own.autostop and autostop.autostop and autostop.steps == ()
    assert steps_by_vm(plan.phases) == {
        4: (Action.SUSPEND,),  # no tools: no guest shutdown; never a hard power-off fallback
        5: (Action.SHUTDOWN, Action.SUSPEND),
    }
    assert own.wanted == 120
    # autostop is sequential: it wants the sum of the sequence's stop delays
    assert autostop.wanted == 30 + 90 + 200
    assert plan.watched == (1, 2, 3, 4, 5)
    assert plan.fits


def test_autostop_would_hard_kill_or_fail_gets_our_own_step_first() -> None:
    fleet = inventory(
        vm(1, "default PowerOff", order=1),
        vm(2, "no tools", order=2, stop="guestShutdown", tools=False),
        vm(3, "action none", order=3, stop="none"),
        vm(4, "clean", order=4, stop="suspend"),
    )
    plan = make_plan(fleet, SETTINGS, self_vm=None)
    assert steps_by_vm(plan.phases) == {
        1: (Action.SHUTDOWN, Action.SUSPEND),
        2: (Action.SUSPEND,),
        3: (Action.SHUTDOWN, Action.SUSPEND),
    }


def test_poweroff_only_when_nothing_else_is_allowed() -> None:
    settings = replace(SETTINGS, stop_actions=("shutdown", "poweroff"))
    plan = make_plan(inventory(vm(4, "no tools", tools=False)), settings, None)
    assert steps_by_vm(plan.phases) == {4: (Action.POWEROFF,)}


def test_parallel_wants_the_slowest_vm_not_the_sum() -> None:
    plan = make_plan(FLEET, replace(SETTINGS, strategy="parallel", deadline=600), None)
    (phase,) = plan.phases
    assert phase.wanted == 200
    assert steps_by_vm(plan.phases)[3][0] is Action.SHUTDOWN  # the sequence's own action
    assert steps_by_vm(plan.phases)[1] == (Action.SUSPEND, Action.SHUTDOWN)
    assert plan.worst_case < make_plan(FLEET, replace(SETTINGS, deadline=600), None).worst_case


def test_ordered_groups_and_unlisted_vms_first() -> None:
    settings = replace(
        SETTINGS, strategy="parallel", deadline=900, vm_order=(("web", "5"), ("db",), ("nas",))
    )
    plan = make_plan(FLEET, settings, None)
    groups = [sorted(step.vmid for step in phase.steps) for phase in plan.phases]
    assert groups == [[1, 2, 4, 5], [3]]
    assert any("'nas'" in note for note in plan.notes)


def test_deadline_cuts_budgets_and_schedules_poweroff_in_time() -> None:
    settings = replace(SETTINGS, strategy="parallel", deadline=120, vm_order=(("web",), ("db",)))
    plan = make_plan(FLEET, settings, None)
    assert not plan.fits
    assert sum(p.budget for p in plan.phases) + plan.final_seconds <= plan.deadline
    assert all(phase.budget >= 1 for phase in plan.phases)


def test_deadline_counts_from_the_call() -> None:
    settings = replace(SETTINGS, strategy="parallel", deadline=240)
    assert make_plan(FLEET, settings, None).deadline == 240
    plan = make_plan(FLEET, settings, None, spent=3.2)
    assert (plan.deadline, plan.spent) == (236, 4)
    assert sum(p.budget for p in plan.phases) + plan.final_seconds <= 236
    late = make_plan(FLEET, settings, None, spent=400)
    assert late.deadline == MIN_SEQUENCE_SECONDS


def test_self_vm_goes_last_by_suspend() -> None:
    plan = make_plan(FLEET, replace(SETTINGS, strategy="parallel"), self_vm=1)
    assert 1 not in plan.watched
    assert 1 not in steps_by_vm(plan.phases)
    script = sequence_script(plan)
    assert script.splitlines()[-3:] == [
        'down 1 || { echo "$P final: suspending our own VM 1"; '
        "call vmsvc/power.suspend 1 2>&1 | say; }",
        'echo "$P host poweroff"',
        "poweroff",
    ]


@pytest.mark.parametrize(
    ("wanted", "smbios", "expected"),
    [
        ("nut-client", None, 1),
        ("3", None, 3),
        (None, "564D0000-0000-0000-0000-000000000005", 5),
        # guests may show the first three fields byte-swapped
        (None, "0000 4d56 0000 0000-0000-000000000005", 5),
        (None, "11111111-2222-3333-4444-555555555555", None),
    ],
)
def test_find_self_vm(wanted: str | None, smbios: str | None, expected: int | None) -> None:
    fleet = inventory(
        *[
            replace(info, bios_uuid=f"564d0000-0000-0000-0000-00000000000{info.vmid}")
            for info in FLEET.vms
        ]
    )
    found, _why = find_self_vm(fleet, replace(SETTINGS, self_vm=wanted), smbios)
    assert found == expected


def test_esxi_self_vm_naming_no_vm_says_which_vms_there_are() -> None:
    found, why = find_self_vm(FLEET, replace(SETTINGS, self_vm="nut"), None)
    assert found is None
    assert why == (
        "ESXI_SELF_VM=nut names no VM on this host (its VMs by id: 1 nut-client, 2 web, 3 db, "
        "4 legacy no tools, 5 lab with tools, 6 off): set ESXI_SELF_VM to this machine's VM id "
        "or name as listed, or remove it to find this machine by its SMBIOS UUID"
    )
    many = inventory(*[vm(n, f"vm{n}") for n in range(1, 31)])
    _found, why = find_self_vm(many, replace(SETTINGS, self_vm="nut"), None)
    assert "19 vm19, 20 vm20 and 10 more)" in why


@pytest.mark.parametrize(
    ("smbios", "how"),
    [
        (None, "SMBIOS UUID unreadable: not a VMware VM, or not root"),
        ("11111111-2222-3333-4444-555555555555", "no VM here has this machine's SMBIOS UUID"),
    ],
)
def test_this_machine_not_found_says_what_it_means(smbios: str | None, how: str) -> None:
    found, why = find_self_vm(FLEET, SETTINGS, smbios)
    assert found is None
    assert why.startswith(f"this machine's own VM: not found (ESXI_SELF_VM unset; {how}")
    assert why.endswith(
        "so it is not stopped last by us; if this machine is a VM on this host, set "
        "ESXI_SELF_VM to its id or name"
    )


def story(fleet: Inventory, strategy: str, self_vm: int) -> str:
    """Everything the plan says about this machine's VM: the note, log lines, check's fate."""
    plan = make_plan(fleet, replace(SETTINGS, strategy=strategy, deadline=900), self_vm)
    info = fleet.by_id()[self_vm]
    lines = [*describe_plan(fleet, plan, "ESXI_SELF_VM=x"), vm_fate(info, plan, fleet)]
    return "\n".join(line for line in lines if "this machine" in line)


@pytest.mark.parametrize(
    ("fleet", "strategy", "expected"),
    [
        # In the sequence and autostop runs: autostop takes it in its turn, nothing says "last".
        (
            FLEET,
            "autostop",
            "this machine is VM 1 (ESXI_SELF_VM=x): autostop stops it in its turn (suspend), "
            "not last\n"
            "VM 1 (nut-client): this machine: autostop: suspend (order 3) in its turn, not last\n"
            "note: this machine's VM 1 is in the autostart sequence: autostop suspends it in "
            "its turn, not last (the host sequence finishes without us); "
            "ESXI_STRATEGY=parallel, or taking it out of the sequence, keeps it for last\n"
            "this machine: autostop: suspend (order 3) in its turn, not last",
        ),
        # parallel: no autostop, ours goes last.
        (
            FLEET,
            "parallel",
            "this machine is VM 1 (ESXI_SELF_VM=x): it goes last, by suspend\n"
            "VM 1 (nut-client): this machine: suspended last, just before host poweroff\n"
            "this machine: suspended last, just before host poweroff",
        ),
        # Stop action none: autostop leaves it running, the final step suspends it last.
        (
            inventory(vm(1, "nut-client", order=2, stop="none"), vm(2, "web", order=1)),
            "autostop",
            "this machine is VM 1 (ESXI_SELF_VM=x): it goes last, by suspend\n"
            "VM 1 (nut-client): this machine: suspended last, just before host poweroff\n"
            "this machine: suspended last, just before host poweroff",
        ),
        # PowerOff in the sequence: said plainly, hard.
        (
            inventory(
                vm(1, "nut-client", order=2, stop="PowerOff"),
                vm(2, "web", order=1, stop="guestShutdown"),
            ),
            "autostop",
            "this machine is VM 1 (ESXI_SELF_VM=x): autostop stops it in its turn (hard "
            "power-off), not last\n"
            "VM 1 (nut-client): this machine: autostop: hard power-off (order 2) in its turn, "
            "not last\n"
            "note: this machine's VM 1 is in the autostart sequence: autostop powers it off "
            "hard in its turn, not last (the host sequence finishes without us); "
            "ESXI_STRATEGY=parallel, or taking it out of the sequence, keeps it for last\n"
            "this machine: autostop: hard power-off (order 2) in its turn, not last",
        ),
        # Autostop has nothing else to stop: it does not run, ours goes last.
        (
            inventory(vm(1, "nut-client", order=1, stop="suspend"), vm(2, "x", tools=False)),
            "autostop",
            "this machine is VM 1 (ESXI_SELF_VM=x): it goes last, by suspend\n"
            "VM 1 (nut-client): this machine: suspended last, just before host poweroff\n"
            "this machine: suspended last, just before host poweroff",
        ),
    ],
)
def test_this_machine_has_one_story(fleet: Inventory, strategy: str, expected: str) -> None:
    said = story(fleet, strategy, 1)
    assert said == expected
    assert not ("suspended last" in said and "in its turn" in said)


def test_unknown_tools_of_a_vm_autostop_would_shut_down_are_looked_at_on_the_host() -> None:
    """The one-call look does not say whether VMware Tools run: for each VM autostop would
    stop by guest shutdown, the host looks before autostop and suspends those without."""
    fleet = inventory(
        vm(2, "web", order=1, stop="guestShutdown", tools=None),
        vm(3, "db", order=2, stop="guestShutdown", tools=True),
        vm(1, "nut-client", order=3, stop="suspend", tools=None),
        vm(4, "legacy", tools=None),
    )
    plan = make_plan(fleet, SETTINGS, None)
    before, autostop = plan.phases
    assert before.tools_looks == (2,)  # not 3 (Tools known), not 1 (suspended by autostop)
    assert [step.vmid for step in before.steps] == [4]  # outside the sequence: ours
    assert before.wanted >= 20 and autostop.autostop
    assert "suspended before autostop if its VMware Tools do not run" in vm_fate(
        fleet.vms[0], plan, fleet
    )
    assert any("a look at the VMware Tools of 1 VM(s)" in line for line in describe_plan(
        fleet, plan, ""
    ))  # fmt: skip
    lines = sequence_script(plan).splitlines()
    assert "  for v in 2; do" in lines and 'w="4 $x"' in lines
    assert "    { if notools $v; then echo $v; fi; } &" in lines
    # Only Tools unknown brings a phase: with all known, autostop alone
    known = inventory(vm(2, "web", order=1, stop="guestShutdown", tools=True))
    assert [p.autostop for p in make_plan(known, SETTINGS, None).phases] == [True]
    alone = make_plan(inventory(vm(2, "web", order=1, stop="guestShutdown", tools=None)),
                      SETTINGS, None)  # fmt: skip
    assert [(p.steps, p.tools_looks) for p in alone.phases[:1]] == [((), (2,))]
    assert 'w="$x"' in sequence_script(alone).splitlines()
