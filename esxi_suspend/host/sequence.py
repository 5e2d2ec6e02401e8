"""Start the host sequence detached, then follow its log while the connection lasts.

The host script (script.sequence_script) drives itself: it moves to its next phase as
soon as that phase's VMs are down and powers the host off by the deadline whatever happens to
us. Our side sends it on the input of the command that printed the inventory, then reads the
host's log from that same command as the host writes it, and copies it to ours: no poll, and
losing our session never makes the host slower.
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
    HOST_TEXT,
    LOG_PREFIX,
    STARTED,
    follow_log,
    sequence_script,
    start_request,
)
from esxi_suspend.settings.model import Settings

log = logging.getLogger(__name__)

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
    down: set[int] = field(default_factory=set)
    suspended_at_end: set[int] = field(default_factory=set)
    final_started: bool = False
    poweroff_seen: bool = False

    def vm(self, vmid: int) -> str:
        return f"VM {vmid} ({printable(self.names.get(vmid, '?'))})"


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
) -> None:
    """Send the host script to the shutdown command (`talk`, past its inventory), then
    follow the host's log until the host goes down or contact is lost.

    `marker`: the shutdown command's marker prefix (`@@TOKEN`), for its STARTED line.
    """
    follow = Follow(
        plan=plan,
        names={info.vmid: info.vm.name for info in inventory.vms},
        log_path=log_path,
    )
    timeout = settings.command_timeout
    start = time.monotonic()
    quick = plan.stops_nothing  # the script only powers the host off: wait for it at once
    try:
        talk.send(start_request(sequence_script(plan), quick))
        talk.read_until(f"{marker} {STARTED}", start + timeout)
    except RemoteCommandFailed as exc:  # the host says STARTED before it runs the script
        record("sequence", exc.exit_code, f"could not start the host sequence: {exc}")
        return
    record(
        "sequence",
        ExitCode.OK,
        f"started on the host, detached (log {follow.log_path}); it powers the host off "
        f"within {plan.deadline} s even without us",
    )
    # Real seconds we follow at most: the host's deadline plus room for slow commands.
    bound = start + plan.deadline + 2 * timeout + 30
    with contextlib.ExitStack() as opened:
        _follow(talk, remote, follow, reconnect, record, settings, bound, quick, opened)
    _report_fates(follow, record)


def _follow(
    talk: Talk,
    remote: Remote,
    follow: Follow,
    reconnect: Reconnect,
    record: Record,
    settings: Settings,
    bound: float,
    quick: bool,
    opened: contextlib.ExitStack,
) -> None:
    """Read the log from `talk`, then from new readers (on a new session when ours was lost)
    until the host says poweroff, takes the session down at its end, or `bound` passes."""
    current = remote
    while True:
        lost = _read_stream(remote.name, follow, talk, bound)
        if follow.poweroff_seen:
            record("poweroff", ExitCode.OK, "the host sequence ran poweroff: it is going down")
            return
        if lost is not None and (follow.final_started or quick):
            record("poweroff", ExitCode.OK, "host closed the session: it is going down")
            return
        if lost is None or time.monotonic() > bound:
            record("follow", ExitCode.REMOTE_COMMAND, "the host sequence did not finish in time")
            return
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
                return
            opened.callback(again.close)
            current = again
        else:  # the log's reader ended on its own: look again in a moment
            time.sleep(settings.poll_interval)
        try:
            talk = opened.enter_context(
                current.exchange(follow_log(follow.log_path), settings.command_timeout)
            )
            talk.send("")
        except RemoteCommandFailed as exc:
            log.warning("host %s: cannot read the host's log (%s)", remote.name, exc)


def _read_stream(host: str, follow: Follow, talk: Talk, bound: float) -> str | None:
    """The log lines one command prints, the ones seen before skipped (each reader starts
    at the log's first line). Returns why the session was lost, "" when the command ended
    (or the host said poweroff), None past `bound`."""
    index = 0
    try:
        for line in talk.lines(bound):
            index += 1
            if index > follow.lines_seen:
                follow.lines_seen = index
                _host_line(host, follow, line)
                if follow.poweroff_seen:
                    return ""
    except RemoteTimeout:
        return None
    except RemoteCommandFailed as exc:
        return one_line(exc)
    return "" if talk.exited else "the session closed"


def _host_line(host: str, follow: Follow, line: str) -> None:
    text = printable(line.strip())
    if not text:
        return
    log.info("host %s: [host] %s", host, text)
    if not text.startswith(LOG_PREFIX):
        return
    words = text[len(LOG_PREFIX) :].split()
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
