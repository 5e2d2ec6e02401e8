"""The simulator's shell runs the package's command lines of a shutdown on a small simulated
host: the inventory (`inventory_command(TOKEN)`), the host sequence (`sequence_script(plan)`
for a ShutdownPlan built here, started with tests/detached.py's line to its `log_path(...)`),
and the one command that carries both (`shutdown_command`, the script on its input); no SSH,
a recording terminal."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
from detached import detached
from test_shutdown import SETTINGS
from test_sim_shell import Recorder

from esxi_suspend.host import esxi
from esxi_suspend.host.inventory import HOST_TMP, inventory_command, parse_inventory
from esxi_suspend.host.plan import Action, Phase, ShutdownPlan, VmStep, make_plan
from esxi_suspend.host.script import (
    HOST_TEXT,
    LOG_PREFIX,
    log_path,
    sequence_script,
    shutdown_command,
    start_request,
)
from esxi_suspend.simulator import Fate, fleet_from_dict
from esxi_suspend.simulator.host import HostDown, HostModel
from esxi_suspend.simulator.shell.interpreter import Shell
from esxi_suspend.simulator.shell.state import Source

TOKEN = 271828182  # the inventory's marker token (random in the package; fixed here)
MARK = f"@@{TOKEN} "
INVENTORY = inventory_command(TOKEN)


def plan(deadline: int = 236, autostop_budget: int = 90) -> ShutdownPlan:
    """Phase 1 before autostop: VM 12 guest shutdown else suspend, VM 20 suspend (120 s);
    phase 2 autostop; our own VM 1 suspended last. `watched`: every running VM but ours, as
    make_plan has it, so the final step also looks at autostop's VMs 13 and 15."""
    steps = (
        VmStep(12, (Action.SHUTDOWN, Action.SUSPEND), 120),
        VmStep(20, (Action.SUSPEND,), 120),
    )
    return ShutdownPlan(
        strategy="autostop",
        deadline=deadline,
        phases=(
            Phase("before autostop", steps, 120, 120),
            Phase("autostop", (), autostop_budget, autostop_budget, autostop=True),
        ),
        watched=(12, 13, 15, 20),
        straggler_action=Action.SUSPEND,
        self_vm=1,
        notes=(),
    )


SEQUENCE = sequence_script(plan())
COMMAND = shutdown_command(TOKEN, log_path(1, 2), 400)
LOG = log_path(1, 2)
# The simulated host sets no TMPDIR (nor does ESXi): the log lands in /tmp.
LOG_FILE = LOG.replace(HOST_TMP, "/tmp")
DETACHED = detached(SEQUENCE, LOG)
PREFIX = f"{LOG_PREFIX} "
HOST_LINE = f"{PREFIX}{HOST_TEXT} "  # a line a host command printed, relayed by the script

# 12 shuts down (tools), 20 has no tools (suspended in phase 1), 1 is our own VM (suspended
# last), 13 and 15 are stopped by autostop, 31 is off from the start.
FLEET = {
    "vms": [
        {"id": 1, "name": "nut-client", "shutdown_seconds": 20},
        {"id": 12, "name": "Web Server (prod)", "shutdown_seconds": 25, "autostart": 1,
         "stop_action": "guestShutdown"},
        {"id": 13, "name": "db-01 [primary]", "shutdown_seconds": 30, "autostart": 2,
         "stop_action": "guestShutdown", "stop_delay": 60},
        {"id": 15, "name": "build", "autostart": 3, "stop_action": "suspend"},
        {"id": 20, "name": "legacy", "tools": False},
        {"id": 31, "name": "spare", "power": "Powered off"},
    ]
}  # fmt: skip


@pytest.fixture
def host() -> Iterator[HostModel]:
    model = HostModel(fleet_from_dict(FLEET), time_scale=0.002)
    yield model
    model.stop()


def test_inventory_prints_every_section(host: HostModel) -> None:
    term = Recorder()
    assert Shell(host, None).run(inventory_command(TOKEN, every_summary=True), term) == 0
    out = term.out
    markers = [line for line in out.splitlines() if line.startswith("@@")]
    ids = [spec.vmid for spec in host.fleet.vms]
    assert markers == [
        f"{MARK}status 0",
        f"{MARK}vms",
        f"{MARK}defaults",
        f"{MARK}sequence",
        f"{MARK}running 0",  # esxcli said which VMs run, in one call
        *(f"{MARK}summary {vmid}" for vmid in ids),  # check's form reads each VM too
        f"{MARK}poweroff",
    ]
    assert "Web Server (prod)" in out.split(f"{MARK}defaults")[0]
    assert "stopAction" in out.split(f"{MARK}sequence")[0].split(f"{MARK}defaults")[1]
    assert "vim.VirtualMachine:12" in out.split(f"{MARK}summary")[0].split(f"{MARK}sequence")[1]
    assert out.endswith(f"{MARK}poweroff\n/sbin/poweroff\n")
    sections = esxi.split_marked(out, TOKEN)  # the package's own parser
    for vmid in ids:
        summary = out.split(f"{MARK}summary {vmid}\n")[1].split("@@")[0]
        assert summary.strip(), f"no summary for VM {vmid}"
        assert "Unknown command" not in summary
        # `mark` prints a newline before each marker; the parser drops it again
        assert sections[f"summary {vmid}"] + "\n\n" == summary
    assert term.err == "" and term.holders == 0
    assert [e for e in host.events if e.kind == "exec"] == []  # the server's, one per request
    assert not [path for path in host.files if "esxi-suspend-inv-" in path]  # cleaned up
    assert host.background_jobs() == []
    assert not host.powered_off and set(host.fates().values()) <= {Fate.RUNNING, Fate.WAS_OFF}


def test_a_shutdown_reads_which_vms_run_in_one_call(host: HostModel) -> None:
    term = Recorder()
    assert Shell(host, None).run(INVENTORY, term) == 0
    markers = [line for line in term.out.splitlines() if line.startswith("@@")]
    assert markers == [
        f"{MARK}{name}"
        for name in ("status 0", "vms", "defaults", "sequence", "running 0", "poweroff")
    ]
    inventory = parse_inventory("sim", term.out, TOKEN, 0, "")
    running = {info.vmid for info in inventory.vms if info.running}
    assert running == {vm.vmid for vm in host.fleet.vms if vm.power == "Powered on"}
    assert inventory.look.startswith("esxcli vm process list: ")
    assert [e.text for e in host.events if "get.summary" in e.text] == []


@pytest.mark.parametrize(
    "knob",
    [{"missing_commands": ["esxcli"]}, {"esxcli_namespace_missing": True}],
    ids=["no-esxcli", "4.x-esxcli"],
)
def test_without_the_one_call_look_each_vm_is_read(knob: dict[str, object]) -> None:
    model = HostModel(fleet_from_dict({**FLEET, **knob}), time_scale=0.002)
    try:
        term = Recorder()
        assert Shell(model, None).run(INVENTORY, term) == 0
    finally:
        model.stop()
    inventory = parse_inventory("sim", term.out, TOKEN, 0, "")
    assert all(info.state is not None for info in inventory.vms)
    assert inventory.look.startswith("vim-cmd vmsvc/get.summary per VM (esxcli vm process list: ")
    tools = {info.vmid: info.tools_running for info in inventory.vms if info.running}
    assert tools and None not in tools.values()


def test_inventory_runs_its_calls_concurrently() -> None:
    model = HostModel(fleet_from_dict(FLEET), time_scale=0.05)  # room for our own overhead
    try:
        start = model.now()
        Shell(model, None).run(INVENTORY, Recorder())
        took = model.now() - start
    finally:
        model.stop()
    # three listings and esxcli's running VMs at once: one round trip to hostd, where one
    # call after the other would take four, and a get.summary per VM nine
    latency = model.fleet.command_latency
    assert latency <= took < 2 * latency, took


def said(log: str) -> list[str]:
    """Our own lines of the log, in order, with `VM N down after S s` (S varies: seconds since
    the sequence started) as `VM N down after * s`; every line is ours or relayed host text."""
    lines = log.splitlines()
    assert all(line.startswith(PREFIX) for line in lines), lines
    host_text = {line[len(HOST_LINE) :] for line in lines if line.startswith(HOST_LINE)}
    assert host_text <= {"Suspending VM:"}, host_text
    return [
        re.sub(r"^(VM \d+ down after) \d+ s$", r"\1 * s", line[len(PREFIX) :])
        for line in lines
        if not line.startswith(HOST_LINE) and line != f"{PREFIX}alive"
    ]


def test_detached_sequence_powers_the_host_off(host: HostModel) -> None:
    term = Recorder()
    assert Shell(host, 7).run(DETACHED, term) == 0
    assert term.holders == 0 and term.out == term.err == ""  # all of it went to the log
    host.cancel_session_jobs(7)  # our session drops: the detached job is no foreground
    assert host.wait_powered_off(30)
    fates = host.fates()
    assert host.read_file(LOG_FILE) is not None
    left = [path for path in host.files if "esxi-suspend-" in path]
    assert [p for p in left if not p.endswith((".done", ".go"))] == [LOG_FILE]  # no slot left
    log = host.read_file(LOG_FILE) or ""
    assert fates[12] is Fate.CLEAN_SHUTDOWN
    assert fates[20] is fates[15] is fates[1] is Fate.SUSPENDED
    assert fates[13] is Fate.CLEAN_SHUTDOWN
    assert fates[31] is Fate.WAS_OFF
    assert not [vmid for vmid, fate in fates.items() if fate is Fate.HARD_KILLED]
    ours = said(log)
    assert ours[0] == "host sequence started: strategy autostop, poweroff within 236 s"
    assert ours[1] == "phase 1/2 before autostop: 2 VM(s)"
    assert set(ours[2:4]) == {"VM 12 down after * s", "VM 20 down after * s"}
    assert ours[4:6] == [
        "phase 2/2 autostop: the autostart sequence",
        "final: suspending the VMs still running",
    ]
    # 12 and 20 were seen down by their phase's loop: the final step looks at autostop's only
    assert set(ours[6:8]) == {"VM 13 down", "VM 15 down"}
    assert ours[8:] == ["final: suspending our own VM 1", "host poweroff"]
    deadline = time.monotonic() + 5
    while host.background_jobs() and time.monotonic() < deadline:  # they end with the host
        time.sleep(0.01)
    assert host.background_jobs() == []


def test_the_watchdog_powers_off_at_the_deadline(host: HostModel) -> None:
    # autostop never ends within the script's bounds: VM 13's guest takes 500 s, and its
    # stop delay is longer than the deadline
    script = sequence_script(plan(deadline=40, autostop_budget=300))
    slow = dict(FLEET)
    slow["vms"] = [dict(vm, shutdown_seconds=500, stop_delay=600) if vm["id"] == 13 else vm
                   for vm in FLEET["vms"]]  # fmt: skip
    model = HostModel(fleet_from_dict(slow), time_scale=0.002)
    try:
        Shell(model, 7).run(detached(script, LOG), Recorder())
        assert model.wait_powered_off(30)
        log = model.read_file(LOG_FILE) or ""
        assert f"{PREFIX}deadline reached: host poweroff" in log.splitlines()
        assert f"{PREFIX}host poweroff" not in log.splitlines()
        assert 40 <= (model.powered_off_at or 0) < 100  # autostop's bound: 28 + 300 s
        assert model.fates()[13] is Fate.HARD_KILLED
    finally:
        model.stop()


def test_the_sequence_in_the_foreground_ends_with_host_down(host: HostModel) -> None:
    term = Recorder()
    with pytest.raises(HostDown):
        Shell(host, 7).run(SEQUENCE, term)
    assert re.search(r"^esxi-suspend: host poweroff$", term.out, re.MULTILINE)
    assert not [vmid for vmid, fate in host.fates().items() if fate is Fate.HARD_KILLED]


def test_the_shutdown_command_reads_its_script_and_prints_the_log_as_it_grows(
    host: HostModel,
) -> None:
    term = Recorder()
    request = Source(start_request(SEQUENCE, wait=False))
    with pytest.raises(HostDown):  # `tail -f` prints the log until the host goes down
        Shell(host, 7).run(COMMAND, term, request)
    out = term.out.split(f"{MARK}ready\n")[1]
    assert out.startswith(f"\n{MARK}started\n")
    logged = out.split(f"{MARK}started\n")[1]
    whole = host.read_file(LOG_FILE) or ""
    # every line of it, as it was written; but the watchdog's `alive` may land in the log
    # after `tail`'s last look, as the power goes (a loaded machine stretches that moment)
    assert whole.startswith(logged)
    assert set(said(whole[len(logged) :])) <= {"alive"}
    assert [line for line in said(logged) if line != "alive"][-1] == "host poweroff"
    assert not [vmid for vmid, fate in host.fates().items() if fate is Fate.HARD_KILLED]


def test_the_shutdown_command_runs_a_whole_script_only(host: HostModel) -> None:
    for request, status, after in (
        ("", 0, ""),
        (start_request(SEQUENCE, wait=False)[:-1], 1, f"\n{MARK}incomplete\n"),
    ):
        term = Recorder()
        assert Shell(host, 7).run(COMMAND, term, Source(request)) == status
        assert term.out.split(f"{MARK}ready\n")[1] == after
    assert host.read_file(LOG_FILE) is None and not host.powered_off
    assert host.read_file(LOG_FILE.replace(".log", ".sh")) is None  # the cut script is gone


def test_the_shutdown_command_waits_for_a_script_that_only_powers_off(host: HostModel) -> None:
    term = Recorder()
    script = f'echo "{PREFIX}host poweroff"; poweroff'
    with pytest.raises(HostDown):  # the power goes before the log is printed: nothing after
        Shell(host, 7).run(COMMAND, term, Source(start_request(script, True)))
    assert term.out.split(f"{MARK}ready\n")[1] == f"\n{MARK}started\n"
    assert host.read_file(LOG_FILE) == f"{PREFIX}host poweroff\n"


def test_a_vm_without_tools_that_autostop_would_shut_down_is_suspended_before_it() -> None:
    """esxcli says which VMs run but not whether their Tools do: the host script looks at
    each VM autostop would shut down, and suspends the one without Tools before autostop
    (whose guest shutdown would fail on it), leaving the other to autostop."""
    fleet = {"vms": [
        {"id": 4, "name": "no tools", "tools": False, "autostart": 1,
         "stop_action": "guestShutdown", "stop_delay": 60},
        {"id": 5, "name": "tools", "shutdown_seconds": 10, "autostart": 2,
         "stop_action": "guestShutdown", "stop_delay": 60},
    ]}  # fmt: skip
    model = HostModel(fleet_from_dict(fleet), time_scale=0.002)
    try:
        term = Recorder()
        assert Shell(model, None).run(INVENTORY, term) == 0
        inventory = parse_inventory("sim", term.out, TOKEN, 0, "")
        assert {info.tools_running for info in inventory.vms} == {None}
        plan = make_plan(inventory, SETTINGS, None)
        assert plan.phases[0].tools_looks == (4, 5)
        with pytest.raises(HostDown):
            Shell(model, 7).run(sequence_script(plan), Recorder())
        assert model.fates() == {4: Fate.SUSPENDED, 5: Fate.CLEAN_SHUTDOWN}
        texts = [e.text for e in model.events]
        suspended = next(i for i, t in enumerate(texts) if "power.suspend 4" in t)
        autostop = next(i for i, t in enumerate(texts) if t.endswith("autostartmanager/autostop"))
        assert suspended < autostop
        assert not [t for t in texts if "power.suspend 5" in t]
    finally:
        model.stop()
