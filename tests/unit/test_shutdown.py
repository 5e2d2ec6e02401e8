"""The steps and the plan, against a fake remote of our own (a table of canned results)."""

from __future__ import annotations

from pathlib import Path
from typing import Union

import pytest
from test_esxi import DEFAULTS, GETALLVMS, SEQUENCE

from esxi_suspend import esxi
from esxi_suspend.config import RestartSettings, Settings
from esxi_suspend.errors import ExitCode, RemoteTimeout, SessionDropped
from esxi_suspend.inventory import Remote
from esxi_suspend.remote import CommandResult
from esxi_suspend.shutdown import HostResult, check_host, plain_shutdown

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
    plain_shutdown(remote, SETTINGS, result, no_reconnect)
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
    plain_shutdown(remote, SETTINGS, result, no_reconnect)
    assert remote.ran == [esxi.AUTOSTOP, esxi.POWEROFF]
    assert result.exit_code == ExitCode.REMOTE_COMMAND
    assert result.steps[1].ok


def test_session_dropped_by_poweroff_is_success() -> None:
    remote = FakeRemote(
        {esxi.AUTOSTOP: ok(esxi.AUTOSTOP), esxi.POWEROFF: SessionDropped("gone", esxi.POWEROFF)}
    )
    result = HostResult("esxi1")
    plain_shutdown(remote, SETTINGS, result, no_reconnect)
    assert result.exit_code == ExitCode.OK


def test_session_dropped_during_autostop_reconnects_for_poweroff() -> None:
    first = FakeRemote({esxi.AUTOSTOP: SessionDropped("gone", esxi.AUTOSTOP)})
    second = FakeRemote({esxi.POWEROFF: ok(esxi.POWEROFF)})
    result = HostResult("esxi1")
    plain_shutdown(first, SETTINGS, result, lambda: second)
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
    plain_shutdown(remote, SETTINGS, result, no_reconnect)
    assert result.exit_code == ExitCode.REMOTE_COMMAND
    assert "not found" in result.steps[-1].detail


def inventory_remote(
    getallvms: str = GETALLVMS, states: dict[int, str] | None = None
) -> FakeRemote:
    """A fake host answering the inventory's batched read-only command lines."""
    return FakeRemote(fake_host_outcomes(getallvms, states or {}))


def fake_host_outcomes(getallvms: str, states: dict[int, str]) -> dict[str, Outcome]:
    vms = esxi.parse_getallvms(getallvms)
    host_line = (
        "echo @@defaults; vim-cmd hostsvc/autostartmanager/get_defaults; "
        "echo @@sequence; vim-cmd hostsvc/autostartmanager/get_autostartseq; "
        "echo @@poweroff; command -v poweroff; echo @@nohup; command -v nohup"
    )
    host_out = f"@@defaults\n{DEFAULTS}@@sequence\n{SEQUENCE}@@poweroff\n/bin/poweroff\n@@nohup\n"
    state_line = "; ".join(
        f"echo @@state {vm.vmid}; vim-cmd vmsvc/power.getstate {vm.vmid}" for vm in vms
    )
    state_out = "".join(
        f"@@state {vm.vmid}\nRetrieved runtime info\n{states.get(vm.vmid, 'Powered on')}\n"
        for vm in vms
    )
    running = [vm.vmid for vm in vms if states.get(vm.vmid, "Powered on") == "Powered on"]
    guest_line = "; ".join(f"echo @@guest {i}; vim-cmd vmsvc/get.guest {i}" for i in running)
    guest_out = "".join(
        f'@@guest {i}\n   toolsRunningStatus = "guestToolsRunning",\n' for i in running
    )
    outcomes: dict[str, Outcome] = {
        esxi.GETALLVMS: ok(esxi.GETALLVMS, getallvms),
        host_line: ok(host_line, host_out),
        state_line: ok(state_line, state_out),
    }
    if running:
        outcomes[guest_line] = ok(guest_line, guest_out)
    return outcomes


def test_check_names_each_vm_and_its_fate() -> None:
    remote = inventory_remote(states={15: "Powered off"})
    result = HostResult("esxi1")
    check_host(remote, SETTINGS, result, "/bin/true")
    assert result.exit_code == ExitCode.OK, result.steps
    text = result.report
    assert "Web Server (prod)" in text
    assert "phase 1 (before autostop)" in text  # VM 1: outside the sequence
    assert "shutdown, else suspend, phase 1 (before autostop)" in text  # VM 12: PowerOff
    assert "nothing: not running" in text  # VM 15
    assert "(dry run; not run)" in text
    assert all("power.shutdown" not in cmd or cmd.startswith("echo") for cmd in remote.ran[:1])
    changing = ("autostop", "poweroff", "power.shutdown", "power.suspend", "power.off")
    assert not any(
        word in cmd and "command -v" not in cmd and "get" not in cmd
        for cmd in remote.ran
        for word in changing
    ), remote.ran


def test_check_with_hostile_names_runs_only_integer_commands() -> None:
    header = GETALLVMS.splitlines()[0]
    lines = [
        header,
        "8   x; poweroff   [ds1] x/x.vmx   otherGuest  vmx-07",
        "9   $(reboot)\x1b[2J   [ds1] r/r.vmx   otherGuest  vmx-07",
    ]
    remote = inventory_remote("\n".join(lines))
    result = HostResult("esxi1")
    check_host(remote, SETTINGS, result, "/bin/true")
    assert any("power.getstate 8" in cmd for cmd in remote.ran)
    assert all("reboot" not in cmd and "x; poweroff" not in cmd for cmd in remote.ran)
    assert "\x1b" not in result.report
    assert "$(reboot)?[2J" in result.report


def test_check_reports_unparseable_output() -> None:
    remote = inventory_remote()
    remote.outcomes[esxi.GETALLVMS] = ok(esxi.GETALLVMS, "garbage without a vm line")
    result = HostResult("esxi1")
    check_host(remote, SETTINGS, result, "/bin/true")
    assert result.exit_code == ExitCode.REMOTE_COMMAND
    assert "unexpected output" in result.steps[-1].detail
