"""The SSH connection to one ESXi host: the only module that imports fabric and paramiko.

Fabric's `Connection` trusts any host key and reads root's `~/.ssh/config` by default. Here it
gets an empty SSH config, only our pinned known_hosts, a policy that refuses unknown keys, and
exactly one private key: no agent, no key search, no password. Every wait is bounded.
"""

from __future__ import annotations

import base64
import contextlib
import shlex
import socket
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import paramiko
from fabric import Config, Connection
from invoke.exceptions import CommandTimedOut

from esxi_suspend.config import DEFAULT_ENV_FILE, Settings
from esxi_suspend.errors import (
    ConfigError,
    ConnectionFailed,
    HostKeyRejected,
    RemoteCommandFailed,
    RemoteTimeout,
    SessionDropped,
)

# What the host reports when the channel closes without an exit status.
NO_EXIT_STATUS = -1

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


def fingerprint(key: paramiko.PKey) -> str:
    """`SHA256:...` as `ssh-keygen -lf` prints it, so the admin can compare with the console."""
    return f"{key.get_name()} {key.fingerprint}"


class _RefuseUnknownHostKey(paramiko.RejectPolicy):  # type: ignore[misc]
    """RejectPolicy that says which key it refused, and how to pin it after checking it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def missing_host_key(self, client: Any, hostname: str, key: paramiko.PKey) -> None:
        raise HostKeyRejected(
            f"host {hostname}: unknown host key {fingerprint(key)}, not in ESXI_KNOWN_HOSTS "
            f"{self.settings.known_hosts}; nothing was run. If that fingerprint matches the one "
            f"on the host's console, pin it: esxi-suspend trust {self.settings.host} "
            f"--port {self.settings.port}"
        )


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


class KeyRefused(ConnectionFailed):
    """The host refused our key for the user: `enroll` can authorize it."""


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
        client.set_missing_host_key_policy(_RefuseUnknownHostKey(settings))
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
            _close_quietly(connection, sock)
            # No "host X:" here: every caller's log line already starts with the host.
            raise KeyRefused(
                f"user {settings.user} refused our key {settings.key_file}; add "
                f"{settings.key_file}.pub to the host's authorized keys (one login with "
                f"{settings.user}'s password): {enroll_command(settings)}"
            ) from None
        except (paramiko.SSHException, EOFError, OSError) as exc:
            _close_quietly(connection, sock)
            raise ConnectionFailed(
                f"host {settings.host} port {settings.port}: SSH handshake failed "
                f"({_short(exc)}); check that an SSH server answers there (ESXI_PORT) and "
                f"ESXI_CONNECT_TIMEOUT={timeout}"
            ) from None
        transport = client.get_transport()
        if transport is not None:
            transport.set_keepalive(5)
        self._connection = connection

    @property
    def host_key(self) -> str:
        """The verified host key's type and fingerprint, for the log."""
        transport = self._connection.client.get_transport() if self._connection else None
        return fingerprint(transport.get_remote_server_key()) if transport else "unknown"

    def run(self, command: str, timeout: int) -> CommandResult:
        """Run one command; raise RemoteTimeout or SessionDropped, else return how it ended."""
        if self._connection is None:
            raise RemoteCommandFailed(f"host {self.name}: not connected", command)
        if _Abort.requested:
            raise RemoteCommandFailed(
                f"host {self.name}: not sent: this run was told to stop", command
            )
        try:
            result = self._connection.run(
                command, hide=True, warn=True, in_stream=False, pty=False, timeout=timeout
            )
        except CommandTimedOut:
            raise RemoteTimeout(
                f"host {self.name}: `{command}` did not finish within "
                f"ESXI_COMMAND_TIMEOUT={timeout} s",
                command,
            ) from None
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise SessionDropped(
                f"host {self.name}: session lost while running `{command}` ({_short(exc)})",
                command,
            ) from None
        status = int(result.exited) if result.exited is not None else NO_EXIT_STATUS
        if status == NO_EXIT_STATUS:
            raise SessionDropped(
                f"host {self.name}: session closed before `{command}` reported an exit status",
                command,
            )
        return CommandResult(command, status, str(result.stdout), str(result.stderr))

    def close(self) -> None:
        if self._connection is not None:
            _close_quietly(self._connection, None)
            self._connection = None


def _close_quietly(connection: Connection, sock: socket.socket | None) -> None:
    with contextlib.suppress(Exception):  # closing a dead session must never raise
        connection.close()
    if sock is not None:
        sock.close()


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text and text[0] else type(exc).__name__


# -- setting up: trust (host key, no login) and enroll (one password login) ---------------
# Neither is ever used by the shutdown path: `shutdown` and `check` only use RemoteHost.

_KEY_TYPE_LABELS = {"ssh-ed25519": "ED25519", "ssh-rsa": "RSA", "ssh-dss": "DSA"}


@dataclass(frozen=True)
class HostKeyInfo:
    """A host key as the admin compares it: type, bits and SHA256 fingerprint."""

    key_type: str  # ssh-ed25519, ecdsa-sha2-nistp256, ssh-rsa, ...
    base64: str
    bits: int
    fingerprint: str  # SHA256:...

    @property
    def label(self) -> str:
        """ED25519, ECDSA, RSA, DSA: the last field `ssh-keygen -lf` prints."""
        if self.key_type.startswith("ecdsa-"):
            return "ECDSA"
        return _KEY_TYPE_LABELS.get(self.key_type, self.key_type.upper())

    def ssh_keygen_line(self, name: str) -> str:
        """`256 SHA256:... NAME (ED25519)`: what `ssh-keygen -lf known_hosts` prints."""
        return f"{self.bits} {self.fingerprint} {name} ({self.label})"

    @property
    def entry(self) -> str:
        """`ssh-ed25519 AAAA...`: the key part of a known_hosts or authorized_keys line."""
        return f"{self.key_type} {self.base64}"

    def same_key(self, other: HostKeyInfo) -> bool:
        return self.base64 == other.base64


def _key_info(key: paramiko.PKey) -> HostKeyInfo:
    return HostKeyInfo(key.get_name(), key.get_base64(), int(key.get_bits()), key.fingerprint)


def public_key_info(path: Path) -> HostKeyInfo:
    """Type, bits and fingerprint of the OpenSSH public key file `path` (`id_ed25519.pub`)."""
    try:
        fields = path.read_text(encoding="ascii").split()
        key = paramiko.PKey.from_type_string(fields[0], base64.b64decode(fields[1]))
    except OSError as exc:
        raise ConfigError(str(path), [f"{path}: cannot be read ({exc.strerror or exc})"]) from None
    except (IndexError, ValueError, UnicodeError, paramiko.SSHException) as exc:
        raise ConfigError(
            str(path), [f"{path}: not an OpenSSH public key line ({_short(exc)})"]
        ) from None
    return _key_info(key)


def known_hosts_name(host: str, port: int) -> str:
    """How OpenSSH names a host in known_hosts: `host`, or `[host]:port` when port is not 22."""
    return host if port == 22 else f"[{host}]:{port}"


def pinned_host_keys(known_hosts: Path, host: str, port: int) -> list[HostKeyInfo]:
    """The keys `known_hosts` pins for this host and port (hashed entries included)."""
    if not known_hosts.exists():
        return []
    try:
        keys = paramiko.HostKeys(str(known_hosts))
    except (OSError, ValueError, paramiko.SSHException) as exc:  # ValueError: UnicodeError too
        raise ConfigError(
            str(known_hosts),
            [f"ESXI_KNOWN_HOSTS={known_hosts}: unreadable or a line is broken ({_short(exc)})"],
        ) from None
    found = keys.lookup(known_hosts_name(host, port)) or {}
    return [_key_info(key) for key in found.values()]


def _start_transport(
    host: str, port: int, timeout: float, prefer: Sequence[str]
) -> tuple[paramiko.Transport, socket.socket]:
    """An SSH transport after key exchange: the host key is known, nothing authenticated."""
    sock = open_socket(host, port, timeout)
    transport = paramiko.Transport(sock)
    transport.banner_timeout = timeout
    transport.handshake_timeout = timeout
    transport.auth_timeout = timeout
    if prefer:  # ask first for the key type already pinned, as the shutdown path's client does
        options = transport.get_security_options()
        known = list(options.key_types)
        wanted = [name for name in prefer if name in known]
        options.key_types = wanted + [name for name in known if name not in wanted]
    try:
        transport.start_client(timeout=timeout)
    except (paramiko.SSHException, EOFError, OSError) as exc:
        transport.close()
        sock.close()
        raise ConnectionFailed(
            f"host {host} port {port}: SSH handshake failed ({_short(exc)}); check that an SSH "
            "server answers there (ESXi: enable SSH in Host > Actions > Services)"
        ) from None
    return transport, sock


def fetch_host_key(host: str, port: int, timeout: float, prefer: Sequence[str] = ()) -> HostKeyInfo:
    """The key the host shows in the SSH handshake; we do not log in. Bounded by `timeout`."""
    transport, sock = _start_transport(host, port, timeout, prefer)
    try:
        return _key_info(transport.get_remote_server_key())
    finally:
        transport.close()
        sock.close()


class PasswordSession:
    """One password login, for `enroll` only: the host key must already be pinned.

    The password is used for this one authentication and kept nowhere; paramiko answers a
    keyboard-interactive prompt with it when the host refuses plain password auth (ESXi 6+).
    """

    def __init__(self, host: str, port: int, user: str, known_hosts: Path, timeout: float) -> None:
        self.host = host
        self.port = port
        self.user = user
        self.known_hosts = known_hosts
        self.timeout = timeout
        self._transport: paramiko.Transport | None = None
        self._sock: socket.socket | None = None
        self.host_key: HostKeyInfo | None = None

    def __enter__(self) -> PasswordSession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def open(self, password: str) -> None:
        pinned = pinned_host_keys(self.known_hosts, self.host, self.port)
        name = known_hosts_name(self.host, self.port)
        if not pinned:
            raise HostKeyRejected(
                f"host {name}: no host key pinned in {self.known_hosts}; run "
                f"`esxi-suspend trust {self.host}` first (nothing was sent, no password)"
            )
        transport, sock = _start_transport(
            self.host, self.port, self.timeout, [key.key_type for key in pinned]
        )
        self._transport, self._sock = transport, sock
        shown = _key_info(transport.get_remote_server_key())
        if not any(shown.same_key(key) for key in pinned):
            self.close()
            raise HostKeyRejected(
                f"host {name}: HOST KEY CHANGED: it shows {shown.key_type} {shown.fingerprint}, "
                f"but {self.known_hosts} pins "
                + ", ".join(f"{key.key_type} {key.fingerprint}" for key in pinned)
                + "; the password was NOT sent. If the host was reinstalled, check the new "
                f"fingerprint on its console, then run `esxi-suspend trust --replace {self.host}`"
            )
        self.host_key = shown
        try:
            transport.auth_password(self.user, password, fallback=True)
        except paramiko.BadAuthenticationType as exc:
            self.close()
            raise ConnectionFailed(
                f"host {name}: does not accept a password for {self.user} (it offers: "
                f"{', '.join(exc.allowed_types) or 'nothing'}); add the public key by hand"
            ) from None
        except paramiko.AuthenticationException:
            self.close()
            raise ConnectionFailed(
                f"host {name}: password refused for {self.user}; nothing was changed"
            ) from None
        except (paramiko.SSHException, EOFError, OSError) as exc:
            self.close()
            raise ConnectionFailed(f"host {name}: login failed ({_short(exc)})") from None

    def run(self, command: str, timeout: float, stdin: bytes = b"") -> CommandResult:
        """Run `command` (a constant: data goes on stdin); bounded by `timeout` seconds."""
        transport = self._transport
        if transport is None or not transport.is_active():
            raise SessionDropped(f"host {self.host}: not connected", command)
        deadline = time.monotonic() + timeout
        out, err = bytearray(), bytearray()
        try:
            channel = transport.open_session(timeout=timeout)
            channel.settimeout(timeout)
            channel.exec_command(command)
            if stdin:
                channel.sendall(stdin)
            channel.shutdown_write()
            while True:
                busy = False
                if channel.recv_ready():
                    out += channel.recv(65536)
                    busy = True
                if channel.recv_stderr_ready():
                    err += channel.recv_stderr(65536)
                    busy = True
                drained = not (busy or channel.recv_ready() or channel.recv_stderr_ready())
                if channel.exit_status_ready() and drained:
                    break
                if not transport.is_active():
                    raise SessionDropped(
                        f"host {self.host}: session lost while running `{command}`", command
                    )
                if time.monotonic() > deadline:
                    channel.close()
                    raise RemoteTimeout(
                        f"host {self.host}: `{command}` did not finish within {timeout:g} s",
                        command,
                    )
                if not busy:
                    time.sleep(0.02)
            status = channel.recv_exit_status()
            channel.close()
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise SessionDropped(
                f"host {self.host}: session lost while running `{command}` ({_short(exc)})",
                command,
            ) from None
        return CommandResult(
            command, status, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
        )

    def close(self) -> None:
        if self._transport is not None:
            with contextlib.suppress(Exception):
                self._transport.close()
            self._transport = None
        if self._sock is not None:
            with contextlib.suppress(Exception):
                self._sock.close()
            self._sock = None
