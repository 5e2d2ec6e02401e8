"""The simulator's hostd cost: each vim-cmd is a round trip to hostd, a few at once.

Driven through HostModel and vimcmd directly (no SSH). Only simulated times are asserted, each
with about one latency of slack above its floor (the machine may be loaded).
"""

from __future__ import annotations

import functools
import json
import re
import threading
import time
from pathlib import Path

import pytest
from simhelpers import MakeHost

from esxi_suspend.simulator import Fate, FleetError, VmSpec, fleet_from_dict, load_fleet, vimcmd
from esxi_suspend.simulator.fleet import Fleet, default_fleet, generated_fleet
from esxi_suspend.simulator.host import HostDown, HostModel, Interrupted, Job

SCALE = 0.005  # real seconds per simulated second
LATENCY = 40.0  # simulated seconds: 0.2 real s, well above thread start-up noise


@pytest.fixture
def make_host(make_host: MakeHost) -> MakeHost:
    """conftest's, at this module's time scale."""
    return functools.partial(make_host, time_scale=SCALE)


def run(host: HostModel, args: list[str], job: Job | None = None) -> tuple[int, str, str]:
    out: list[str] = []
    err: list[str] = []
    job = job or host.new_job("vim-cmd " + " ".join(args), 1, False)
    status = vimcmd.vim_cmd(
        host, job, args, lambda fd, text: (err if fd == 2 else out).append(text)
    )
    return status, "".join(out), "".join(err)


def timed(host: HostModel, args: list[str]) -> tuple[int, float]:
    start = host.now()
    status = run(host, args)[0]
    return status, host.now() - start


# -- one call ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "status"),
    [
        (["vmsvc/getallvms"], 0),
        (["vmsvc/power.getstate", "12"], 0),
        (["vmsvc/get.summary", "12"], 0),
        (["hostsvc/autostartmanager/get_autostartseq"], 0),
        (["vmsvc/get.summary", "999"], 1),  # unknown VM: hostd still answered
        (["vmsvc/power.shutdown", "20"], 1),  # no tools: a fault, after the round trip
        (["vmsvc/nosuch"], 1),
    ],
)
def test_each_vim_cmd_costs_one_latency(make_host: MakeHost, args: list[str], status: int) -> None:
    host = make_host(command_latency=LATENCY)
    got, took = timed(host, args)
    assert got == status
    assert LATENCY <= took < 2 * LATENCY


def test_vmware_v_costs_one_latency(make_host: MakeHost) -> None:
    host = make_host(command_latency=LATENCY)
    out: list[str] = []
    start = host.now()
    assert vimcmd.vmware(host, ["-v"], lambda fd, text: out.append(text)) == 0
    assert LATENCY <= host.now() - start < 2 * LATENCY
    assert out == ["VMware ESXi 6.7.0 build-17700523\n"]


def test_latency_zero_keeps_commands_instant(make_host: MakeHost) -> None:
    host = make_host(time_scale=1.0, command_latency=0.0, hostd_concurrency=1)  # 1 s = 1 s
    for args in (["vmsvc/getallvms"], ["vmsvc/get.summary", "12"], ["vmsvc/get.summary", "9"]):
        assert timed(host, args)[1] < 0.5
    start = host.now()
    assert vimcmd.vmware(host, ["-v"], lambda fd, text: None) == 0
    assert host.now() - start < 0.5


def test_default_latency_is_half_a_second() -> None:
    assert (Fleet(vms=()).command_latency, Fleet(vms=()).hostd_concurrency) == (0.5, 16)
    fleet = default_fleet()
    assert (fleet.command_latency, fleet.hostd_concurrency) == (0.5, 16)


# -- concurrency ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("slots", "calls", "rounds"),
    [(16, 16, 1), (16, 17, 2), (2, 5, 3), (1, 3, 3)],
)
def test_concurrent_calls_share_hostd_slots(
    make_host: MakeHost, slots: int, calls: int, rounds: int
) -> None:
    host = make_host(command_latency=LATENCY, hostd_concurrency=slots)
    barrier = threading.Barrier(calls + 1)
    statuses: list[int] = []

    def call() -> None:
        barrier.wait()
        statuses.append(run(host, ["vmsvc/power.getstate", "12"])[0])

    threads = [threading.Thread(target=call) for _ in range(calls)]
    for thread in threads:
        thread.start()
    start = host.now()
    barrier.wait()
    for thread in threads:
        thread.join(30)
    took = host.now() - start
    assert statuses == [0] * calls
    assert rounds * LATENCY <= took < (rounds + 1) * LATENCY


# -- what follows the round trip --------------------------------------------------------------
def test_guest_shutdown_returns_after_the_latency(make_host: MakeHost) -> None:
    host = make_host(command_latency=LATENCY)
    start = host.now()
    assert run(host, ["vmsvc/power.shutdown", "12"]) == (0, "", "")
    assert LATENCY <= host.now() - start < 2 * LATENCY
    assert host.power_states()[12] == "Powered on"  # the guest takes its own 25 s
    started = next(e for e in host.events if "guest shutdown started" in e.text)
    assert started.at >= start + LATENCY  # acted only after the round trip
    host.sleep(30, None)
    assert host.fates()[12] is Fate.CLEAN_SHUTDOWN


def test_suspend_takes_the_latency_then_its_own_time(make_host: MakeHost) -> None:
    host = make_host(command_latency=LATENCY)  # suspend_seconds 8
    status, took = timed(host, ["vmsvc/power.suspend", "21"])
    assert status == 0 and host.fates()[21] is Fate.SUSPENDED
    assert LATENCY + 8 <= took < 2 * LATENCY + 8


def test_autostop_pays_one_latency_then_its_sequence(make_host: MakeHost) -> None:
    fleet = Fleet(
        vms=(
            VmSpec(1, "a", start_order=1, stop_action="powerOff"),  # 1 s
            VmSpec(2, "b", start_order=2, stop_action="suspend"),  # 8 s
        )
    )
    host = make_host(fleet, command_latency=LATENCY)
    status, took = timed(host, ["hostsvc/autostartmanager/autostop"])
    assert status == 0
    assert host.fates() == {1: Fate.POWERED_OFF, 2: Fate.SUSPENDED}
    assert LATENCY + 9 <= took < 2 * LATENCY + 9  # not one latency per VM


# -- the wait ends with the host or the session -----------------------------------------------
def call_in_thread(
    host: HostModel, job: Job, args: list[str]
) -> tuple[threading.Thread, list[BaseException], list[float]]:
    raised: list[BaseException] = []
    ended: list[float] = []

    def call() -> None:
        try:
            run(host, args, job)
        except (HostDown, Interrupted) as exc:
            raised.append(exc)
        ended.append(host.now())

    thread = threading.Thread(target=call)
    thread.start()
    return thread, raised, ended


def test_host_power_off_ends_the_wait(make_host: MakeHost) -> None:
    host = make_host(command_latency=1000.0)
    job = host.new_job("vim-cmd vmsvc/getallvms", 1, True)
    thread, raised, ended = call_in_thread(host, job, ["vmsvc/getallvms"])
    time.sleep(0.05)
    host.power_off_host(None)
    thread.join(10)
    assert raised and isinstance(raised[0], HostDown)
    assert ended[0] < 500


def test_dropped_session_ends_the_wait_and_frees_the_slot(make_host: MakeHost) -> None:
    host = make_host(command_latency=LATENCY, hostd_concurrency=1)
    holder = host.new_job("vim-cmd vmsvc/getallvms", 1, False)
    queued = host.new_job("vim-cmd vmsvc/getallvms", 2, False)
    first, first_raised, _ = call_in_thread(host, holder, ["vmsvc/getallvms"])
    time.sleep(0.02)
    second, second_raised, _ = call_in_thread(host, queued, ["vmsvc/getallvms"])
    time.sleep(0.02)
    host.cancel_session_jobs(2)  # waiting for the slot
    second.join(10)
    assert second_raised and isinstance(second_raised[0], Interrupted)
    host.cancel_session_jobs(1)  # holding the slot
    first.join(10)
    assert first_raised and isinstance(first_raised[0], Interrupted)
    status, took = timed(host, ["vmsvc/power.getstate", "12"])  # the slot is free again
    assert status == 0 and LATENCY <= took < 2 * LATENCY


# -- get.summary ------------------------------------------------------------------------------
def field(text: str, name: str) -> str:
    found = re.search(rf"^ *{name} = (.*?),?$", text, re.MULTILINE)
    assert found, f"{name} missing"
    return found.group(1)


@pytest.mark.parametrize(
    ("vmid", "before", "power", "tools_status", "running", "host_name"),
    [
        (12, None, "poweredOn", "toolsOk", "guestToolsRunning", '"Web Server (prod)"'),
        (20, None, "poweredOn", "toolsNotInstalled", "guestToolsNotRunning", "<unset>"),
        (31, None, "poweredOff", "toolsNotRunning", "guestToolsNotRunning", "<unset>"),
        (21, "vmsvc/power.suspend", "suspended", "toolsNotRunning", "guestToolsNotRunning",
         "<unset>"),
        (13, "vmsvc/power.off", "poweredOff", "toolsNotRunning", "guestToolsNotRunning",
         "<unset>"),
    ],
)  # fmt: skip
def test_get_summary_power_and_tools(
    make_host: MakeHost,
    vmid: int,
    before: str | None,
    power: str,
    tools_status: str,
    running: str,
    host_name: str,
) -> None:
    host = make_host(command_latency=0.0)
    if before:
        assert run(host, [before, str(vmid)])[0] == 0
    status, out, err = run(host, ["vmsvc/get.summary", str(vmid)])
    assert (status, err) == (0, "")
    assert field(out, "powerState") == f'"{power}"'
    assert field(out, "toolsStatus") == f'"{tools_status}"'
    assert field(out, "toolsRunningStatus") == f'"{running}"'
    assert field(out, "hostName") == host_name


def test_get_summary_shape(make_host: MakeHost) -> None:
    host = make_host(command_latency=0.0)
    out = run(host, ["vmsvc/get.summary", "13"])[1]
    lines = out.split("\n")
    assert lines[:3] == ["Listsummary:", "", "(vim.vm.Summary) {"] and lines[-2:] == ["}", ""]
    depth = 0
    for line in lines:
        depth += line.count("{") + line.count("[") - line.count("}") - line.count("]")
        assert depth >= 0
    assert depth == 0
    for block in (
        "   runtime = (vim.vm.RuntimeInfo) {",
        "   guest = (vim.vm.Summary.GuestSummary) {",
        "   config = (vim.vm.Summary.ConfigSummary) {",
        "   quickStats = (vim.vm.Summary.QuickStats) {",
        '   overallStatus = "green",',
    ):
        assert block in lines
    spec = host.fleet.vm(13)
    assert spec is not None
    config = out.split("(vim.vm.Summary.ConfigSummary) {")[1]
    assert field(config, "name") == '"db-01 [primary]"'
    assert field(config, "template") == "false"
    assert field(config, "vmPathName") == '"[datastore1] db-01 [primary]/db-01 [primary].vmx"'
    assert (field(config, "memorySizeMB"), field(config, "numCpu")) == ("2048", "2")
    assert field(config, "uuid") == f'"{spec.bios_uuid}"'
    assert field(config, "instanceUuid").startswith('"52')
    assert field(config, "guestId") == '"ubuntu64Guest"'
    assert field(config, "annotation") == '""'
    assert field(run(host, ["vmsvc/get.config", "13"])[1], "uuid") == f'"{spec.bios_uuid}"'
    assert field(out, "vm") == "'vim.VirtualMachine:13'"


def test_get_summary_unknown_vm_fails_like_the_others(make_host: MakeHost) -> None:
    host = make_host(command_latency=0.0)
    summary = run(host, ["vmsvc/get.summary", "999"])
    assert summary == run(host, ["vmsvc/power.getstate", "999"])
    assert summary == (1, "", 'Unable to find a VM corresponding to "999"\n')


# -- fleet settings ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("command_latency", -0.1),
        ("command_latency", "0.5"),
        ("command_latency", True),
        ("command_latency", None),
        ("command_latency", float("nan")),
        ("command_latency", float("inf")),
        ("hostd_concurrency", 0),
        ("hostd_concurrency", -2),
        ("hostd_concurrency", 1.5),
        ("hostd_concurrency", 16.0),
        ("hostd_concurrency", True),
        ("hostd_concurrency", "16"),
        ("hostd_concurrency", None),
    ],
)
def test_fleet_rejects_bad_hostd_settings(key: str, value: object) -> None:
    with pytest.raises(FleetError) as caught:
        fleet_from_dict({"vms": [], key: value}, "f.json")
    text = str(caught.value)
    assert "fleet f.json has 1 problem(s)" in text and f"{key}: must be" in text


def test_fleet_lists_both_bad_hostd_settings() -> None:
    with pytest.raises(FleetError, match=r"2 problem\(s\)"):
        fleet_from_dict({"vms": [], "command_latency": -1, "hostd_concurrency": 0})


def test_fleet_reads_hostd_settings(tmp_path: Path) -> None:
    fleet = fleet_from_dict({"vms": [], "command_latency": 0, "hostd_concurrency": 1})
    assert (fleet.command_latency, fleet.hostd_concurrency) == (0.0, 1)
    assert isinstance(fleet.command_latency, float)
    path = tmp_path / "fleet.json"
    path.write_text(json.dumps({"vms": [], "command_latency": 0.67, "hostd_concurrency": 4}))
    loaded = load_fleet(path)
    assert (loaded.command_latency, loaded.hostd_concurrency) == (0.67, 4)
    assert fleet_from_dict({"vms": []}).command_latency == 0.5


def test_generated_fleet_hostd_settings() -> None:
    fleet = generated_fleet(3)
    assert (fleet.command_latency, fleet.hostd_concurrency) == (0.5, 16)
    fleet = generated_fleet(3, command_latency=2, hostd_concurrency=4)
    assert (fleet.command_latency, fleet.hostd_concurrency) == (2.0, 4)
    with pytest.raises(FleetError, match="command_latency"):
        generated_fleet(3, command_latency=-1)
    with pytest.raises(FleetError, match="hostd_concurrency"):
        generated_fleet(3, hostd_concurrency=0)
