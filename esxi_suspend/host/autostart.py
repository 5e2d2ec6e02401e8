"""The host's autostart manager: its defaults, its sequence, and how autostop stops each VM.

Pure: no I/O. Parsers of `get_defaults` and `get_autostartseq`, and `effective_stop`, the one
place that resolves what `systemDefault` and `-1` stand for; the plan and its report both ask it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from esxi_suspend.host.esxi import ParseError


@dataclass(frozen=True)
class AutostartDefaults:
    """`get_defaults`: what `systemDefault` and `-1` stand for in the sequence."""

    stop_delay: int
    stop_action: str
    enabled: bool


@dataclass(frozen=True)
class AutostartEntry:
    """One VM in the autostart sequence, and how autostop will stop it."""

    vmid: int
    start_order: int
    stop_delay: int
    stop_action: str


_FIELD = re.compile(r"^\s*(\w+)\s*=\s*(.*?),?\s*$")


def _fields(block: list[str]) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in block:
        match = _FIELD.match(line)
        if match:
            fields[match.group(1)] = match.group(2).strip().strip("\"'")
    return fields


def _integer(fields: dict[str, str], key: str, where: str) -> int:
    value = fields.get(key)
    if value is None or not re.fullmatch(r"-?\d{1,9}", value, re.ASCII):
        raise ParseError(f"{where}: {key} is {value!r}, not an integer")
    return int(value)


def parse_defaults(text: str) -> AutostartDefaults:
    """Parse `vim-cmd hostsvc/autostartmanager/get_defaults`."""
    where = "vim-cmd hostsvc/autostartmanager/get_defaults"
    fields = _fields(text.splitlines())
    if "stopAction" not in fields:
        raise ParseError(f"{where}: no stopAction")
    return AutostartDefaults(
        stop_delay=_integer(fields, "stopDelay", where),
        stop_action=fields["stopAction"],
        enabled=fields.get("enabled", "true").lower() == "true",
    )


_VM_KEY = re.compile(r"vim\.VirtualMachine:(\d{1,9})$", re.ASCII)


def parse_autostartseq(text: str) -> list[AutostartEntry]:
    """Parse `vim-cmd hostsvc/autostartmanager/get_autostartseq` into its entries."""
    where = "vim-cmd hostsvc/autostartmanager/get_autostartseq"
    blocks: list[list[str]] = []
    current: list[str] | None = None
    for line in text.splitlines():
        if line.rstrip().endswith("{"):
            current = []
        elif line.strip().startswith("}") and current is not None:
            blocks.append(current)
            current = None
        elif current is not None:
            current.append(line)
    if not blocks and "AutoPowerInfo" not in text:
        raise ParseError(f"{where}: not an autostart sequence")
    entries: list[AutostartEntry] = []
    for block in blocks:
        fields = _fields(block)
        key = _VM_KEY.search(fields.get("key", ""))
        if key is None:
            raise ParseError(f"{where}: entry without a vim.VirtualMachine key")
        entries.append(
            AutostartEntry(
                vmid=int(key.group(1)),
                start_order=_integer(fields, "startOrder", where),
                stop_delay=_integer(fields, "stopDelay", where),
                stop_action=fields.get("stopAction", "systemDefault"),
            )
        )
    return entries


def effective_stop(entry: AutostartEntry, defaults: AutostartDefaults) -> tuple[str, int]:
    """The stop action and delay autostop really uses: `systemDefault`/-1 mean the defaults."""
    action = entry.stop_action
    if action.lower() == "systemdefault":
        action = defaults.stop_action
    delay = defaults.stop_delay if entry.stop_delay < 0 else entry.stop_delay
    return action, delay
