"""Following the host sequence: what we send (a start, then only reads of its log), and what
we make of the log, against a fake remote of our own."""

from __future__ import annotations

from dataclasses import replace

import pytest
from test_plan import inventory, vm
from test_shutdown import SETTINGS, no_reconnect

from esxi_suspend.errors import ExitCode, SessionDropped
from esxi_suspend.plan import make_plan
from esxi_suspend.remote import CommandResult
from esxi_suspend.sequence import run_sequence
from esxi_suspend.shutdown import HostResult

FAST = replace(SETTINGS, strategy="parallel", poll_interval=0.01)


class LogHost:
    """Answers the start, then each read of the log with the next of `logs`."""

    def __init__(self, logs: list[str], start_output: str = "") -> None:
        self.name = "esxi1"
        self.logs = logs
        self.start_output = start_output
        self.ran: list[str] = []

    def run(self, command: str, timeout: int) -> CommandResult:
        self.ran.append(command)
        if len(self.ran) == 1:
            return CommandResult(command, 0, self.start_output, "")
        if not self.logs:
            raise SessionDropped("gone", command)
        return CommandResult(command, 0, self.logs.pop(0), "")


def test_we_start_once_then_only_read_the_log() -> None:
    fleet = inventory(vm(2, "web"), vm(3, "db"))
    plan = make_plan(fleet, FAST, None)
    first = "esxi-suspend: host sequence started\nesxi-suspend: VM 2 down after 4 s\n"
    last = (
        first + "esxi-suspend: > VM 3 down\n"  # host text: never taken for our event
        "esxi-suspend: final: suspending the VMs still running\n"
        "esxi-suspend: VM 3 still running: suspending it\nesxi-suspend: host poweroff\n"
    )
    host = LogHost([first, last])
    result = HostResult("esxi1")
    run_sequence(host, fleet, plan, FAST, no_reconnect, result.add)
    start, *reads = host.ran
    assert start.startswith("nohup sh -c '") and start.endswith("< /dev/null &")
    assert reads and all(r.startswith('cat "${TMPDIR:-/tmp}/esxi-suspend-') for r in reads)
    assert result.exit_code == ExitCode.OK, result.steps
    assert [s.name for s in result.steps] == ["sequence", "poweroff", "VMs"]
    assert result.steps[-1].detail == "1 of 2 seen down before the final step; 1 suspended by it"


def test_a_host_with_nothing_to_stop_is_one_command() -> None:
    idle = inventory(vm(6, "off", on=False))
    plan = make_plan(idle, FAST, None)
    assert plan.stops_nothing and plan.phases == ()
    host = LogHost([], start_output="esxi-suspend: host poweroff\n")
    result = HostResult("esxi1")
    run_sequence(host, idle, plan, FAST, no_reconnect, result.add)
    (start,) = host.ran
    assert "< /dev/null & wait $!; cat " in start
    assert result.exit_code == ExitCode.OK
    assert result.steps[1].detail == "the host sequence ran poweroff: it is going down"


def test_session_lost_for_good_is_reported_and_the_host_goes_on() -> None:
    fleet = inventory(vm(2, "web"))
    host = LogHost(["esxi-suspend: host sequence started\n"])
    result = HostResult("esxi1")
    run_sequence(host, fleet, make_plan(fleet, FAST, None), FAST, lambda: None, result.add)
    assert result.exit_code == ExitCode.CONNECTION
    assert "its sequence goes on without us" in result.steps[1].detail


@pytest.mark.parametrize("own_vm", [1, None])
def test_stops_nothing_only_when_nothing_at_all_is_left(own_vm: int | None) -> None:
    fleet = inventory(vm(1, "nut-client"), vm(6, "off", on=False))
    plan = make_plan(fleet, FAST, own_vm)
    assert plan.stops_nothing is False  # VM 1 runs: as ours, it is suspended last
