"""Start the host-side sequence detached, then follow it while the connection lasts.

The host script (strategy.host_script) keeps its own clock and powers the host off by the
deadline whatever happens to us. While connected we copy its log to ours, watch the VMs' power
states, and move it along: when a phase's VMs are all down we start the next phase at once, and
when every VM is down we power the host off without waiting for the budgets to run out.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Callable

from esxi_suspend import esxi
from esxi_suspend.errors import ExitCode, RemoteCommandFailed
from esxi_suspend.inventory import Inventory, Remote, run_marked
from esxi_suspend.report import printable
from esxi_suspend.strategy import (
    LOG_PREFIX,
    ShutdownPlan,
    detached,
    final_commands,
    host_script,
    join,
    log_path,
    phase_commands,
)

log = logging.getLogger(__name__)

# Opens a fresh session to the same host (after ours was lost); None if that fails.
Reconnect = Callable[[], "Remote | None"]


@dataclass
class Follow:
    """What we know of the host sequence so far."""

    plan: ShutdownPlan
    names: dict[int, str]
    log_path: str
    has_nohup: bool
    phase: int = 0
    final_started: bool = False
    poweroff_seen: bool = False
    log_seen: int = 0
    states: dict[int, esxi.PowerState | None] = field(default_factory=dict)

    def vm(self, vmid: int) -> str:
        return f"VM {vmid} ({printable(self.names.get(vmid, '?'))})"


def run_sequence(
    remote: Remote,
    inventory: Inventory,
    plan: ShutdownPlan,
    timeout: int,
    poll_interval: float,
    reconnect: Reconnect,
    record: Callable[[str, ExitCode, str], None],
) -> None:
    """Start the host script, then follow it until the host goes down or contact is lost."""
    follow = Follow(
        plan=plan,
        names={info.vmid: info.vm.name for info in inventory.vms},
        log_path=log_path(int(time.time()), os.getpid()),
        has_nohup=inventory.has_nohup,
        states={vmid: esxi.PowerState.ON for vmid in plan.watched},
    )
    start = time.monotonic()
    try:
        remote.run(detached(host_script(plan), follow.log_path, follow.has_nohup), timeout)
    except RemoteCommandFailed as exc:
        record("sequence", exc.exit_code, f"could not start the host sequence: {exc}")
        return
    record(
        "sequence",
        ExitCode.OK,
        f"started on the host, detached (log {follow.log_path}); it powers the host off "
        f"within {plan.scheduled} s even without us",
    )
    # Real seconds we follow at most: the host's schedule plus room for slow commands.
    bound = start + plan.scheduled + 2 * timeout + 30
    current: Remote | None = remote
    pause = 0.0  # the first look at once: a host with nothing to stop is powered off at once
    while current is not None:
        time.sleep(pause)
        pause = poll_interval
        elapsed = time.monotonic() - start
        try:
            _poll(current, follow, timeout, elapsed)
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
                    f"it off within {plan.scheduled} s of its start",
                )
            continue
        if follow.poweroff_seen:
            record("poweroff", ExitCode.OK, "the host sequence ran poweroff: it is going down")
            break
        if time.monotonic() > bound:
            record("follow", ExitCode.REMOTE_COMMAND, "the host sequence did not finish in time")
            break
        try:
            _move_along(current, follow, timeout, elapsed)
        except RemoteCommandFailed as exc:
            if follow.final_started:  # our own final step took the host down under us
                record("poweroff", ExitCode.OK, "host closed the session: it is going down")
                break
            log.warning("host %s: could not move the sequence along (%s)", remote.name, exc)
    _report_fates(follow, record)


def _poll(remote: Remote, follow: Follow, timeout: int, elapsed: float) -> None:
    """One round trip: new lines of the host log, and the state of every VM still running."""
    pending = [vmid for vmid, state in follow.states.items() if state is esxi.PowerState.ON]
    parts = [(esxi.echo_marker("log"), f"cat {follow.log_path}")]
    parts += [(esxi.echo_marker("state", v), esxi.power_getstate(v)) for v in pending]
    sections = run_marked(remote, parts, timeout)
    lines = sections.get("log", "").splitlines()
    for line in lines[follow.log_seen :]:
        _host_line(remote.name, follow, line)
    follow.log_seen = max(follow.log_seen, len(lines))
    for vmid in pending:
        try:
            state = esxi.parse_power_state(sections.get(f"state {vmid}", ""))
        except esxi.ParseError:
            continue
        if state is not esxi.PowerState.ON:
            follow.states[vmid] = state
            log.info(
                "host %s: %s: %s after %.0f s", remote.name, follow.vm(vmid), state.value, elapsed
            )


def _host_line(host: str, follow: Follow, line: str) -> None:
    text = printable(line.strip())
    if not text:
        return
    log.info("host %s: [host] %s", host, text)
    if text.startswith(LOG_PREFIX):
        words = text[len(LOG_PREFIX) :].split()
        if words[:1] == ["phase"] and len(words) > 1 and "/" in words[1]:
            number = words[1].split("/")[0]
            if number.isdigit():
                follow.phase = max(follow.phase, int(number) - 1)
        elif words[:1] == ["final:"]:
            follow.final_started = True
        elif words[:2] == ["host", "poweroff"]:
            follow.poweroff_seen = True


def _phase_done(follow: Follow, number: int) -> bool:
    phase = follow.plan.phases[number]
    vmids = follow.plan.watched if phase.autostop else [step.vmid for step in phase.steps]
    return all(follow.states.get(v) is not esxi.PowerState.ON for v in vmids)


def _move_along(remote: Remote, follow: Follow, timeout: int, elapsed: float) -> None:
    """Start the next phase, or the final step, as soon as what it waits for is done."""
    if follow.final_started:
        return
    plan = follow.plan
    if all(state is not esxi.PowerState.ON for state in follow.states.values()):
        log.info(
            "host %s: every VM is down after %.0f s: powering the host off", remote.name, elapsed
        )
        follow.final_started = True
        _start(remote, follow, join(final_commands(plan, ())), timeout)
        return
    while follow.phase + 1 < len(plan.phases) and _phase_done(follow, follow.phase):
        follow.phase += 1
        phase = plan.phases[follow.phase]
        log.info("host %s: starting %s early, after %.0f s", remote.name, phase.label, elapsed)
        commands = phase_commands(phase, follow.phase + 1, len(plan.phases))
        _start(remote, follow, join(commands), timeout)


def _start(remote: Remote, follow: Follow, script: str, timeout: int) -> None:
    remote.run(detached(script, follow.log_path, follow.has_nohup), timeout)


def _report_fates(follow: Follow, record: Callable[[str, ExitCode, str], None]) -> None:
    """Each VM's fate, as far as we saw it: down in time, or left to the final step."""
    left = [vmid for vmid, state in follow.states.items() if state is esxi.PowerState.ON]
    down = len(follow.states) - len(left)
    action = follow.plan.straggler_action.value
    if left:
        names = ", ".join(follow.vm(vmid) for vmid in left)
        log.warning(
            "still running at the end: %s: the host's final step gives them %s", names, action
        )
    record(
        "VMs",
        ExitCode.OK,
        f"{down} of {len(follow.states)} down before the host poweroff"
        + (f"; {len(left)} left to the final {action}" if left else ""),
    )
