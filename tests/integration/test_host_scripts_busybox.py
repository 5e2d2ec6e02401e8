"""The package's two command lines, run by busybox ash on the fake ESXi hosts.

ESXi runs command lines with busybox `ash`; the fake hosts do too (`busybox sh -c`, and `sh` on
their PATH is busybox). The inventory is `inventory_command(TOKEN)` and the host sequence is
`sequence_script(plan)` for a ShutdownPlan built here (phase 1 "before autostop": VM 12 guest
shutdown else suspend, VM 15 suspend; phase 2 autostop; our own VM 1 last; deadline and budgets
short for real seconds), started with tests/detached.py's line to its `log_path(...)` exactly as the
package sends them, with the plain OpenSSH client: if they pass here, the text the package
builds is busybox-ash clean.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from detached import detached
from sshservers import FAKEHOST_DATA, SshServer, host_processes
from test_real_shapes import DATASTORE_NAMES, SORTED_AS_TEXT

from esxi_suspend.host import esxi
from esxi_suspend.host.inventory import inventory_command, parse_inventory
from esxi_suspend.host.plan import Action, Phase, ShutdownPlan, VmStep
from esxi_suspend.host.script import (
    HOST_TEXT,
    LOG_PREFIX,
    READY,
    STARTED,
    log_path,
    sequence_script,
    shutdown_command,
    start_request,
)
from esxi_suspend.host.vmlist import parse_getallvms
from esxi_suspend.host.vmstate import PowerState

pytestmark = pytest.mark.servers

TOKEN = 314159265  # the inventory's marker token (random in the package; fixed here)
MARK = f"@@{TOKEN} "
INVENTORY = inventory_command(TOKEN)

# The fake esxcli's volume UUID of datastore1 (md5 of the name, shaped as a VMFS volume's).
DATASTORE1 = "c8aeda26-ae3ab462-5a83-e5057947f637"

LOG_NAME = "esxi-suspend-1-2.log"
LOG = log_path(1, 2)  # ${TMPDIR:-/tmp}/esxi-suspend-1-2.log
PREFIX = f"{LOG_PREFIX} "
HOST_LINE = f"{PREFIX}{HOST_TEXT} "  # a line a host command printed, relayed by the script
# What the fake vim-cmd itself prints into the log, as the script relays it: `say` reads each
# line with `read -r`, which drops the blanks at either end.
VIM_CMD_LINES = {
    "Suspending VM:",
    "(vim.fault.ToolsUnavailable) {",
    "faultCause = (vmodl.MethodFault) null,",
    'msg = "Cannot complete operation because VMware Tools is not running in this virtual'
    ' machine."',
    "}",
}
# `VM N down after S s`: S, seconds since the sequence started, varies; the tests compare
# `VM N down after * s` and look at S apart.
DOWN_AFTER = re.compile(r"VM (\d+) down after (\d+) s")


def ssh(server: SshServer, command: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*server.ssh_argv(), command],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def sections(output: str) -> list[tuple[str, list[str]]]:
    """`@@TOKEN name arg` marker lines (as `name arg`) and the lines under each, in order."""
    found: list[tuple[str, list[str]]] = []
    for line in output.splitlines():
        if line.startswith(MARK):
            if found:  # `mark` prints a newline before each marker: an empty line, here
                assert found[-1][1][-1:] == [""], found[-1]
                found[-1][1].pop()
            found.append((line[len(MARK) :], []))
        elif found:
            found[-1][1].append(line)
        elif line:
            raise AssertionError(f"output before the first marker: {line!r}")
    if found and found[-1][1][-1:] == [""]:  # cut before a next marker (READY)
        found[-1][1].pop()
    # the package's own parser reads the same sections
    assert esxi.split_marked(output, TOKEN) == {k: "\n".join(v) for k, v in found}
    return found


def vm_ids(listing: str) -> list[str]:
    return [line.split()[0] for line in listing.splitlines() if re.match(r"\d+\s", line)]


def summary_field(lines: list[str], name: str) -> str:
    values = [m[1] for line in lines if (m := re.fullmatch(rf"\s+{name} = (.*?),?", line))]
    assert len(values) == 1, (name, lines)
    return values[0]


# -- the inventory command ---------------------------------------------------------------------


def test_inventory_command_runs_under_busybox(fake_esxi: SshServer) -> None:
    """check's form: esxcli's listing and every VM's get.summary."""
    fake_esxi.write_fake("state/15", "Suspended")

    result = ssh(fake_esxi, inventory_command(TOKEN, every_summary=True))

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    found = sections(result.stdout)
    listing = (FAKEHOST_DATA / "getallvms.txt").read_text()
    ids = vm_ids(listing)
    assert ids == ["1", "12", "15"]
    assert [marker for marker, _ in found] == [
        "status 0",
        "vms",
        "defaults",
        "sequence",
        "running 0",
        *(f"summary {i}" for i in ids),
        "poweroff",
    ]
    body = dict(found)
    assert [line for line in body["running 0"] if "Config File: " in line] == [
        f"   Config File: /vmfs/volumes/{DATASTORE1}/nut-client/nut-client.vmx",
        f"   Config File: /vmfs/volumes/{DATASTORE1}/Web Server [prod] (v2)/"
        "Web Server [prod] (v2).vmx",
    ]
    assert "\n".join(body["vms"]) + "\n" == listing
    assert "\n".join(body["defaults"]) + "\n" == (FAKEHOST_DATA / "get_defaults.txt").read_text()
    assert "\n".join(body["sequence"]) + "\n" == (
        (FAKEHOST_DATA / "get_autostartseq.txt").read_text()
    )
    for i in ids:
        assert body[f"summary {i}"][:3] == ["Listsummary:", "", "(vim.vm.Summary) {"]
    assert summary_field(body["summary 12"], "name") == '"Web Server [prod] (v2)"'
    assert summary_field(body["summary 15"], "powerState") == '"suspended"'
    # where ESXi has it, looked at with `[ -x ]` (this machine's own, here: the fake on PATH
    # is what the host sequence runs)
    has_poweroff = os.access(esxi.POWEROFF_PATH, os.X_OK)
    assert body["poweroff"] == ([esxi.POWEROFF_PATH] if has_poweroff else [])
    assert Counter(fake_esxi.commands()) == Counter(
        [
            "vim-cmd vmsvc/getallvms",
            "vim-cmd hostsvc/autostartmanager/get_defaults",
            "vim-cmd hostsvc/autostartmanager/get_autostartseq",
            "esxcli vm process list",
            *(f"vim-cmd vmsvc/get.summary {i}" for i in ids),
        ]
    )
    assert list(fake_esxi.host_tmp.iterdir()) == []  # its temporary files are gone
    inventory = parse_inventory("fake", result.stdout, TOKEN, 0, "")
    assert inventory.look_differs == ()


def test_a_shutdown_reads_which_vms_run_in_one_call(fake_esxi: SshServer) -> None:
    """The shutdown's form: which VMs run from esxcli alone, whatever their number."""
    fake_esxi.write_fake("state/15", "Suspended")

    result = ssh(fake_esxi, INVENTORY)

    assert result.returncode == 0, result.stderr
    found = [marker for marker, _ in sections(result.stdout)]
    assert found == ["status 0", "vms", "defaults", "sequence", "running 0", "poweroff"]
    inventory = parse_inventory("fake", result.stdout, TOKEN, 0, "")
    states = {info.vmid: info.state for info in inventory.vms}
    assert states == {1: PowerState.ON, 12: PowerState.ON, 15: PowerState.NOT_RUNNING}
    assert inventory.by_id()[1].bios_uuid == "564d0000000000000000000000000001"
    assert sorted(fake_esxi.commands()) == sorted(
        [
            "vim-cmd vmsvc/getallvms",
            "vim-cmd hostsvc/autostartmanager/get_defaults",
            "vim-cmd hostsvc/autostartmanager/get_autostartseq",
            "esxcli vm process list",
        ]
    )
    assert list(fake_esxi.host_tmp.iterdir()) == []


@pytest.mark.parametrize("knob", ["esxcli_missing", "esxcli_namespace_missing"])
def test_without_the_one_call_look_each_vm_is_read(fake_esxi: SshServer, knob: str) -> None:
    fake_esxi.write_fake("state/15", "Suspended")
    fake_esxi.write_fake(knob, "")

    result = ssh(fake_esxi, INVENTORY)

    assert result.returncode == 0, result.stderr
    inventory = parse_inventory("fake", result.stdout, TOKEN, 0, "")
    assert inventory.by_id()[15].state is PowerState.SUSPENDED
    assert inventory.by_id()[12].tools_running is True
    assert inventory.look.startswith("vim-cmd vmsvc/get.summary per VM")
    summaries = [c for c in fake_esxi.commands() if "get.summary" in c]
    assert len(summaries) == 3


@pytest.mark.parametrize(
    "listing", [SORTED_AS_TEXT, DATASTORE_NAMES], ids=["sorted-as-text", "datastore-names"]
)
def test_a_real_listing_without_its_final_newline(fake_esxi: SshServer, listing: str) -> None:
    """Real getallvms captures can end without a final newline: every section after the
    listing is still there, and esxcli's running VMs are tied to its rows."""
    fake_esxi.write_fake("getallvms.txt", listing.rstrip("\n"))
    vms = parse_getallvms(listing)
    fake_esxi.write_fake(f"state/{vms[0].vmid}", "Powered off")

    result = ssh(fake_esxi, INVENTORY)

    assert result.returncode == 0, result.stderr
    inventory = parse_inventory("fake", result.stdout, TOKEN, 0, "")
    assert [info.vm for info in inventory.vms] == vms
    assert inventory.defaults.stop_delay > 0 and inventory.poweroff_path in ("", "/sbin/poweroff")
    running = {info.vmid for info in inventory.vms if info.running}
    assert running == {vm.vmid for vm in vms[1:]}, inventory.look


def test_inventory_of_many_vms_runs_8_summaries_at_a_time(fake_esxi: SshServer) -> None:
    states = ["Powered on", "Powered off", "Suspended"]
    rows = [
        f"{i:<6} vm {i} (test)    [ds {i % 3}] vm {i}/vm {i}.vmx   otherGuest   vmx-13"
        for i in range(1, 24)
    ]
    fake_esxi.write_fake(
        "getallvms.txt", "Vmid   Name   File   Guest OS   Version   Annotation\n" + "\n".join(rows)
    )
    for i in range(1, 24):
        fake_esxi.write_fake(f"state/{i}", states[i % 3])
    fake_esxi.set_latency(0.5)

    started = time.monotonic()
    result = ssh(fake_esxi, inventory_command(TOKEN, every_summary=True))
    elapsed = time.monotonic() - started

    assert result.returncode == 0, result.stderr
    body = dict(sections(result.stdout))
    power = {"Powered on": '"poweredOn"', "Powered off": '"poweredOff"', "Suspended": '"suspended"'}
    for i in range(1, 24):
        lines = body[f"summary {i}"]
        assert summary_field(lines, "name") == f'"vm {i} (test)"'
        assert summary_field(lines, "vmPathName") == f'"[ds {i % 3}] vm {i}/vm {i}.vmx"'
        assert summary_field(lines, "powerState") == power[states[i % 3]]
    # Four rounds of 0.5 s (3 listings and esxcli, then 8, 8 and 7 summaries); one by one
    # would take 13 s.
    assert elapsed < 8.0, elapsed
    assert list(fake_esxi.host_tmp.iterdir()) == []


# -- the host sequence, started detached ---------------------------------------------------------


def plan(*, deadline: int, vm_budget: int, autostop_budget: int) -> ShutdownPlan:
    """Phase 1 before autostop: VM 12 guest shutdown else suspend, VM 15 suspend (both within
    `vm_budget`); phase 2 autostop (within `autostop_budget`); our own VM 1 suspended last."""
    steps = (
        VmStep(12, (Action.SHUTDOWN, Action.SUSPEND), vm_budget),
        VmStep(15, (Action.SUSPEND,), vm_budget),
    )
    return ShutdownPlan(
        strategy="autostop",
        deadline=deadline,
        phases=(
            Phase("before autostop", steps, vm_budget, vm_budget),
            Phase("autostop", (), autostop_budget, autostop_budget, autostop=True),
        ),
        watched=(12, 15),
        straggler_action=Action.SUSPEND,
        self_vm=1,
        notes=(),
    )


def start_sequence(
    server: SshServer, *, deadline: int, vm_budget: int, autostop_budget: int
) -> None:
    script = sequence_script(
        plan(deadline=deadline, vm_budget=vm_budget, autostop_budget=autostop_budget)
    )
    command = detached(script, LOG)
    assert command.startswith("nohup sh -c ")
    started = time.monotonic()
    result = ssh(server, command)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 5  # detached: the session does not wait for it


def follow(server: SshServer, timeout: float) -> set[str]:
    """Wait until the fake host has no process left; return the executables seen running the
    script (its shell and the shell's subshells), launchers (`nohup`, the fake `sh`) aside."""
    deadline = time.monotonic() + timeout
    launcher = str(server.fakehost / "sh").encode()
    executables: set[str] = set()
    # A look at /proc can fall between the session's end and the detached script's first
    # process (a loaded machine): no process is only an answer once the script was seen.
    while (pids := host_processes(server.fake_dir)) or not executables:
        if time.monotonic() > deadline:
            raise AssertionError(f"host sequence still running after {timeout} s: {pids}")
        for pid in pids:
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                executable = os.readlink(f"/proc/{pid}/exe")
            except OSError:
                continue
            if not any(f"P={LOG_PREFIX}".encode() in arg for arg in argv):
                continue
            if argv[0] == b"nohup" or launcher in argv[:2]:
                continue  # about to exec the next one
            executables.add(executable)
        time.sleep(0.1)
    return executables


def check_log(server: SshServer, expected: list[str]) -> tuple[list[str], dict[int, int]]:
    """The log is in host_tmp and holds `expected` (in any order within a phase) and nothing
    but our lines and vim-cmd's own output (relayed as host text). Returns our lines, in order,
    with `VM N down after S s` as `VM N down after * s`, and each such VM's S."""
    assert server.host_logs() == [server.host_tmp / LOG_NAME]
    assert not Path("/tmp", LOG_NAME).exists()
    lines = (server.host_tmp / LOG_NAME).read_text().splitlines()
    assert all(line.startswith(PREFIX) for line in lines), lines
    host = [line[len(HOST_LINE) :] for line in lines if line.startswith(HOST_LINE)]
    assert set(host) <= VIM_CMD_LINES, host
    ours: list[str] = []
    seconds: dict[int, int] = {}
    for line in lines:
        if line.startswith(HOST_LINE) or line == f"{PREFIX}alive":
            continue
        said = line[len(PREFIX) :]
        if match := DOWN_AFTER.fullmatch(said):
            seconds[int(match[1])] = int(match[2])
            said = f"VM {match[1]} down after * s"
        ours.append(said)
    assert Counter(ours) == Counter(expected), ours
    return ours, seconds


def assert_order(items: list[str], *expected: str) -> None:
    positions = [items.index(item) for item in expected]
    assert positions == sorted(positions), (expected, items)


def state(server: SshServer, vm: int) -> str:
    return (server.fake_dir / "state" / str(vm)).read_text().strip()


def check_busybox(executables: set[str]) -> None:
    assert executables == {os.path.realpath(shutil.which("busybox") or "busybox")}


def test_host_sequence_runs_detached_under_busybox(fake_esxi: SshServer) -> None:
    fake_esxi.write_fake("shutdown_seconds", "1")  # VM 12 goes down during its settle loop

    start_sequence(fake_esxi, deadline=20, vm_budget=3, autostop_budget=3)
    executables = follow(fake_esxi, timeout=20)

    check_busybox(executables)
    commands = fake_esxi.commands()
    assert commands.count("poweroff") == 1 and commands[-1] == "poweroff"
    assert commands.count("vim-cmd vmsvc/power.getstate 12") >= 2  # settle polled it
    assert_order(
        commands,
        "vim-cmd vmsvc/power.shutdown 12",
        "vim-cmd hostsvc/autostartmanager/autostop",
        "poweroff",
    )
    # the phase's look runs beside the stop jobs (its first look may even come first): one
    # comes after the shutdown, before autostop
    shutdown = commands.index("vim-cmd vmsvc/power.shutdown 12")
    assert "vim-cmd vmsvc/power.getstate 12" in commands[shutdown:], commands
    assert_order(
        commands, "vim-cmd vmsvc/power.suspend 15", "vim-cmd hostsvc/autostartmanager/autostop"
    )
    assert "vim-cmd vmsvc/power.suspend 12" not in commands
    assert "vim-cmd vmsvc/power.suspend 1" not in commands
    ours, seconds = check_log(
        fake_esxi,
        [
            "host sequence started: strategy autostop, poweroff within 20 s",
            "phase 1/2 before autostop: 2 VM(s)",
            "VM 12 down after * s",
            "VM 15 down after * s",
            "phase 2/2 autostop: the autostart sequence",
            "final: suspending the VMs still running",
            "host poweroff",
        ],
    )
    assert ours[:2] == [
        "host sequence started: strategy autostop, poweroff within 20 s",
        "phase 1/2 before autostop: 2 VM(s)",
    ]
    assert ours[-3:] == [
        "phase 2/2 autostop: the autostart sequence",
        "final: suspending the VMs still running",
        "host poweroff",
    ]
    # seconds since the sequence started: VM 12's guest took 1 s, both within the budget
    assert 1 <= seconds[12] <= 3 + 2 and 0 <= seconds[15] <= 3 + 2, seconds
    assert [state(fake_esxi, vm) for vm in (1, 12, 15)] == [
        "Powered off",
        "Powered off",
        "Suspended",
    ]


def test_host_sequence_budgets_run_out(fake_esxi: SshServer) -> None:
    fake_esxi.write_fake("shutdown_seconds", "30")  # the guest of VM 12 never gets down
    fake_esxi.write_fake("autostop_seconds", "30")  # nor does autostop end

    start_sequence(fake_esxi, deadline=20, vm_budget=3, autostop_budget=2)
    executables = follow(fake_esxi, timeout=20)

    check_busybox(executables)
    commands = fake_esxi.commands()
    assert commands.count("poweroff") == 1 and commands[-1] == "poweroff"
    assert_order(
        commands,
        "vim-cmd vmsvc/power.shutdown 12",
        "vim-cmd hostsvc/autostartmanager/autostop",
        "vim-cmd vmsvc/power.suspend 12",
        "vim-cmd vmsvc/power.suspend 1",
        "poweroff",
    )
    ours, _seconds = check_log(
        fake_esxi,
        [
            "host sequence started: strategy autostop, poweroff within 20 s",
            "phase 1/2 before autostop: 2 VM(s)",
            "VM 12 still running after 3 s",
            "VM 15 down after * s",
            "phase 2/2 autostop: the autostart sequence",
            "autostop still running after 2 s",
            "final: suspending the VMs still running",
            "VM 12 still running: suspending it",
            "final: suspending our own VM 1",
            "host poweroff",
        ],
    )
    assert_order(
        ours,
        "VM 12 still running after 3 s",
        "phase 2/2 autostop: the autostart sequence",
        "autostop still running after 2 s",
        "final: suspending the VMs still running",
        "VM 12 still running: suspending it",
        "final: suspending our own VM 1",
        "host poweroff",
    )
    assert [state(fake_esxi, vm) for vm in (1, 12, 15)] == ["Suspended", "Suspended", "Suspended"]


def test_host_sequence_deadline_powers_the_host_off(fake_esxi: SshServer) -> None:
    fake_esxi.write_fake("tools/12", "guestToolsNotRunning")  # guest shutdown fails: suspend
    fake_esxi.write_fake("autostop_seconds", "30")

    start_sequence(fake_esxi, deadline=4, vm_budget=3, autostop_budget=60)
    executables = follow(fake_esxi, timeout=20)

    check_busybox(executables)
    commands = fake_esxi.commands()
    assert commands.count("poweroff") == 1 and commands[-1] == "poweroff"
    assert_order(
        commands,
        "vim-cmd vmsvc/power.shutdown 12",
        "vim-cmd vmsvc/power.suspend 12",
        "vim-cmd hostsvc/autostartmanager/autostop",
        "poweroff",
    )
    ours, _seconds = check_log(
        fake_esxi,
        [
            "host sequence started: strategy autostop, poweroff within 4 s",
            "phase 1/2 before autostop: 2 VM(s)",
            "VM 12 down after * s",
            "VM 15 down after * s",
            "phase 2/2 autostop: the autostart sequence",
            "deadline reached: host poweroff",
        ],
    )
    assert ours[-1] == "deadline reached: host poweroff"  # nothing of the sequence after it
    lines = (fake_esxi.host_tmp / LOG_NAME).read_text().splitlines()
    # vim-cmd's own output lands in the log, relayed as host text
    assert f"{HOST_LINE}(vim.fault.ToolsUnavailable) {{" in lines


# -- the shutdown command: inventory, the script on its input, the log as it grows -------------


def talk_to_shutdown_command(server: SshServer, request: str) -> tuple[str, list[str], int]:
    """Run shutdown_command through ssh: read up to its READY line, send `request`, read the
    rest. Returns the inventory's output, the lines after READY, and the exit status."""
    with subprocess.Popen(
        [*server.ssh_argv(), shutdown_command(TOKEN, LOG, 60)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as child:
        assert child.stdin is not None and child.stdout is not None
        inventory = []
        for line in child.stdout:
            if line == f"{MARK}{READY}\n":
                break
            inventory.append(line)
        child.stdin.write(request)
        child.stdin.close()
        rest = [line.rstrip("\n") for line in child.stdout]
        return "".join(inventory), rest, child.wait(timeout=30)


def test_shutdown_command_starts_the_script_it_reads_and_prints_its_log(
    fake_esxi: SshServer,
) -> None:
    """One SSH command: the inventory, then the script from its input, started detached under
    busybox, then the host's log line by line until the host goes down (the fake poweroff ends
    the `tail -f` that prints it)."""
    script = sequence_script(plan(deadline=20, vm_budget=3, autostop_budget=3))
    inventory, rest, _status = talk_to_shutdown_command(
        fake_esxi, start_request(script, wait=False)
    )
    assert [name for name, _ in sections(inventory)][:3] == ["status 0", "vms", "defaults"]
    assert rest[:2] == ["", f"{MARK}{STARTED}"]
    logged = rest[2:]
    assert logged and all(line.startswith(PREFIX) for line in logged), logged
    assert logged[0] == f"{PREFIX}host sequence started: strategy autostop, poweroff within 20 s"
    assert fake_esxi.commands()[-1] == "poweroff"
    assert logged == (fake_esxi.host_tmp / LOG_NAME).read_text().splitlines()[: len(logged)]


def test_shutdown_command_with_nothing_to_stop_waits_then_prints_the_log(
    fake_esxi: SshServer,
) -> None:
    """`wait`: the same command waits for the script (it only powers off), then prints it."""
    script = f'echo "{PREFIX}host poweroff"; poweroff'
    _inventory, rest, status = talk_to_shutdown_command(fake_esxi, start_request(script, wait=True))
    assert (rest, status) == (["", f"{MARK}{STARTED}", f"{PREFIX}host poweroff"], 0)
    assert fake_esxi.commands()[-1] == "poweroff"


def test_shutdown_command_never_runs_half_a_script(fake_esxi: SshServer) -> None:
    script = sequence_script(plan(deadline=20, vm_budget=3, autostop_budget=3))
    request = start_request(script, wait=False)
    _inventory, rest, status = talk_to_shutdown_command(fake_esxi, request[: len(request) // 2])
    assert (rest, status) == (["", f"{MARK}incomplete"], 1)
    _inventory, rest, status = talk_to_shutdown_command(fake_esxi, "")  # no script: nothing
    assert (rest, status) == ([], 0)
    commands = fake_esxi.commands()
    assert not [c for c in commands if "power." in c or "autostop" in c or c == "poweroff"]
    assert not (fake_esxi.host_tmp / LOG_NAME).exists()
    assert list(fake_esxi.host_tmp.iterdir()) == []  # the cut script is gone too
