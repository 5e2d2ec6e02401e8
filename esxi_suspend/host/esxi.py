"""ESXi's command lines, and the markers that cut their joined output apart. Pure: no I/O.

Command lines are built from constants and validated integers only: nothing the host printed
(VM names, annotations) ever goes back into a command. What the commands print is read in
`vmlist` (getallvms), `autostart` (the autostart manager), `vmstate` (one VM's state) and
`processlist` (esxcli's running VMs), kept
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
# The running VMs in one call (5.0+, VMware KB 1014165); a listing with VMs has this field.
PROCESS_LIST = "esxcli vm process list"
PROCESS_LIST_FIELD = "Config File: "
# Read-only proof that the poweroff step will find its program: at the path public scripts
# run, looked at with `[ -x ]` (`command -v` is no builtin on every busybox).
POWEROFF_PATH = "/sbin/poweroff"
FIND_POWEROFF = f"if [ -x {POWEROFF_PATH} ]; then echo {POWEROFF_PATH}; fi"

# How many `vim-cmd` calls our host text keeps in flight on a host at once, the inventory and
# the host sequence alike: under load hostd resets logins beyond a few concurrent calls (one
# public ESXi driver keeps a semaphore per host); how many it serves is unknown. 8: a busy
# hostd of the benchmarks (P5) serves that many; a hostd that serves fewer resets the rest,
# which `call` tries again. With 4, a final step of 31 stragglers took 8 rounds of suspends and
# 18 VMs met the host's poweroff still running (P2, autostop, 40 VMs).
CALLS_AT_ONCE = 8
# What hostd answers when it is too busy to take a call: worth another try a moment later.
TRANSIENT_FAULTS = (
    "Failed to login",
    "Connection reset by peer",
    "SSL handshake timed out",
    "std::bad_alloc",
    "ManagedObjectNotFound",
)
# What a call that failed prints, whatever its exit status (from 6.x on only the text is
# documented): a vim.fault or vmodl.fault object, or `... failed`.
FAULT_TEXTS = ("(vim.fault.", "(vmodl.fault.", " failed")
CALL_TRIES = 3
# Seconds a call waits for a free slot before it goes ahead anyway (a /tmp that takes no
# directory must not stop the host sequence).
SLOT_WAIT = 30


def hostd_functions(slots: str) -> str:
    """Shell functions for our host text: `held PROGRAM ARGS` runs a hostd client (vim-cmd,
    esxcli) holding one of CALLS_AT_ONCE slots (directories `SLOTS.N`, taken by `mkdir`,
    atomic on every release; after SLOT_WAIT seconds without one it goes ahead), tried again
    after 1 s, then 2 s while hostd turns it away, and failing (status 1 at least) on a fault
    text even when it exits 0. Its output always ends with a newline. `call ARGS` is
    `held vim-cmd ARGS`.
    """
    names = " ".join(slot_names(slots))
    transient = "|".join(f'*"{text}"*' for text in TRANSIENT_FAULTS)
    faults = "|".join(f'*"{text}"*' for text in FAULT_TEXTS)
    return f"""slot() {{
  for cz in {names}; do if mkdir "$cz" 2>/dev/null; then return 0; fi; done
  cz=
  return 1
}}
held() {{
  ck=0
  while :; do
    cw=0
    while ! slot; do cw=$((cw + 1)); if [ $cw -ge {SLOT_WAIT} ]; then break; fi; sleep 1; done
    co=$("$@" 2>&1)
    cs=$?
    if [ -n "$cz" ]; then rmdir "$cz"; fi
    case $co in
      {transient})
        ck=$((ck + 1))
        if [ $ck -lt {CALL_TRIES} ]; then sleep $ck; continue; fi
        ;;
    esac
    break
  done
  if [ -n "$co" ]; then echo "$co"; fi
  case $co in {faults}) if [ $cs -eq 0 ]; then cs=1; fi ;; esac
  return $cs
}}
call() {{ held vim-cmd "$@"; }}"""


def slot_names(slots: str) -> list[str]:
    """The directories `hostd_functions(slots)` takes as its CALLS_AT_ONCE slots."""
    if not re.fullmatch(r"[A-Za-z0-9${}:/_.-]+", slots):
        raise ValueError(f"not a slot path: {slots!r}")
    return [f"{slots}.{n}" for n in range(1, CALLS_AT_ONCE + 1)]


def called(command: str) -> str:
    """One of our `vim-cmd ...` command lines as a `call` of the functions above."""
    if not command.startswith("vim-cmd "):
        raise ValueError(f"not a vim-cmd command: {command!r}")
    return "call " + command[len("vim-cmd ") :]


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


# `mark LABEL [N]`: a marker line, on a line of its own whatever the output before it ended
# with (a listing or a fault text without a final newline): the newline before it is ours,
# and split_marked drops it again.
MARK_FUNCTION = 'mark() { echo; echo "$m $@"; }'


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
    # The line `mark` adds before each marker: a newline that ended an output that had
    # none, or an empty line of ours after one that had.
    return {key: text.removesuffix("\n") for key, text in sections.items()}
