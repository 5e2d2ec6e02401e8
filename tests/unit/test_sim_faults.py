"""The simulator's fault knobs (a fleet file's keys): a host that fails as ESXi hosts do.

Driven through HostModel and the simulated shell directly (no SSH); the fault matrix's
simulator rows (49-55) run the whole shutdown against each.
"""

from __future__ import annotations

import time

import pytest
from simhelpers import MakeHost
from test_sim_shell import sh

from esxi_suspend.simulator import FleetError, fleet_from_dict


def test_the_knobs_are_checked() -> None:
    bad = {
        "vms": [{"id": 1, "name": "a", "tools_hung": "yes"}],
        "hostd_overflow": "drop",
        "arg_limit": -1,
        "missing_commands": ["sh"],
        "script_dies_after": 0,
        "fault_exit0": 1,
        "command_jitter": -2,
    }
    with pytest.raises(FleetError) as caught:
        fleet_from_dict(bad, "f.json")
    text = str(caught.value)
    for key in ("tools_hung", "hostd_overflow", "arg_limit", "missing_commands",
                "script_dies_after", "fault_exit0", "command_jitter"):  # fmt: skip
        assert key in text, text
    good = fleet_from_dict(
        {"vms": [], "hostd_overflow": "reset", "missing_commands": ["nohup", "command"]}
    )
    assert good.missing_commands == ("nohup", "command")


def test_a_busy_hostd_resets_the_logins_beyond_its_slots(make_host: MakeHost) -> None:
    host = make_host(hostd_concurrency=2, hostd_overflow="reset", command_latency=20.0)
    command = "for i in 1 2 3; do vim-cmd vmsvc/power.getstate 12 > /dev/null & done; wait"
    command += "; vim-cmd vmsvc/power.getstate 12"
    status, out, _err = sh(host, command)
    assert status == 0 and "Powered on" in out
    hostd = [e.text for e in host.events if e.kind == "hostd"]
    assert hostd.count("reset: vim-cmd vmsvc/power.getstate 12") == 1, hostd
    assert hostd.count("call: vim-cmd vmsvc/power.getstate 12") == 3, hostd
    three = " & ".join(["vim-cmd vmsvc/power.getstate 12"] * 3)
    _status, out, _err = sh(host, f"{three}; wait")
    assert "Failed to login: Connection reset by peer" in out


def test_jitter_adds_up_to_its_bound(make_host: MakeHost) -> None:
    host = make_host(command_latency=1.0, command_jitter=30.0)
    took = []
    for _ in range(4):
        start = host.now()
        sh(host, "vim-cmd vmsvc/power.getstate 12")
        took.append(host.now() - start)
    assert all(t >= 1.0 for t in took), took
    assert max(took) - min(took) > 1.0, took  # not all the same


def test_a_long_argument_is_refused(make_host: MakeHost) -> None:
    host = make_host(arg_limit=100)
    assert sh(host, "sh -c 'echo short'")[:2] == (0, "short\n")
    status, _out, err = sh(host, f"sh -c 'echo {'x' * 100}'")
    assert status == 2 and err == "/bin/sh: File too large\n"


def test_a_fault_exits_0_and_outputs_lack_a_final_newline(make_host: MakeHost) -> None:
    host = make_host(fault_exit0=True, no_final_newline=True)
    status, out, _err = sh(host, "vim-cmd vmsvc/power.shutdown 99999; echo $?")
    assert status == 0 and out == "1\n", out  # no fault text, no VM: exit 1 stays
    status, out, _err = sh(host, "vim-cmd vmsvc/power.getstate 12; echo; echo $?")
    assert out == "Retrieved runtime info\nPowered on\n0\n", out
    off = next(vm.spec.vmid for vm in host.vms.values() if vm.power != "Powered on")
    _status, out, _err = sh(host, f"vim-cmd vmsvc/power.suspend {off}; echo :$?")
    assert "(vim.fault.InvalidPowerState)" in out and out.endswith("}:0\n"), out


def test_a_4x_busybox_lacks_nohup_and_command(make_host: MakeHost) -> None:
    host = make_host(missing_commands=("nohup", "command"))
    status, _out, err = sh(host, "nohup true")
    assert status == 127 and "nohup: not found" in err
    assert sh(host, "command -v poweroff")[0] == 127
    assert sh(host, "[ -x /sbin/poweroff ] && echo yes")[1] == "yes\n"  # what check looks at
    assert sh(host, "[ -f /dev/null ] || echo ok; echo $?")[0] == 0


def test_a_script_dies_with_its_jobs(make_host: MakeHost) -> None:
    host = make_host(script_dies_after=5.0)
    host.write_file("/tmp/s", "( sleep 100; echo late > /tmp/late ) &\nsleep 100\necho done")
    status, out, err = sh(host, "sh /tmp/s; echo $?")
    assert status == 0 and out == "137\n" and "Killed" in err, (out, err)
    time.sleep(0.3)  # 150 simulated s: the job it started is gone too
    assert host.read_file("/tmp/late") is None
    assert any("killed with its jobs" in e.text for e in host.events)
