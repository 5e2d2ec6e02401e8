"""The one-call look: `esxcli vm process list` parsed, tied to getallvms rows, and used by the
inventory in place of one `get.summary` per VM (or checked against them by `check`)."""

from __future__ import annotations

import pytest
from test_esxi import DEFAULTS, GETALLVMS, SEQUENCE
from test_shutdown import INVENTORY, SETTINGS, FakeRemote, inventory_output, ok

from esxi_suspend.errors import ExitCode
from esxi_suspend.host import esxi
from esxi_suspend.host.inventory import INVENTORY_FILES, inventory_command, parse_inventory
from esxi_suspend.host.plan import Action, choose_step, find_self_vm, make_plan
from esxi_suspend.host.processlist import RunningVm, parse_process_list, place_running
from esxi_suspend.host.shutdown import LOOK_STEP, HostResult, check_host
from esxi_suspend.host.vmlist import parse_getallvms
from esxi_suspend.host.vmstate import PowerState

# The shape of public pastes from 5.x-8.x hosts (a leading blank line on some).
LISTING = """
nut-client
   World ID: 527611
   Process ID: 0
   VMX Cartel ID: 527610
   UUID: 56 4d 89 0e 68 65 d4 86-22 78 80 af 60 16 e0 e0
   Display Name: nut-client
   Config File: /vmfs/volumes/661ab9c9-ea3e9a38-f0ba-d89ef3ff34e7/nut-client/nut-client.vmx

Web Server (prod)
   World ID: 527647
   Process ID: 0
   VMX Cartel ID: 527639
   UUID: 56 4d ce 3a 6f a2 ca cd-59 aa de f6 7f f3 0c 8c
   Display Name: Web Server (prod)
   Config File: /vmfs/volumes/661ab9c9-ea3e9a38-f0ba-d89ef3ff34e7/Web Server (prod)/Web Server (prod).vmx
"""  # noqa: E501


def test_parse_reads_each_block() -> None:
    for text in (LISTING, LISTING.replace("\n", "\r\n"), LISTING.lstrip("\n").rstrip("\n")):
        running = parse_process_list(text)
        assert [r.name for r in running] == ["nut-client", "Web Server (prod)"]
        assert running[0].bios_uuid == "56 4d 89 0e 68 65 d4 86-22 78 80 af 60 16 e0 e0"
        assert running[1].config_file.endswith("/Web Server (prod)/Web Server (prod).vmx")
    assert parse_process_list("") == []


@pytest.mark.parametrize(
    "text",
    [
        "   World ID: 1\n",  # a field before any name
        "vm\n   World ID: 1\n   Display Name: vm\n",  # no Config File
        "Error: Unknown command or namespace vm process list\n   usage: esxcli\n",
    ],
)
def test_parse_refuses_what_it_does_not_know(text: str) -> None:
    with pytest.raises(esxi.ParseError):
        parse_process_list(text)


def running(path: str, uuid: str = "56 4d 00") -> RunningVm:
    return RunningVm("x", uuid, path)


def test_place_by_vmx_path_on_any_volume() -> None:
    vms = parse_getallvms(GETALLVMS)
    placed = place_running(
        vms,
        [
            running("/vmfs/volumes/5b64-uuid/nut-client/nut-client.vmx", "a"),
            running("/vmfs/volumes/ssd 2/win2019/win2019.vmx", "b"),
        ],
    )
    assert placed.running == {1: "a", 15: "b"}
    assert placed.unknown == frozenset()


def test_non_ascii_shown_as_question_marks_still_fits() -> None:
    row = "7      caf?       [datastore1] caf?/caf?.vmx   debian11_64Guest   vmx-19"
    vms = parse_getallvms(f"Vmid   Name   File   Guest OS   Version   Annotation\n{row}\n")
    placed = place_running(vms, [running("/vmfs/volumes/abc/café/café.vmx")])
    assert set(placed.running) == {7}


def test_an_empty_datastore_path_is_the_config_file_itself() -> None:
    row = "1      vCLS-1   [] /var/run/crx/infra/vCLS-1/vCLS-1.vmx   other4xLinux64Guest   vmx-15"
    vms = parse_getallvms(f"Vmid   Name   File   Guest OS   Version   Annotation\n{row}\n")
    assert set(place_running(vms, [running("/var/run/crx/infra/vCLS-1/vCLS-1.vmx")]).running) == {1}


def test_a_listed_vm_that_fits_no_single_row_makes_the_rest_unknown() -> None:
    rows = [
        "1      a   [ds1] same/same.vmx   debian11_64Guest   vmx-19",
        "2      b   [ds2] same/same.vmx   debian11_64Guest   vmx-19",
        "3      c   [ds1] c/c.vmx         debian11_64Guest   vmx-19",
    ]
    vms = parse_getallvms("Vmid   Name   File   Guest OS   Version\n" + "\n".join(rows) + "\n")
    # By the volume's name, the datastore tells them apart.
    assert set(place_running(vms, [running("/vmfs/volumes/ds2/same/same.vmx")]).running) == {2}
    # By its UUID it cannot: neither is taken for off.
    placed = place_running(vms, [running("/vmfs/volumes/5b64-uuid/same/same.vmx")])
    assert placed.running == {}
    assert placed.unknown == {1, 2, 3}
    lost = place_running(vms, [running("/vmfs/volumes/u/c/c.vmx"), running("/x/other.vmx")])
    assert set(lost.running) == {3}
    assert lost.unknown == {1, 2}


def one_call_output(listing: str = LISTING, status: int = 0) -> str:
    """What the inventory prints when esxcli answered: no summary sections."""
    return (
        f"@@TOKEN status 0\n@@TOKEN vms\n{GETALLVMS}\n@@TOKEN defaults\n{DEFAULTS}"
        f"@@TOKEN sequence\n{SEQUENCE}@@TOKEN running {status}\n{listing}\n"
        "@@TOKEN poweroff\n/sbin/poweroff\n"
    ).replace("TOKEN", "5")


def test_inventory_from_one_call() -> None:
    inventory = parse_inventory("esxi1", one_call_output(), 5, 0, "")
    by_id = inventory.by_id()
    assert by_id[1].state is PowerState.ON and by_id[12].state is PowerState.ON
    assert by_id[15].state is PowerState.NOT_RUNNING and not by_id[15].running
    assert all(info.tools_running is None for info in inventory.vms)
    assert by_id[1].bios_uuid == "564d890e6865d486227880af6016e0e0"
    assert inventory.look == "esxcli vm process list: 2 of 3 VM(s) running"
    assert inventory.one_call
    # This machine is still found by its SMBIOS UUID (esxcli's UUID is the BIOS UUID).
    assert find_self_vm(inventory, SETTINGS, "564d890e6865d486227880af6016e0e0")[0] == 1
    # Tools unknown: a guest shutdown is tried, the suspend follows its fault at once.
    step = choose_step(by_id[12], inventory, SETTINGS)
    assert step.actions == (Action.SHUTDOWN, Action.SUSPEND)
    plan = make_plan(inventory, SETTINGS, 1)
    assert plan.unknown == ()


def test_an_unreadable_listing_leaves_every_state_unknown() -> None:
    text = one_call_output("vm\n   World ID: 1\n   Display Name: vm")
    inventory = parse_inventory("esxi1", text, 5, 0, "")
    assert all(info.state is None for info in inventory.vms)
    assert "every VM's state unknown" in inventory.look
    plan = make_plan(inventory, SETTINGS, None)
    assert set(plan.final_check) == {1, 12, 15}  # looked at, and suspended if running


def test_without_esxcli_each_vm_is_read() -> None:
    summaries = inventory_output(GETALLVMS, {15: "Suspended"}).replace("TOKEN", "5")
    text = summaries.replace("@@5 poweroff", "@@5 running 127\nsh: esxcli: not found\n@@5 poweroff")
    inventory = parse_inventory("esxi1", text, 5, 0, "")
    assert inventory.by_id()[15].state is PowerState.SUSPENDED
    assert inventory.by_id()[12].tools_running is True
    assert not inventory.one_call
    assert inventory.look == (
        "vim-cmd vmsvc/get.summary per VM (esxcli vm process list: sh: esxcli: not found)"
    )


def test_the_host_text_reads_summaries_only_without_a_listing() -> None:
    fast, full = inventory_command(9), inventory_command(9, every_summary=True)
    assert "\ng=0\n" in fast and "\ng=1\n" in full
    assert fast.replace("\ng=0\n", "\ng=1\n") == full
    assert f"{esxi.PROCESS_LIST} > $t.run 2>&1 &" in fast
    assert f'*"{esxi.PROCESS_LIST_FIELD}"*' in fast
    assert "if [ $x -eq 0 ] && [ $g -eq 0 ]; then ids=; fi" in fast
    assert INVENTORY_FILES in fast


def check_with(text: str) -> HostResult:
    remote = FakeRemote({INVENTORY: ok(INVENTORY, text)})
    result = HostResult("esxi1")
    check_host(remote, SETTINGS, result)
    return result


def both_reads(states: dict[int, str]) -> str:
    """check's inventory: esxcli's listing and every VM's summary."""
    return inventory_output(GETALLVMS, states).replace(
        "@@TOKEN poweroff", f"@@TOKEN running 0\n{LISTING}\n@@TOKEN poweroff"
    )


def test_check_proves_the_one_call_look_against_each_summary() -> None:
    result = check_with(both_reads({15: "Powered off"}))
    step = next(s for s in result.steps if s.name == LOOK_STEP)
    assert step.exit_code == ExitCode.OK
    assert "agrees with `vim-cmd vmsvc/get.summary` on all 3 VM(s)" in step.detail
    assert result.exit_code == ExitCode.OK


def test_check_is_not_ready_when_the_two_reads_disagree() -> None:
    result = check_with(both_reads({}))  # 15 runs, esxcli does not list it
    step = next(s for s in result.steps if s.name == LOOK_STEP)
    assert step.exit_code == ExitCode.REMOTE_COMMAND
    assert "disagree on which VMs run (VM 15)" in step.detail
    assert "check --capture FILE" in step.detail
    assert f"  {LOOK_STEP}: FAILED: " in result.report  # shown, not only logged
    assert result.exit_code != ExitCode.OK


def test_check_says_when_the_one_call_look_is_missing() -> None:
    result = check_with(inventory_output(GETALLVMS, {}))
    step = next(s for s in result.steps if s.name == LOOK_STEP)
    assert step.exit_code == ExitCode.OK
    assert step.detail.startswith("not available here: vim-cmd vmsvc/get.summary per VM")


def test_check_plans_and_rehearses_what_a_shutdown_would_run() -> None:
    """check reads every VM's Tools, a shutdown does not: check's plan is the shutdown's (the
    host looks at the Tools of VM 12, which autostop would shut down), and its report says
    what that look will find."""
    text = both_reads({15: "Powered off"}).replace(
        'stopAction = "systemDefault"', 'stopAction = "GuestShutdown"', 1
    )
    before, after = text.split("@@TOKEN summary 12\n")
    after = after.replace('"guestToolsRunning"', '"guestToolsNotRunning"', 1)
    no_tools = f"{before}@@TOKEN summary 12\n{after}"
    assert no_tools != text
    result = check_with(no_tools)
    assert result.exit_code == ExitCode.OK, result.steps
    assert "    |     { if notools $v; then echo $v; fi; } &" in result.report
    assert "suspend, phase 1 (before autostop): no VMware Tools (the host looks first)" in (
        result.report
    )
    inventory = parse_inventory("esxi1", no_tools.replace("TOKEN", "5"), 5, 0, "")
    assert inventory.by_id()[12].tools_running is False  # shown in check's table
    assert inventory.as_a_shutdown_reads_it().by_id()[12].tools_running is None
