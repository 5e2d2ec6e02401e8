"""The simulated host served over real SSH (paramiko's server side), and its Python API.

`SimulatedHost` listens on 127.0.0.1 (a free port) with a fresh ed25519 host key, accepts one
client public key for `root`, and runs each exec request through `shell.Shell`. Its state,
event log and fates are read through the same object. Example:

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
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from esxi_suspend.simulator.fleet import Fleet, default_fleet
from esxi_suspend.simulator.host import Event, Fate, HostDown, HostModel, Interrupted, Job
from esxi_suspend.simulator.shell import Shell

ADDRESS = "127.0.0.1"
# Real seconds before a channel's first byte: paramiko answers the exec request only after our
# callback returns, and a client must see that answer before the command's output.
FIRST_WRITE_DELAY = 0.005


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


class ChannelTerminal:
    """One exec channel: output goes to the client until the session is gone."""

    def __init__(self, channel: Any) -> None:
        self.channel = channel
        self.lock = threading.Condition()
        self.holders = 0
        self.ready_at = time.monotonic() + FIRST_WRITE_DELAY

    def _wait_ready(self) -> None:
        left = self.ready_at - time.monotonic()
        if left > 0:
            time.sleep(left)

    def write(self, fd: int, text: str) -> None:
        if not text:
            return
        self._wait_ready()
        with contextlib.suppress(Exception):  # a closed session swallows output
            data = text.encode("utf-8", "surrogateescape")
            if fd == 2:
                self.channel.sendall_stderr(data)
            else:
                self.channel.sendall(data)

    def hold(self) -> None:
        with self.lock:
            self.holders += 1

    def release(self) -> None:
        with self.lock:
            self.holders -= 1
            self.lock.notify_all()

    def finish(self, status: int) -> None:
        """Exit status now; EOF and close once no background job holds the channel's stdout
        (as sshd does: `cmd &` without redirections keeps the client waiting)."""
        self._wait_ready()
        with contextlib.suppress(Exception):
            self.channel.send_exit_status(status)
        with self.lock:
            while self.holders > 0 and not self.channel.closed:
                self.lock.wait(0.1)
        with contextlib.suppress(Exception):
            self.channel.shutdown_write()
            self.channel.close()


class _Connection:
    def __init__(self, number: int, sock: socket.socket, peer: str) -> None:
        self.number = number
        self.sock = sock
        self.peer = peer
        self.transport: Any = None
        self.dropped = False
        self.logged_in = False


class _Interface(paramiko.ServerInterface):  # type: ignore[misc]
    def __init__(self, server: SimulatedHost, connection: _Connection) -> None:
        self.server = server
        self.connection = connection

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: Any) -> int:
        model = self.server.model
        number = self.connection.number
        if username == self.server.user and key == self.server.authorized_key:
            if self.connection.logged_in:  # OpenSSH asks first, then signs: log in once
                return int(paramiko.AUTH_SUCCESSFUL)
            self.connection.logged_in = True
            model.record("login", f"{username} logged in from {self.connection.peer}", number)
            return int(paramiko.AUTH_SUCCESSFUL)
        model.record("auth", f"refused key {key.get_name()} for {username}", number)
        return int(paramiko.AUTH_FAILED)

    def check_auth_password(self, username: str, password: str) -> int:
        return int(paramiko.AUTH_FAILED)

    def check_channel_request(self, kind: str, chanid: int) -> int:
        if kind == "session":
            return int(paramiko.OPEN_SUCCEEDED)
        return int(paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED)

    def check_channel_exec_request(self, channel: Any, command: bytes) -> bool:
        if self.server.model.powered_off:
            return False
        text = command.decode("utf-8", "surrogateescape")
        worker = threading.Thread(
            target=self.server._execute,
            args=(self.connection, channel, text),
            name=f"esxi-sim-exec-{self.connection.number}",
            daemon=True,
        )
        worker.start()
        return True

    def check_channel_shell_request(self, channel: Any) -> bool:
        return False

    def check_channel_pty_request(self, *args: Any) -> bool:
        return False


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
        self._connections: list[_Connection] = []
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
            with self._lock:
                if self._closed or self.model.powered_off:
                    sock.close()
                    return
                number += 1
                connection = _Connection(number, sock, f"{peer[0]}:{peer[1]}")
                self._connections.append(connection)
            threading.Thread(
                target=self._serve,
                args=(connection,),
                name=f"esxi-sim-conn-{number}",
                daemon=True,
            ).start()

    def _serve(self, connection: _Connection) -> None:
        transport = paramiko.Transport(connection.sock)
        connection.transport = transport
        transport.local_version = "SSH-2.0-OpenSSH_8.8 esxi-sim"
        transport.add_server_key(self.host_key)
        try:
            transport.start_server(server=_Interface(self, connection))
        except (paramiko.SSHException, EOFError, OSError):
            transport.close()
            return
        while transport.is_active():  # keep the transport referenced until it ends
            channel = transport.accept(0.5)
            if channel is None and connection.dropped:
                break
        if not connection.dropped:
            self.model.record("logout", "connection closed by the client", connection.number)

    def _execute(self, connection: _Connection, channel: Any, command: str) -> None:
        model = self.model
        model.record("exec", f"exec: {command}", connection.number)
        terminal = ChannelTerminal(channel)
        shell = Shell(model, connection.number)
        try:
            status = shell.run(command, terminal)
        except HostDown:
            return  # the host is gone: the session was closed under the client
        except Interrupted:
            return
        except Exception as exc:  # a simulator bug: say so on the channel, never hang
            terminal.write(2, f"esxi-sim: internal error: {type(exc).__name__}: {exc}\n")
            status = 70
        if model.powered_off or connection.dropped:
            return
        model.record("exit", f"exit {status}: {command}", connection.number)
        terminal.finish(status)
