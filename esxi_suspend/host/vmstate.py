"""What the host says of one VM: power state, VMware Tools, BIOS UUID. Pure: no I/O.

Parsers of `get.summary` (the one read on the shutdown path) and of the single-field commands,
with the UUID comparison that finds the VM we run in: all about one VM, none about the listing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from esxi_suspend.host.esxi import ParseError


class PowerState(Enum):
    ON = "Powered on"
    OFF = "Powered off"
    SUSPENDED = "Suspended"
    # Off or suspended: what esxcli's one-call look tells of a VM it does not list.
    NOT_RUNNING = "Not running"


def parse_power_state(text: str) -> PowerState:
    """Parse `vim-cmd vmsvc/power.getstate ID`: its last line is the state."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for state in (PowerState.ON, PowerState.OFF, PowerState.SUSPENDED):
        if lines and lines[-1] == state.value:
            return state
    shown = lines[-1][:80] if lines else "nothing"
    raise ParseError(f"vim-cmd vmsvc/power.getstate: unknown power state {shown!r}")


_TOOLS = re.compile(r'toolsRunningStatus\s*=\s*"(\w+)"')


def parse_tools_running(text: str) -> bool:
    """`vim-cmd vmsvc/get.guest ID`: are VMware Tools running (guest shutdown possible)?"""
    match = _TOOLS.search(text)
    if match is None:
        raise ParseError("vim-cmd vmsvc/get.guest: no toolsRunningStatus")
    return match.group(1) == "guestToolsRunning"


_UUID = re.compile(r'^\s*uuid\s*=\s*"([0-9A-Fa-f-]{32,36})"', re.MULTILINE)


def parse_bios_uuid(text: str) -> str | None:
    """`vim-cmd vmsvc/get.config ID`: the VM's BIOS UUID (its SMBIOS UUID inside the guest)."""
    match = _UUID.search(text)
    return normalize_uuid(match.group(1)) if match else None


@dataclass(frozen=True)
class VmSummary:
    """What `vim-cmd vmsvc/get.summary ID` says of one VM; None where it says nothing readable.

    An unknown state must be taken as "possibly running" by the caller.
    """

    state: PowerState | None
    tools_running: bool | None
    bios_uuid: str | None


_SUMMARY_STATES = {
    "poweredOn": PowerState.ON,
    "poweredOff": PowerState.OFF,
    "suspended": PowerState.SUSPENDED,
}
# `name = (type) {` or `name = [` opens a named block; `(type) {` an element of an array.
_OPEN_NAMED = re.compile(r"(\w+)\s*=\s*(?:\([^()]*\)\s*)?[{\[]", re.ASCII)
_OPEN_ANONYMOUS = re.compile(r"(?:\([^()]*\)\s*)?[{\[]", re.ASCII)
_CLOSE = re.compile(r"[}\]]\s*,?", re.ASCII)
_QUOTED = re.compile(r"(\w+)\s*=\s*\"(.*)\"\s*,?", re.ASCII)
_QUOTE_OPENS = re.compile(r"(\w+)\s*=\s*\"", re.ASCII)


def _summary_fields(text: str) -> dict[tuple[str, ...], str]:
    """Quoted values by (enclosing block names..., field name), one field per line as vim-cmd
    prints them; only fields given a quoted value on exactly one line of the whole text.

    A value that runs over several lines (a multi-line annotation) is skipped whole, so that
    its lines are not read as fields or blocks. Whatever a name or annotation holds, it cannot
    stand in for a real field: a second line giving the same field a value makes it unknown.
    """
    found: dict[tuple[str, ...], str] = {}
    assigned: dict[str, int] = {}
    path: list[str | None] = []
    in_string = False
    for raw in text.split("\n"):
        line = raw.strip()
        quoted = _QUOTED.fullmatch(line)
        if quoted:
            assigned[quoted.group(1)] = assigned.get(quoted.group(1), 0) + 1
        if in_string:
            in_string = not line.endswith(('"', '",'))
            continue
        if quoted:
            found[(*(name for name in path if name is not None), quoted.group(1))] = quoted.group(2)
        elif _QUOTE_OPENS.match(line):
            in_string = True
        elif opened := _OPEN_NAMED.fullmatch(line):
            path.append(opened.group(1))
        elif _OPEN_ANONYMOUS.fullmatch(line):
            path.append(None)
        elif _CLOSE.fullmatch(line) and path:
            path.pop()
    return {key: value for key, value in found.items() if assigned.get(key[-1]) == 1}


def parse_summary(text: str) -> VmSummary:
    """Parse `vim-cmd vmsvc/get.summary ID`; never raises: what it cannot read is None.

    powerState is read in the runtime block, toolsRunningStatus in the guest block, the BIOS
    UUID from `uuid` (never `instanceUuid`) in the config block; a field assigned twice in the
    text is ambiguous, so unknown.
    """
    fields = _summary_fields(text)
    state = _SUMMARY_STATES.get(fields.get(("runtime", "powerState")) or "")
    tools = fields.get(("guest", "toolsRunningStatus"))
    uuid = fields.get(("config", "uuid")) or ""
    return VmSummary(
        state=state,
        tools_running=None if tools is None else tools == "guestToolsRunning",
        bios_uuid=normalize_uuid(uuid) if re.fullmatch(r"[0-9A-Fa-f-]{32,36}", uuid) else None,
    )


def normalize_uuid(text: str) -> str | None:
    digits = re.sub(r"[^0-9a-f]", "", text.lower())
    return digits if len(digits) == 32 else None


def uuid_matches(smbios: str, bios: str) -> bool:
    """Guests see the BIOS UUID either as is or with its first three fields byte-swapped."""
    a, b = normalize_uuid(smbios), normalize_uuid(bios)
    if a is None or b is None:
        return False
    swapped = (
        "".join(bytes.fromhex(part)[::-1].hex() for part in (b[0:8], b[8:12], b[12:16])) + b[16:]
    )
    return a in (b, swapped)
