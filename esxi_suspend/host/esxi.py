"""ESXi's command lines, and the markers that cut their joined output apart. Pure: no I/O.

Command lines are built from constants and validated integers only: nothing the host printed
(VM names, annotations) ever goes back into a command. What the commands print is read in
`vmlist` (getallvms), `autostart` (the autostart manager) and `vmstate` (one VM's state), kept
apart from here so that this file shows, on one page, everything we may send; they share
`ParseError`, defined here below them all.
"""

from __future__ import annotations

import re

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
