"""One simulated VM: its power states, its fate, its live state, and ESXi's refusals.

Apart from `host.py` so that what prints a VM (`vimcmd_output.py`) and what stops one
(`autostop.py`) can name a VM without the whole host. No clock, no locking here: a `Vm` is
changed only under the host's lock (`HostModel.cond`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from esxi_suspend.simulator.fleet import VmSpec

ON, OFF, SUSPENDED = "Powered on", "Powered off", "Suspended"


class Fate(str, Enum):
    """What became of a VM: the answer tests and the demo look for."""

    RUNNING = "running"  # the host is still up and so is the VM
    CLEAN_SHUTDOWN = "clean shutdown"  # guest OS shut down (tools)
    SUSPENDED = "suspended"
    POWERED_OFF = "powered off"  # hard power-off by command (power.off, autostop powerOff)
    HARD_KILLED = "hard-killed"  # still running when the host powered off
    WAS_OFF = "was off"  # not running when the simulation started


class VmOperationError(Exception):
    """An operation ESXi refuses; the message is vim-cmd's output (a vim.fault block)."""


def _fault(kind: str, msg: str, extra: tuple[str, ...] = ()) -> str:
    lines = [f"({kind}) {{", "   faultCause = (vmodl.MethodFault) null,"]
    lines.append("   faultMessage = (vmodl.LocalizableMessage) [],")
    lines.extend(f"   {line}," for line in extra)
    lines.append(f'   msg = "{msg}"')
    lines.append("}")
    return "\n".join(lines) + "\n"


def invalid_power_state(state: str, requested: str = "poweredOn") -> VmOperationError:
    existing = {ON: "poweredOn", OFF: "poweredOff", SUSPENDED: "suspended"}[state]
    return VmOperationError(
        _fault(
            "vim.fault.InvalidPowerState",
            f"The attempted operation cannot be performed in the current state ({state}).",
            (f'requestedState = "{requested}"', f'existingState = "{existing}"'),
        )
    )


def tools_unavailable() -> VmOperationError:
    return VmOperationError(
        _fault(
            "vim.fault.ToolsUnavailable",
            "Cannot complete operation because VMware Tools is not running in "
            "this virtual machine.",
        )
    )


@dataclass
class Vm:
    """A VM's live state. A pending operation completes at `busy_until` (simulated)."""

    spec: VmSpec
    power: str
    tools: bool
    pending: str | None = None  # "shutdown", "suspend", "off"
    busy_until: float = 0.0
    fate: Fate = Fate.RUNNING

    @property
    def label(self) -> str:
        return f"VM {self.spec.vmid} {self.spec.name}"
