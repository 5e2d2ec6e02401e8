"""Our key's line: the options each SSH server takes (by its banner), the line enroll writes,
the options check reads back, ESXI_KEY_FROM; and the daily check's look before it runs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from esxi_suspend import daily, lock
from esxi_suspend.nut.ups import UpsStatus
from esxi_suspend.settings.model import RestartSettings, Target
from esxi_suspend.settings.values import key_from
from esxi_suspend.ssh import keyline

ALL = keyline.RESTRICTIONS


@pytest.mark.parametrize(
    ("banner", "takes_from", "restrictions"),
    [
        ("SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3", True, ALL),
        ("SSH-2.0-OpenSSH_5.6", True, ALL),  # ESXi 5.x
        ("SSH-2.0-dropbear_2022.83", False, ALL),
        ("SSH-2.0-dropbear_2020.80", False, ALL),
        ("SSH-2.0-dropbear_2020.79", False, ("no-port-forwarding", "no-pty")),
        ("SSH-2.0-dropbear_2011.54", False, ("no-port-forwarding", "no-pty")),
        ("SSH-2.0-dropbear_0.52", False, ("no-port-forwarding", "no-pty")),
        ("SSH-2.0-dropbear_0.51", False, ()),  # skips any line with options
        ("SSH-2.0-dropbear", False, ()),
        ("SSH-2.0-libssh_0.9.6", False, ()),
        ("", False, ()),
    ],
)
def test_options_follow_the_servers_banner(
    banner: str, takes_from: bool, restrictions: tuple[str, ...]
) -> None:
    server = keyline.server_options(banner)
    assert (server.takes_from, server.restrictions) == (takes_from, restrictions)
    assert server.why


def test_the_line_and_its_options_read_back() -> None:
    options = keyline.options_text(("127.0.0.1", "10.0.0.0/8"), ALL)
    line = keyline.key_line(options, "ssh-ed25519", "AAAAkey+/=", "esxi-suspend@nut\tbox\x1b")
    assert line == (
        'from="127.0.0.1,10.0.0.0/8",no-port-forwarding,no-agent-forwarding,'
        "no-X11-forwarding,no-pty ssh-ed25519 AAAAkey+/= esxi-suspend@nut box"
    )
    assert keyline.line_options(line, "AAAAkey+/=") == ['from="127.0.0.1,10.0.0.0/8"', *ALL]
    assert keyline.line_options("ssh-ed25519 AAAAkey+/= c", "AAAAkey+/=") == []
    assert keyline.line_options("ssh-ed25519 AAAAother c", "AAAAkey+/=") is None
    spaced = 'command="echo a, b",no-pty ssh-rsa AAAAkey+/='
    assert keyline.line_options(spaced, "AAAAkey+/=") == ['command="echo a, b"', "no-pty"]
    assert keyline.key_line("", "ssh-rsa", "AAAA") == "ssh-rsa AAAA"


def test_check_reads_with_a_constant_command_and_parses_it() -> None:
    command = keyline.read_command("root", "AAAAkey+/=")
    assert "/etc/ssh/keys-root/authorized_keys" in command and "grep -F -e AAAAkey+/=" in command
    with pytest.raises(ValueError):
        keyline.read_command("root", "AAAA; reboot")
    found = keyline.parse_read(
        "file /etc/ssh/keys-root/authorized_keys\nno-pty ssh-ed25519 AAAAkey+/= x\n",
        "AAAAkey+/=",
    )
    assert (found.where, found.options, found.lines) == (
        "/etc/ssh/keys-root/authorized_keys",
        ("no-pty",),
        1,
    )
    openssh = keyline.server_options("SSH-2.0-OpenSSH_9.2p1")
    assert found.missing(openssh) == ["from=", *ALL[:3]]
    assert keyline.parse_read("file none\n", "AAAAkey+/=").options is None
    assert keyline.parse_read("file /x\nssh-rsa AAAAnot x\n", "AAAAkey+/=").options is None
    restricted = keyline.parse_read('file /x\nrestrict,from="1.2.3.4" ssh-rsa K\n', "K")
    assert restricted.missing(openssh) == [] and restricted.from_value == "1.2.3.4"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("auto", ("auto",)),
        (" None ", ("none",)),
        ("192.168.1.5", ("192.168.1.5",)),
        ("192.168.1.5/32, 10.0.0.7/8, ::1", ("192.168.1.5/32", "10.0.0.0/8", "::1")),
        ("10.0.0.1,10.0.0.1", ("10.0.0.1",)),
    ],
)
def test_key_from_values(value: str, expected: tuple[str, ...]) -> None:
    assert key_from(value) == expected


@pytest.mark.parametrize("value", ["esxi-nut.lan", '1.2.3.4"', "1.2.3.4 5.6.7.8", ",", "*"])
def test_key_from_refuses_what_is_not_an_address(value: str) -> None:
    with pytest.raises(ValueError, match="auto"):
        key_from(value)


def test_client_address() -> None:
    assert keyline.client_address("10.0.0.5\n") == "10.0.0.5"
    assert keyline.client_address("::ffff:10.0.0.5") == "10.0.0.5"
    assert keyline.client_address("fe80::1") == "fe80::1"
    assert keyline.client_address("") is None
    assert keyline.client_address("10.0.0.5 5555 10.0.0.1 22") is None


def test_a_held_lock_is_seen_without_taking_it(tmp_path: Path) -> None:
    assert not lock.held("esxi1", 22, tmp_path)
    fd = lock.acquire("esxi1", 22, tmp_path)
    assert fd is not None
    try:
        assert lock.held("esxi1", 22, tmp_path)
        assert not lock.held("esxi2", 22, tmp_path)
    finally:
        os.close(fd)
    assert not lock.held("esxi1", 22, tmp_path)


def test_the_daily_check_leaves_the_hosts_alone_on_battery() -> None:
    targets = (Target("esxi-daily.invalid", "root", 22),)
    restart = RestartSettings(ups_names=("ups@localhost",))

    def on_battery(names: tuple[str, ...]) -> UpsStatus:
        return UpsStatus((("ups@localhost", "OB DISCHRG"),))

    def on_line(names: tuple[str, ...]) -> UpsStatus:
        return UpsStatus((("ups@localhost", "OL"),))

    why = daily.busy(targets, restart, on_battery)
    assert why is not None and "on battery (ups@localhost: OB DISCHRG)" in why
    assert daily.busy(targets, restart, on_line) is None
    assert daily.busy(targets, RestartSettings(ups_names=("none",)), on_battery) is None
