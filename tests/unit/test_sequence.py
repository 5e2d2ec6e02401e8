"""Following the host sequence: what we send (the script, on the input of the command that
printed the inventory), and what we make of the log it prints, against fakes of our own."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import pytest
from test_plan import inventory, vm
from test_shutdown import SETTINGS, no_reconnect

from esxi_suspend.errors import ExitCode, RemoteTimeout, SessionDropped
from esxi_suspend.host.inventory import Inventory
from esxi_suspend.host.plan import make_plan
from esxi_suspend.host.script import follow_log, log_path
from esxi_suspend.host.sequence import Reconnect, run_sequence
from esxi_suspend.host.shutdown import HostResult
from esxi_suspend.ssh.remote import CommandResult

FAST = replace(SETTINGS, strategy="parallel", poll_interval=0.01)
LOG = log_path(1, 2)
MARKER = "@@7"
STARTED = "esxi-suspend: host sequence started: strategy parallel, poweroff within 230 s"
POWEROFF = "esxi-suspend: host poweroff"


class LogTalk:
    """One command's output after its STARTED line: `lines`, then its end (an exit status,
    the session `dropped`, or `silent`: nothing more comes in time); `started=False`: the
    session is lost before STARTED."""

    def __init__(
        self, lines: list[str], dropped: bool = False, started: bool = True, silent: bool = False
    ) -> None:
        self._lines = list(lines)
        self.dropped = dropped
        self.silent = silent
        self.started = started
        self.sent: list[str] = []
        self.asked: list[str] = []

    def read_until(self, marker: str, deadline: float) -> str:
        self.asked.append(marker)
        if not self.started:
            raise SessionDropped("gone", "shutdown command")
        return ""

    def lines(self, deadline: float) -> Iterator[str]:
        while self._lines:
            yield self._lines.pop(0)
        if self.silent:
            raise RemoteTimeout("nothing more", "shutdown command")
        if self.dropped:
            raise SessionDropped("gone", "shutdown command")

    def send(self, text: str) -> None:
        self.sent.append(text)

    @property
    def exited(self) -> bool:
        return not self.dropped


class LogHost:
    """A host whose commands (each a follow of the log) print the next of `talks`."""

    def __init__(self, talks: list[LogTalk]) -> None:
        self.name = "esxi1"
        self.talks = talks
        self.ran: list[str] = []
        self.closed = False

    def run(self, command: str, timeout: int) -> CommandResult:
        pytest.fail(f"unexpected command: {command}")

    def close(self) -> None:
        self.closed = True

    @contextmanager
    def exchange(self, command: str, timeout: int, label: str = "") -> Iterator[LogTalk]:
        self.ran.append(command)
        if not self.talks:
            raise SessionDropped("gone", command)
        yield self.talks.pop(0)


def follow(
    talk: LogTalk, fleet: Inventory, reconnect: Reconnect = no_reconnect, own: int | None = None
) -> HostResult:
    return follow_why(talk, fleet, reconnect, own)[0]


def follow_why(
    talk: LogTalk, fleet: Inventory, reconnect: Reconnect = no_reconnect, own: int | None = None
) -> tuple[HostResult, str | None]:
    """The result, and why the plain path must take over (None: it need not)."""
    result = HostResult("esxi1")
    plan = make_plan(fleet, FAST, own)
    why = run_sequence(talk, LogHost([]), MARKER, fleet, plan, FAST, reconnect, result.add, LOG)
    return result, why


def test_the_script_goes_on_the_same_command_whose_log_we_then_read() -> None:
    fleet = inventory(vm(2, "web"), vm(3, "db"))
    talk = LogTalk(
        [
            STARTED,
            "esxi-suspend: VM 2 down after 4 s",
            "esxi-suspend: > VM 3 down",  # host text: never taken for our event
            "esxi-suspend: final: suspending the VMs still running",
            "esxi-suspend: VM 3 still running: suspending it",
            POWEROFF,
        ]
    )
    result = follow(talk, fleet)
    (request,) = talk.sent
    assert request.startswith("follow ") and 'trap "" HUP' in request
    assert talk.asked == [f"{MARKER} started"]
    assert result.exit_code == ExitCode.OK, result.steps
    assert [s.name for s in result.steps] == ["sequence", "poweroff", "VMs"]
    assert result.steps[0].detail.startswith("started on the host, detached")
    assert result.steps[-1].detail == "1 of 2 seen down before the final step; 1 suspended by it"


def test_a_lost_session_is_followed_again_from_where_it_was() -> None:
    fleet = inventory(vm(2, "web"), vm(3, "db"))
    first = LogTalk([STARTED, "esxi-suspend: VM 2 down after 4 s"], dropped=True)
    again = LogTalk(
        [
            STARTED,
            "esxi-suspend: VM 2 down after 4 s",
            "esxi-suspend: VM 3 down after 9 s",
            POWEROFF,
        ]
    )
    other = LogHost([again])
    result = follow(first, fleet, reconnect=lambda: other)
    assert len(other.ran) == 1 and other.ran[0].startswith(follow_log(LOG, 1)[:40])
    assert again.sent == [""]
    assert other.closed  # the session we opened again is ours to close
    assert result.exit_code == ExitCode.OK, result.steps
    assert result.steps[-1].detail == "2 of 2 seen down before the final step"


def test_a_host_with_nothing_to_stop_is_one_command() -> None:
    idle = inventory(vm(6, "off", on=False))
    talk = LogTalk([STARTED, POWEROFF])
    result = follow(talk, idle)
    assert talk.sent[0].startswith("wait ")
    assert result.exit_code == ExitCode.OK
    assert result.steps[1].detail == "the host sequence ran poweroff: it is going down"
    # the host may take the session down under its poweroff before the log is printed
    result = follow(LogTalk([], dropped=True), idle)
    assert result.exit_code == ExitCode.OK, result.steps
    assert result.steps[0].detail == "host closed the session: it is going down"
    # but a session lost before the host said STARTED is no poweroff of ours
    result = follow(LogTalk([], started=False), idle)
    assert result.exit_code != ExitCode.OK
    assert result.steps[0].detail.startswith("could not start the host sequence")


def test_session_lost_for_good_is_reported_and_the_host_goes_on() -> None:
    fleet = inventory(vm(2, "web"))
    result = follow(LogTalk([STARTED], dropped=True), fleet, reconnect=lambda: None)
    assert result.exit_code == ExitCode.CONNECTION
    assert "its sequence goes on without us" in result.steps[1].detail


def test_a_start_that_fails_is_reported() -> None:
    fleet = inventory(vm(2, "web"))
    result = follow(LogTalk([], started=False), fleet)
    assert result.exit_code == ExitCode.REMOTE_COMMAND
    assert result.steps[0].detail.startswith("could not start the host sequence")


@pytest.mark.parametrize("own_vm", [1, None])
def test_stops_nothing_only_when_nothing_at_all_is_left(own_vm: int | None) -> None:
    fleet = inventory(vm(1, "nut-client"), vm(6, "off", on=False))
    plan = make_plan(fleet, FAST, own_vm)
    assert plan.stops_nothing is False  # VM 1 runs: as ours, it is suspended last


def test_a_script_that_never_starts_is_seen_at_once_and_the_plain_path_takes_over() -> None:
    """`/bin/sh: File too large`, `sh: can't open`: the log holds the shell's error, never
    the script's own first line; we do not follow it for ever."""
    fleet = inventory(vm(2, "web"))
    talk = LogTalk(["/bin/sh: File too large"], silent=True)
    result, why = follow_why(talk, fleet)
    assert why is not None and why.startswith("the host sequence did not start")
    assert result.exit_code == ExitCode.REMOTE_COMMAND
    assert [s.name for s in result.steps] == ["sequence"]


def test_a_script_that_goes_silent_is_dead_and_the_plain_path_takes_over() -> None:
    fleet = inventory(vm(2, "web"))
    talk = LogTalk([STARTED, "esxi-suspend: alive", "esxi-suspend: phase 1/1"], silent=True)
    result, why = follow_why(talk, fleet)
    assert why is not None and why.startswith("the host sequence stopped")
    assert result.steps[0].detail.startswith("started on the host")
    assert result.steps[1].exit_code == ExitCode.REMOTE_COMMAND


def test_a_start_refused_hands_over_to_the_plain_path() -> None:
    fleet = inventory(vm(2, "web"))
    _result, why = follow_why(LogTalk([], started=False), fleet)
    assert why is not None and "was not started" in why


def test_a_quick_script_that_ends_without_poweroff_hands_over() -> None:
    idle = inventory(vm(6, "off", on=False))
    _result, why = follow_why(LogTalk(["sh: can't open 'x'"]), idle)
    assert why is not None and "did not start" in why, why
