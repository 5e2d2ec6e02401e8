"""ESXi's command lines and the parsers of what they print. Pure: no I/O.

Command lines are built from constants and validated integers only: nothing the host printed
(VM names, annotations) ever goes back into a command.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

AUTOSTOP = "vim-cmd hostsvc/autostartmanager/autostop"
POWEROFF = "poweroff"
GETALLVMS = "vim-cmd vmsvc/getallvms"
GET_DEFAULTS = "vim-cmd hostsvc/autostartmanager/get_defaults"
GET_AUTOSTARTSEQ = "vim-cmd hostsvc/autostartmanager/get_autostartseq"
# Read-only proof that the poweroff step will find its program.
FIND_POWEROFF = "command -v poweroff"


class ParseError(ValueError):
    """Host output that does not have the shape we know: never guessed at, always reported."""


def vm_id(value: object) -> int:
    """A VM id as it may enter a command line: a positive integer, nothing else."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"not a VM id: {value!r}")
    return value


def power_getstate(vmid: int) -> str:
    return f"vim-cmd vmsvc/power.getstate {vm_id(vmid)}"


class PowerState(Enum):
    ON = "Powered on"
    OFF = "Powered off"
    SUSPENDED = "Suspended"


@dataclass(frozen=True)
class Vm:
    """One line (or more, with its annotation) of `vim-cmd vmsvc/getallvms`."""

    vmid: int
    name: str
    datastore: str
    vmx_path: str
    guest: str
    version: str
    annotation: str


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


# A VM line: its id, then the rest. The rest holds name, `[datastore] path.vmx`, guest, version.
_VM_LINE = re.compile(r"^\s*(\d{1,9})\s+(\S.*)$", re.ASCII)
_STRICT_TAIL = re.compile(
    r"\[(?P<ds>[^\]\n]*)\]\s?(?P<path>[^\n]*?\.vmx)\s+(?P<guest>\S+)\s+(?P<version>vmx-\d+)"
    r"(?:\s+(?P<annotation>.*))?$"
)
_LOOSE_TAIL = re.compile(
    r"\[(?P<ds>[^\]\n]*)\]\s?(?P<path>[^\n]*?\.vmx)(?:\s+(?P<guest>\S+))?"
    r"(?:\s+(?P<version>\S+))?(?:\s+(?P<annotation>.*))?$"
)
_SKIPPED = re.compile(r"^\s*Skipping invalid VM\b")


def _split_vm_rest(rest: str) -> re.Match[str] | None:
    """Find where the name ends: the last `  [datastore] ` that starts a `.vmx` path.

    Columns are padded, so a boundary after two or more spaces is tried first; a single space
    (a name filling its column) only after that, since names and paths can hold ` [` too.
    """
    padded = [m.end() - 1 for m in re.finditer(r"\s{2,}\[", rest)]
    single = [m.end() - 1 for m in re.finditer(r"\s\[", rest)]
    for starts in (padded, single):
        for pattern in (_STRICT_TAIL, _LOOSE_TAIL):
            for start in reversed(starts):
                match = pattern.match(rest, start)
                if match:
                    return match
    return None


def parse_getallvms(text: str) -> list[Vm]:
    """Parse `vim-cmd vmsvc/getallvms`; lines that are not a VM continue an annotation."""
    vms: list[Vm] = []
    seen: set[int] = set()
    # Lines end at "\n" only: str.splitlines() would also break a name at \x1c, \x85, \u2028.
    lines = [line.rstrip("\r") for line in text.split("\n")]
    if lines and lines[0].strip().startswith("Vmid"):
        lines = lines[1:]
    elif any(line.strip() for line in lines) and not any(_VM_LINE.match(x) for x in lines):
        raise ParseError("vim-cmd vmsvc/getallvms: no header line and no VM line")
    for line in lines:
        if _SKIPPED.match(line):
            continue
        head = _VM_LINE.match(line)
        tail = _split_vm_rest(" " + head.group(2)) if head else None
        if head is None or tail is None:
            if vms and line.strip():
                last = vms[-1]
                joined = f"{last.annotation}\n{line.strip()}" if last.annotation else line.strip()
                vms[-1] = _with_annotation(last, joined)
            continue
        vmid = int(head.group(1))
        if vmid in seen:
            raise ParseError(f"vim-cmd vmsvc/getallvms: VM id {vmid} listed twice")
        seen.add(vmid)
        name = (" " + head.group(2))[: tail.start()].strip()
        vms.append(
            Vm(
                vmid=vmid,
                name=name,
                datastore=tail.group("ds"),
                vmx_path=tail.group("path").strip(),
                guest=tail.group("guest") or "",
                version=tail.group("version") or "",
                annotation=(tail.group("annotation") or "").strip(),
            )
        )
    return vms


def _with_annotation(vm: Vm, annotation: str) -> Vm:
    return Vm(vm.vmid, vm.name, vm.datastore, vm.vmx_path, vm.guest, vm.version, annotation)


def parse_power_state(text: str) -> PowerState:
    """Parse `vim-cmd vmsvc/power.getstate ID`: its last line is the state."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for state in PowerState:
        if lines and lines[-1] == state.value:
            return state
    shown = lines[-1][:80] if lines else "nothing"
    raise ParseError(f"vim-cmd vmsvc/power.getstate: unknown power state {shown!r}")


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


def power_shutdown(vmid: int) -> str:
    """Guest OS shutdown: needs VMware Tools running; returns at once."""
    return f"vim-cmd vmsvc/power.shutdown {vm_id(vmid)}"


def power_suspend(vmid: int) -> str:
    return f"vim-cmd vmsvc/power.suspend {vm_id(vmid)}"


def power_off(vmid: int) -> str:
    """Hard power-off: the last resort."""
    return f"vim-cmd vmsvc/power.off {vm_id(vmid)}"


def get_guest(vmid: int) -> str:
    return f"vim-cmd vmsvc/get.guest {vm_id(vmid)}"


def get_config(vmid: int) -> str:
    return f"vim-cmd vmsvc/get.config {vm_id(vmid)}"


def echo_marker(label: str, number: int | None = None) -> str:
    """`echo @@label N`: separates the outputs of several commands sent in one line."""
    if not re.fullmatch(r"[a-z]+", label):
        raise ValueError(f"not a marker label: {label!r}")
    return f"echo @@{label}" if number is None else f"echo @@{label} {vm_id(number)}"


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


def split_marked(text: str) -> dict[str, str]:
    """Cut one command line's output at `@@label [N]` marker lines: {"label N": output}."""
    sections: dict[str, str] = {}
    key: str | None = None
    lines: list[str] = []
    for line in text.splitlines():
        match = re.fullmatch(r"@@([a-z]+)(?: (\d{1,9}))?", line.strip())
        if match:
            if key is not None:
                sections[key] = "\n".join(lines)
            key = match.group(1) if match.group(2) is None else f"{match.group(1)} {match.group(2)}"
            lines = []
        elif key is not None:
            lines.append(line)
    if key is not None:
        sections[key] = "\n".join(lines)
    return sections
