"""One SSH connection to the simulated host: its login, its exec channels, their output.

Apart from `server.py` (the listener and `SimulatedHost`, which accept connections and can cut
them all) because this is what happens inside one: paramiko's server side authenticates root's
one key, each exec request runs in its own thread through `shell.Shell`, and its output, exit
status and close go back on the channel as sshd sends them.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Any, Callable

import paramiko

from esxi_suspend.simulator.host import HostDown, HostModel, Interrupted
from esxi_suspend.simulator.shell.commands import TOO_LARGE
from esxi_suspend.simulator.shell.interpreter import Shell
from esxi_suspend.simulator.shell.state import Source

# Real seconds before a channel's first byte: paramiko answers the exec request only after our
# callback returns, and a client must see that answer before the command's output.
FIRST_WRITE_DELAY = 0.005


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

    @property
    def closed(self) -> bool:
        return bool(self.channel.closed)

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


class ChannelSource(Source):
    """The exec channel's input, as the client sends it, up to its end of file (`read -r`,
    `cat` and `$(cat)` of the command line wait for it, as on a real host)."""

    def __init__(self, channel: Any, model: HostModel) -> None:
        super().__init__()
        self.channel = channel
        self.model = model
        self.ended = False

    def _wait_for(self, enough: Callable[[str], bool]) -> None:
        while not self.ended:
            with self._lock:
                if enough(self._text[self._pos :]):
                    return
            self.model.check(None)  # HostDown once the host is off
            try:
                self.channel.settimeout(0.1)
                data = self.channel.recv(65536)
            except socket.timeout:
                continue
            except Exception:  # a closed channel: no more input
                data = b""
            with self._lock:
                if data:
                    self._text += data.decode("utf-8", "replace")
                else:
                    self.ended = True


class Connection:
    """One client's TCP connection, its SSH transport, and whether it was cut or logged in."""

    def __init__(self, number: int, sock: socket.socket, peer: str) -> None:
        self.number = number
        self.sock = sock
        self.peer = peer
        self.transport: Any = None
        self.dropped = False
        self.logged_in = False


class _Interface(paramiko.ServerInterface):  # type: ignore[misc]
    def __init__(
        self, model: HostModel, user: str, authorized_key: Any, connection: Connection
    ) -> None:
        self.model = model
        self.user = user
        self.authorized_key = authorized_key
        self.connection = connection

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: Any) -> int:
        model = self.model
        number = self.connection.number
        if username == self.user and key == self.authorized_key:
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
        if self.model.powered_off:
            return False
        text = command.decode("utf-8", "surrogateescape")
        worker = threading.Thread(
            target=execute,
            args=(self.model, self.connection, channel, text),
            name=f"esxi-sim-exec-{self.connection.number}",
            daemon=True,
        )
        worker.start()
        return True

    def check_channel_shell_request(self, channel: Any) -> bool:
        return False

    def check_channel_pty_request(self, *args: Any) -> bool:
        return False


def serve(
    connection: Connection, model: HostModel, host_key: Any, user: str, authorized_key: Any
) -> None:
    """The connection's SSH transport, from the handshake until it ends or is cut."""
    transport = paramiko.Transport(connection.sock)
    connection.transport = transport
    transport.local_version = "SSH-2.0-OpenSSH_8.8 esxi-sim"
    transport.add_server_key(host_key)
    try:
        transport.start_server(server=_Interface(model, user, authorized_key, connection))
    except (paramiko.SSHException, EOFError, OSError):
        transport.close()
        return
    while transport.is_active():  # keep the transport referenced until it ends
        channel = transport.accept(0.5)
        if channel is None and connection.dropped:
            break
    if not connection.dropped:
        model.record("logout", "connection closed by the client", connection.number)


def execute(model: HostModel, connection: Connection, channel: Any, command: str) -> None:
    """One exec request: the command line through the shell, its exit status on the channel."""
    model.record("exec", f"exec: {command}", connection.number)
    terminal = ChannelTerminal(channel)
    limit = model.fleet.arg_limit
    if limit and len(command.encode("utf-8", "surrogateescape")) > limit:
        # sshd runs the command line as one argument, `sh -c LINE`: a host refused a long one
        terminal.write(2, f"/bin/sh: {TOO_LARGE}\n")
        model.record("exit", f"exit 1: {command}", connection.number)
        terminal.finish(1)
        return
    shell = Shell(model, connection.number)
    try:
        status = shell.run(command, terminal, ChannelSource(channel, model))
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
