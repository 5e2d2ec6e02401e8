"""The SSH connections of the setting-up commands: never used on the shutdown path.

`trust` needs the host key alone: a key exchange, no login (`fetch_host_key`). `enroll` needs
one password login, and only to a host whose key is pinned (`PasswordSession`). The shutdown
path logs in with our key only (remote.RemoteHost); keeping these apart keeps a password off
that path.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Sequence
from pathlib import Path

import paramiko

from esxi_suspend.errors import (
    ConnectionFailed,
    HostKeyRejected,
    RemoteTimeout,
    SessionDropped,
    first_line,
)
from esxi_suspend.settings.model import Target
from esxi_suspend.ssh.hostkeys import HostKeyInfo, key_info, known_hosts_name, pinned_host_keys
from esxi_suspend.ssh.remote import CommandResult, open_socket


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
            f"host {host} port {port}: SSH handshake failed ({first_line(exc)}); check that an SSH "
            "server answers there (ESXi: enable SSH in Host > Actions > Services)"
        ) from None
    return transport, sock


def fetch_host_key(host: str, port: int, timeout: float, prefer: Sequence[str] = ()) -> HostKeyInfo:
    """The key the host shows in the SSH handshake; we do not log in. Bounded by `timeout`."""
    transport, sock = _start_transport(host, port, timeout, prefer)
    try:
        return key_info(transport.get_remote_server_key())
    finally:
        transport.close()
        sock.close()


class PasswordSession:
    """One password login, for `enroll` only: the host key must already be pinned.

    The password is used for this one authentication and kept nowhere; paramiko answers a
    keyboard-interactive prompt with it when the host refuses plain password auth (ESXi 6+).
    """

    def __init__(self, target: Target, known_hosts: Path, timeout: float) -> None:
        self.target = target
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
        target = self.target
        pinned = pinned_host_keys(self.known_hosts, target.host, target.port)
        name = known_hosts_name(target.host, target.port)
        if not pinned:
            raise HostKeyRejected(
                f"host {name}: no host key pinned in {self.known_hosts}; run "
                f"`esxi-suspend trust {target.host}` first (nothing was sent, no password)"
            )
        transport, sock = _start_transport(
            target.host, target.port, self.timeout, [key.key_type for key in pinned]
        )
        self._transport, self._sock = transport, sock
        shown = key_info(transport.get_remote_server_key())
        if not any(shown.same_key(key) for key in pinned):
            self.close()
            raise HostKeyRejected(
                f"host {name}: HOST KEY CHANGED: it shows {shown.key_type} {shown.fingerprint}, "
                f"but {self.known_hosts} pins "
                + ", ".join(f"{key.key_type} {key.fingerprint}" for key in pinned)
                + "; the password was NOT sent. If the host was reinstalled, check the new "
                f"fingerprint on its console, then run `esxi-suspend trust --replace {target.host}`"
            )
        self.host_key = shown
        try:
            transport.auth_password(target.user, password, fallback=True)
        except paramiko.BadAuthenticationType as exc:
            self.close()
            raise ConnectionFailed(
                f"host {name}: does not accept a password for {target.user} (it offers: "
                f"{', '.join(exc.allowed_types) or 'nothing'}); add the public key by hand"
            ) from None
        except paramiko.AuthenticationException:
            self.close()
            raise ConnectionFailed(
                f"host {name}: password refused for {target.user}; nothing was changed"
            ) from None
        except (paramiko.SSHException, EOFError, OSError) as exc:
            self.close()
            raise ConnectionFailed(f"host {name}: login failed ({first_line(exc)})") from None

    @property
    def server_banner(self) -> str:
        """The SSH server's identification, e.g. `SSH-2.0-dropbear_2022.83` (keyline.py)."""
        transport = self._transport
        return str(transport.remote_version) if transport is not None else ""

    def run(self, command: str, timeout: float, stdin: str = "") -> CommandResult:
        """Run `command` (a constant: data goes on stdin); bounded by `timeout` seconds."""
        host = self.target.host
        transport = self._transport
        if transport is None or not transport.is_active():
            raise SessionDropped(f"host {host}: not connected", command)
        deadline = time.monotonic() + timeout
        out, err = bytearray(), bytearray()
        try:
            channel = transport.open_session(timeout=timeout)
            channel.settimeout(timeout)
            channel.exec_command(command)
            if stdin:
                channel.sendall(stdin.encode())
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
                        f"host {host}: session lost while running `{command}`", command
                    )
                if time.monotonic() > deadline:
                    channel.close()
                    raise RemoteTimeout(
                        f"host {host}: `{command}` did not finish within {timeout:g} s",
                        command,
                    )
                if not busy:
                    time.sleep(0.02)
            status = channel.recv_exit_status()
            channel.close()
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise SessionDropped(
                f"host {host}: session lost while running `{command}` ({first_line(exc)})",
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
