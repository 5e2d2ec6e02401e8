"""The steps and the plan, against a fake remote of our own (a table of canned results)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Union

import pytest
from test_esxi import DEFAULTS, GETALLVMS, SEQUENCE

from esxi_suspend import machine
from esxi_suspend.errors import ExitCode, RemoteTimeout, SessionDropped
from esxi_suspend.host import esxi
from esxi_suspend.host.inventory import Remote, inventory_command
from esxi_suspend.host.shutdown import HostResult, check_host, plain_shutdown, shutdown_host
from esxi_suspend.host.vmlist import parse_getallvms
from esxi_suspend.settings.model import RestartSettings, Settings
from esxi_suspend.ssh.remote import CommandResult

Outcome = Union[CommandResult, Exception]


class FakeRemote:
    """Maps each expected command to its outcome; any other command fails the test.

    The inventory's command line carries a random marker token: the key INVENTORY stands
    for it, and the outcome's text has `TOKEN` where the token goes.
    """

    def __init__(self, outcomes: dict[str, Outcome], name: str = "esxi1") -> None:
        self.name = name
        self.outcomes = outcomes
        self.ran: list[str] = []
        self.closed = False

    def run(self, command: str, timeout: int) -> CommandResult:
        self.ran.append(command)
        token = inventory_token(command)
        if token is not None and INVENTORY in self.outcomes:
            outcome = self.outcomes[INVENTORY]
            if isinstance(outcome, CommandResult):
                stdout = outcome.stdout.replace("@@TOKEN ", f"@@{token} ")
                return CommandResult(command, outcome.exit_status, stdout, outcome.stderr)
        if command not in self.outcomes:
            pytest.fail(f"unexpected remote command: {command}")
        outcome = self.outcomes[command]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def close(self) -> None:
        self.closed = True

    @contextmanager
    def exchange(self, command: str, timeout: int, label: str = "") -> Iterator[CannedTalk]:
        """The shutdown command: the INVENTORY outcome's text, then nothing more."""
        self.ran.append(SHUTDOWN)
        outcome = self.outcomes.get(SHUTDOWN, self.outcomes.get(INVENTORY))
        if outcome is None:
            pytest.fail(f"unexpected remote command: {command}")
        if isinstance(outcome, Exception):
            raise outcome
        token = marker_token(command)
        assert token is not None
        yield CannedTalk(outcome.stdout.replace("@@TOKEN ", f"@@{token} "))


class CannedTalk:
    """The shutdown command's output, all there from the start; what we send, recorded."""

    def __init__(self, stdout: str) -> None:
        self.stdout = stdout
        self.sent: list[str] = []

    def read_until(self, marker: str, deadline: float) -> str:
        text, found, self.stdout = self.stdout.partition(f"{marker}\n")
        if not found:
            raise SessionDropped("the output ended", SHUTDOWN)
        return text

    def lines(self, deadline: float) -> Iterator[str]:
        yield from self.stdout.splitlines()

    def send(self, text: str) -> None:
        self.sent.append(text)

    exited = True


INVENTORY = inventory_command(0).replace('m="@@0"', 'm="@@TOKEN"')
SHUTDOWN = "shutdown command"


def marker_token(command: str) -> int | None:
    """The marker token a command line of ours starts with (`m="@@TOKEN"`), or None."""
    match = re.match(r'm="@@(\d+)"\n', command)
    return int(match.group(1)) if match is not None else None


def inventory_token(command: str) -> int | None:
    """The marker token of an inventory command line, or None for any other command."""
    token = marker_token(command)
    if token is None:
        return None
    if command not in (inventory_command(token, every_summary=True), inventory_command(token)):
        return None
    return token


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
    assert second.closed and not first.closed  # the caller closes its own
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


@pytest.mark.parametrize(
    "answer",
    [
        ok(
            SHUTDOWN, "@@TOKEN status 1\n@@TOKEN vms\nvim-cmd: hostd not answering\n@@TOKEN ready\n"
        ),
        ok(SHUTDOWN, "@@TOKEN status 0\n@@TOKEN vms\nno header here\n@@TOKEN ready\n"),
        ok(SHUTDOWN, "@@TOKEN status 0\n"),  # the output ends before READY
        SessionDropped("gone", SHUTDOWN),  # the command cannot even be sent
    ],
)
def test_an_unreadable_host_gets_the_plain_path_and_no_script(answer: Outcome) -> None:
    remote = FakeRemote(
        {SHUTDOWN: answer, esxi.AUTOSTOP: ok(esxi.AUTOSTOP), esxi.POWEROFF: ok(esxi.POWEROFF)}
    )
    result = HostResult("esxi1")
    shutdown_host(remote, SETTINGS, result, no_reconnect)
    assert remote.ran == [SHUTDOWN, esxi.AUTOSTOP, esxi.POWEROFF]
    assert [step.name for step in result.steps] == ["inventory", "autostop", "poweroff"]
    assert result.steps[0].detail.endswith("; falling back to autostop")
    assert result.steps[1].ok and result.steps[2].ok


def inventory_remote(
    getallvms: str = GETALLVMS, states: dict[int, str] | None = None
) -> FakeRemote:
    """A fake host answering the inventory's one command line."""
    return FakeRemote({INVENTORY: ok(INVENTORY, inventory_output(getallvms, states or {}))})


_POWER = {"Powered on": "poweredOn", "Powered off": "poweredOff", "Suspended": "suspended"}


def inventory_output(getallvms: str, states: dict[int, str], status: int = 0) -> str:
    """What the host prints for script.py's INVENTORY: marked sections, a summary per VM."""
    vms = parse_getallvms(getallvms)
    summaries = "".join(
        f"@@TOKEN summary {vm.vmid}\nListsummary:\n\n(vim.vm.Summary) {{\n"
        "   runtime = (vim.vm.RuntimeInfo) {\n"
        f'      powerState = "{_POWER[states.get(vm.vmid, "Powered on")]}",\n   }},\n'
        "   guest = (vim.vm.Summary.GuestSummary) {\n"
        '      toolsRunningStatus = "guestToolsRunning",\n   },\n}\n'
        for vm in vms
    )
    return (
        f"@@TOKEN status {status}\n@@TOKEN vms\n{getallvms}\n@@TOKEN defaults\n{DEFAULTS}"
        f"@@TOKEN sequence\n{SEQUENCE}{summaries}@@TOKEN poweroff\n/bin/poweroff\n"
    )


def test_check_names_each_vm_and_its_fate() -> None:
    remote = inventory_remote(states={15: "Powered off"})
    result = HostResult("esxi1")
    check_host(remote, SETTINGS, result)
    assert result.exit_code == ExitCode.OK, result.steps
    text = result.report
    assert "Web Server (prod)" in text
    assert "phase 1 (before autostop)" in text  # VM 1: outside the sequence
    assert "shutdown, else suspend, phase 1 (before autostop)" in text  # VM 12: PowerOff
    assert "nothing: not running" in text  # VM 15
    assert "(dry run; not run)" in text
    assert "inventory read in 0.0 s; ESXI_DEADLINE=240 s counts from upsmon's call: " in text
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
    check_host(remote, SETTINGS, result)
    (command,) = remote.ran  # one command, no host text in it: constants and our token
    assert inventory_token(command) is not None
    assert "inventory: 2 VM(s)" in "; ".join(f"{s.name}: {s.detail}" for s in result.steps)
    assert "\x1b" not in result.report
    assert "$(reboot)?[2J" in result.report


def test_check_reports_unparseable_output() -> None:
    remote = FakeRemote(
        {INVENTORY: ok(INVENTORY, inventory_output(GETALLVMS, {}).replace(GETALLVMS, "garbage"))}
    )
    result = HostResult("esxi1")
    check_host(remote, SETTINGS, result)
    assert result.exit_code == ExitCode.REMOTE_COMMAND
    assert "unexpected output" in result.steps[-1].detail


def test_inventory_says_which_command_failed_and_why() -> None:
    missing = "@@TOKEN status 127\n@@TOKEN vms\nsh: vim-cmd: not found\n"
    remote = FakeRemote({INVENTORY: ok(INVENTORY, missing)})
    result = HostResult("esxi1")
    check_host(remote, SETTINGS, result)
    assert result.exit_code == ExitCode.REMOTE_COMMAND
    assert result.steps[-1].detail == (
        "host esxi1: `vim-cmd vmsvc/getallvms` exited 127 (sh: vim-cmd: not found)"
    )


def test_a_host_with_only_skipped_vms_has_none() -> None:
    listing = "Skipping invalid VM '3'\r\nSkipping invalid VM '17'\r\n"
    remote = FakeRemote({INVENTORY: ok(INVENTORY, inventory_output(listing, {}))})
    result = HostResult("esxi1")
    check_host(remote, SETTINGS, result)
    assert result.exit_code == ExitCode.OK, result.steps
    assert result.steps[0].detail.startswith("0 VM(s), 0 running; read in ")


def steps_text(result: HostResult) -> str:
    return "; ".join(f"{s.name}: {s.detail}" for s in result.steps)


@pytest.fixture
def no_smbios(monkeypatch: pytest.MonkeyPatch) -> None:
    """This machine is not a VMware VM: its own VM is never found by UUID."""
    monkeypatch.setattr(machine, "smbios_uuid", lambda: None)


@pytest.mark.usefixtures("no_smbios")
def test_check_fails_when_esxi_self_vm_names_no_vm() -> None:
    result = HostResult("esxi1")
    check_host(inventory_remote(), replace(SETTINGS, self_vm="nut-clinet"), result)
    assert result.exit_code == ExitCode.CONFIG, result.steps
    (failed,) = [step for step in result.steps if not step.ok]
    assert failed.name == "self VM"
    assert failed.detail.startswith("ESXI_SELF_VM=nut-clinet names no VM on this host")
    assert "its VMs by id: 1 nut-client, 12 Web Server (prod), 15 win2019" in failed.detail
    assert "set ESXI_SELF_VM to this machine's VM id or name as listed, or remove it" in (
        failed.detail
    )
    assert "ESXI_SELF_VM=nut-clinet names no VM" in result.report


@pytest.mark.usefixtures("no_smbios")
@pytest.mark.parametrize("wanted", ["nut-client", "1"])
def test_check_finds_esxi_self_vm_by_name_or_id(wanted: str) -> None:
    result = HostResult("esxi1")
    check_host(inventory_remote(), replace(SETTINGS, self_vm=wanted), result)
    assert result.exit_code == ExitCode.OK, result.steps
    assert "self VM" not in steps_text(result)
    assert f"this machine is VM 1 (ESXI_SELF_VM={wanted}): it goes last, by suspend" in (
        result.report
    )
    assert "this machine: suspended last, just before host poweroff" in result.report


@pytest.mark.usefixtures("no_smbios")
def test_check_says_once_when_this_machine_is_not_found() -> None:
    result = HostResult("esxi1")
    check_host(inventory_remote(), SETTINGS, result)
    assert result.exit_code == ExitCode.OK, result.steps  # a separate machine is allowed
    found = [line for line in result.report.splitlines() if "this machine" in line]
    assert found == [
        "  this machine's own VM: not found (ESXI_SELF_VM unset; SMBIOS UUID unreadable: not a "
        "VMware VM, or not root): so it is not stopped last by us; if this machine is a VM on "
        "this host, set ESXI_SELF_VM to its id or name"
    ]


def test_check_prints_no_local_restart_line() -> None:
    """The local restart is the same for every host: the caller prints it once per run."""
    result = HostResult("esxi1")
    check_host(inventory_remote(), SETTINGS, result)
    assert "local:" not in result.report and "/bin/true" not in result.report
