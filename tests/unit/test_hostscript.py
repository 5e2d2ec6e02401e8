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
from esxi_suspend.host.inventory import inventory_command
from esxi_suspend.host.plan import make_plan
from esxi_suspend.host.script import (
    ALIVE_SECONDS,
    follow_log,
    log_path,
    look_seconds,
    plain_command,
    script_path,
    sequence_script,
    shutdown_command,
    start_request,
)


def test_every_phase_looks_at_its_vms_in_one_loop_and_a_watchdog_holds_the_deadline() -> None:
    plan = make_plan(FLEET, replace(SETTINGS, deadline=900), None, spent=2)
    script = sequence_script(plan)
    lines = script.splitlines()
    assert lines[0] == 'trap "" HUP'
    assert "  e=$(( t + 898 ))" in lines and plan.deadline == 898
    assert '    echo "$P alive"' in lines and f"    sleep {ALIVE_SECONDS}" in lines
    own, autostop = plan.phases
    for step in own.steps:
        stop = " || ".join(esxi.called(a.command(step.vmid)) for a in step.actions)
        assert f"{{ {stop}; }} 2>&1 | say &" in lines
    ids = " ".join(str(step.vmid) for step in own.steps)
    # one loop for the whole phase, not one per VM
    assert lines.count(f'w="{ids}"') == 1
    assert f"look {own.budget} {look_seconds(len(own.steps))}" in lines
    assert (
        lines.count(
            "{ call hostsvc/autostartmanager/autostop 2>&1 | say; : > $q.done; "
            "if mkdir $q.go 2>/dev/null; then fin; fi; } &"
        )
        == 1
    )
    # the final step starts the moment autostop ends, or at its budget: once, by `$q.go`
    assert lines.count("fin() {") == 1
    assert "    if mkdir $q.go 2>/dev/null; then " in script
    assert f"e=$(( $(date +%s) + {autostop.budget} ))" in lines
    assert "kill -0" not in script and "command -v" not in script  # no evidence for either
    # each host command once: phase 1's stop commands once each before the final step
    before_final = script.split("fin() {")[1].split("\n}\n", 1)[1]  # the phases
    for step in own.steps:
        assert before_final.count(esxi.called(step.actions[0].command(step.vmid))) == 1
    assert lines[lines.index("fin() {") :].index("  poweroff") > 0
    parallel = sequence_script(make_plan(FLEET, replace(SETTINGS, strategy="parallel"), None))
    assert parallel.splitlines()[-1] == "poweroff" and "fin() {" not in parallel
    assert not re.search(r"(?m)^\s*vim-cmd ", script.replace('held vim-cmd "$@"', ""))


def test_small_phases_look_every_second_big_ones_every_two() -> None:
    """Each look is a hostd round trip: only a phase of one or two VMs looks every second."""
    assert [look_seconds(n) for n in (1, 2, 3, 40)] == [1, 1, 2, 2]
    assert "    sleep $2" in sequence_script(make_plan(FLEET, SETTINGS, None)).splitlines()


def test_final_step_looks_only_at_vms_not_yet_seen_down() -> None:
    plan = make_plan(FLEET, SETTINGS, self_vm=1)
    lines = sequence_script(plan).splitlines()
    (own, _autostop) = plan.phases
    settled = {step.vmid for step in own.steps}
    autostopped = [v for v in plan.watched if v not in settled]
    # VMs the phase's loop saw down ($r holds the others); autostop's VMs always
    assert f"  for v in $r {' '.join(map(str, autostopped))}; do" in lines
    assert (
        '    { if down $v; then echo "$P VM $v down"; else echo "$P VM $v still running: '
        'suspending it"; call vmsvc/power.suspend $v 2>&1 | say; fi; } &'
    ) in lines
    assert '  if [ -n "$p" ]; then wait $p; fi' in lines  # never a bare `wait`: the watchdog
    assert "sleep 20" not in lines  # no fixed wait for the suspends


def test_straggler_poweroff_issues_nothing_more() -> None:
    plan = make_plan(FLEET, replace(SETTINGS, straggler_action="poweroff"), None)
    script = sequence_script(plan)
    assert "power.suspend" not in script.split("fin() {")[1].split("\n}\n", 1)[0]
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
        expansions = set(re.findall(r"\$(?:\(\(|\(|[A-Za-z0-9!?@]+)", script))
        allowed = {"$((", "$(", "$P", "$1", "$2", "$e", "$p", "$r", "$v", "$l", "$!", "$?"}
        allowed |= {"$0", "$q", "$w", "$u", "$n", "$s", "$cz", "$ck", "$co", "$cs", "$cw", "$@"}
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
    assert f"  if [ $n -ge {esxi.CALLS_AT_ONCE} ]; then wait; n=0; fi" in command
    assert esxi.CALLS_AT_ONCE == 8
    for label in ("status $s", "vms", "defaults", "sequence", "summary $id", "poweroff"):
        assert f"mark {label}" in command
    assert esxi.MARK_FUNCTION in command
    assert 'while read -r id rest || [ -n "$id" ]; do' in command  # a last line without \n
    for bad in (-1, 10**9, True):
        with pytest.raises(ValueError):
            inventory_command(bad)


def test_a_marker_in_an_annotation_stays_text() -> None:
    listing = "Vmid Name File Guest OS Version Annotation\n1 a [ds] a/a.vmx g vmx-13 x\n@@1 vms\n"
    text = f"\n@@7 vms\n{listing}\n@@7 poweroff\n/bin/poweroff\n"
    sections = esxi.split_marked(text, 7)
    assert sections["vms"] == listing.rstrip("\n")
    assert sections["poweroff"] == "/bin/poweroff"


def test_a_marker_after_an_output_without_a_final_newline_is_on_its_own_line() -> None:
    """`mark` prints a newline first: the marker never glues to an output's last line, and
    the parser drops that newline again, whichever way the output ended."""
    for listing in ("1 a [ds] a/a.vmx g vmx-13", "1 a [ds] a/a.vmx g vmx-13\n"):
        text = f"\n@@7 vms\n{listing}\n@@7 defaults\n(fault) {{}}\n@@7 poweroff\n"
        sections = esxi.split_marked(text, 7)
        assert sections == {"vms": listing.rstrip("\n"), "defaults": "(fault) {}", "poweroff": ""}


def test_the_shutdown_command_is_the_same_for_any_number_of_vms() -> None:
    """The script goes to a file on the host (read back whole before it runs), started as
    `sh FILE`: the command line does not grow with the VM count."""
    path = log_path(1700000000, 42)
    assert path == "${TMPDIR:-/tmp}/esxi-suspend-1700000000-42.log"
    assert script_path(path) == "${TMPDIR:-/tmp}/esxi-suspend-1700000000-42.sh"
    command = shutdown_command(123456789, path, 250)
    assert command.startswith(inventory_command(123456789) + "\nmark ready\n")
    assert "'" not in command  # nothing to quote: the script comes on the command's input
    assert f'f="{script_path(path)}"\ncat > "$f" || {{ mark incomplete; rm -f "$f"; exit 1; }}' in (
        command
    )
    # half a script (a session lost while sending it, a full /tmp) never runs
    assert '[ "${#s}" = "$size" ] || { mark incomplete; rm -f "$f"; exit 1; }' in command
    assert "if nohup true > /dev/null 2>&1 < /dev/null; then n=nohup; fi" in command
    assert f'  ( $n sh "$f" >> "{path}" 2>&1 < /dev/null & )\n  tail -n 100000 -f' in command
    assert "  ( sleep 250; kill $k ) > /dev/null 2>&1 < /dev/null &" in command  # bounded
    assert f'  $n sh "$f" >> "{path}" 2>&1 < /dev/null\n  cat "{path}"\nelse' in command
    assert "command -v nohup" not in command and 'sh -c "$s"' not in command
    assert follow_log(path, 30).startswith(f'tail -n 100000 -f "{path}" &\nk=$!\n( sleep 30;')
    assert start_request("echo a\npoweroff", wait=True) == "wait 15\necho a\npoweroff"
    assert start_request("x", wait=False) == "follow 1\nx"
    for counted_otherwise in ("echo café", "poweroff\n"):  # ${#s} and $(cat) would differ
        with pytest.raises(ValueError):
            start_request(counted_otherwise, wait=False)
    for bad in ("/etc/passwd", "${TMPDIR:-/tmp}/esxi-suspend-1.log; rm -rf /", "/tmp/x.log"):
        with pytest.raises(ValueError):
            shutdown_command(1, bad, 10)
        with pytest.raises(ValueError):
            follow_log(bad, 10)


def test_the_plain_path_is_detached_and_bounded() -> None:
    command = plain_command(42, 37)
    assert '( trap "" HUP; $n vim-cmd hostsvc/autostartmanager/autostop; $n poweroff )' in (command)
    assert '( trap "" HUP; sleep 37; $n poweroff ) > /dev/null 2>&1 < /dev/null &' in command
    assert command.endswith('echo "@@42 started"')
    for bad in (-1, True):
        with pytest.raises(ValueError):
            plain_command(42, bad)


def test_calls_retry_what_a_busy_hostd_answers_and_know_a_fault_by_its_text() -> None:
    functions = esxi.hostd_functions("$q")
    for text in esxi.TRANSIENT_FAULTS:
        assert f'*"{text}"*' in functions
    assert '*"(vim.fault."*|*"(vmodl.fault."*|*" failed"*) if [ $cs -eq 0 ]; then cs=1; fi' in (
        functions
    )
    assert " ".join(f"$q.{n}" for n in range(1, esxi.CALLS_AT_ONCE + 1)) in functions
    assert esxi.called("vim-cmd vmsvc/power.off 3") == "call vmsvc/power.off 3"
    with pytest.raises(ValueError):
        esxi.called("poweroff")
