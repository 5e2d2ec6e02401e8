"""The simulator's shell and host model, without SSH: a recording terminal stands in."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from esxi_suspend import esxi
from esxi_suspend.simulator import Fate, FleetError, VmSpec, fleet_from_dict
from esxi_suspend.simulator.fleet import Fleet, default_fleet, generated_fleet
from esxi_suspend.simulator.host import HostDown, HostModel
from esxi_suspend.simulator.shell import Shell, parse


class Recorder:
    def __init__(self) -> None:
        self.out = ""
        self.err = ""
        self.holders = 0

    def write(self, fd: int, text: str) -> None:
        if fd == 2:
            self.err += text
        else:
            self.out += text

    def hold(self) -> None:
        self.holders += 1

    def release(self) -> None:
        self.holders -= 1


@pytest.fixture
def host() -> Iterator[HostModel]:
    model = HostModel(default_fleet(), time_scale=0.001)
    yield model
    model.stop()


def sh(host: HostModel, command: str) -> tuple[int, str, str]:
    term = Recorder()
    status = Shell(host, 1).run(command, term)
    return status, term.out, term.err


@pytest.mark.parametrize(
    ("command", "status", "out"),
    [
        ("true && echo yes", 0, "yes\n"),
        ("false && echo yes", 1, ""),
        ("false || echo no", 0, "no\n"),
        ("false; echo $?", 0, "1\n"),
        ("true || echo never; echo after", 0, "after\n"),
        ("echo 'a  b' \"c $? d\" e\\ f", 0, "a  b c 0 d e f\n"),
        ("echo '$?'", 0, "$?\n"),
        ("sh -c 'echo inner; exit 3'; echo $?", 0, "inner\n3\n"),
        ("echo x > /tmp/f; echo y >> /tmp/f; cat /tmp/f", 0, "x\ny\n"),
        ("echo gone >/dev/null 2>&1", 0, ""),
        ("nohup setsid echo wrapped", 0, "wrapped\n"),
        ("trap '' HUP; echo trapped", 0, "trapped\n"),
        ("command -v poweroff", 0, "/sbin/poweroff\n"),
        ("command -v vim-cmd", 0, "/bin/vim-cmd\n"),
        ("command -v nosuch || echo missing", 0, "missing\n"),
        ("vmware -v", 0, "VMware ESXi 6.7.0 build-17700523\n"),
        ("# a comment\necho one\necho two", 0, "one\ntwo\n"),
    ],
)
def test_shell_semantics(host: HostModel, command: str, status: int, out: str) -> None:
    assert sh(host, command)[:2] == (status, out)


def test_unknown_command_is_127(host: HostModel) -> None:
    assert sh(host, "esxcli system shutdown") == (127, "", "sh: esxcli: not found\n")
    assert sh(host, "/opt/bin/thing")[0] == 127


def test_stderr_redirections_follow_order(host: HostModel) -> None:
    _, out, err = sh(host, "cat /nope 2>&1")
    assert "can't open" in out and err == ""
    _, out, err = sh(host, "cat /nope 2>&1 >/dev/null")  # stderr to the old stdout
    assert "can't open" in out and err == ""
    _, out, err = sh(host, "cat /nope >/dev/null 2>&1")
    assert out == err == ""


@pytest.mark.parametrize("command", ["echo 'open", "&& true", "true &&", "ls | grep x", "$(id)"])
def test_syntax_errors_exit_2(host: HostModel, command: str) -> None:
    status, _, err = sh(host, command)
    assert status == 2 and err.startswith("sh: syntax error")


def test_parse_background_and_lists() -> None:
    items = parse("a && b || c & d ; e")
    assert [item.background for item in items] == [True, False, False]
    assert [joiner for joiner, _ in items[0].rest] == ["&&", "||"]


def test_vim_cmd_outputs_parse_with_our_parsers(host: HostModel) -> None:
    vms = esxi.parse_getallvms(sh(host, "vim-cmd vmsvc/getallvms")[1])
    assert [vm.vmid for vm in vms] == [spec.vmid for spec in host.fleet.vms]
    assert [vm.name for vm in vms] == [spec.name for spec in host.fleet.vms]
    assert vms[-1].annotation == "scratch box\nsecond line of notes"
    defaults = esxi.parse_defaults(sh(host, "vim-cmd hostsvc/autostartmanager/get_defaults")[1])
    assert (defaults.stop_action, defaults.stop_delay) == ("PowerOff", 120)
    seq = esxi.parse_autostartseq(sh(host, "vim-cmd hostsvc/autostartmanager/get_autostartseq")[1])
    assert [e.vmid for e in seq] == [12, 13, 15, 20, 21, 30]
    state = sh(host, "vim-cmd vmsvc/power.getstate 31")[1]
    assert esxi.parse_power_state(state) is esxi.PowerState.OFF
    assert 'toolsRunningStatus = "guestToolsRunning"' in sh(host, "vim-cmd vmsvc/get.guest 12")[1]
    assert 'uuid = "' in sh(host, "vim-cmd vmsvc/get.config 12")[1]


def test_empty_sequence_shape() -> None:
    model = HostModel(Fleet(vms=(VmSpec(1, "a"),)), time_scale=0.001)
    try:
        out = sh(model, "vim-cmd hostsvc/autostartmanager/get_autostartseq")[1]
        assert out == "(vim.host.AutoStartManager.AutoPowerInfo) []\n"
        assert esxi.parse_autostartseq(out) == []
    finally:
        model.stop()


def test_power_errors_like_esxi(host: HostModel) -> None:
    status, out, _ = sh(host, "vim-cmd vmsvc/power.shutdown 20")  # no tools
    assert status == 1 and "vim.fault.ToolsUnavailable" in out
    status, out, _ = sh(host, "vim-cmd vmsvc/power.off 31")  # already off
    assert status == 1
    assert "cannot be performed in the current state (Powered off)." in out
    status, _, err = sh(host, "vim-cmd vmsvc/power.getstate 999")
    assert status == 1 and 'Unable to find a VM corresponding to "999"' in err


def test_guest_shutdown_returns_at_once_then_takes_its_time(host: HostModel) -> None:
    assert sh(host, "vim-cmd vmsvc/power.shutdown 12")[0] == 0
    assert host.power_states()[12] == "Powered on"
    host.sleep(30, None)  # shutdown_seconds 25
    assert host.fates()[12] is Fate.CLEAN_SHUTDOWN
    assert sh(host, "vim-cmd vmsvc/power.suspend 21") == (0, "Suspending VM:\n", "")
    assert host.fates()[21] is Fate.SUSPENDED
    assert sh(host, "vim-cmd vmsvc/power.off 40")[0] == 0
    assert host.fates()[40] is Fate.POWERED_OFF


def test_autostop_semantics(host: HostModel) -> None:
    start = host.now()
    assert sh(host, "vim-cmd hostsvc/autostartmanager/autostop")[0] == 0
    took = host.now() - start
    fates = host.fates()
    # reverse start order: pfSense powerOff (1 s), build-runner suspend (8 s), legacy-erp no
    # tools (left running), win2019 95 s, db-01 70 s, web 25 s
    assert fates[30] is Fate.POWERED_OFF
    assert fates[21] is Fate.SUSPENDED
    assert fates[20] is Fate.RUNNING
    assert fates[15] is fates[13] is fates[12] is Fate.CLEAN_SHUTDOWN
    assert fates[1] is fates[40] is Fate.RUNNING  # outside the sequence: untouched
    assert 1 + 8 + 95 + 70 + 25 <= took < 1 + 8 + 95 + 70 + 25 + 60
    order = [e.vmid for e in host.events if e.kind == "autostop" and "waits up to" in e.text]
    assert order == [30, 21, 20, 15, 13, 12]
    with pytest.raises(HostDown):
        sh(host, "poweroff")
    fates = host.fates()
    assert {vmid for vmid, fate in fates.items() if fate is Fate.HARD_KILLED} == {1, 20, 40}
    assert fates[31] is Fate.WAS_OFF
    assert host.powered_off


def test_stop_delay_bounds_the_wait() -> None:
    slow = VmSpec(5, "slow", shutdown_seconds=500, start_order=1, stop_action="guestShutdown",
                  stop_delay=30)  # fmt: skip
    model = HostModel(Fleet(vms=(slow,)), time_scale=0.001)
    try:
        start = model.now()
        sh(model, "vim-cmd hostsvc/autostartmanager/autostop")
        assert 30 <= model.now() - start < 60
        assert model.fates()[5] is Fate.RUNNING
        model.power_off_host(None)
        assert model.fates()[5] is Fate.HARD_KILLED
        assert "guest shutdown was still running" in model.events[-2].text
    finally:
        model.stop()


def test_background_job_survives_and_poweroff_ends_it(host: HostModel) -> None:
    term = Recorder()
    status = Shell(host, 1).run("sleep 100000 && echo never > /tmp/x &", term)
    assert status == 0 and term.holders == 1  # no redirection: it holds the session's stdout
    assert len(host.background_jobs()) == 1
    host.cancel_session_jobs(1)  # the session drops: a background job is not its foreground
    time.sleep(0.05)
    assert len(host.background_jobs()) == 1
    host.power_off_host(None)
    deadline = time.monotonic() + 5
    while host.background_jobs() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert host.background_jobs() == [] and term.holders == 0
    assert host.read_file("/tmp/x") is None


def test_detached_sequence_runs_to_poweroff(host: HostModel) -> None:
    line = (
        'nohup sh -c "vim-cmd hostsvc/autostartmanager/autostop; /sbin/shutdown.sh && '
        '/sbin/poweroff" >/dev/null 2>&1 </dev/null &'
    )
    term = Recorder()
    assert Shell(host, 1).run(line, term) == 0 and term.holders == 0
    assert host.wait_powered_off(10)
    assert host.fates()[12] is Fate.CLEAN_SHUTDOWN


def test_fleet_validation_lists_every_problem() -> None:
    with pytest.raises(FleetError) as caught:
        fleet_from_dict({"vms": [{"id": 0}, {"id": 2, "name": "x", "tools": "yes"}], "x": 1})
    text = str(caught.value)
    assert "4 problem(s)" in text and "unknown key(s) x" in text and "tools" in text


def test_generated_fleet_mix() -> None:
    fleet = generated_fleet(40)
    assert len(fleet.vms) == 40
    assert sum(not vm.tools for vm in fleet.vms) == 10
    assert sum(not vm.in_autostart for vm in fleet.vms) == 8
