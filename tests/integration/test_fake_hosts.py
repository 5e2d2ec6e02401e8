"""The fake ESXi hosts themselves, driven by the plain OpenSSH client.

If these fail, end-to-end failures say nothing about esxi-suspend.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from sshservers import FAKEHOST_DATA, FAKEHOST_DIR, SshServer


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
    result = ssh(fake_esxi, "command -v vim-cmd; command -v poweroff; echo $FAKE_ESXI_DIR")

    assert result.stdout.splitlines() == [
        str(FAKEHOST_DIR / "vim-cmd"),
        str(FAKEHOST_DIR / "poweroff"),
        str(fake_esxi.fake_dir),
    ]


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
