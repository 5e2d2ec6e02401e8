"""The SSH connection to one ESXi host, authenticated by our key, and the commands run on it.

The only module that imports fabric. Fabric's `Connection` trusts any host key and reads root's
`~/.ssh/config` by default. Here it gets an empty SSH config, only our pinned known_hosts, a
policy that refuses unknown keys (hostkeys.py), and exactly one private key: no agent, no key
search, no password. Every wait is bounded, and `abort_sessions` cuts them all at once.
Outside the simulator, paramiko is imported here, in hostkeys.py and in logins.py only.
"""

from __future__ import annotations

import contextlib
import shlex
import socket
import threading
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import paramiko
from fabric import Config, Connection

from esxi_suspend.errors import (
    ConfigError,
    ConnectionFailed,
    HostKeyRejected,
    KeyRefused,
    RemoteCommandFailed,
    RemoteTimeout,
    SessionDropped,
    first_line,
)
from esxi_suspend.settings.model import DEFAULT_ENV_FILE, Settings
from esxi_suspend.ssh.hostkeys import RefuseUnknownHostKey, fingerprint

# What the host reports when the channel closes without an exit status.
NO_EXIT_STATUS = -1
# Seconds we wait for a command's exit status once its output has ended (sshd may send the
# end of the output first).
STATUS_AFTER_EOF = 2.0

# Every socket open_socket made that may still be open, for abort_sessions.
_SOCKETS: weakref.WeakSet[socket.socket] = weakref.WeakSet()


class _Abort:
    """Set once by abort_sessions: from then on no connection is opened, no command sent."""

    requested = False


def abort_sessions() -> None:
    """Cut every SSH session at the socket, at once (safe inside a signal handler).

    A bare shutdown(2): no Python lock taken. Each session's transport thread sees end of file
    and closes its channels, so threads waiting on a command's output end too. Host threads
    that would reconnect or send one more command are refused from now on.
    """
    _Abort.requested = True
    for sock in list(_SOCKETS):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


@dataclass(frozen=True)
class CommandResult:
    """What one remote command printed and how it ended."""

    command: str
    exit_status: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_status == 0

    def error_tail(self, limit: int = 200) -> str:
        """The last words of its stderr (or stdout), one line, for a log message."""
        text = (self.stderr.strip() or self.stdout.strip()).splitlines()
        tail = text[-1] if text else "no output"
        return tail if len(tail) <= limit else tail[: limit - 3] + "..."


def load_private_key(settings: Settings) -> paramiko.PKey:
    """The one key we authenticate with; a bad file or passphrase is a configuration error."""
    passphrase = settings.key_passphrase.encode() if settings.key_passphrase else None
    try:
        return paramiko.PKey.from_path(str(settings.key_file), password=passphrase)
    except OSError as exc:
        problem = f"cannot be read ({exc.strerror or type(exc).__name__})"
    except (TypeError, ValueError, paramiko.SSHException) as exc:
        if "password" in str(exc).lower() and passphrase is None:
            problem = "is protected by a passphrase; set ESXI_KEY_PASSPHRASE"
        elif passphrase is not None:
            problem = "cannot be decrypted or parsed: wrong ESXI_KEY_PASSPHRASE, or not a key"
        else:
            problem = "is not an OpenSSH/PEM private key (ed25519, ecdsa or rsa)"
    raise ConfigError(str(settings.source), [f"ESXI_KEY_FILE={settings.key_file}: {problem}"])


PROBE_TIMEOUT = 2.0  # a look at a host's SSH port, whether it is up or down


def port_answers(host: str, port: int, timeout: float = PROBE_TIMEOUT) -> bool:
    """Does the host accept a TCP connection on its SSH port? (A name that does not resolve,
    a refusal or silence: no.) How a host going down or coming back is seen."""
    try:
        sock = open_socket(host, port, timeout)
    except ConnectionFailed:
        return False
    sock.close()
    return True


def open_socket(host: str, port: int, timeout: float) -> socket.socket:
    """TCP connection with a bound on name resolution too (getaddrinfo itself has none)."""
    if _Abort.requested:
        raise ConnectionFailed(f"host {host}: not connecting: this run was told to stop")
    addresses: list[Any] = []
    failure: list[BaseException] = []

    def resolve() -> None:
        try:
            addresses.extend(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except (OSError, UnicodeError) as exc:
            failure.append(exc)

    resolver = threading.Thread(target=resolve, name=f"resolve-{host}", daemon=True)
    resolver.start()
    resolver.join(timeout)
    if resolver.is_alive():
        raise ConnectionFailed(
            f"host {host}: name lookup took longer than ESXI_CONNECT_TIMEOUT={timeout:g} s; "
            "check DNS, or put the host's IP address in ESXI_HOST"
        )
    if failure or not addresses:
        raise ConnectionFailed(
            f"host {host}: name does not resolve ({failure[0] if failure else 'no address'}); "
            "check ESXI_HOST, or use the host's IP address"
        )
    errors: list[str] = []
    for family, kind, proto, _name, address in addresses:
        sock = socket.socket(family, kind, proto)
        sock.settimeout(timeout)
        # Each command is a few small packets that wait on the last one's answer: without
        # this, Nagle's algorithm holds them for the host's delayed ACK (~40 ms a command).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.connect(address)
        except socket.timeout:
            errors.append(f"{address[0]}: no answer within {timeout:g} s")
        except OSError as exc:
            errors.append(f"{address[0]}: {exc.strerror or exc}")
        else:
            _SOCKETS.add(sock)
            return sock
        sock.close()
    raise ConnectionFailed(
        f"host {host} port {port}: cannot connect ({'; '.join(errors)}); check that the host is "
        "up, that SSH is enabled on it (ESXi: Host > Actions > Services > Enable SSH) and "
        "ESXI_PORT"
    )


def host_argument(user: str | None, host: str, port: int, default_port: int = 22) -> str:
    """`[user@]host[:port]` as ESXI_HOST and the HOST of trust/enroll take it: an IPv6
    address in brackets, the port left out when it is `default_port`."""
    name = f"[{host}]" if ":" in host else host
    prefix = f"{user}@" if user else ""
    return f"{prefix}{name}" if port == default_port else f"{prefix}{name}:{port}"


def enroll_command(settings: Settings) -> str:
    """The `esxi-suspend enroll` line that authorizes our key for this target's user."""
    command = f"esxi-suspend enroll {host_argument(settings.user, settings.host, settings.port)}"
    if settings.source != DEFAULT_ENV_FILE:
        command += f" --env-file {shlex.quote(str(settings.source))}"
    return command


class RemoteHost:
    """One authenticated SSH session to one ESXi host; use as a context manager."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.name = settings.host
        self._connection: Connection | None = None
        self.key_base64 = ""  # our public key's base64, once open() has read the key

    def __enter__(self) -> RemoteHost:
        self.open()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def open(self) -> None:
        """Connect, check the host key against the pinned one, authenticate with our key."""
        settings = self.settings
        key = load_private_key(settings)
        self.key_base64 = key.get_base64()
        timeout = settings.connect_timeout
        sock = open_socket(settings.host, settings.port, timeout)
        connection = Connection(
            settings.host,
            user=settings.user,
            port=settings.port,
            config=Config(ssh_config=paramiko.SSHConfig(), lazy=True),
            connect_kwargs={
                "pkey": key,
                "look_for_keys": False,
                "allow_agent": False,
                "sock": sock,
                "timeout": timeout,
                "banner_timeout": timeout,
                "auth_timeout": timeout,
                "channel_timeout": timeout,
            },
        )
        client = connection.client
        client.load_host_keys(str(settings.known_hosts))
        client.set_missing_host_key_policy(RefuseUnknownHostKey(settings))
        try:
            connection.open()
        except HostKeyRejected:
            _close_quietly(connection, sock)
            raise
        except paramiko.BadHostKeyException as exc:
            _close_quietly(connection, sock)
            raise HostKeyRejected(
                f"host {settings.host}: HOST KEY CHANGED: it shows {fingerprint(exc.key)}, "
                f"but ESXI_KNOWN_HOSTS {settings.known_hosts} pins "
                f"{fingerprint(exc.expected_key)}; nothing was run. Someone may be "
                "impersonating the host; if the host was reinstalled, check the new fingerprint "
                "on its console and replace its line in that file"
            ) from None
        except paramiko.AuthenticationException:
            seen_from = _local_address(sock)
            _close_quietly(connection, sock)
            # No "host X:" here: every caller's log line already starts with the host.
            raise KeyRefused(
                f"user {settings.user} refused our key {settings.key_file} (a from= on its "
                f"line must allow the address the host sees us at: we connected from "
                f"{seen_from}); add "
                f"{settings.key_file}.pub to the host's authorized keys (one login with "
                f"{settings.user}'s password): {enroll_command(settings)}"
            ) from None
        except (paramiko.SSHException, EOFError, OSError) as exc:
            _close_quietly(connection, sock)
            raise ConnectionFailed(
                f"host {settings.host} port {settings.port}: SSH handshake failed "
                f"({first_line(exc)}); check that an SSH server answers there (ESXI_PORT) and "
                f"ESXI_CONNECT_TIMEOUT={timeout}"
            ) from None
        transport = client.get_transport()
        if transport is not None:
            transport.set_keepalive(5)
        self._connection = connection

    @property
    def server_banner(self) -> str:
        """The SSH server's identification, e.g. `SSH-2.0-OpenSSH_9.2p1 ...` (keyline.py)."""
        transport = self._connection.client.get_transport() if self._connection else None
        return str(transport.remote_version) if transport else ""

    @property
    def host_key(self) -> str:
        """The verified host key's type and fingerprint, for the log."""
        transport = self._connection.client.get_transport() if self._connection else None
        return fingerprint(transport.get_remote_server_key()) if transport else "unknown"

    def run(self, command: str, timeout: int, stdin: str = "") -> CommandResult:
        """Run one command (`stdin`: all its input); raise RemoteTimeout or SessionDropped,
        else return how it ended."""
        deadline = time.monotonic() + timeout
        with self.exchange(command, timeout) as talk:
            talk.send(stdin)
            stdout = talk.rest(deadline)
            status = talk.wait_status(deadline)
            if status == NO_EXIT_STATUS:
                raise SessionDropped(
                    f"host {self.name}: session closed before `{command}` reported an exit status",
                    command,
                )
            return CommandResult(command, status, stdout, talk.stderr)

    @contextlib.contextmanager
    def exchange(self, command: str, timeout: int, label: str = "") -> Iterator[Exchange]:
        """One command we talk with: its output read as it comes, its input written once.
        `label`: what messages call it (default: the command itself)."""
        if self._connection is None:
            raise RemoteCommandFailed(f"host {self.name}: not connected", command)
        if _Abort.requested:
            raise RemoteCommandFailed(
                f"host {self.name}: not sent: this run was told to stop", command
            )
        talk = Exchange(self.name, label or f"`{command}`", timeout)
        try:
            transport = self._connection.client.get_transport()
            if transport is None:
                raise EOFError("not connected")
            channel = transport.open_session(timeout=timeout)
            talk.channel = channel
            channel.exec_command(command)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise talk.dropped(exc) from None
        try:
            yield talk
        finally:
            talk.close()

    def close(self) -> None:
        if self._connection is not None:
            _close_quietly(self._connection, None)
            self._connection = None


class Exchange:
    """One command on its own channel: output read line by line as it comes, input sent once.

    Read here, not with Fabric's runner (its threads and 10 ms polls cost tens of milliseconds
    a command), so that one command can print the host's inventory, take the script we make
    of it on its input, and go on printing the host's log while the host works.
    """

    def __init__(self, host: str, label: str, timeout: int) -> None:
        self.host = host
        self.label = label
        self.timeout = timeout
        self.channel: paramiko.Channel | None = None
        self._stderr = b""
        self._buffer = b""
        self._eof = False

    def dropped(self, exc: BaseException | str) -> SessionDropped:
        why = exc if isinstance(exc, str) else first_line(exc)
        return SessionDropped(
            f"host {self.host}: session lost while running {self.label} ({why})", self.label
        )

    def timed_out(self) -> RemoteTimeout:
        return RemoteTimeout(
            f"host {self.host}: {self.label} did not finish within "
            f"ESXI_COMMAND_TIMEOUT={self.timeout} s",
            self.label,
        )

    def _fill(self, deadline: float) -> bool:
        """More output into the buffer; False at end of file (or the session gone)."""
        if self._eof or self.channel is None:
            return False
        try:
            self.channel.settimeout(max(0.001, deadline - time.monotonic()))
            data = self.channel.recv(65536)
            self._take_stderr()
        except socket.timeout:
            raise self.timed_out() from None
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise self.dropped(exc) from None
        if not data:
            self._eof = True
            return False
        self._buffer += data
        return True

    def read_until(self, marker: str, deadline: float) -> str:
        """The output before the line `marker` (that line is taken too); SessionDropped when
        the output ends first, RemoteTimeout past `deadline` (time.monotonic)."""
        needle = f"{marker}\n".encode()
        while True:
            at = self._buffer.find(needle)
            while at > 0 and self._buffer[at - 1 : at] != b"\n":
                at = self._buffer.find(needle, at + 1)
            if at >= 0:
                text, self._buffer = self._buffer[:at], self._buffer[at + len(needle) :]
                return text.decode("utf-8", "replace")
            if not self._fill(deadline):
                raise self.dropped(f"its output ended before `{marker}`")

    def lines(self, deadline: float) -> Iterator[str]:
        """Each output line as it comes, until the output ends; RemoteTimeout past
        `deadline` (time.monotonic)."""
        while True:
            while b"\n" in self._buffer:
                line, _, self._buffer = self._buffer.partition(b"\n")
                yield line.decode("utf-8", "replace")
            if not self._fill(deadline):
                break
        if self._buffer:
            yield self.rest(deadline)

    def rest(self, deadline: float) -> str:
        """All the output still to come, once it has ended."""
        while self._fill(deadline):
            pass
        text, self._buffer = self._buffer.decode("utf-8", "replace"), b""
        return text

    def send(self, text: str) -> None:
        """All of the command's input, then end of file."""
        if self.channel is None:
            raise self.dropped("not started")
        try:
            if text:
                self.channel.sendall(text.encode())
            self.channel.shutdown_write()
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise self.dropped(exc) from None

    def wait_status(self, deadline: float) -> int:
        """The exit status, once the output has ended; NO_EXIT_STATUS if the channel closed
        without one."""
        if self.channel is None:
            return NO_EXIT_STATUS
        if not self.channel.status_event.wait(max(0.0, deadline - time.monotonic())):
            raise self.timed_out()
        self._take_stderr()
        return int(self.channel.exit_status)

    @property
    def exited(self) -> bool:
        """Once the output has ended: the command reported an exit status (the session is
        still there). The status can come just after the end of the output: waits for it a
        moment (a channel closed without one ends the wait at once)."""
        if self.channel is None:
            return False
        self.channel.status_event.wait(STATUS_AFTER_EOF)
        return bool(self.channel.exit_status_ready()) and self.channel.exit_status != NO_EXIT_STATUS

    @property
    def stderr(self) -> str:
        return self._stderr.decode("utf-8", "replace")

    def _take_stderr(self) -> None:
        if self.channel is not None:
            while self.channel.recv_stderr_ready():
                self._stderr += self.channel.recv_stderr(65536)

    def close(self) -> None:
        if self.channel is not None:
            with contextlib.suppress(Exception):  # closing a dead channel must never raise
                self.channel.close()


def _local_address(sock: socket.socket) -> str:
    """Our end of the connection: the address the host sees us at, unless NAT is between."""
    try:
        return str(sock.getsockname()[0])
    except (OSError, IndexError):
        return "an unknown address"


def _close_quietly(connection: Connection, sock: socket.socket | None) -> None:
    with contextlib.suppress(Exception):  # closing a dead session must never raise
        connection.close()
    if sock is not None:
        sock.close()
