"""Which VMs run, from one call: the parser of `esxcli vm process list`. Pure: no I/O.

One call covers every VM (ESXi 5.0+, VMware KB 1014165), where `get.summary` costs one hostd
round trip per VM. It lists only the VMs whose VMX process runs, each as a block: the display
name, then `World ID`, `Process ID`, `VMX Cartel ID`, `UUID` (the BIOS UUID, as the .vmx's
`uuid.bios` writes it), `Display Name`, `Config File` (`/vmfs/volumes/VOLUME/PATH`). It says
nothing of VMware Tools. A block is tied to a getallvms row by its .vmx path; a block tied to
no row, or to several, makes every VM it could be unknown, never off.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from esxi_suspend.host.esxi import ParseError
from esxi_suspend.host.vmlist import Vm
from esxi_suspend.host.vmstate import PowerState, normalize_uuid

_FIELD = re.compile(r"^\s+([A-Za-z][A-Za-z ]*[A-Za-z]):\s?(.*)$")
_VOLUMES = "/vmfs/volumes/"


@dataclass(frozen=True)
class RunningVm:
    """One block of `esxcli vm process list`."""

    name: str
    bios_uuid: str
    config_file: str


def parse_process_list(text: str) -> list[RunningVm]:
    """Parse `esxcli vm process list`: blocks of `  Field: value` lines under a name line.

    A block without its `Config File` line is an output we do not know: ParseError.
    """
    blocks: list[dict[str, str]] = []
    for raw in text.split("\n"):
        line = raw.rstrip("\r")
        if not line.strip():
            continue
        field = _FIELD.match(line)
        if field is None:
            if line[:1].isspace():
                raise ParseError(f"esxcli vm process list: unknown line {line.strip()[:80]!r}")
            blocks.append({"": line})
        elif blocks:
            blocks[-1][field.group(1)] = field.group(2).strip()
        else:
            raise ParseError("esxcli vm process list: a field before any VM's name")
    running = []
    for block in blocks:
        if "Config File" not in block:
            raise ParseError(f"esxcli vm process list: no Config File for {block[''][:80]!r}")
        running.append(
            RunningVm(
                name=block.get("Display Name", block[""]),
                bios_uuid=block.get("UUID", ""),
                config_file=block["Config File"],
            )
        )
    return running


@dataclass(frozen=True)
class Placed:
    """The running VMs by getallvms id (with the BIOS UUID esxcli gave), and the VMs whose
    state stays unknown: those a block that fits no single row could be."""

    running: dict[int, str]
    unknown: frozenset[int]

    def state_of(self, vmid: int) -> PowerState | None:
        """Running, not running (off or suspended: esxcli does not say which), or unknown."""
        if vmid in self.unknown:
            return None
        return PowerState.ON if vmid in self.running else PowerState.NOT_RUNNING

    def uuid_of(self, vmid: int) -> str | None:
        return normalize_uuid(self.running.get(vmid, ""))


def place_running(vms: list[Vm], running: list[RunningVm]) -> Placed:
    """Tie each esxcli block to the one getallvms row with its .vmx path.

    getallvms writes `[datastore] PATH` and prints non-ASCII as `?`; esxcli writes
    `/vmfs/volumes/VOLUME/PATH`, VOLUME being the datastore's UUID (or its name). A block no
    row fits, or that fits several, cannot be placed: then every VM not placed is unknown
    (possibly running), so that the shutdown looks at it again rather than taking it for off.
    """
    placed: dict[int, str] = {}
    lost = False
    for item in running:
        fits = [vm for vm in vms if _same_file(vm, item.config_file)]
        if len(fits) > 1:
            volume = _volume(item.config_file)
            fits = [vm for vm in fits if vm.datastore == volume] or fits
        if len(fits) == 1 and fits[0].vmid not in placed:
            placed[fits[0].vmid] = item.bios_uuid
        else:
            lost = True
    unknown = frozenset(vm.vmid for vm in vms if vm.vmid not in placed) if lost else frozenset()
    return Placed(placed, unknown)


def _volume(config_file: str) -> str:
    if not config_file.startswith(_VOLUMES):
        return ""
    return config_file[len(_VOLUMES) :].split("/", 1)[0]


def _same_file(vm: Vm, config_file: str) -> bool:
    """Is `config_file` (esxcli's) the .vmx getallvms shows for `vm`?"""
    if config_file.startswith(_VOLUMES):
        parts = config_file[len(_VOLUMES) :].split("/", 1)
        if len(parts) != 2 or not vm.datastore:
            return False
        path = parts[1]
    elif vm.datastore:
        return False
    else:
        path = config_file
    return _path_pattern(vm.vmx_path).fullmatch(path) is not None


def _path_pattern(shown: str) -> re.Pattern[str]:
    """getallvms's path as a pattern: each run of `?` may stand for non-ASCII characters."""
    parts = re.split(r"(\?+)", shown)
    return re.compile(
        "".join(
            r"(?:\?|[^\x00-\x7f])+" if part.startswith("?") else re.escape(part) for part in parts
        )
    )
