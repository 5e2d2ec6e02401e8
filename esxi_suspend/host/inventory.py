"""What is on a host right now: its VMs, their power state and tools, the autostart sequence.

Read-only commands only, in one round trip: `inventory_command` runs them on the host. Which
VMs run comes from one call, `esxcli vm process list` (5.0+), whatever the number of VMs
(each call costs hundreds of milliseconds on a real host); where it is missing or says
nothing we can use, from one `get.summary` per VM, esxi.CALLS_AT_ONCE at a time. Output is
parsed here; a listing that fails or prints something unknown raises InventoryError.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from typing import Protocol

from esxi_suspend.errors import RemoteCommandFailed
from esxi_suspend.host import esxi
from esxi_suspend.host.autostart import (
    AutostartDefaults,
    AutostartEntry,
    parse_autostartseq,
    parse_defaults,
)
from esxi_suspend.host.processlist import Placed, parse_process_list, place_running
from esxi_suspend.host.vmlist import Vm, parse_getallvms
from esxi_suspend.host.vmstate import PowerState, parse_summary
from esxi_suspend.ssh.remote import CommandResult

log = logging.getLogger(__name__)

# The host's own temporary directory (ESXi keeps /tmp in RAM and sets no TMPDIR; the test
# hosts set TMPDIR to a directory of their own): the sequence log, the inventory's files.
HOST_TMP = "${TMPDIR:-/tmp}"
# Where the inventory keeps what its calls print, and its call slots (esxi.hostd_functions).
INVENTORY_FILES = f"{HOST_TMP}/esxi-suspend-inv-$$"

# Every output is printed after a `mark` line (esxi.MARK_FUNCTION): on a line of its own even
# after an output without a final newline. `read -r ... || [ -n "$id" ]` keeps a last line
# without one. Which VMs run comes from one call (esxcli, 5.0+) when it answers with VMs;
# else, or with `g=1` (check, which also wants VMware Tools and compares the two), from one
# `get.summary` per VM, CALLS_AT_ONCE at a time.
_INVENTORY = f"""m="@@TOKEN"
g=EVERY
t={INVENTORY_FILES}
{esxi.MARK_FUNCTION}
{esxi.hostd_functions("$t.call")}
{esxi.called(esxi.GETALLVMS)} > $t.vms 2>&1 &
a=$!
{esxi.called(esxi.GET_DEFAULTS)} > $t.def 2>&1 &
{esxi.called(esxi.GET_AUTOSTARTSEQ)} > $t.seq 2>&1 &
held {esxi.PROCESS_LIST} > $t.run 2>&1 &
b=$!
wait $a
s=$?
wait $b
x=$?
wait
if [ $x -eq 0 ]; then
  case $(cat $t.run) in *"{esxi.PROCESS_LIST_FIELD}"*) ;; *) x=1 ;; esac
fi
ids=
while read -r id rest || [ -n "$id" ]; do
  case $id in
    *[!0-9]*|"") ;;
    *) ids="$ids $id" ;;
  esac
done < $t.vms
if [ $x -eq 0 ] && [ $g -eq 0 ]; then ids=; fi
n=0
for id in $ids; do
  {esxi.called(esxi.GET_SUMMARY)} $id > $t.$id 2>&1 &
  n=$((n + 1))
  if [ $n -ge {esxi.CALLS_AT_ONCE} ]; then wait; n=0; fi
done
wait
mark status $s
mark vms
cat $t.vms
mark defaults
cat $t.def
mark sequence
cat $t.seq
mark running $x
cat $t.run
for id in $ids; do mark summary $id; cat $t.$id; rm -f $t.$id; done
rm -f $t.vms $t.def $t.seq $t.run
mark poweroff
{esxi.FIND_POWEROFF}"""


def inventory_command(token: int, every_summary: bool = False) -> str:
    """The inventory's one command line; `token` (ours, random) marks its output sections.
    `every_summary`: read each VM's `get.summary` even when esxcli said which VMs run."""
    if isinstance(token, bool) or not isinstance(token, int) or not 0 <= token < 10**9:
        raise ValueError(f"not a marker token: {token!r}")
    every = "1" if every_summary else "0"
    return _INVENTORY.replace("TOKEN", str(token)).replace("g=EVERY", f"g={every}")


class Talk(Protocol):
    """One command we talk with while it runs (remote.Exchange, or a fake in unit tests)."""

    def read_until(self, marker: str, deadline: float) -> str: ...

    def lines(self, deadline: float) -> Iterator[str]: ...

    def send(self, text: str) -> None: ...

    @property
    def exited(self) -> bool: ...


class Remote(Protocol):
    """What we need from a connected host (remote.RemoteHost, or a fake in unit tests)."""

    name: str

    def run(self, command: str, timeout: int) -> CommandResult: ...

    def exchange(
        self, command: str, timeout: int, label: str = ""
    ) -> AbstractContextManager[Talk]: ...

    def close(self) -> None: ...


class InventoryError(RemoteCommandFailed):
    """The host's inventory could not be read or understood."""


@dataclass(frozen=True)
class VmInfo:
    vm: Vm
    state: PowerState | None
    tools_running: bool | None = None
    autostart: AutostartEntry | None = None
    bios_uuid: str | None = None

    @property
    def vmid(self) -> int:
        return self.vm.vmid

    @property
    def running(self) -> bool:
        return self.state is PowerState.ON


@dataclass(frozen=True)
class Inventory:
    """`one_call`: esxcli said which VMs run (a shutdown reads them so, no Tools);
    `look`: how the power states were read, in a few words (for the log and `check`);
    `look_differs`: with both reads (check), the VMs esxcli and get.summary disagree on."""

    vms: tuple[VmInfo, ...]
    defaults: AutostartDefaults
    poweroff_path: str
    one_call: bool = False
    look: str = ""
    look_differs: tuple[int, ...] = ()

    def by_id(self) -> dict[int, VmInfo]:
        return {info.vmid: info for info in self.vms}

    def as_a_shutdown_reads_it(self) -> Inventory:
        """What a shutdown knows of this host where `check` read more: with the one-call look
        (esxcli agreeing), no VM's VMware Tools; so that check plans, shows and rehearses the
        very script a shutdown would run."""
        if not self.one_call or self.look_differs:
            return self
        return replace(self, vms=tuple(replace(i, tools_running=None) for i in self.vms))


def read_inventory(remote: Remote, timeout: int) -> Inventory:
    """The host's VMs with state, tools and autostart entry, in one round trip (each VM's
    `get.summary` too, as `check` wants); raise InventoryError when it cannot be read."""
    token = new_token()
    done = remote.run(inventory_command(token, every_summary=True), timeout)
    return parse_inventory(remote.name, done.stdout, token, done.exit_status, done.error_tail())


def new_token() -> int:
    """A marker token: a number of ours the host's text cannot know in advance."""
    return secrets.randbelow(10**9)


def parse_inventory(
    host: str, stdout: str, token: int, exit_status: int, error_tail: str
) -> Inventory:
    """The inventory command's output; `exit_status` and `error_tail` say how the command
    ended, for the message when the listing itself tells nothing."""
    sections = esxi.split_marked(stdout, token)
    status = next((key.split()[1] for key in sections if key.startswith("status ")), None)
    listing = sections.get("vms", "")
    if status != "0":
        shown = status if status is not None else exit_status
        tail = _tail(listing) or error_tail
        raise InventoryError(
            f"host {host}: `{esxi.GETALLVMS}` exited {shown} ({tail})",
            esxi.GETALLVMS,
            int(shown) if str(shown).isdigit() else exit_status,
        )
    try:
        vms = parse_getallvms(listing)
        defaults = parse_defaults(sections.get("defaults", ""))
        sequence = {e.vmid: e for e in parse_autostartseq(sections.get("sequence", ""))}
    except esxi.ParseError as exc:
        raise InventoryError(f"host {host}: unexpected output: {exc}", esxi.GETALLVMS) from None
    summaries = {
        vm.vmid: sections[f"summary {vm.vmid}"] for vm in vms if f"summary {vm.vmid}" in sections
    }
    ran = next((key for key in sections if key.startswith("running ")), None)
    placed, said = _one_call_look(vms, sections[ran]) if ran == "running 0" else (None, "")
    infos = []
    for vm in vms:
        if vm.vmid in summaries or placed is None:
            summary = parse_summary(summaries.get(vm.vmid, ""))
            running = summary.state is PowerState.ON
            tools = summary.tools_running if running else None
            state, uuid = summary.state, summary.bios_uuid
        else:
            state, uuid, tools = placed.state_of(vm.vmid), placed.uuid_of(vm.vmid), None
        infos.append(VmInfo(vm, state, tools, sequence.get(vm.vmid), uuid))
    differs: tuple[int, ...] = ()
    if placed is None:
        why = _tail(sections[ran]) if ran is not None else "not run"
        look = f"{esxi.GET_SUMMARY} per VM ({esxi.PROCESS_LIST}: {why})"
    elif summaries:
        differs = tuple(
            info.vmid
            for info in infos
            if info.state is not None
            and placed.state_of(info.vmid) is not None
            and (info.state is PowerState.ON) != (placed.state_of(info.vmid) is PowerState.ON)
        )
        look = f"{esxi.PROCESS_LIST} and {esxi.GET_SUMMARY} per VM"
    else:
        look = said
    return Inventory(
        vms=tuple(infos),
        defaults=defaults,
        poweroff_path=sections.get("poweroff", "").strip(),
        one_call=placed is not None,
        look=look,
        look_differs=differs,
    )


def _one_call_look(vms: list[Vm], text: str) -> tuple[Placed, str]:
    """esxcli's listing tied to the getallvms rows, and what it said in a few words; an
    output we cannot read, or a VM we cannot place, leaves VMs unknown (possibly running:
    looked at again at the end)."""
    try:
        placed = place_running(vms, parse_process_list(text))
    except esxi.ParseError as exc:
        everyone = frozenset(vm.vmid for vm in vms)
        return Placed({}, everyone), f"{esxi.PROCESS_LIST}: {exc}: every VM's state unknown"
    said = f"{esxi.PROCESS_LIST}: {len(placed.running)} of {len(vms)} VM(s) running"
    if placed.unknown:
        said += (
            f"; a listed VM fits no single getallvms row: {len(placed.unknown)} VM(s) of unknown "
            "state, looked at again at the end"
        )
    return placed, said


def _tail(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""
