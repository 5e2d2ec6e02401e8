"""The simulated host served over real SSH (paramiko's server side), and its Python API.

`SimulatedHost` listens on 127.0.0.1 (a free port) with a fresh ed25519 host key, accepts one
client public key for `root`, and hands each connection to `session.py` (login, exec channels,
their output). Its state, event log and fates are read through the same object. Example:

    with SimulatedHost(default_fleet(), authorized_key=pub_line, time_scale=0.01) as host:
        known_hosts.write_text(host.known_hosts_line())
        ...  # connect to 127.0.0.1:host.port as root with the matching private key
        host.wait_powered_off(10)
        host.fates()  # {12: Fate.CLEAN_SHUTDOWN, 1: Fate.HARD_KILLED, ...}
"""

from __future__ import annotations

import base64
import contextlib
import io
import os
import socket
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from esxi_suspend.simulator.fleet import Fleet, default_fleet
from esxi_suspend.simulator.host import Event, HostModel, Job
from esxi_suspend.simulator.session import Connection, serve
from esxi_suspend.simulator.vm import Fate

ADDRESS = "127.0.0.1"


def generate_ed25519() -> tuple[str, str]:
    """A new ed25519 key pair: (OpenSSH private key text, `ssh-ed25519 AAAA...` public line)."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return private, public.decode()


def _public_key(value: str | os.PathLike[str] | Any) -> Any:
    """A paramiko PKey from a PKey, an `ssh-ed25519 AAAA...` line, or a `.pub` file path."""
    if isinstance(value, paramiko.PKey):
        return value
    text = str(value)
    if not text.startswith(("ssh-", "ecdsa-")):
        text = Path(text).read_text()
    fields = text.split()
    if len(fields) < 2:
        raise ValueError(f"not an OpenSSH public key: {text[:40]!r}")
    return paramiko.PKey.from_type_string(fields[0], base64.b64decode(fields[1]))


class SimulatedHost:
    """A simulated ESXi host on 127.0.0.1 over real SSH. Use as a context manager.

    `authorized_key`: the one client public key root accepts (a PKey, an OpenSSH public key
    line, or a `.pub` path). `time_scale`: real seconds per simulated second.
    """

    def __init__(
        self,
        fleet: Fleet | None = None,
        *,
        authorized_key: str | os.PathLike[str] | Any,
        time_scale: float = 0.01,
        user: str = "root",
    ) -> None:
        self.fleet = fleet if fleet is not None else default_fleet()
        self.authorized_key = _public_key(authorized_key)
        self.user = user
        self.address = ADDRESS
        self.model = HostModel(self.fleet, time_scale)
        private, self.host_public_key = generate_ed25519()
        self.host_key = paramiko.Ed25519Key.from_private_key(io.StringIO(private))
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((ADDRESS, 0))
        self.port: int = self._listener.getsockname()[1]
        self._connections: list[Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        self._acceptor: threading.Thread | None = None
        self.model.on_power_off.append(self._host_went_down)

    # -- life cycle ---------------------------------------------------------------------
    def start(self) -> SimulatedHost:
        self._listener.listen(16)
        self._acceptor = threading.Thread(target=self._accept, name="esxi-sim-accept", daemon=True)
        self._acceptor.start()
        self.model.record(
            "host",
            f"{self.fleet.name} up on {ADDRESS}:{self.port}, "
            f"{len(self.fleet.vms)} VM(s), time scale {self.model.time_scale:g}, "
            f"{self.fleet.command_latency:g} s per vim-cmd "
            f"({self.fleet.hostd_concurrency} at once)",
        )
        return self

    def close(self) -> None:
        """Stop serving (not a host power-off: no VM fate changes)."""
        with self._lock:
            self._closed = True
        self._close_listener()
        self.drop_sessions(record=False)
        self.model.stop()
        if self._acceptor is not None:
            self._acceptor.join(2)

    def __enter__(self) -> SimulatedHost:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- what a client needs ------------------------------------------------------------
    def known_hosts_line(self) -> str:
        """The host key as a known_hosts line: `[127.0.0.1]:PORT ssh-ed25519 AAAA...`."""
        return f"[{ADDRESS}]:{self.port} {self.host_public_key}\n"

    # -- what tests read ------------------------------------------------------------------
    @property
    def events(self) -> list[Event]:
        return self.model.events

    def commands(self) -> list[str]:
        """Every exec request's command line, in order."""
        return [e.text.split(": ", 1)[1] for e in self.events if e.kind == "exec"]

    def fates(self) -> dict[int, Fate]:
        return self.model.fates()

    def power_states(self) -> dict[int, str]:
        return self.model.power_states()

    @property
    def powered_off(self) -> bool:
        return self.model.powered_off

    @property
    def powered_off_at(self) -> float | None:
        return self.model.powered_off_at

    def wait_powered_off(self, timeout: float) -> bool:
        return self.model.wait_powered_off(timeout)

    def simulated_now(self) -> float:
        return self.model.now()

    @property
    def files(self) -> dict[str, str]:
        with self.model.cond:
            return dict(self.model.files)

    def background_jobs(self) -> list[Job]:
        return self.model.background_jobs()

    def hard_killed(self) -> list[int]:
        return [vmid for vmid, fate in self.fates().items() if fate is Fate.HARD_KILLED]

    # -- sessions -------------------------------------------------------------------------
    def drop_sessions(self, record: bool = True) -> int:
        """Cut every open SSH connection abruptly (no exit status, no close message). Their
        foreground commands die; `&` jobs keep running. Returns how many were cut."""
        with self._lock:
            live = [c for c in self._connections if not c.dropped]
            for connection in live:
                connection.dropped = True
        for connection in live:
            if record:
                self.model.record("dropped", "connection dropped", connection.number)
            self.model.cancel_session_jobs(connection.number)
            with contextlib.suppress(OSError):
                connection.sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(Exception):
                connection.sock.close()
            if connection.transport is not None:
                with contextlib.suppress(Exception):
                    connection.transport.close()
        return len(live)

    def _host_went_down(self) -> None:
        self._close_listener()
        self.drop_sessions(record=False)

    def _close_listener(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self._listener.close()

    def _accept(self) -> None:
        number = 0
        while True:
            try:
                sock, peer = self._listener.accept()
            except OSError:
                return
            # Each line the simulated shell writes goes out as an SSH packet of its own, where
            # a real sshd reads a burst of busybox output from its pipe at once: without this,
            # Nagle holds each small packet for the client's delayed ACK (~20 real ms, one
            # simulated second at time scale 0.02), a cost no real host has.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                if self._closed or self.model.powered_off:
                    sock.close()
                    return
                number += 1
                connection = Connection(number, sock, f"{peer[0]}:{peer[1]}")
                self._connections.append(connection)
            threading.Thread(
                target=serve,
                args=(connection, self.model, self.host_key, self.user, self.authorized_key),
                name=f"esxi-sim-conn-{number}",
                daemon=True,
            ).start()
