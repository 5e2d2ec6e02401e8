"""Start the host sequence detached, then follow its log, for a bounded time.

The host script (script.sequence_script) drives itself: it moves to its next phase as
soon as that phase's VMs are down and powers the host off by the deadline whatever happens to
us. Our side sends it on the input of the command that printed the inventory, then reads the
host's log from that same command as the host writes it, and copies it to ours: no poll, and
losing our session never makes the host slower.

We never trust the script to be alive: its first line must come within START_SECONDS, and
its watchdog says so every few seconds; silence for SILENT_SECONDS, a start refused, or no
poweroff by the deadline, and run_sequence says why, for the caller to fall back to the plain
path. We follow until the host's deadline plus FOLLOW_GRACE at most.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Callable

from esxi_suspend.errors import ExitCode, RemoteCommandFailed, RemoteTimeout, one_line
from esxi_suspend.host.inventory import Inventory, Remote, Talk
from esxi_suspend.host.plan import ShutdownPlan
from esxi_suspend.host.report import printable
from esxi_suspend.host.script import (
    ALIVE,
    HOST_TEXT,
    LOG_PREFIX,
    STARTED,
    STARTED_WORDS,
    follow_log,
    sequence_script,
    start_request,
)
from esxi_suspend.settings.model import Settings

log = logging.getLogger(__name__)

# Real seconds for the script's own first line once the host said it started it: it is an
# `echo` before any vim-cmd, so only a script that did not start misses it.
START_SECONDS = 10
# Real seconds without a line from the log (the watchdog says it is alive every 2 s): the
# script is gone (killed, out of memory, a shell that could not run it).
SILENT_SECONDS = 10
# Real seconds we still follow past the host's deadline (its poweroff takes the session down).
FOLLOW_GRACE = 10

# Opens a fresh session to the same host (after ours was lost); None if that fails.
Reconnect = Callable[[], "Remote | None"]
Record = Callable[[str, ExitCode, str], None]


@dataclass
class Follow:
    """What the host's log has told us so far."""

    plan: ShutdownPlan
    names: dict[int, str]
    log_path: str
    lines_seen: int = 0
    started_seen: bool = False
    heard: float = field(default_factory=time.monotonic)  # when the last line came
    down: set[int] = field(default_factory=set)
    suspended_at_end: set[int] = field(default_factory=set)
    final_started: bool = False
    poweroff_seen: bool = False
    quick: bool = False  # the script runs in the command: its log comes once it is over

    def vm(self, vmid: int) -> str:
        return f"VM {vmid} ({printable(self.names.get(vmid, '?'))})"

    def silence_ends(self) -> float:
        """When no line for this long means the script is not running."""
        if self.quick:
            return float("inf")
        return self.heard + (SILENT_SECONDS if self.started_seen else START_SECONDS)

    def not_alive(self) -> str:
        if not self.started_seen:
            return (
                f"the host sequence did not start: no line from it within {START_SECONDS} s "
                f"(its log {self.log_path} says why)"
            )
        return (
            f"the host sequence stopped: nothing from it for {SILENT_SECONDS} s (killed, out "
            f"of memory, a full /tmp?; its log {self.log_path})"
        )


def run_sequence(
    talk: Talk,
    remote: Remote,
    marker: str,
    inventory: Inventory,
    plan: ShutdownPlan,
    settings: Settings,
    reconnect: Reconnect,
    record: Record,
    log_path: str,
) -> str | None:
    """Send the host script to the shutdown command (`talk`, past its inventory), then
    follow the host's log until the host goes down, contact is lost, or the deadline plus
    FOLLOW_GRACE. Returns why the plain path must take over (the script did not start, went
    silent, or the host was still up at the end), or None.

    `marker`: the shutdown command's marker prefix (`@@TOKEN`), for its STARTED line.
    """
    follow = Follow(
        plan=plan,
        names={info.vmid: info.vm.name for info in inventory.vms},
        log_path=log_path,
        quick=plan.stops_nothing,
    )
    start = time.monotonic()
    end = start + plan.deadline + FOLLOW_GRACE
    quick = plan.stops_nothing  # the script only powers the host off: wait for it at once
    try:
        talk.send(start_request(sequence_script(plan), quick))
        talk.read_until(f"{marker} {STARTED}", min(end, start + settings.command_timeout))
    except RemoteCommandFailed as exc:  # refused, cut, or not whole: nothing was started
        record("sequence", exc.exit_code, f"could not start the host sequence: {exc}")
        return f"the host sequence was not started ({one_line(exc)})"
    follow.heard = time.monotonic()
    with contextlib.ExitStack() as opened:
        why = _follow(talk, remote, follow, reconnect, record, settings, end, quick, opened)
    if follow.started_seen:
        _report_fates(follow, record)
    return why


def _follow(
    talk: Talk,
    remote: Remote,
    follow: Follow,
    reconnect: Reconnect,
    record: Record,
    settings: Settings,
    end: float,
    quick: bool,
    opened: contextlib.ExitStack,
) -> str | None:
    """Read the log from `talk`, then from new readers (on a new session when ours was lost)
    until the host says poweroff, takes the session down at its end, falls silent, or `end`
    passes. Returns why the plain path must take over, or None."""
    current = remote
    while True:
        lost = _read_stream(remote.name, follow, talk, record, end)
        if follow.poweroff_seen:
            record("poweroff", ExitCode.OK, "the host sequence ran poweroff: it is going down")
            return None
        if lost and (follow.final_started or quick):
            record("poweroff", ExitCode.OK, "host closed the session: it is going down")
            return None
        if lost is None and time.monotonic() < end:  # silence: no script runs
            why = follow.not_alive()
            record("sequence", ExitCode.REMOTE_COMMAND, why)
            return why
        if lost is None or time.monotonic() >= end:
            why = f"the host was not powered off within {follow.plan.deadline} s"
            record("follow", ExitCode.REMOTE_COMMAND, f"{why}: the host sequence did not finish")
            return why
        if quick and lost == "":  # the script ran in the command and ended without poweroff
            why = follow.not_alive() if not follow.started_seen else "the host sequence ended"
            record("sequence", ExitCode.REMOTE_COMMAND, f"{why} without powering the host off")
            return why
        if lost:
            log.warning("host %s: lost the session (%s); reconnecting", remote.name, lost)
            again = reconnect()
            if again is None:
                record(
                    "follow",
                    ExitCode.CONNECTION,
                    "lost contact with the host; its sequence goes on without us and powers "
                    f"it off within {follow.plan.deadline} s of its start",
                )
                return None
            opened.callback(again.close)
            current = again
        else:  # the log's reader ended on its own: look again in a moment
            time.sleep(settings.poll_interval)
        try:
            left = max(1, int(end - time.monotonic()))
            talk = opened.enter_context(
                current.exchange(follow_log(follow.log_path, left), settings.command_timeout)
            )
            talk.send("")
        except RemoteCommandFailed as exc:
            log.warning("host %s: cannot read the host's log (%s)", remote.name, exc)


def _read_stream(host: str, follow: Follow, talk: Talk, record: Record, end: float) -> str | None:
    """The log lines one command prints, the ones seen before skipped (each reader starts
    at the log's first line). Returns why the session was lost, "" when the command ended
    (or the host said poweroff), None when nothing came in time: past `end`, or silence."""
    index = 0
    try:
        while True:
            line = next(iter(talk.lines(min(end, follow.silence_ends()))), None)
            if line is None:
                break
            index += 1
            follow.heard = time.monotonic()
            if index > follow.lines_seen:
                follow.lines_seen = index
                _host_line(host, follow, record, line)
                if follow.poweroff_seen:
                    return ""
    except RemoteTimeout:
        return None
    except RemoteCommandFailed as exc:
        return one_line(exc)
    return "" if talk.exited else "the session closed"


def _host_line(host: str, follow: Follow, record: Record, line: str) -> None:
    text = printable(line.strip())
    if not text:
        return
    words = text[len(LOG_PREFIX) :].split() if text.startswith(LOG_PREFIX) else []
    if words == [ALIVE]:  # the watchdog: heard, not worth a log line
        return
    log.info("host %s: [host] %s", host, text)
    if not text.startswith(LOG_PREFIX):
        return
    if not follow.started_seen and text[len(LOG_PREFIX) :].strip().startswith(STARTED_WORDS):
        follow.started_seen = True
        record(
            "sequence",
            ExitCode.OK,
            f"started on the host, detached (log {follow.log_path}); it powers the host off "
            f"within {follow.plan.deadline} s even without us",
        )
    if words[:1] == [HOST_TEXT]:  # what a host command printed: logged, never parsed
        return
    if words[:1] == ["VM"] and len(words) > 2 and words[1].isdigit():
        vmid = int(words[1])
        if words[2:3] == ["down"]:
            follow.down.add(vmid)
            log.info("host %s: %s: %s", host, follow.vm(vmid), " ".join(words[2:]))
        elif words[2:] == ["still", "running:", "suspending", "it"]:
            follow.suspended_at_end.add(vmid)
    elif words[:1] == ["final:"]:
        follow.final_started = True
    elif words[-2:] == ["host", "poweroff"]:
        follow.poweroff_seen = True


def _report_fates(follow: Follow, record: Record) -> None:
    """Each VM's fate, as far as the host's log told us: down in time, or left to the end."""
    watched = follow.plan.watched
    left = [vmid for vmid in watched if vmid not in follow.down]
    if left:
        action = follow.plan.straggler_action.value
        names = ", ".join(follow.vm(vmid) for vmid in left)
        log.warning(
            "not seen down before the final step: %s: the host's final step gives those still "
            "running %s",
            names,
            action,
        )
    record(
        "VMs",
        ExitCode.OK,
        f"{len(watched) - len(left)} of {len(watched)} seen down before the final step"
        + (f"; {len(follow.suspended_at_end)} suspended by it" if follow.suspended_at_end else ""),
    )
