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
GET_SUMMARY = "vim-cmd vmsvc/get.summary"  # then a VM id: see get_summary
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
    """Parse `vim-cmd vmsvc/getallvms`; lines that are not a VM continue an annotation.

    `Skipping invalid VM 'N'` lines are dropped wherever they are (before the header, or as the
    whole output of a host with no valid VM); blank lines inside an annotation are kept.
    """
    # Lines end at "\n" only: str.splitlines() would also break a name at \x1c, \x85, \u2028.
    lines = [line.rstrip("\r") for line in text.split("\n") if not _SKIPPED.match(line)]
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        return []
    if lines[first].strip().startswith("Vmid"):
        lines = lines[first + 1 :]
    elif not any(_VM_LINE.match(line) for line in lines):
        raise ParseError("vim-cmd vmsvc/getallvms: no header line and no VM line")
    rows: list[tuple[Vm, list[str]]] = []
    seen: set[int] = set()
    for line in lines:
        head = _VM_LINE.match(line)
        tail = _split_vm_rest(" " + head.group(2)) if head else None
        if head is None or tail is None:
            if rows:
                rows[-1][1].append(line.strip())
            continue
        vmid = int(head.group(1))
        if vmid in seen:
            raise ParseError(f"vim-cmd vmsvc/getallvms: VM id {vmid} listed twice")
        seen.add(vmid)
        name = (" " + head.group(2))[: tail.start()].strip()
        vm = Vm(
            vmid=vmid,
            name=name,
            datastore=tail.group("ds"),
            vmx_path=tail.group("path").strip(),
            guest=tail.group("guest") or "",
            version=tail.group("version") or "",
            annotation="",
        )
        rows.append((vm, [(tail.group("annotation") or "").strip()]))
    return [_with_annotation(vm, "\n".join(notes).strip()) for vm, notes in rows]


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


def get_summary(vmid: int) -> str:
    """Power state, tools status and BIOS UUID of one VM, in one call."""
    return f"{GET_SUMMARY} {vm_id(vmid)}"


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


def split_marked(text: str, token: int | None = None) -> dict[str, str]:
    """Cut one command line's output at marker lines: {"label N": output}.

    A marker is `@@label [N]`, or with `token` `@@TOKEN label [N]`: a number of ours the host
    text cannot know in advance, so an annotation line that looks like a marker stays text.
    """
    prefix = "@@" if token is None else f"@@{int(token)} "
    marker = re.compile(re.escape(prefix) + r"([a-z]+)(?: ([0-9]{1,9}))?")
    sections: dict[str, str] = {}
    key: str | None = None
    lines: list[str] = []
    # Lines end at "\n" (a "\r" before it goes): splitlines() would cut a VM name at \x85.
    parts = text.split("\n")
    if parts and not parts[-1]:
        parts.pop()
    for raw in parts:
        line = raw.rstrip("\r")
        match = marker.fullmatch(line.strip())
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
