"""Wake-on-LAN: the packet's bytes, MAC parsing, the settings' validation, wake_targets.

Packets go only to 127.0.0.1: a UDP listener bound there on a free port receives them. Never a
broadcast or LAN address.
"""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest
from test_config import write_env
from wol import Listener

from esxi_suspend.errors import ExitCode
from esxi_suspend.power import wake
from esxi_suspend.settings.envfile import RestartAwareConfigError, load_settings, validate
from esxi_suspend.settings.model import RestartSettings, Settings, Target, WakeOnLan
from esxi_suspend.settings.values import parse_mac

MAC = "aa:bb:cc:dd:ee:01"
MAC_BYTES = bytes.fromhex("aabbccddee01")


HOSTS = "ESXI_HOST=esxi1, root@esxi2:2222, esxi3\nESXI_KEY_FILE=@KEY@\nESXI_KNOWN_HOSTS=@KNOWN@\n"
E1, E2, E3 = Target("esxi1", "root", 22), Target("esxi2", "root", 2222), Target("esxi3", "root", 22)


def test_magic_packet_is_six_ff_then_the_mac_sixteen_times() -> None:
    packet = wake.magic_packet(MAC)
    assert len(packet) == 102
    assert packet[:6] == b"\xff" * 6
    assert [packet[6 + 6 * i : 12 + 6 * i] for i in range(16)] == [MAC_BYTES] * 16
    assert wake.magic_packet("AA-BB-CC-DD-EE-01") == packet


def test_magic_packet_refuses_a_short_mac() -> None:
    with pytest.raises(ValueError, match="6 octets"):
        wake.magic_packet("aa:bb:cc")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("aa:bb:cc:dd:ee:01", "aa:bb:cc:dd:ee:01"),
        ("AA:BB:CC:DD:EE:01", "aa:bb:cc:dd:ee:01"),
        ("aa-bb-cc-dd-ee-01", "aa:bb:cc:dd:ee:01"),
        ("00:0C:29:3e:5F:a0", "00:0c:29:3e:5f:a0"),
        ("aa:bb:cc:dd:ee", "not a MAC address; write 6 two-digit hex octets"),
        ("aa:bb:cc:dd:ee:01:02", "not a MAC address"),
        ("aa:bb-cc:dd:ee:01", "not a MAC address"),  # one separator throughout
        ("aabbccddee01", "not a MAC address"),
        ("aa.bb.cc.dd.ee.01", "not a MAC address"),
        ("a:bb:cc:dd:ee:01", "not a MAC address"),
        ("gg:bb:cc:dd:ee:01", "not a MAC address"),
        (" aa:bb:cc:dd:ee:01", "not a MAC address"),
        ("", "not a MAC address"),
        ("ff:ff:ff:ff:ff:ff", "a multicast or broadcast address, not a network card's"),
        ("01:00:5e:00:00:01", "a multicast or broadcast address"),
        ("00:00:00:00:00:00", "all zeros, not a network card's"),
    ],
)
def test_mac_parsing(text: str, expected: str) -> None:
    if ":" in expected and " " not in expected:
        assert parse_mac(text) == expected
    else:
        with pytest.raises(ValueError, match=expected):
            parse_mac(text)


def test_settings_per_host_mac_broadcast_and_port(files: dict[str, Path]) -> None:
    body = HOSTS + (
        "ESXI_WOL_MAC=esxi1=AA-BB-CC-DD-EE-01, esxi2:2222=aa:bb:cc:dd:ee:02\n"
        "ESXI_WOL_BROADCAST=192.168.1.255, root@esxi2=10.0.2.255\n"
        "ESXI_WOL_PORT=7\n"
    )
    settings = load_settings(write_env(files, body))
    assert settings.wake_on_lan == (
        WakeOnLan(E1, "aa:bb:cc:dd:ee:01", "192.168.1.255", 7),
        WakeOnLan(E2, "aa:bb:cc:dd:ee:02", "10.0.2.255", 7),
    )
    assert settings.wake_on_lan_for(E3) is None


def test_no_wake_on_lan_by_default(files: dict[str, Path]) -> None:
    settings = load_settings(write_env(files, HOSTS))
    assert settings.wake_on_lan == ()
    body = HOSTS + "ESXI_WOL_MAC=esxi3=aa:bb:cc:dd:ee:03\n"
    (wol,) = load_settings(write_env(files, body)).wake_on_lan
    assert (wol.target, wol.broadcast, wol.udp_port) == (E3, "255.255.255.255", 9)


# (extra lines, the problem's text, what a shutdown does instead, the hosts still woken)
BAD = [
    (
        "ESXI_WOL_MAC=esxi1=aa:bb:cc, esxi3=aa:bb:cc:dd:ee:03\n",
        "ESXI_WOL_MAC='esxi1=aa:bb:cc, esxi3=aa:bb:cc:dd:ee:03', entry 'esxi1=aa:bb:cc': not a "
        "MAC address; write 6 two-digit hex octets separated by ':' or '-', e.g. "
        "aa:bb:cc:dd:ee:ff",
        "esxi1 is not woken when power returns",
        ["esxi3"],
    ),
    (
        "ESXI_WOL_MAC=esxi1=ff:ff:ff:ff:ff:ff\n",
        "a multicast or broadcast address, not a network card's; use the MAC of the host's NIC "
        "(on the host: esxcli network nic list)",
        "esxi1 is not woken when power returns",
        [],
    ),
    (
        "ESXI_WOL_MAC=aa:bb:cc:dd:ee:01\n",
        "entry 'aa:bb:cc:dd:ee:01': no host; write host=MAC, the host as in ESXI_HOST, e.g. "
        "esxi1=aa:bb:cc:dd:ee:01",
        "ignored: no host is woken by it",
        [],
    ),
    (
        "ESXI_WOL_MAC=esxi9=aa:bb:cc:dd:ee:09, esxi1=aa:bb:cc:dd:ee:01\n",
        "entry 'esxi9=aa:bb:cc:dd:ee:09': esxi9 is not in ESXI_HOST (it has: esxi1, "
        "esxi2:2222, esxi3)",
        "ignored",
        ["esxi1"],
    ),
    (
        "ESXI_WOL_MAC=esxi2:22=aa:bb:cc:dd:ee:02\n",
        "esxi2:22 is not in ESXI_HOST",
        "ignored",
        [],
    ),
    (
        "ESXI_WOL_MAC=esxi1=aa:bb:cc:dd:ee:01, esxi1=aa:bb:cc:dd:ee:0a\n",
        "esxi1 is listed twice",
        "first applies",
        ["esxi1"],
    ),
    (
        "ESXI_WOL_MAC=esxi1=aa:bb:cc:dd:ee:01\nESXI_WOL_BROADCAST=192.168.1.256\n",
        "ESXI_WOL_BROADCAST='192.168.1.256', entry '192.168.1.256': not an IPv4 address; use "
        "the broadcast address of the host's network, e.g. 192.168.1.255, or 255.255.255.255",
        "ignored: the packets go to the other address given, else to the default 255.255.255.255",
        ["esxi1"],
    ),
    (
        "ESXI_WOL_MAC=esxi1=aa:bb:cc:dd:ee:01\nESXI_WOL_BROADCAST=esxi1=lan\n",
        "entry 'esxi1=lan': not an IPv4 address",
        "ignored: esxi1's packets go to the address for every host",
        ["esxi1"],
    ),
    (
        "ESXI_WOL_BROADCAST=10.0.0.255, 10.0.1.255\n",
        "entry '10.0.1.255': a second address for every host; keep one",
        "ignored",
        [],
    ),
    (
        "ESXI_WOL_MAC=esxi1=aa:bb:cc:dd:ee:01\nESXI_WOL_PORT=0\n",
        "ESXI_WOL_PORT='0': out of range; use an integer from 1 to 65535",
        "this shutdown uses the default ESXI_WOL_PORT=9",
        ["esxi1"],
    ),
]


@pytest.mark.parametrize(("extra", "text", "instead", "woken"), BAD)
def test_bad_wake_settings_at_shutdown_leave_only_that_host_unwoken(
    files: dict[str, Path], extra: str, text: str, instead: str, woken: list[str]
) -> None:
    path = write_env(files, HOSTS + extra)
    validation = validate(path)
    assert validation.settings is not None  # every host is still shut down
    assert [t.host for t in validation.settings.all_targets] == ["esxi1", "esxi2", "esxi3"]
    (problem,) = validation.problems
    assert text in problem.text
    assert instead in problem.instead
    assert not problem.fatal
    assert [w.target.host for w in validation.settings.wake_on_lan] == woken
    with pytest.raises(RestartAwareConfigError, match="ESXI_WOL_"):  # check is strict
        load_settings(path)


def settings_with(*wols: WakeOnLan) -> Settings:
    return Settings(
        source=Path("/nonexistent.env"),
        host="esxi1",
        user="root",
        port=22,
        key_file=Path("/nonexistent/key"),
        known_hosts=Path("/nonexistent/known_hosts"),
        connect_timeout=10,
        command_timeout=300,
        restart=RestartSettings(),
        targets=(E1, E2, E3),
        wake_on_lan=wols,
    )


def test_wake_targets_sends_to_each_host_with_a_mac_and_skips_the_others(
    listener: Listener, caplog: pytest.LogCaptureFixture
) -> None:
    one = WakeOnLan(E1, MAC, "127.0.0.1", listener.port)
    three = WakeOnLan(E3, "aa:bb:cc:dd:ee:03", "127.0.0.1", listener.port)
    with caplog.at_level(logging.INFO, logger="esxi_suspend"):
        assert wake.wake_targets(settings_with(one, three), (E1, E2, E3)) == ExitCode.OK
    packets = listener.packets(2 * wake.PACKET_COPIES)
    assert listener.nothing_more()
    expected = [wake.magic_packet(MAC)] * wake.PACKET_COPIES
    expected += [wake.magic_packet("aa:bb:cc:dd:ee:03")] * wake.PACKET_COPIES
    assert packets == expected
    lines = [r.getMessage() for r in caplog.records]
    assert [line for line in lines if "esxi2" in line] == [
        "wake: host esxi2: not woken: no usable ESXI_WOL_MAC entry (to wake it, add esxi2=MAC, "
        "its NIC's MAC; on the host: esxcli network nic list)"
    ]
    assert any(f"to 127.0.0.1 port {listener.port} sent" in line for line in lines)


def test_wake_targets_only_wakes_the_targets_given(listener: Listener) -> None:
    one = WakeOnLan(E1, MAC, "127.0.0.1", listener.port)
    three = WakeOnLan(E3, "aa:bb:cc:dd:ee:03", "127.0.0.1", listener.port)
    assert wake.wake_targets(settings_with(one, three), [E3]) == ExitCode.OK
    assert listener.packets(1) == [wake.magic_packet("aa:bb:cc:dd:ee:03")]
    assert wake.wake_targets(settings_with(one, three), ()) == ExitCode.OK


def test_wake_targets_dry_run_sends_nothing(
    listener: Listener, caplog: pytest.LogCaptureFixture
) -> None:
    one = WakeOnLan(E1, MAC, "127.0.0.1", listener.port)
    with caplog.at_level(logging.INFO, logger="esxi_suspend"):
        assert wake.wake_targets(settings_with(one), (E1,), dry_run=True) == ExitCode.OK
    assert listener.nothing_more()
    assert "(dry run; not sent)" in caplog.text


def test_a_network_error_is_logged_with_host_and_fix_never_raised(
    listener: Listener, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real_sendto = socket.socket.sendto

    def sendto(self: socket.socket, data: bytes, address: tuple[str, int]) -> int:
        if address[1] != listener.port:  # esxi1's: fails as a host without a route would
            raise OSError(101, "Network is unreachable")
        return real_sendto(self, data, address)

    bad = WakeOnLan(E1, MAC, "127.0.0.1", 9)
    good = WakeOnLan(E3, "aa:bb:cc:dd:ee:03", "127.0.0.1", listener.port)
    monkeypatch.setattr(socket.socket, "sendto", sendto)
    with caplog.at_level(logging.INFO, logger="esxi_suspend"):
        code = wake.wake_targets(settings_with(bad, good), (E1, E3))
    assert code == ExitCode.CONNECTION
    assert listener.packets(1) == [wake.magic_packet("aa:bb:cc:dd:ee:03")]  # the other host
    (error,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert error.getMessage() == (
        "wake: host esxi1: magic packet for aa:bb:cc:dd:ee:01 to 127.0.0.1 port 9 NOT sent: "
        "Network is unreachable; check that this machine is on the host's network and that "
        "ESXI_WOL_BROADCAST is that network's broadcast address (e.g. 192.168.1.255), then "
        "run: esxi-suspend wake esxi1"
    )


def test_a_bug_is_internal_and_the_other_hosts_still_go(
    listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = wake.magic_packet

    def buggy(mac: str) -> bytes:
        if mac == MAC:
            raise RuntimeError("simulated bug")
        return real(mac)

    monkeypatch.setattr(wake, "magic_packet", buggy)
    one = WakeOnLan(E1, MAC, "127.0.0.1", listener.port)
    three = WakeOnLan(E3, "aa:bb:cc:dd:ee:03", "127.0.0.1", listener.port)
    assert wake.wake_targets(settings_with(one, three), (E1, E3)) == ExitCode.INTERNAL
    assert listener.packets(1) == [real("aa:bb:cc:dd:ee:03")]
