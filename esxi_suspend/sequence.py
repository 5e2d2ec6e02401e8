"""Start the host sequence detached, then follow its log while the connection lasts.

The host script (hostscript.sequence_script) drives itself: it moves to its next phase as
soon as that phase's VMs are down and powers the host off by the deadline whatever happens to
us. Our side starts it, then reads its log, one round trip per poll, and copies it to ours:
losing our session never makes the host slower.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Callable

from esxi_suspend.errors import ExitCode, RemoteCommandFailed, SessionDropped
from esxi_suspend.hostscript import (
    HOST_TEXT,
    LOG_PREFIX,
    detached,
    log_path,
    read_log,
    sequence_script,
)
from esxi_suspend.inventory import Inventory, Remote
from esxi_suspend.plan import ShutdownPlan
from esxi_suspend.report import printable
from esxi_suspend.settings import Settings

log = logging.getLogger(__name__)

# Opens a fresh session to the same host (after ours was lost); None if that fails.
Reconnect = Callable[[], "Remote | None"]
Record = Callable[[str, ExitCode, str], None]
# The first looks come quickly (a host with nothing to stop is off in a second), then every
# ESXI_POLL_INTERVAL.
FIRST_POLL = 0.1


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
    remote: Remote,
    inventory: Inventory,
    plan: ShutdownPlan,
    settings: Settings,
    reconnect: Reconnect,
    record: Record,
) -> None:
    """Start the host script, then follow it until the host goes down or contact is lost."""
    follow = Follow(
        plan=plan,
        names={info.vmid: info.vm.name for info in inventory.vms},
        log_path=log_path(int(time.time()), os.getpid()),
    )
    timeout = settings.command_timeout
    start = time.monotonic()
    quick = plan.stops_nothing  # the script only powers the host off: wait for it at once
    command = detached(sequence_script(plan), follow.log_path, inventory.has_nohup, quick)
    try:
        started = remote.run(command, timeout)
    except SessionDropped as exc:
        if quick:  # the host went down under the command that powers it off
            record("poweroff", ExitCode.OK, "host closed the session: it is going down")
            return
        record("sequence", exc.exit_code, f"could not start the host sequence: {exc}")
        return
    except RemoteCommandFailed as exc:
        record("sequence", exc.exit_code, f"could not start the host sequence: {exc}")
        return
    record(
        "sequence",
        ExitCode.OK,
        f"started on the host, detached (log {follow.log_path}); it powers the host off "
        f"within {plan.deadline} s even without us",
    )
    if quick:
        _read(remote.name, follow, started.stdout)
    # Real seconds we follow at most: the host's deadline plus room for slow commands.
    bound = start + plan.deadline + 2 * timeout + 30
    current: Remote | None = None if follow.poweroff_seen else remote
    if follow.poweroff_seen:
        record("poweroff", ExitCode.OK, "the host sequence ran poweroff: it is going down")
    pause = min(FIRST_POLL, settings.poll_interval)
    while current is not None:
        try:
            _poll(current, follow, timeout)
        except RemoteCommandFailed as exc:
            if follow.poweroff_seen or follow.final_started:
                record("poweroff", ExitCode.OK, "host closed the session: it is going down")
                break
            log.warning("host %s: lost the session (%s); reconnecting", remote.name, exc)
            current = reconnect()
            if current is None:
                record(
                    "follow",
                    ExitCode.CONNECTION,
                    "lost contact with the host; its sequence goes on without us and powers "
                    f"it off within {plan.deadline} s of its start",
                )
            continue
        if follow.poweroff_seen:
            record("poweroff", ExitCode.OK, "the host sequence ran poweroff: it is going down")
            break
        if time.monotonic() > bound:
            record("follow", ExitCode.REMOTE_COMMAND, "the host sequence did not finish in time")
            break
        time.sleep(pause)
        pause = min(settings.poll_interval, pause * 2)
    _report_fates(follow, record)


def _poll(remote: Remote, follow: Follow, timeout: int) -> None:
    """One round trip: the new lines of the host's log."""
    _read(remote.name, follow, remote.run(read_log(follow.log_path), timeout).stdout)


def _read(host: str, follow: Follow, log_text: str) -> None:
    lines = log_text.splitlines()
    for line in lines[follow.lines_seen :]:
        _host_line(host, follow, line)
    follow.lines_seen = max(follow.lines_seen, len(lines))


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
