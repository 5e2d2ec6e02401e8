"""The VMs a host has: the parser of `vim-cmd vmsvc/getallvms`. Pure: no I/O.

A module of its own because that listing is the one output with free text in columns (names,
paths and annotations that may hold anything), so its parser is the longest and most fuzzed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from esxi_suspend.host.esxi import ParseError


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
