"""A Wake-on-LAN listener for the tests: a real UDP socket on 127.0.0.1, on a port the kernel
picked, the only place a magic packet of a test goes; and the packet's bytes, written out here
rather than taken from esxi_suspend.power.wake."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager


def magic(mac: str) -> bytes:
    """6 x 0xFF, then the MAC's 6 bytes 16 times."""
    return b"\xff" * 6 + bytes.fromhex(mac.replace(":", "").replace("-", "")) * 16


class Listener:
    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]

    def packets(self, count: int, timeout: float = 2.0) -> list[bytes]:
        """The next `count` datagrams, each waited for `timeout` s at most."""
        self.sock.settimeout(timeout)
        return [self.sock.recv(2048) for _ in range(count)]

    def poll(self, timeout: float = 0.2) -> bytes | None:
        """The next datagram, if one comes within `timeout` s."""
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(2048)
        except socket.timeout:
            return None

    def received(self) -> list[bytes]:
        """Every datagram already queued (the sender is done)."""
        packets: list[bytes] = []
        while (packet := self.poll(0.3)) is not None:
            packets.append(packet)
        return packets

    def nothing_more(self) -> bool:
        return self.poll() is None


@contextmanager
def listening() -> Iterator[Listener]:
    udp = Listener()
    try:
        yield udp
    finally:
        udp.sock.close()
