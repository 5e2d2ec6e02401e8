"""One setting's text to its value, or a ValueError that says what is wrong and the fix.

Pure functions: envfile.py's validation calls them and turns each ValueError into a Problem
that names the key; trust and enroll use the host-entry parser for their HOST argument.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar

from esxi_suspend.settings.model import VM_ACTIONS, Target

_HOST_RE = re.compile(
    r"^(?:[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,251}[A-Za-z0-9_])?|\[?[0-9A-Fa-f:.]+\]?)$"
)


_USER_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}$")


_SERVICE_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@-]{0,127}$")


def host_name(value: str) -> str:
    if not _HOST_RE.match(value):
        raise ValueError("not a host name or IP address (one host; no spaces, ports or options)")
    return value.strip("[]")


_TARGET_RE = re.compile(
    r"^(?:(?P<user>[^@\s]+)@)?(?P<host>\[[^\]]+\]|[^:\s]+|[0-9A-Fa-f:]+)(?::(?P<port>\d+))?$"
)


@dataclass(frozen=True)
class HostEntry:
    """One `[user@]host[:port]` of ESXI_HOST; user and port None when not given."""

    host: str
    user: str | None
    port: int | None


def parse_host_entry(text: str) -> HostEntry:
    """`ESXI_HOST=esxi1, root@esxi2:2222, [fe80::1]:22`: one or more `[user@]host[:port]`."""
    match = _TARGET_RE.match(text)
    if not text or match is None:
        raise ValueError("not [user@]host[:port]; separate hosts with ','")
    host = host_name(match.group("host"))
    user = parse_user_name(match.group("user")) if match.group("user") else None
    port = integer_in(1, 65535)(match.group("port")) if match.group("port") else None
    return HostEntry(host, user, port)


def match_target(text: str, targets: tuple[Target, ...]) -> Target:
    """The one ESXI_HOST entry that `[user@]host[:port]` names (user and port may be left out
    when the host alone tells it)."""
    entry = parse_host_entry(text)
    found = [
        target
        for target in targets
        if target.host == entry.host
        and entry.port in (None, target.port)
        and entry.user in (None, target.user)
    ]
    if not found:
        hosts = ", ".join(t.host if t.port == 22 else f"{t.host}:{t.port}" for t in targets)
        raise ValueError(f"{text} is not in ESXI_HOST (it has: {hosts or 'no usable host'})")
    if len(found) > 1:
        raise ValueError(f"{text} is more than one ESXI_HOST entry; add its :port")
    return found[0]


MAC_RE = re.compile(r"[0-9A-Fa-f]{2}([:-])(?:[0-9A-Fa-f]{2}\1){4}[0-9A-Fa-f]{2}")


def parse_mac(text: str) -> str:
    """`aa:bb:cc:dd:ee:ff` or `AA-BB-CC-DD-EE-FF` (a network card's own) -> `aa:bb:cc:dd:ee:ff`."""
    if not MAC_RE.fullmatch(text):
        raise ValueError(
            "not a MAC address; write 6 two-digit hex octets separated by ':' or '-', "
            "e.g. aa:bb:cc:dd:ee:ff"
        )
    octets = bytes.fromhex(re.sub("[:-]", "", text))
    if octets[0] & 1 or not any(octets):
        kind = "all zeros" if not any(octets) else "a multicast or broadcast address"
        raise ValueError(
            f"{kind}, not a network card's; use the MAC of the host's NIC (on the host: "
            "esxcli network nic list)"
        )
    return ":".join(f"{octet:02x}" for octet in octets)


def parse_ipv4(text: str) -> str:
    """A Wake-on-LAN destination: an IPv4 address, the network's broadcast address usually."""
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        raise ValueError(
            "not an IPv4 address; use the broadcast address of the host's network, "
            "e.g. 192.168.1.255, or 255.255.255.255"
        ) from None


_BMC_RE = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[^:\s\[\]]+)(?::(?P<port>[0-9]+))?$")


def parse_bmc_address(text: str) -> tuple[str, int]:
    """ESXI_IPMI_HOST's `BMC[:port]`: a host name or IP address (IPv6 in brackets), and the
    UDP port, 623 by default."""
    match = _BMC_RE.match(text)
    if match is None:
        raise ValueError("not BMC[:port]; write the BMC's address, e.g. 192.168.1.21 or bmc1:623")
    port = integer_in(1, 65535)(match.group("port")) if match.group("port") else 623
    return host_name(match.group("host")), port


_IPMI_USER_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@-]{0,15}$")


def parse_ipmi_user(text: str) -> str:
    """A BMC user name: up to 16 characters (IPMI's limit), letters, digits, `_.@-`."""
    if not _IPMI_USER_RE.match(text):
        raise ValueError("not a BMC user name (up to 16 letters, digits or _.@-)")
    return text


def yes_no(value: str) -> bool:
    if value.strip().lower() in ("yes", "true", "1", "on"):
        return True
    if value.strip().lower() in ("no", "false", "0", "off"):
        return False
    raise ValueError("use yes or no")


def one_of(choices: tuple[str, ...]) -> Callable[[str], str]:
    def convert(value: str) -> str:
        if value.lower() not in choices:
            raise ValueError(f"use one of: {', '.join(choices)}")
        return value.lower()

    return convert


def action_list(value: str) -> tuple[str, ...]:
    actions = tuple(part.strip().lower() for part in value.split(",") if part.strip())
    unknown = [a for a in actions if a not in VM_ACTIONS]
    if unknown or not actions or len(set(actions)) != len(actions):
        raise ValueError(f"a comma-separated order of {', '.join(VM_ACTIONS)}, each once")
    return actions


def vm_groups(value: str) -> tuple[tuple[str, ...], ...]:
    """`web1, web2; db1; nas`: groups stop one after another, in this order."""
    groups = tuple(
        tuple(name.strip() for name in group.split(",") if name.strip())
        for group in value.split(";")
    )
    if any(not group for group in groups):
        raise ValueError("an empty group; write groups of VM names or ids separated by ';'")
    return groups


def seconds_in(low: float, high: float) -> Callable[[str], float]:
    """Seconds, fractions allowed (ESXI_POLL_INTERVAL), from `low` to `high`."""
    return _number_in(low, high, r"[0-9]+(\.[0-9]+)?", float, "a number of seconds", "seconds")


def deadline_value(value: str) -> int | None:
    """ESXI_DEADLINE: whole seconds, or `auto` (None)."""
    if value.strip().lower() == "auto":
        return None
    try:
        return integer_in(10, 86400)(value)
    except ValueError as exc:
        raise ValueError(f"{exc}, or auto (the UPS's battery.runtime)") from None


def parse_user_name(value: str) -> str:
    if not _USER_RE.match(value):
        raise ValueError("not a user name")
    return value


def integer_in(low: int, high: int) -> Callable[[str], int]:
    """A whole number from `low` to `high` (ports, timeouts, limits)."""
    return _number_in(low, high, r"[0-9]+", int, "a whole number", "integer")


N = TypeVar("N", int, float)


def _number_in(
    low: N, high: N, pattern: str, kind: Callable[[str], N], what: str, unit: str
) -> Callable[[str], N]:
    """The one number parser: digits only (no sign, no exponent), then the range."""
    span = f"an integer from {low} to {high}" if unit == "integer" else f"{low:g} to {high:g}"
    in_range = span if unit == "integer" else f"{span} {unit}"

    def convert(value: str) -> N:
        if not re.fullmatch(pattern, value):
            raise ValueError(f"not {what}; use {span}")
        number = kind(value)
        if not low <= number <= high:
            raise ValueError(f"out of range; use {in_range}")
        return number

    return convert


def keyword_or_command(*keywords: str) -> Callable[[str], tuple[str, ...]]:
    """One of `keywords` (as a 1-tuple), or a command line split into words (no shell)."""

    def convert(value: str) -> tuple[str, ...]:
        if value.strip().lower() in keywords:
            return (value.strip().lower(),)
        return command_line(value)

    return convert


def existing_file(key: str) -> Callable[[str], Path]:
    def convert(value: str) -> Path:
        path = Path(value)
        if not path.is_absolute():
            raise ValueError("must be an absolute path (upsmon runs us from /)")
        if not path.exists():
            raise ValueError(f"file not found; {_MISSING_FILE_HINTS[key]}")
        if not path.is_file():
            raise ValueError("is not a regular file")
        if not os.access(path, os.R_OK):
            raise ValueError("not readable by this user; run as root or fix its permissions")
        return path

    return convert


_MISSING_FILE_HINTS = {
    "ESXI_KEY_FILE": "create one with: ssh-keygen -t ed25519 -N '' -f /etc/esxi-suspend/id_ed25519",
    "ESXI_KNOWN_HOSTS": (
        "pin the host key with: esxi-suspend trust HOST (it shows the fingerprint to "
        "compare with the host's console first)"
    ),
}


def service_name(value: str) -> str:
    if not _SERVICE_RE.match(value):
        raise ValueError("not a service name; use auto, none, or a name such as nut-monitor")
    return value


def command_line(value: str) -> tuple[str, ...]:
    try:
        argv = tuple(shlex.split(value))
    except ValueError as exc:
        raise ValueError(f"cannot be split into words ({exc})") from None
    if not argv:
        raise ValueError("is empty")
    return argv


_UPS_RE = re.compile(
    r"^[A-Za-z0-9_][A-Za-z0-9_.-]*"  # the UPS
    r"(?:@(?:[A-Za-z0-9_][A-Za-z0-9_.-]*|\[[0-9A-Fa-f:.]+\])"  # @host or @[v6]
    r"(?::[0-9]{1,5})?)?$"  # :port, only after a host
)


def parse_ups_name(value: str) -> str:
    """One `ups[@host[:port]]`, as upsc and upsmon's MONITOR lines name a UPS."""
    if not _UPS_RE.match(value):
        raise ValueError("not ups[@host[:port]]; separate several with ','")
    port = value.rsplit(":", 1)[1] if re.search(r":[0-9]+$", value) and "@" in value else None
    if port is not None and not 1 <= int(port) <= 65535:
        raise ValueError("port out of range; use 1 to 65535")
    return value


def parse_ups_names(value: str) -> tuple[str, ...]:
    """UPS_NAME: `auto` (the MONITOR lines of upsmon.conf; returned as ()), `none`
    (returned as ("none",)), or `ups@host[:port]`, several separated by ','."""
    if value.strip().lower() in ("auto", "none"):
        return () if value.strip().lower() == "auto" else ("none",)
    names = [part.strip() for part in value.split(",")]
    if not any(names):
        raise ValueError("names no UPS; use auto, none, or ups@host[:port]")
    return tuple(dict.fromkeys(parse_ups_name(name) for name in names if name))


def key_from(value: str) -> tuple[str, ...]:
    """ESXI_KEY_FROM: `auto`, `none`, or addresses and networks (`192.168.1.5, 10.0.0.0/24`).

    Only IP addresses and CIDR networks: they need no quoting inside `from="..."`."""
    text = value.strip()
    if text.lower() in ("auto", "none"):
        return (text.lower(),)
    found: list[str] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            network = ipaddress.ip_network(part, strict=False)
        except ValueError:
            raise ValueError(
                f"{part!r} is not an IP address or network; use `auto`, `none`, or addresses "
                "and networks separated by commas, e.g. 192.168.1.5, 10.0.0.0/24"
            ) from None
        single = network.num_addresses == 1 and "/" not in part
        found.append(str(network.network_address) if single else str(network))
    if not found:
        raise ValueError("empty; use `auto`, `none`, or addresses separated by commas")
    return tuple(dict.fromkeys(found))
