"""Which host `trust` and `enroll` set up, and what they read from the env file about it.

HOST and --port win, then the env file's ESXI_HOST, ESXI_USER and ESXI_PORT, then defaults.
Both commands start here and neither needs the other's flow, so it is a module of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from esxi_suspend.errors import BadArgument, ConfigError
from esxi_suspend.settings.envfile import read_env_values
from esxi_suspend.settings.model import DEFAULT_KNOWN_HOSTS, Target
from esxi_suspend.settings.values import HostEntry, integer_in, parse_host_entry, parse_user_name
from esxi_suspend.ssh.hostkeys import known_hosts_name
from esxi_suspend.ssh.remote import host_argument

T = TypeVar("T")


@dataclass(frozen=True)
class Setup:
    """One host to set up (`target`: where it is, as ESXI_HOST says it) and what the setting-up
    commands read from the env file: where to pin, how long to wait, the file's own values."""

    target: Target
    known_hosts: Path
    timeout: int
    env_file: Path
    env_values: dict[str, str]

    @property
    def name(self) -> str:
        """How known_hosts names it: `host`, or `[host]:port`."""
        return known_hosts_name(self.target.host, self.target.port)

    @property
    def default_user(self) -> str:
        return self.env_values.get("ESXI_USER", "root")

    @property
    def default_port(self) -> int:
        return int(self.env_values.get("ESXI_PORT", "22"))

    def argument(self, *, user: bool = False) -> str:
        """HOST for another command against this env file: user and port only where they
        differ from ESXI_USER and ESXI_PORT (`user=True`: the user always)."""
        target = self.target
        shown = target.user if user or target.user != self.default_user else None
        return host_argument(shown, target.host, target.port, self.default_port)


def resolve_target(env_file: Path, host: str | None, port: int | None) -> Setup:
    """HOST (`[user@]host[:port]`, as ESXI_HOST takes it) and --port win; then ESXI_HOST,
    ESXI_USER and ESXI_PORT of the env file; defaults last.

    A bad HOST or --port is a usage error naming the argument; a bad value in the env file is
    a ConfigError naming the file.
    """
    entry = None
    if port is not None and not 1 <= port <= 65535:
        raise BadArgument(f"argument --port {port}: out of range; use 1 to 65535")
    if host is not None:
        entry = _one_entry(host, f"argument HOST {host!r}")
    values = read_env_values(env_file)
    problems: list[str] = []
    default_user = _checked(values, "ESXI_USER", "root", parse_user_name, problems)
    file_port = _checked(values, "ESXI_PORT", "22", integer_in(1, 65535), problems)
    timeout = _checked(values, "ESXI_CONNECT_TIMEOUT", "10", integer_in(1, 600), problems)
    known_hosts = Path(values.get("ESXI_KNOWN_HOSTS", str(DEFAULT_KNOWN_HOSTS)))
    if not known_hosts.is_absolute():
        problems.append(f"ESXI_KNOWN_HOSTS={known_hosts}: must be an absolute path")
    source = f"argument HOST {host!r}"
    if entry is None:
        listed = values.get("ESXI_HOST")
        source = f"ESXI_HOST={listed!r}"
        if not listed:
            raise BadArgument(
                f"no HOST given, and {env_file} has no ESXI_HOST: give the host, "
                "as [user@]host[:port]"
            )
        if "," in listed:
            raise BadArgument(
                f"no HOST given, and ESXI_HOST={listed!r} in {env_file} names several hosts: "
                "give the one to set up as HOST"
            )
        try:
            entry = parse_host_entry(listed)
        except ValueError as exc:
            problems.append(f"ESXI_HOST={listed!r}: {exc}")
    if problems or entry is None:
        raise ConfigError(str(env_file), problems)
    if entry.port is not None and port is not None and entry.port != port:
        raise BadArgument(f"{source} says port {entry.port}, --port says {port}: give one")
    target = Target(
        entry.host,
        entry.user or default_user or "root",
        entry.port or port or file_port or 22,
    )
    return Setup(target, known_hosts, timeout or 10, env_file, values)


def _one_entry(text: str, what: str) -> HostEntry:
    """One `[user@]host[:port]`, parsed as ESXI_HOST's entries are."""
    if "," in text:
        raise BadArgument(f"{what}: one host only (ESXI_HOST may list several; this takes one)")
    try:
        return parse_host_entry(text.strip())
    except ValueError as exc:  # (the hint on separating hosts is for ESXI_HOST, not here)
        reason = str(exc).replace("; separate hosts with ','", "")
        raise BadArgument(f"{what}: {reason}") from None


def _checked(
    values: dict[str, str],
    key: str,
    default: str,
    convert: Callable[[str], T],
    problems: list[str],
) -> T | None:
    text = values.get(key, default)
    try:
        return convert(text)
    except ValueError as exc:
        problems.append(f"{key}={text!r}: {exc}")
        return None
