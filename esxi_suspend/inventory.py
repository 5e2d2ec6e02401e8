"""What is on a host right now: its VMs, their power state and tools, the autostart sequence.

Read-only commands only, batched into few round trips (vim-cmd is slow on a real host). Output
is parsed here; a command that fails or prints something unknown raises InventoryError.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from esxi_suspend import esxi
from esxi_suspend.errors import RemoteCommandFailed
from esxi_suspend.remote import CommandResult

log = logging.getLogger(__name__)


class Remote(Protocol):
    """What we need from a connected host (remote.RemoteHost, or a fake in unit tests)."""

    name: str

    def run(self, command: str, timeout: int) -> CommandResult: ...


class InventoryError(RemoteCommandFailed):
    """The host's inventory could not be read or understood."""


@dataclass(frozen=True)
class VmInfo:
    vm: esxi.Vm
    state: esxi.PowerState | None
    tools_running: bool | None = None
    autostart: esxi.AutostartEntry | None = None
    bios_uuid: str | None = None

    @property
    def vmid(self) -> int:
        return self.vm.vmid

    @property
    def running(self) -> bool:
        return self.state is esxi.PowerState.ON


@dataclass(frozen=True)
class Inventory:
    vms: tuple[VmInfo, ...]
    defaults: esxi.AutostartDefaults
    poweroff_path: str
    has_nohup: bool

    def by_id(self) -> dict[int, VmInfo]:
        return {info.vmid: info for info in self.vms}


def run_checked(remote: Remote, command: str, timeout: int) -> str:
    """stdout of a command that must succeed; InventoryError (with its stderr) otherwise."""
    done = remote.run(command, timeout)
    if not done.ok:
        raise InventoryError(
            f"host {remote.name}: `{command}` exited {done.exit_status} ({done.error_tail()})",
            command,
            done.exit_status,
        )
    return done.stdout


def run_marked(remote: Remote, parts: list[tuple[str, str]], timeout: int) -> dict[str, str]:
    """Run several read-only commands in one round trip; their outputs by marker."""
    line = "; ".join(f"{marker}; {command}" for marker, command in parts)
    done = remote.run(line, timeout)
    return esxi.split_marked(done.stdout)


def read_states(
    remote: Remote, vmids: list[int], timeout: int
) -> dict[int, esxi.PowerState | None]:
    """Power state of each VM (None where the host's answer was not understood)."""
    if not vmids:
        return {}
    parts = [(esxi.echo_marker("state", i), esxi.power_getstate(i)) for i in vmids]
    sections = run_marked(remote, parts, timeout)
    states: dict[int, esxi.PowerState | None] = {}
    for vmid in vmids:
        try:
            states[vmid] = esxi.parse_power_state(sections.get(f"state {vmid}", ""))
        except esxi.ParseError:
            states[vmid] = None
    return states


def read_inventory(remote: Remote, timeout: int, want_uuids: bool = False) -> Inventory:
    """The host's VMs with state, tools and autostart entry; raise InventoryError on failure."""
    listing = run_checked(remote, esxi.GETALLVMS, timeout)
    host = run_marked(
        remote,
        [
            (esxi.echo_marker("defaults"), esxi.GET_DEFAULTS),
            (esxi.echo_marker("sequence"), esxi.GET_AUTOSTARTSEQ),
            (esxi.echo_marker("poweroff"), esxi.FIND_POWEROFF),
            (esxi.echo_marker("nohup"), "command -v nohup"),
        ],
        timeout,
    )
    try:
        vms = esxi.parse_getallvms(listing)
        defaults = esxi.parse_defaults(host.get("defaults", ""))
        sequence = {e.vmid: e for e in esxi.parse_autostartseq(host.get("sequence", ""))}
    except esxi.ParseError as exc:
        raise InventoryError(
            f"host {remote.name}: unexpected output: {exc}", esxi.GETALLVMS
        ) from None
    states = read_states(remote, [vm.vmid for vm in vms], timeout)
    running = [vm.vmid for vm in vms if states.get(vm.vmid) is esxi.PowerState.ON]
    parts = [(esxi.echo_marker("guest", i), esxi.get_guest(i)) for i in running]
    if want_uuids:
        parts += [(esxi.echo_marker("config", i), esxi.get_config(i)) for i in running]
    details = run_marked(remote, parts, timeout) if parts else {}
    infos = []
    for vm in vms:
        tools: bool | None = None
        if vm.vmid in running:
            try:
                tools = esxi.parse_tools_running(details.get(f"guest {vm.vmid}", ""))
            except esxi.ParseError:
                tools = None
        uuid = esxi.parse_bios_uuid(details.get(f"config {vm.vmid}", ""))
        infos.append(VmInfo(vm, states.get(vm.vmid), tools, sequence.get(vm.vmid), uuid))
    return Inventory(
        vms=tuple(infos),
        defaults=defaults,
        poweroff_path=host.get("poweroff", "").strip(),
        has_nohup=bool(host.get("nohup", "").strip()),
    )
