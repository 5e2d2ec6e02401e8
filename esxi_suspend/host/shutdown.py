"""The steps on one host: inventory, plan, host sequence; or, in a dry run, the plan only.

When the host's inventory cannot be read, the original path runs: autostop, then poweroff.
A step that fails is recorded and the next one still runs: the battery decides, not us.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass, field

from esxi_suspend import clock, machine
from esxi_suspend.errors import (
    ExitCode,
    RemoteCommandFailed,
    RemoteTimeout,
    SessionDropped,
    one_line,
)
from esxi_suspend.host import capture, esxi, keycheck, rehearsal
from esxi_suspend.host.inventory import (
    Inventory,
    Remote,
    Talk,
    new_token,
    parse_inventory,
    read_inventory,
)
from esxi_suspend.host.plan import POWEROFF_SECONDS, ShutdownPlan, find_self_vm, make_plan
from esxi_suspend.host.report import describe_plan, printable, render_check
from esxi_suspend.host.script import READY, STARTED, log_path, plain_command, shutdown_command
from esxi_suspend.host.sequence import FOLLOW_GRACE, Reconnect, run_sequence
from esxi_suspend.settings.model import Settings
from esxi_suspend.ssh.remote import NO_EXIT_STATUS

log = logging.getLogger(__name__)
# What messages call the one command of a shutdown, and of a check's rehearsal.
SHUTDOWN_LABEL = "the shutdown command (inventory, then the host sequence)"
CHECK_LABEL = "the shutdown command (inventory, then the rehearsal)"
# Real seconds we give the shutdown command to end once told there is no script.
ENDING_SECONDS = 5


@dataclass
class StepResult:
    name: str
    exit_code: ExitCode
    detail: str
    word: str = ""  # the summary's word for it, when more than ok/FAILED (e.g. who confirmed)

    @property
    def ok(self) -> bool:
        return self.exit_code == ExitCode.OK


@dataclass
class HostResult:
    """What happened on one host, step by step; its exit code is the worst of its steps."""

    host: str
    steps: list[StepResult] = field(default_factory=list)
    report: str = ""
    capture: dict[str, object] | None = None  # check's: what the host printed (host/capture.py)

    def add(self, name: str, exit_code: ExitCode, detail: str) -> None:
        step = StepResult(name, exit_code, detail)
        self.steps.append(step)
        if step.ok:
            log.info("host %s: %s: %s", self.host, name, detail)
        else:
            log.error("host %s: %s: %s", self.host, name, detail)

    @property
    def exit_code(self) -> ExitCode:
        return max((step.exit_code for step in self.steps), default=ExitCode.OK)

    def summary(self) -> str:
        parts = [f"{s.name} {s.word or ('ok' if s.ok else 'FAILED')}" for s in self.steps]
        return f"host {self.host}: {', '.join(parts) or 'nothing done'}"


def shutdown_host(
    remote: Remote, settings: Settings, result: HostResult, reconnect: Reconnect
) -> None:
    """Read the host, plan, and run the plan detached on the host; plain path if unreadable.

    One command does it all (script.shutdown_command): it prints the inventory, takes
    the script we make of it on its input, starts it and prints its log as it grows.
    """
    timeout = settings.command_timeout
    token = new_token()
    marker = f"@@{token}"
    why: str | None = None
    path = log_path(int(time.time()), os.getpid())
    try:
        command = shutdown_command(token, path, settings.deadline + FOLLOW_GRACE)
        with remote.exchange(command, timeout, SHUTDOWN_LABEL) as talk:
            try:
                text = talk.read_until(f"{marker} {READY}", time.monotonic() + timeout)
                inventory = parse_inventory(remote.name, text, token, NO_EXIT_STATUS, "")
            except RemoteCommandFailed as exc:
                _end_without_script(talk)
                failed: RemoteCommandFailed | None = exc
            else:
                failed = None
                self_vm, why = find_self_vm(inventory, settings, machine.smbios_uuid())
                plan = make_plan(inventory, settings, self_vm, clock.now() - settings.called_at)
                result.add("inventory", ExitCode.OK, _inventory_text(inventory, plan, settings))
                log.info("host %s: power states: %s", remote.name, printable(inventory.look))
                for line in describe_plan(inventory, plan, why):
                    log.info("host %s: plan: %s", remote.name, line)
                why = run_sequence(
                    talk, remote, marker, inventory, plan, settings, reconnect, result.add, path
                )
    except RemoteCommandFailed as exc:  # the command could not even be sent
        failed = exc
    if failed is None and why is not None:
        plain_detached(remote, settings, result, reconnect, why)
    if failed is not None:
        result.add("inventory", failed.exit_code, f"{one_line(failed)}; falling back to autostop")
        plain_shutdown(remote, settings, result, reconnect)


def _end_without_script(talk: Talk) -> None:
    """Tell the shutdown command there is no script, and let it end before our next command
    (dropbear refuses a new channel meanwhile); it runs nothing."""
    with contextlib.suppress(RemoteCommandFailed):
        talk.send("")
        for _line in talk.lines(time.monotonic() + ENDING_SECONDS):
            pass


def _inventory_text(
    inventory: Inventory, plan: ShutdownPlan, settings: Settings, took: float | None = None
) -> str:
    """What was found, and how much of the battery budget reading it left."""
    running = sum(1 for info in inventory.vms if info.running)
    read = f"read in {took:.1f} s, " if took is not None else ""
    return (
        f"{len(inventory.vms)} VM(s), {running} running; {read}{plan.spent} s since we were "
        f"called: {plan.deadline} s of ESXI_DEADLINE={settings.deadline} s left for the host "
        "sequence"
    )


def seconds_left(settings: Settings) -> int:
    """Seconds until ESXI_DEADLINE, less the host poweroff's own time; 0 when none are left."""
    left = settings.deadline - (clock.now() - settings.called_at) - POWEROFF_SECONDS
    return max(0, int(left))


def plain_detached(
    remote: Remote, settings: Settings, result: HostResult, reconnect: Reconnect, why: str
) -> None:
    """The host sequence did not start or stopped: the plain path, detached on the host
    (autostop, then poweroff; poweroff by the deadline whatever autostop does); we do not wait
    for it."""
    left = seconds_left(settings)
    log.error(
        "host %s: %s: FALLING BACK to the plain path: autostop, then poweroff, detached on "
        "the host; poweroff within %d s whatever autostop does",
        remote.name,
        why,
        left,
    )
    token = new_token()
    timeout = min(settings.command_timeout, 30)
    for attempt in (remote, None):
        current = attempt if attempt is not None else reconnect()
        if current is None:
            result.add("fallback", ExitCode.CONNECTION, "not sent: could not reconnect")
            return
        try:
            done = current.run(plain_command(token, left), timeout)
        except SessionDropped as exc:
            if attempt is None:
                result.add("fallback", exc.exit_code, f"{exc}; check the host's console")
                return
            continue
        except RemoteCommandFailed as exc:
            result.add("fallback", exc.exit_code, f"{exc}; check the host's console")
            return
        finally:
            if attempt is None:
                current.close()
        if f"@@{token} {STARTED}" in done.stdout:
            result.add(
                "fallback",
                ExitCode.OK,
                f"autostop, then poweroff, started on the host; poweroff within {left} s",
            )
        else:
            result.add(
                "fallback",
                ExitCode.REMOTE_COMMAND,
                f"the plain path did not start (exit {done.exit_status}, "
                f"{done.error_tail()}); power the host off from its console",
            )
        return


def plain_shutdown(
    remote: Remote, settings: Settings, result: HostResult, reconnect: Reconnect
) -> None:
    """The original path: autostop, then poweroff whatever autostop did; autostop bounded by
    ESXI_COMMAND_TIMEOUT and by what is left of ESXI_DEADLINE."""
    timeout = max(1, min(settings.command_timeout, seconds_left(settings)))
    log.info("host %s: running `%s` (bound %d s)", remote.name, esxi.AUTOSTOP, timeout)
    session_lost = False
    try:
        done = remote.run(esxi.AUTOSTOP, timeout)
    except RemoteTimeout as exc:
        result.add("autostop", exc.exit_code, f"{exc}; VMs still running will be powered off")
    except SessionDropped as exc:
        session_lost = True
        result.add("autostop", exc.exit_code, f"{exc}; reconnecting to power the host off")
    else:
        if done.ok:
            result.add("autostop", ExitCode.OK, "all VMs in the autostart sequence stopped")
        else:
            result.add(
                "autostop",
                ExitCode.REMOTE_COMMAND,
                f"`{esxi.AUTOSTOP}` exited {done.exit_status} ({done.error_tail()}); "
                "powering off anyway",
            )
    timeout = settings.command_timeout
    if not session_lost:
        power_off(remote, timeout, result)
        return
    again = reconnect()
    if again is None:
        result.add("poweroff", ExitCode.CONNECTION, "not sent: could not reconnect to the host")
        return
    try:
        power_off(again, timeout, result)
    finally:
        again.close()


def power_off(remote: Remote, timeout: int, result: HostResult) -> None:
    log.info("host %s: running `%s`", remote.name, esxi.POWEROFF)
    try:
        done = remote.run(esxi.POWEROFF, timeout)
    except SessionDropped:
        result.add("poweroff", ExitCode.OK, "host closed the session: it is going down")
        return
    except RemoteCommandFailed as exc:
        result.add("poweroff", exc.exit_code, f"{exc}; check the host's console")
        return
    if done.ok:
        result.add("poweroff", ExitCode.OK, "host accepted poweroff: it is going down")
    else:
        result.add(
            "poweroff",
            ExitCode.REMOTE_COMMAND,
            f"`{esxi.POWEROFF}` exited {done.exit_status} ({done.error_tail()}); the host is "
            "still up: power it off from its console",
        )


def check_host(
    remote: Remote,
    settings: Settings,
    result: HostResult,
    key: tuple[str, str] | None = None,
    reconnect: Reconnect | None = None,
) -> None:
    """Dry run: read the host, make the plan, put the report in the result; change nothing.

    `key`: the SSH server's banner and our key's base64, to report our key's restrictions.
    `reconnect`: new sessions to the host, for the rehearsal (host/rehearsal.py): then the
    inventory is read by the shutdown command itself, which then runs the host script with
    stand-ins for every state-changing command."""
    key_text = ""
    if key is not None:
        key_text = keycheck.describe_key(remote, settings, *key)
        result.steps.append(StepResult(keycheck.STEP, ExitCode.OK, key_text))
        level = logging.WARNING if "WARNING: " in key_text else logging.INFO
        log.log(level, "host %s: %s: %s", remote.name, keycheck.STEP, key_text)
    if reconnect is not None:
        _check_and_rehearse(remote, settings, result, key_text, reconnect)
        return
    started = clock.now()
    try:
        inventory = read_inventory(remote, settings.command_timeout)
    except RemoteCommandFailed as exc:
        result.add("inventory", exc.exit_code, one_line(exc))
        return
    _check_plan(remote, settings, result, inventory, clock.now() - started, key_text)


def _check_and_rehearse(
    remote: Remote, settings: Settings, result: HostResult, key_text: str, reconnect: Reconnect
) -> None:
    """The inventory from the shutdown command, as a shutdown reads it; then the rehearsal on
    that same command, and the probes on sessions of their own."""
    timeout = settings.command_timeout
    token = new_token()
    marker = f"@@{token}"
    path = log_path(int(time.time()), os.getpid())
    started = clock.now()
    try:
        command = shutdown_command(token, path, rehearsal.FOLLOW_SECONDS, every_summary=True)
        with remote.exchange(command, timeout, CHECK_LABEL) as talk:
            try:
                text = talk.read_until(f"{marker} {READY}", time.monotonic() + timeout)
                inventory = parse_inventory(remote.name, text, token, NO_EXIT_STATUS, "")
            except RemoteCommandFailed:
                _end_without_script(talk)
                raise
            took = clock.now() - started
            plan = _check_plan(remote, settings, result, inventory, took, key_text)
            done = rehearsal.rehearse(talk, marker, plan, reconnect, timeout, path)
    except RemoteCommandFailed as exc:
        result.add("inventory", exc.exit_code, one_line(exc))
        return
    for probe in done.probes:
        result.add(probe.name, ExitCode.OK if probe.ok else ExitCode.REMOTE_COMMAND, probe.detail)
    lines = result.report.split("\n")
    at = next((i for i, ln in enumerate(lines) if ln.startswith(LISTING_LINE)), len(lines))
    said = [
        f"  rehearsal on this host, read-only: {done.seconds:.1f} s more than the inventory "
        "took (the host's own shell ran our host text; nothing was changed)"
    ]
    said += [f"    {p.name}: {'ok' if p.ok else 'FAILED'}: {p.detail}" for p in done.probes]
    result.report = "\n".join(lines[:at] + said + lines[at:])
    result.capture = capture.host_capture(
        settings,
        inventory,
        text,
        token,
        took,
        done,
        [(s.name, s.ok, s.detail) for s in result.steps],
    )


LISTING_LINE = "  would run on the host"
LOOK_STEP = "one-call look"


def _look_step(inventory: Inventory) -> tuple[ExitCode, str]:
    """check's proof of the one-call look: esxcli's running VMs against get.summary's."""
    if inventory.look_differs:
        ids = " ".join(str(v) for v in inventory.look_differs)
        return ExitCode.REMOTE_COMMAND, (
            f"`{esxi.PROCESS_LIST}` and `{esxi.GET_SUMMARY}` disagree on which VMs run (VM "
            f"{ids}): a shutdown takes the running VMs from esxcli and would miss or mistake "
            "them; run check again (a VM powering on or off meanwhile differs once), and if it "
            "stays, attach `esxi-suspend check --capture FILE` to a bug report"
        )
    if not inventory.one_call:
        rounds = -(-len(inventory.vms) // esxi.CALLS_AT_ONCE)
        return ExitCode.OK, (
            f"not available here: {printable(inventory.look)}; a shutdown reads each VM's "
            f"state instead ({rounds} round(s) of {esxi.CALLS_AT_ONCE} calls)"
        )
    return ExitCode.OK, (
        f"`{esxi.PROCESS_LIST}` agrees with `{esxi.GET_SUMMARY}` on all {len(inventory.vms)} "
        "VM(s): a shutdown reads which VMs run in one call"
    )


def _check_plan(
    remote: Remote,
    settings: Settings,
    result: HostResult,
    inventory: Inventory,
    took: float,
    key_text: str,
) -> ShutdownPlan:
    """The plan of a check, its steps and its report."""
    self_vm, why = find_self_vm(inventory, settings, machine.smbios_uuid())
    seen = inventory.as_a_shutdown_reads_it()
    plan = make_plan(seen, settings, self_vm, clock.now() - settings.called_at)
    result.add("inventory", ExitCode.OK, _inventory_text(inventory, plan, settings, took))
    look_code, look_text = _look_step(inventory)
    result.add(LOOK_STEP, look_code, look_text)
    if settings.self_vm and self_vm is None:
        # The real run would stop this machine with the other VMs, not last: not ready.
        result.add("self VM", ExitCode.CONFIG, printable(why))
    if inventory.poweroff_path:
        result.add("poweroff present", ExitCode.OK, f"found {inventory.poweroff_path}")
    else:
        result.add(
            "poweroff present",
            ExitCode.REMOTE_COMMAND,
            f"no {esxi.POWEROFF_PATH} (`[ -x {esxi.POWEROFF_PATH} ]` failed): this host "
            "cannot be powered off this way",
        )
    if not plan.fits:
        log.warning(
            "host %s: the plan wants %d s, more than the %d s left of ESXI_DEADLINE=%d s",
            remote.name,
            plan.worst_case,
            plan.deadline,
            settings.deadline,
        )
    report = render_check(inventory, plan, settings, why, took).split("\n")
    said = "ok" if look_code == ExitCode.OK else "FAILED"
    report.insert(2, f"  {LOOK_STEP}: {said}: {look_text}")
    if key_text:
        report.insert(1, f"  key: {key_text}")
    result.report = "\n".join(report)
    return plan
