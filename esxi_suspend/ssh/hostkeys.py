"""Host keys: how we recognise a host before we send it anything.

The pinned known_hosts file is the only trust there is: the shutdown path refuses a key that is
not in it (`RefuseUnknownHostKey`), `trust` adds to it, `enroll` checks it before it sends a
password. Fingerprints are shown as `ssh-keygen -lf` prints them, so the admin can compare them
with the host's console. Opens no connection itself.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko

from esxi_suspend.errors import ConfigError, HostKeyRejected, first_line
from esxi_suspend.settings.model import Settings

_KEY_TYPE_LABELS = {"ssh-ed25519": "ED25519", "ssh-rsa": "RSA", "ssh-dss": "DSA"}


def fingerprint(key: paramiko.PKey) -> str:
    """`SHA256:...` as `ssh-keygen -lf` prints it, so the admin can compare with the console."""
    return f"{key.get_name()} {key.fingerprint}"


class RefuseUnknownHostKey(paramiko.RejectPolicy):  # type: ignore[misc]
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


def key_info(key: paramiko.PKey) -> HostKeyInfo:
    """What the admin compares of a key paramiko holds."""
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
            str(path), [f"{path}: not an OpenSSH public key line ({first_line(exc)})"]
        ) from None
    return key_info(key)


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
            [f"ESXI_KNOWN_HOSTS={known_hosts}: unreadable or a line is broken ({first_line(exc)})"],
        ) from None
    found = keys.lookup(known_hosts_name(host, port)) or {}
    return [key_info(key) for key in found.values()]
