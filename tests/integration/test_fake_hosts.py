"""The fake ESXi hosts themselves, driven by the plain OpenSSH client.

If these fail, end-to-end failures say nothing about esxi-suspend.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from sshservers import FAKEHOST_DATA, FAKEHOST_DIR, SshServer, host_processes, kill_leftovers

pytestmark = pytest.mark.servers


def ssh(
    server: SshServer,
    command: str,
    *,
    key: Path | None = None,
    known_hosts: Path | None = None,
    timeout: float = 30,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*server.ssh_argv(key=key, known_hosts=known_hosts), command],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_banner_names_the_server(fake_esxi: SshServer) -> None:
    expected = {"openssh": "OpenSSH", "dropbear": "dropbear"}[fake_esxi.kind]
    assert expected in fake_esxi.banner


def test_getallvms_prints_the_default_list_and_is_logged(fake_esxi: SshServer) -> None:
    result = ssh(fake_esxi, "vim-cmd vmsvc/getallvms")

    assert result.returncode == 0, result.stderr
    assert result.stdout == (FAKEHOST_DATA / "getallvms.txt").read_text()
    assert fake_esxi.commands() == ["vim-cmd vmsvc/getallvms"]


def test_getallvms_prints_what_the_test_wrote(fake_esxi: SshServer) -> None:
    listing = (
        "Vmid   Name   File   Guest OS   Version   Annotation\n"
        "7      Ünïcode VM   [ds] u/u.vmx   otherGuest   vmx-19\n"
    )
    fake_esxi.write_fake("getallvms.txt", listing)

    assert ssh(fake_esxi, "vim-cmd vmsvc/getallvms").stdout == listing


def test_default_listing_has_the_awkward_cases() -> None:
    listing = (FAKEHOST_DATA / "getallvms.txt").read_text().splitlines()
    autostart = (FAKEHOST_DATA / "get_autostartseq.txt").read_text()

    assert any("[prod] (v2)" in line for line in listing)  # spaces and brackets in a name
    assert any(line and not line[0].isdigit() for line in listing[1:])  # annotation runs on
    assert "vim.VirtualMachine:15'" not in autostart  # 15 is outside the autostart sequence
    assert "vim.VirtualMachine:12'" in autostart


def test_power_getstate_default_and_override(fake_esxi: SshServer) -> None:
    fake_esxi.write_fake("state/15", "Suspended")

    on = ssh(fake_esxi, "vim-cmd vmsvc/power.getstate 12")
    suspended = ssh(fake_esxi, "vim-cmd vmsvc/power.getstate 15")
    missing = ssh(fake_esxi, "vim-cmd vmsvc/power.getstate 99")

    assert on.stdout == "Retrieved runtime info\nPowered on\n"
    assert suspended.stdout == "Retrieved runtime info\nSuspended\n"
    assert missing.returncode != 0
    assert '"99"' in missing.stderr


def test_power_commands_change_the_state(fake_esxi: SshServer) -> None:
    result = ssh(fake_esxi, "vim-cmd vmsvc/power.off 1 && vim-cmd vmsvc/power.getstate 1")

    assert result.stdout.splitlines()[-1] == "Powered off"


def test_guest_shutdown_needs_tools(fake_esxi: SshServer) -> None:
    fake_esxi.write_fake("tools/1", "guestToolsNotRunning")

    guest = ssh(fake_esxi, "vim-cmd vmsvc/get.guest 1")
    shutdown = ssh(fake_esxi, "vim-cmd vmsvc/power.shutdown 1")

    assert 'toolsRunningStatus = "guestToolsNotRunning",' in guest.stdout
    assert shutdown.returncode != 0
    assert "vim.fault.ToolsUnavailable" in shutdown.stdout


@pytest.mark.parametrize(
    ("state", "power", "tools"),
    [
        (None, "poweredOn", "guestToolsRunning"),
        ("Powered on", "poweredOn", "guestToolsRunning"),
        ("Powered off", "poweredOff", "guestToolsNotRunning"),
        ("Suspended", "suspended", "guestToolsNotRunning"),
    ],
)
def test_get_summary_shape_and_power_state(
    fake_esxi: SshServer, state: str | None, power: str, tools: str
) -> None:
    if state is not None:
        fake_esxi.write_fake("state/12", state)

    result = ssh(fake_esxi, "vim-cmd vmsvc/get.summary 12")

    lines = result.stdout.splitlines()
    assert result.returncode == 0, result.stderr
    assert lines[:3] == ["Listsummary:", "", "(vim.vm.Summary) {"]
    assert lines[-1] == "}"
    runtime = lines.index("   runtime = (vim.vm.RuntimeInfo) {")
    guest = lines.index("   guest = (vim.vm.Summary.GuestSummary) {")
    config = lines.index("   config = (vim.vm.Summary.ConfigSummary) {")
    assert runtime < lines.index(f'      powerState = "{power}",') < guest
    assert guest < lines.index(f'      toolsRunningStatus = "{tools}",') < config
    assert config < lines.index('      name = "Web Server [prod] (v2)",')
    assert config < lines.index(
        '      vmPathName = "[datastore1] Web Server [prod] (v2)/Web Server [prod] (v2).vmx",'
    )
    assert config < lines.index('      uuid = "564d0000-0000-0000-0000-000000000012",')
    assert fake_esxi.commands() == ["vim-cmd vmsvc/get.summary 12"]


def test_get_summary_overrides(fake_esxi: SshServer) -> None:
    fake_esxi.write_fake("tools/1", "guestToolsExecutingScripts")
    fake_esxi.write_fake("uuid/1", "564d1111-2222-3333-4444-555566667777")
    fake_esxi.write_fake("tools/15", "guestToolsRunning")
    fake_esxi.write_fake("state/15", "Powered off")
    fake_esxi.write_fake("summary/12", "Listsummary:\n\n(vim.vm.Summary) {\n}")

    one = ssh(fake_esxi, "vim-cmd vmsvc/get.summary 1").stdout
    off = ssh(fake_esxi, "vim-cmd vmsvc/get.summary 15").stdout
    replaced = ssh(fake_esxi, "vim-cmd vmsvc/get.summary 12").stdout
    missing = ssh(fake_esxi, "vim-cmd vmsvc/get.summary 99")

    assert '      toolsRunningStatus = "guestToolsExecutingScripts",\n' in one
    assert '      uuid = "564d1111-2222-3333-4444-555566667777",\n' in one
    assert '      toolsRunningStatus = "guestToolsNotRunning",\n' in off  # tools need the VM on
    assert replaced == "Listsummary:\n\n(vim.vm.Summary) {\n}\n"
    assert missing.returncode != 0
    assert '"99"' in missing.stderr


def test_latency_delays_every_vim_cmd_call(fake_esxi: SshServer) -> None:
    fake_esxi.set_latency(0.6)

    started = time.monotonic()
    result = ssh(
        fake_esxi,
        "for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16; do"
        " vim-cmd vmsvc/power.getstate 12 > $TMPDIR/$i & done; wait; cat $TMPDIR/*",
    )
    parallel = time.monotonic() - started
    fake_esxi.set_latency(0)
    started = time.monotonic()
    ssh(fake_esxi, "vim-cmd vmsvc/power.getstate 12")
    without = time.monotonic() - started

    assert result.stdout == "Retrieved runtime info\nPowered on\n" * 16
    assert 0.6 <= parallel < 0.6 * 16 / 2  # each call slept, side by side
    assert without < parallel
    assert not (fake_esxi.fake_dir / "latency").exists()


def test_guest_shutdown_takes_effect_at_once_by_default(fake_esxi: SshServer) -> None:
    result = ssh(fake_esxi, "vim-cmd vmsvc/power.shutdown 12; vim-cmd vmsvc/power.getstate 12")

    assert result.stdout == "Retrieved runtime info\nPowered off\n"


def test_guest_shutdown_takes_shutdown_seconds(fake_esxi: SshServer) -> None:
    fake_esxi.write_fake("shutdown_seconds", "1")
    getstate = "vim-cmd vmsvc/power.getstate"

    started = time.monotonic()
    result = ssh(fake_esxi, f"vim-cmd vmsvc/power.shutdown 12; {getstate} 12")
    returned = time.monotonic() - started
    time.sleep(1.5)
    later = ssh(fake_esxi, f"{getstate} 12")

    assert returned < 1  # returns at once, as ESXi's power.shutdown does
    assert result.stdout.splitlines()[-1] == "Powered on"
    assert later.stdout.splitlines()[-1] == "Powered off"


def test_delayed_guest_shutdown_does_not_undo_a_suspend(fake_esxi: SshServer) -> None:
    fake_esxi.write_fake("shutdown_seconds", "0.5")

    ssh(fake_esxi, "vim-cmd vmsvc/power.shutdown 12; vim-cmd vmsvc/power.suspend 12")
    time.sleep(1)

    assert ssh(fake_esxi, "vim-cmd vmsvc/power.getstate 12").stdout.endswith("\nSuspended\n")


def test_leftovers_are_killed(fake_esxi: SshServer) -> None:
    fake_esxi.write_fake("shutdown_seconds", "60")
    ssh(fake_esxi, "nohup sh -c 'while :; do sleep 1; done' </dev/null >/dev/null 2>&1 &")
    ssh(fake_esxi, "vim-cmd vmsvc/power.shutdown 12")
    assert host_processes(fake_esxi.fake_dir)

    kill_leftovers(fake_esxi.fake_dir)

    assert host_processes(fake_esxi.fake_dir) == []


def test_autostart_shapes(fake_esxi: SshServer) -> None:
    defaults = ssh(fake_esxi, "vim-cmd hostsvc/autostartmanager/get_defaults")
    sequence = ssh(fake_esxi, "vim-cmd hostsvc/autostartmanager/get_autostartseq")

    assert defaults.stdout.startswith("(vim.host.AutoStartManager.SystemDefaults) {\n")
    assert '   stopAction = "PowerOff",\n' in defaults.stdout
    assert sequence.stdout.startswith("(vim.host.AutoStartManager.AutoPowerInfo) [\n")
    assert "      key = 'vim.VirtualMachine:12',\n" in sequence.stdout


def test_empty_autostart_sequence_override(fake_esxi: SshServer) -> None:
    fake_esxi.write_fake("get_autostartseq.txt", "(vim.host.AutoStartManager.AutoPowerInfo) []")

    result = ssh(fake_esxi, "vim-cmd hostsvc/autostartmanager/get_autostartseq")

    assert result.stdout == "(vim.host.AutoStartManager.AutoPowerInfo) []\n"


def test_unknown_vim_cmd_fails(fake_esxi: SshServer) -> None:
    result = ssh(fake_esxi, "vim-cmd vmsvc/destroy 12")

    assert result.returncode == 1
    assert "vmsvc/destroy" in result.stderr


def test_autostop_sleeps_and_fails_on_request(fake_esxi: SshServer) -> None:
    fake_esxi.write_fake("autostop_seconds", "1")
    fake_esxi.write_fake("autostop_exit", "3")

    started = time.monotonic()
    result = ssh(fake_esxi, "vim-cmd hostsvc/autostartmanager/autostop")

    assert time.monotonic() - started >= 1
    assert result.returncode == 3
    assert fake_esxi.commands() == ["vim-cmd hostsvc/autostartmanager/autostop"]


def test_fake_commands_come_first_on_path(fake_esxi: SshServer) -> None:
    """They are a copy of tests/fakehost/ next to the host's FAKE_ESXI_DIR, not the checkout's:
    the server sees a home of its own over /root, where a clone may be."""
    result = ssh(fake_esxi, "command -v vim-cmd; command -v poweroff; echo $FAKE_ESXI_DIR")

    assert fake_esxi.fakehost.parent == fake_esxi.fake_dir.parent
    assert not fake_esxi.fakehost.is_relative_to(FAKEHOST_DIR.parents[1])
    assert (fake_esxi.fakehost / "vim-cmd").read_bytes() == (FAKEHOST_DIR / "vim-cmd").read_bytes()
    assert result.stdout.splitlines() == [
        str(fake_esxi.fakehost / "vim-cmd"),
        str(fake_esxi.fakehost / "poweroff"),
        str(fake_esxi.fake_dir),
    ]


def test_esxcli_lists_the_running_vms_over_ssh(fake_esxi: SshServer) -> None:
    """The fake `esxcli` is in the host's copy, runnable, first on PATH, and reads the same
    state as vim-cmd (tests/integration/test_fake_esxcli.py tests it in detail)."""
    fake_esxi.write_fake("state/15", "Suspended")

    result = ssh(fake_esxi, "command -v esxcli; vim-cmd vmsvc/power.off 12; esxcli vm process list")

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:2] == [str(fake_esxi.fakehost / "esxcli"), "Powering off VM:"]
    assert lines[2] == "nut-client" and "   Display Name: nut-client" in lines
    assert "win2019" not in result.stdout and "Web Server" not in result.stdout
    assert fake_esxi.commands() == ["vim-cmd vmsvc/power.off 12", "esxcli vm process list"]


def test_poweroff_is_the_fake_one_in_nested_shells_too(fake_esxi: SshServer) -> None:
    """SAFETY: no command line sent to a fake host can reach this machine's real poweroff."""
    result = ssh(
        fake_esxi,
        "command -v poweroff; sh -c 'command -v poweroff'; "
        "nohup sh -c 'command -v poweroff' </dev/null 2>&1",
    )

    assert result.stdout.splitlines() == [str(fake_esxi.fakehost / "poweroff")] * 3


def test_command_lines_run_under_busybox_ash(fake_esxi: SshServer) -> None:
    result = ssh(
        fake_esxi,
        # `; true`: a shell runs a lone last command in its own process, not in a child
        "readlink /proc/$$/exe; sh -c 'readlink /proc/$$/exe; true'; "
        "nohup sh -c 'readlink /proc/$$/exe; true' </dev/null 2>&1",
    )

    busybox = os.path.realpath(shutil.which("busybox") or "busybox")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [busybox] * 3


def test_host_tmpdir_and_working_directory_are_the_tests_own(fake_esxi: SshServer) -> None:
    result = ssh(
        fake_esxi, 'echo "$TMPDIR"; pwd; echo log > "${TMPDIR:-/tmp}/esxi-suspend-1-2.log"'
    )

    assert result.stdout.splitlines() == [str(fake_esxi.host_tmp), str(fake_esxi.fake_dir)]
    assert fake_esxi.host_logs() == [fake_esxi.host_tmp / "esxi-suspend-1-2.log"]


def test_commands_are_logged_in_order(fake_esxi: SshServer) -> None:
    ssh(fake_esxi, "vim-cmd hostsvc/autostartmanager/autostop && poweroff")

    assert fake_esxi.commands() == ["vim-cmd hostsvc/autostartmanager/autostop", "poweroff"]


def test_poweroff_exit0_mode(fake_esxi: SshServer) -> None:
    result = ssh(fake_esxi, "poweroff; echo still here")

    assert result.returncode == 0
    assert result.stdout == "still here\n"


def test_poweroff_drop_mode_ends_the_session(fake_esxi: SshServer) -> None:
    fake_esxi.write_fake("poweroff_mode", "drop")

    started = time.monotonic()
    result = ssh(fake_esxi, "poweroff; echo still here")

    assert time.monotonic() - started < 5  # dropped, not timed out
    assert result.returncode == 255  # ssh: connection lost, no exit status
    assert "still here" not in result.stdout
    assert fake_esxi.commands() == ["poweroff"]


def test_server_survives_a_dropped_session(fake_esxi: SshServer) -> None:
    fake_esxi.write_fake("poweroff_mode", "drop")
    ssh(fake_esxi, "poweroff")

    assert ssh(fake_esxi, "vim-cmd vmsvc/power.getstate 1").returncode == 0


@pytest.mark.parametrize("which", ["empty", "wrong"])
def test_unpinned_host_key_is_refused(fake_esxi: SshServer, which: str) -> None:
    known_hosts = {"empty": fake_esxi.empty_known_hosts, "wrong": fake_esxi.wrong_known_hosts}

    result = ssh(fake_esxi, "vim-cmd vmsvc/getallvms", known_hosts=known_hosts[which])

    assert result.returncode == 255
    assert "Host key verification failed" in result.stderr
    if which == "wrong":
        assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in result.stderr
    assert fake_esxi.commands() == []


def test_unauthorized_client_key_is_refused(fake_esxi: SshServer) -> None:
    result = ssh(fake_esxi, "vim-cmd vmsvc/getallvms", key=fake_esxi.keys.stranger_key)

    assert result.returncode == 255
    assert "Permission denied" in result.stderr
    assert fake_esxi.commands() == []


def test_passphrase_key_is_encrypted_and_authorized(fake_esxi: SshServer) -> None:
    key = fake_esxi.passphrase_key_file
    no_passphrase = subprocess.run(
        ["ssh-keygen", "-y", "-P", "", "-f", str(key)], capture_output=True, check=False
    )
    with_passphrase = subprocess.run(
        ["ssh-keygen", "-y", "-P", fake_esxi.passphrase, "-f", str(key)],
        capture_output=True,
        text=True,
        check=False,
    )

    assert no_passphrase.returncode != 0
    assert with_passphrase.stdout.split()[:2] == Path(f"{key}.pub").read_text().split()[:2]
    assert oct(key.stat().st_mode & 0o777) == "0o600"


def test_env_file_is_private_and_points_at_the_server(fake_esxi: SshServer) -> None:
    from dotenv import dotenv_values

    env_file = fake_esxi.write_env(passphrase=True)

    values = dotenv_values(env_file, interpolate=False)
    assert oct(env_file.stat().st_mode & 0o777) == "0o600"
    assert values["ESXI_PORT"] == str(fake_esxi.port)
    assert values["ESXI_KEY_PASSPHRASE"] == fake_esxi.passphrase


def test_restart_script_appends_to_the_marker(fake_esxi: SshServer) -> None:
    subprocess.run([str(fake_esxi.restart_script)], check=True, env={})
    subprocess.run([str(fake_esxi.restart_script)], check=True, env={})

    assert len(fake_esxi.restarts()) == 2


def test_real_root_ssh_dir_is_untouched(fake_esxi: SshServer) -> None:
    pub = Path(f"{fake_esxi.key_file}.pub").read_text().split()[1]
    authorized = Path("/root/.ssh/authorized_keys")

    assert not authorized.exists() or pub not in authorized.read_text()
