"""The host sequence script and the inventory command, as text: pure, no host.

That busybox ash runs them is proven in tests/integration (fake hosts under `busybox sh`);
here: what goes into them, and that nothing from the host ever does.
"""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
from test_plan import FLEET, inventory, vm
from test_shutdown import SETTINGS

from esxi_suspend.host import esxi
from esxi_suspend.host.inventory import CONCURRENT_CALLS, inventory_command
from esxi_suspend.host.plan import make_plan
from esxi_suspend.host.script import (
    follow_log,
    log_path,
    look_seconds,
    sequence_script,
    shutdown_command,
    start_request,
)


def test_every_phase_settles_its_own_vms_and_a_watchdog_holds_the_deadline() -> None:
    plan = make_plan(FLEET, replace(SETTINGS, deadline=900), None, spent=2)
    script = sequence_script(plan)
    lines = script.splitlines()
    assert lines[0] == 'trap "" HUP'
    assert f"( sleep {plan.deadline}; " in script and plan.deadline == 898
    own, autostop = plan.phases
    for step in own.steps:
        stop = f"{{ {step.command()}; }} 2>&1 | say"
        every = look_seconds(len(own.steps))
        assert f"{{ {stop}; settle {step.vmid} {own.budget} {every}; }} &" in lines
        assert f'wait $w{step.vmid} || r="$r {step.vmid}"' in lines
    assert lines.count("vim-cmd hostsvc/autostartmanager/autostop 2>&1 | say &") == 1
    assert f"e=$(( $(date +%s) + {autostop.budget} ))" in lines
    # each host command once: phase 1's stop commands once each before the final step
    before_final = script.split("$P final:")[0]
    for step in own.steps:
        assert before_final.count(step.command()) == 1
    assert lines[-1] == "poweroff"


def test_small_phases_look_every_second_big_ones_every_two() -> None:
    """Each look is a hostd round trip: only a phase of one or two VMs looks every second."""
    assert [look_seconds(n) for n in (1, 2, 3, 40)] == [1, 1, 2, 2]
    assert "    sleep $3" in sequence_script(make_plan(FLEET, SETTINGS, None)).splitlines()


def test_final_step_looks_only_at_vms_not_yet_seen_down() -> None:
    plan = make_plan(FLEET, SETTINGS, self_vm=1)
    lines = sequence_script(plan).splitlines()
    (own, _autostop) = plan.phases
    settled = {step.vmid for step in own.steps}
    autostopped = [v for v in plan.watched if v not in settled]
    # VMs whose own job saw them down ($r holds the others); autostop's VMs always
    assert f"for v in $r {' '.join(map(str, autostopped))}; do" in lines
    assert (
        '  { if down $v; then echo "$P VM $v down"; else echo "$P VM $v still running: '
        'suspending it"; vim-cmd vmsvc/power.suspend $v 2>&1 | say; fi; } &'
    ) in lines
    assert 'if [ -n "$p" ]; then wait $p; fi' in lines  # never a bare `wait`: the watchdog
    assert "sleep 20" not in lines  # no fixed wait for the suspends


def test_straggler_poweroff_issues_nothing_more() -> None:
    plan = make_plan(FLEET, replace(SETTINGS, straggler_action="poweroff"), None)
    script = sequence_script(plan)
    assert "power.suspend" not in script.split("$P final")[-1]
    assert "left to the host poweroff" in script


def test_unknown_power_state_gets_a_look_at_the_end() -> None:
    fleet = inventory(vm(2, "web"), replace(vm(3, "who knows"), state=None))
    plan = make_plan(fleet, replace(SETTINGS, strategy="parallel"), None)
    assert plan.watched == (2,) and plan.final_check == (2, 3)
    assert "for v in $r 3; do" in sequence_script(plan).splitlines()


def test_nothing_from_the_host_reaches_the_script() -> None:
    hostile = inventory(
        vm(7, "x; poweroff"),
        vm(8, "$(reboot)", order=1),
        vm(9, 'it\'s "quoted"\nnewline', tools=False),
    )
    tame = inventory(*(replace(i, vm=replace(i.vm, name="x")) for i in hostile.vms))
    for strategy in ("autostop", "parallel"):
        settings = replace(SETTINGS, strategy=strategy)
        script = sequence_script(make_plan(hostile, settings, None))
        assert script == sequence_script(make_plan(tame, settings, None))
        assert "reboot" not in script and "quoted" not in script and "'" not in script
        # the only expansions: our variables, positional parameters, $! and the clock
        expansions = set(re.findall(r"\$(?:\(\(|\(|[A-Za-z0-9!?]+)", script))
        allowed = {"$((", "$(", "$P", "$1", "$2", "$3", "$e", "$a", "$p", "$r", "$v", "$l", "$!"}
        allowed |= {f"$w{vmid}" for vmid in (7, 8, 9)}
        assert expansions <= allowed, expansions - allowed


@pytest.mark.parametrize("bad", [-1, True])
def test_budgets_must_be_whole_seconds(bad: int) -> None:
    plan = make_plan(FLEET, SETTINGS, None)
    with pytest.raises(ValueError):
        sequence_script(replace(plan, deadline=bad))


def test_inventory_is_one_command_of_constants_and_our_token() -> None:
    command = inventory_command(123456789)
    assert "'" not in command
    assert command.startswith('m="@@123456789"\n')
    assert f"if [ $n -ge {CONCURRENT_CALLS} ]; then wait; n=0; fi" in command
    for label in ("status $s", "vms", "defaults", "sequence", "summary $id", "poweroff"):
        assert f'echo "$m {label}"' in command
    for bad in (-1, 10**9, True):
        with pytest.raises(ValueError):
            inventory_command(bad)


def test_a_marker_in_an_annotation_stays_text() -> None:
    listing = "Vmid Name File Guest OS Version Annotation\n1 a [ds] a/a.vmx g vmx-13 x\n@@1 vms\n"
    text = f"@@7 vms\n{listing}@@7 poweroff\n/bin/poweroff\n"
    sections = esxi.split_marked(text, 7)
    assert sections["vms"] == listing.rstrip("\n")
    assert sections["poweroff"] == "/bin/poweroff"


def test_one_shutdown_command_reads_the_script_whole_then_follows_its_log() -> None:
    path = log_path(1700000000, 42)
    assert path == "${TMPDIR:-/tmp}/esxi-suspend-1700000000-42.log"
    command = shutdown_command(123456789, path)
    assert command.startswith(inventory_command(123456789) + '\necho "$m ready"\n')
    assert "'" not in command  # nothing to quote: the script comes on the command's input
    # half a script (a session lost while sending it) never runs
    assert '[ "${#s}" = "$size" ] || { echo "$m incomplete"; exit 1; }' in command
    assert "if command -v nohup >/dev/null 2>&1; then n=nohup; fi" in command
    assert f'  ( $n sh -c "$s" >> "{path}" 2>&1 < /dev/null & )\n  {follow_log(path)}\nfi' in (
        command
    )
    assert f'  $n sh -c "$s" >> "{path}" 2>&1 < /dev/null\n  cat "{path}"\nelse' in command
    assert follow_log(path) == f'tail -n 100000 -f "{path}"'
    assert start_request("echo a\npoweroff", wait=True) == "wait 15\necho a\npoweroff"
    assert start_request("x", wait=False) == "follow 1\nx"
    for counted_otherwise in ("echo café", "poweroff\n"):  # ${#s} and $(cat) would differ
        with pytest.raises(ValueError):
            start_request(counted_otherwise, wait=False)
    for bad in ("/etc/passwd", "${TMPDIR:-/tmp}/esxi-suspend-1.log; rm -rf /", "/tmp/x.log"):
        with pytest.raises(ValueError):
            shutdown_command(1, bad)
        with pytest.raises(ValueError):
            follow_log(bad)
