"""The steps and the plan, against a fake remote of our own (a table of canned results)."""

from __future__ import annotations

from pathlib import Path
from typing import Union

import pytest
from test_esxi import DEFAULTS, GETALLVMS, SEQUENCE

from esxi_suspend import esxi
from esxi_suspend.config import RestartSettings, Settings
from esxi_suspend.errors import ExitCode, RemoteTimeout, SessionDropped
from esxi_suspend.remote import CommandResult
from esxi_suspend.shutdown import (
    HostResult,
    Remote,
    inspect_host,
    render_plan,
    shutdown_host,
)

Outcome = Union[CommandResult, Exception]


class FakeRemote:
    """Maps each expected command to its outcome; any other command fails the test."""

    def __init__(self, outcomes: dict[str, Outcome], name: str = "esxi1") -> None:
        self.name = name
        self.outcomes = outcomes
        self.ran: list[str] = []

    def run(self, command: str, timeout: int) -> CommandResult:
        self.ran.append(command)
        if command not in self.outcomes:
            pytest.fail(f"unexpected remote command: {command}")
        outcome = self.outcomes[command]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


def ok(command: str, stdout: str = "") -> CommandResult:
    return CommandResult(command, 0, stdout, "")


SETTINGS = Settings(
    source=Path("/test.env"),
    host="esxi1",
    user="root",
    port=22,
    key_file=Path("/key"),
    known_hosts=Path("/known_hosts"),
    connect_timeout=5,
    command_timeout=30,
    restart=RestartSettings(),
)


def no_reconnect() -> Remote | None:
    pytest.fail("reconnect not expected")


def test_autostop_then_poweroff() -> None:
    remote = FakeRemote({esxi.AUTOSTOP: ok(esxi.AUTOSTOP), esxi.POWEROFF: ok(esxi.POWEROFF)})
    result = HostResult("esxi1")
    shutdown_host(remote, SETTINGS, result, no_reconnect)
    assert remote.ran == [esxi.AUTOSTOP, esxi.POWEROFF]
    assert result.exit_code == ExitCode.OK
    assert result.summary() == "host esxi1: autostop ok, poweroff ok"


@pytest.mark.parametrize(
    "autostop",
    [
        RemoteTimeout("timed out", esxi.AUTOSTOP),
        CommandResult(esxi.AUTOSTOP, 1, "", "vim.fault.NotSupported"),
        CommandResult(esxi.AUTOSTOP, 127, "", "sh: vim-cmd: not found"),
    ],
)
def test_poweroff_even_when_autostop_fails(autostop: Outcome) -> None:
    remote = FakeRemote({esxi.AUTOSTOP: autostop, esxi.POWEROFF: ok(esxi.POWEROFF)})
    result = HostResult("esxi1")
    shutdown_host(remote, SETTINGS, result, no_reconnect)
    assert remote.ran == [esxi.AUTOSTOP, esxi.POWEROFF]
    assert result.exit_code == ExitCode.REMOTE_COMMAND
    assert result.steps[1].ok


def test_session_dropped_by_poweroff_is_success() -> None:
    remote = FakeRemote(
        {esxi.AUTOSTOP: ok(esxi.AUTOSTOP), esxi.POWEROFF: SessionDropped("gone", esxi.POWEROFF)}
    )
    result = HostResult("esxi1")
    shutdown_host(remote, SETTINGS, result, no_reconnect)
    assert result.exit_code == ExitCode.OK


def test_session_dropped_during_autostop_reconnects_for_poweroff() -> None:
    first = FakeRemote({esxi.AUTOSTOP: SessionDropped("gone", esxi.AUTOSTOP)})
    second = FakeRemote({esxi.POWEROFF: ok(esxi.POWEROFF)})
    result = HostResult("esxi1")
    shutdown_host(first, SETTINGS, result, lambda: second)
    assert (first.ran, second.ran) == ([esxi.AUTOSTOP], [esxi.POWEROFF])
    assert result.steps[1].ok


def test_poweroff_failure_is_reported() -> None:
    remote = FakeRemote(
        {
            esxi.AUTOSTOP: ok(esxi.AUTOSTOP),
            esxi.POWEROFF: CommandResult(esxi.POWEROFF, 127, "", "sh: poweroff: not found"),
        }
    )
    result = HostResult("esxi1")
    shutdown_host(remote, SETTINGS, result, no_reconnect)
    assert result.exit_code == ExitCode.REMOTE_COMMAND
    assert "not found" in result.steps[-1].detail


def inventory_remote(
    getallvms: str = GETALLVMS, states: dict[int, str] | None = None
) -> FakeRemote:
    states = states or {}
    outcomes: dict[str, Outcome] = {
        esxi.GETALLVMS: ok(esxi.GETALLVMS, getallvms),
        esxi.GET_DEFAULTS: ok(esxi.GET_DEFAULTS, DEFAULTS),
        esxi.GET_AUTOSTARTSEQ: ok(esxi.GET_AUTOSTARTSEQ, SEQUENCE),
        esxi.FIND_POWEROFF: ok(esxi.FIND_POWEROFF, "/bin/poweroff\n"),
    }
    for vm in esxi.parse_getallvms(getallvms):
        text = f"Retrieved runtime info\n{states.get(vm.vmid, 'Powered on')}\n"
        outcomes[esxi.power_getstate(vm.vmid)] = ok(esxi.power_getstate(vm.vmid), text)
    return FakeRemote(outcomes)


def test_plan_names_each_vm_and_its_fate() -> None:
    remote = inventory_remote(states={15: "Powered off"})
    result = HostResult("esxi1")
    plan = inspect_host(remote, SETTINGS, result)
    assert result.exit_code == ExitCode.OK
    fates = {vm.vm.vmid: (vm.state, vm.hard_killed) for vm in plan.vms}
    assert fates == {
        1: (esxi.PowerState.ON, True),
        12: (esxi.PowerState.ON, False),
        15: (esxi.PowerState.OFF, False),
    }
    assert plan.autostop_worst_seconds == 120
    assert not any(cmd in remote.ran for cmd in (esxi.AUTOSTOP, esxi.POWEROFF))
    text = render_plan(plan, SETTINGS, "/bin/true")
    assert "Web Server (prod)" in text
    assert "HARD POWER-OFF" in text
    assert "WARNING: autostop may outlast ESXI_COMMAND_TIMEOUT" in text
    assert "(dry run; not run)" in text


def test_plan_with_hostile_names_runs_only_integer_commands() -> None:
    header = GETALLVMS.splitlines()[0]
    lines = [
        header,
        "8   x; poweroff   [ds1] x/x.vmx   otherGuest  vmx-07",
        "9   $(reboot)\x1b[2J   [ds1] r/r.vmx   otherGuest  vmx-07",
    ]
    remote = inventory_remote("\n".join(lines))
    plan = inspect_host(remote, SETTINGS, HostResult("esxi1"))
    assert "vim-cmd vmsvc/power.getstate 8" in remote.ran
    assert all("reboot" not in cmd and ";" not in cmd for cmd in remote.ran)
    text = render_plan(plan, SETTINGS, "/bin/true")
    assert "\x1b" not in text
    assert "$(reboot)?[2J" in text


def test_plan_reports_unparseable_output() -> None:
    remote = inventory_remote()
    remote.outcomes[esxi.GET_AUTOSTARTSEQ] = ok(esxi.GET_AUTOSTARTSEQ, "garbage")
    result = HostResult("esxi1")
    inspect_host(remote, SETTINGS, result)
    assert result.exit_code == ExitCode.REMOTE_COMMAND
    assert "unexpected host output" in result.steps[-1].detail
