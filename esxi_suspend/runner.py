"""One shutdown or check run: settings, every host at once, the outage, the local restart.

Whatever happens on the way, the local NUT monitor restart is attempted last, because it is
what re-arms monitoring when this machine (often a VM on the host) comes back. This is the
only place where a run's failures become its exit code; `cli` and `demo` both call `run`.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from types import FrameType

from esxi_suspend import __version__, lock
from esxi_suspend.errors import EsxiSuspendError, ExitCode, one_line
from esxi_suspend.host import capture
from esxi_suspend.host.shutdown import HostResult, check_host, shutdown_host
from esxi_suspend.nut import deadline, early, ups
from esxi_suspend.nut.outage import Outage
from esxi_suspend.nut.service import plan_restart, run_restart
from esxi_suspend.power import bmc
from esxi_suspend.settings.envfile import (
    RestartAwareConfigError,
    Validation,
    load_settings,
    validate,
)
from esxi_suspend.settings.model import RestartSettings, Settings, env_file_path
from esxi_suspend.ssh import remote
from esxi_suspend.ssh.remote import RemoteHost

log = logging.getLogger("esxi_suspend")


class Terminated(BaseException):
    """SIGTERM arrived during the settings or host steps (BaseException: nothing swallows it)."""


class _Sigterm:
    """SIGTERM stops the host steps at once; during the local restart it is only noted.

    `systemctl stop` of upsmon's unit sends it while we run; `systemctl --no-block restart`
    (our own last step) makes systemd send it too. Either way the local restart must run, the
    exit must be logged, and nothing more may be sent to the host.
    """

    def __init__(self) -> None:
        self.received = False
        self.interrupting = False  # True only while run_host runs

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        first = not self.received
        self.received = True
        if self.interrupting and first:
            remote.abort_sessions()
            raise Terminated


@contextmanager
def _sigterm_handled() -> Iterator[_Sigterm]:
    handler = _Sigterm()
    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (tests): run without it
        yield handler
        return
    try:
        yield handler
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(
    env_file: str | None,
    dry_run: bool,
    called_at: float | None = None,
    capture: str | None = None,
    anonymize: bool = False,
) -> ExitCode:
    """Config, hosts, local restart: each failure recorded, none stopping the next step.

    `called_at` (`clock.now()`): when upsmon called us; by default, when the settings
    are read. ESXI_DEADLINE counts from it. `capture` (check only): the file that gets what
    each host printed (host/capture.py), its VM names replaced if `anonymize`.
    """
    with _sigterm_handled() as sigterm:
        return _run(env_file, dry_run, sigterm, called_at, capture, anonymize)


def _run(
    env_file: str | None,
    dry_run: bool,
    sigterm: _Sigterm,
    called_at: float | None,
    capture: str | None = None,
    anonymize: bool = False,
) -> ExitCode:
    path = env_file_path(env_file)
    mode = "check (dry run: nothing will be changed)" if dry_run else "shutdown"
    log.info("esxi-suspend %s: %s, settings from %s", __version__, mode, path)
    codes: list[ExitCode] = []
    restart_settings = RestartSettings()
    settings: Settings | None = None
    validation: Validation | None = None
    if dry_run:  # check is strict: any problem means not ready, no host contacted
        try:
            settings = load_settings(path)
            restart_settings = settings.restart
        except RestartAwareConfigError as exc:
            _log_error(exc)
            codes.append(exc.exit_code)
            restart_settings = exc.restart
    else:  # shutdown fails safe: only what makes a host unreachable stops that host
        validation = validate(path)
        settings, restart_settings = validation.settings, validation.restart
        if validation.problems:
            for line in validation.report(
                "the shutdown goes on, as said for each", "no host can be contacted"
            ):
                log.error("%s", line)
            codes.append(ExitCode.CONFIG)
    if settings is not None and called_at is not None:
        settings = replace(settings, called_at=called_at)
    if settings is not None and settings.deadline_auto:
        settings, resolved = deadline.apply(settings)
        if dry_run:
            print(f"deadline: {resolved.source}")
        if resolved.ok:
            log.info("deadline: %s", resolved.source)
        else:
            log.warning("deadline: %s", resolved.source)
            if dry_run:  # check is strict: the admin asked for auto, and it does not work
                codes.append(ExitCode.CONFIG)

    # upsmon calls us again when the monitor is restarted during the outage: hosts this
    # machine already powered off in it are not contacted again (see nut/outage.py)
    outage = Outage(restart_settings, path) if not dry_run else None
    everything = settings
    if outage is not None:
        settings = outage.leave_out_done_hosts(settings)

    results: list[HostResult] = []
    if settings is not None and not dry_run:
        try:
            for target in settings.all_targets:
                lock.acquire(target.host, target.port)
        except lock.HeldElsewhere as exc:
            log.error("%s", exc)
            log.info(
                "summary: not contacted (locked by another run); exit %d (LOCKED)", ExitCode.LOCKED
            )
            return ExitCode.LOCKED
    if settings is not None:
        results = _run_hosts_interruptible(settings, dry_run, sigterm)
        codes += [result.exit_code for result in results]
        for result in results:
            if result.report:
                print(result.report)
    if dry_run and capture is not None:
        codes.append(_write_capture(capture, results, anonymize))

    if outage is not None:  # on battery: wait for power before re-arming the monitor
        outage.wait_before_restart(everything, settings, results, lambda: sigterm.received)
    elif dry_run:
        print(f"ups: {_ups_check(restart_settings)}")
        as_set, text = early.describe(restart_settings.early_shutdown, early.read())
        print(f"early shutdown: {text if as_set else 'WARNING: ' + text}")
    restart_code, restart_text = restart_local(restart_settings, dry_run)
    codes.append(restart_code)
    if dry_run:  # once per run, after every host's report
        print(f"local: {restart_text}")
    worst = max(codes)
    hosts = [r.summary() for r in results]
    if outage is not None:
        hosts += outage.summary()
    if validation is not None:
        hosts += [
            f"ESXI_HOST entry {e!r}: not contacted (configuration)" for e in validation.skipped
        ]
        if validation.problems and settings is not None:
            hosts.append(f"configuration: {len(validation.problems)} problem(s), see above")
    hosts_text = "; ".join(hosts) or "no host contacted (configuration)"
    log.info(
        "summary: %s; local restart: %s; exit %d (%s)",
        hosts_text,
        restart_text,
        worst,
        worst.name,
    )
    if sigterm.received and worst != ExitCode.TERMINATED:
        log.info("SIGTERM received after the host steps: exiting now, exit %d", worst)
    if dry_run:
        verdict = "ready" if worst == ExitCode.OK else "NOT ready"
        print(f"result: {verdict} (exit {int(worst)} {worst.name})")
    return worst


def _write_capture(path: str, results: list[HostResult], anonymize: bool) -> ExitCode:
    """`check --capture`: one JSON file, every host; only root may read it (0600)."""
    hosts = [
        r.capture or capture.failed_host(r.host, [(s.name, s.ok, s.detail) for s in r.steps])
        for r in results
    ]
    text = json.dumps(capture.document(hosts, anonymize), indent=1, ensure_ascii=False)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text + "\n")
    except OSError as exc:
        log.error("capture: cannot write %s (%s): give a writable path", path, exc.strerror)
        print(f"capture: FAILED: cannot write {path} ({exc.strerror}): give a writable path")
        return ExitCode.USAGE
    names = "VM names anonymized" if anonymize else "VM names as on the host"
    print(f"capture: written to {path} ({len(hosts)} host(s), {names}); attach it to a bug report")
    return ExitCode.OK


def _ups_check(restart: RestartSettings) -> str:
    """`check`'s UPS line: the status now and what a shutdown would do; never waits."""
    status = ups.read_status(restart.ups_names)
    if status.on_battery:
        then = "a shutdown now would wait for power before restarting the NUT monitor"
    elif status.online:
        then = "on line: a shutdown now would restart the NUT monitor at once"
    else:
        then = "status unreadable: a shutdown would restart the NUT monitor at once"
    return f"{status.describe()}; {then}"


def _run_hosts_interruptible(
    settings: Settings, dry_run: bool, sigterm: _Sigterm
) -> list[HostResult]:
    """run_hosts, stopped at once by SIGTERM: the hosts are recorded as interrupted.

    A host sequence already started on a host goes on there: it was made to outlive us.
    """
    hosts = [target.host for target in settings.all_targets]
    if sigterm.received:  # arrived while the settings were read: do not start
        return [_terminated(host, "not contacted: SIGTERM received before") for host in hosts]
    sigterm.interrupting = True
    try:
        return run_hosts(settings, dry_run)
    except Terminated:
        detail = (
            "SIGTERM received: stopped, nothing more is sent to the host (a host sequence "
            "already started goes on there); restarting the local NUT monitor, then exiting "
            f"{int(ExitCode.TERMINATED)}"
        )
        return [_terminated(host, detail) for host in hosts]
    finally:
        sigterm.interrupting = False


def _terminated(host: str, detail: str) -> HostResult:
    result = HostResult(host)
    result.add("host steps", ExitCode.TERMINATED, detail)
    return result


def run_hosts(settings: Settings, dry_run: bool) -> list[HostResult]:
    """Every host at once, one thread each: a slow or dead host never holds the others up."""
    targets = [settings.for_target(target) for target in settings.all_targets]
    results = [HostResult(target.host) for target in targets]
    threads = [
        threading.Thread(
            target=run_host,
            args=(target, dry_run, result),
            name=f"host-{target.host}",
            daemon=True,
        )
        for target, result in zip(targets, results)
    ]
    for thread in threads:
        thread.start()
    # Each host bounds its own waits; this outer bound only guards against a bug.
    bound = time.monotonic() + settings.deadline + 4 * settings.command_timeout + 120
    if settings.bmcs:  # the BMC's look after the host steps (power/bmc.py), bounded too
        bound += bmc.CONFIRM_LIMIT + 3 * settings.connect_timeout
    for thread, result in zip(threads, results):
        _join(thread, bound)
        if thread.is_alive():
            result.add("bound", ExitCode.INTERNAL, "still running past every bound: left behind")
    return results


# How often the main thread wakes while it waits for the hosts: a SIGTERM the kernel gave to
# another thread only runs its Python handler when the main thread next runs Python code.
JOIN_SLICE = 0.1


def _join(thread: threading.Thread, bound: float) -> None:
    while thread.is_alive() and time.monotonic() < bound:
        thread.join(min(JOIN_SLICE, max(0.0, bound - time.monotonic())))


def run_host(settings: Settings, dry_run: bool, result: HostResult) -> None:
    """One host, from connect to poweroff (or the dry run's report), then its BMC; never
    raises."""
    try:
        _run_host(settings, dry_run, result)
        _by_bmc(settings, dry_run, result)
    except Exception as exc:  # a bug: traceback to syslog, the other hosts go on
        log.critical("host %s: internal error: %s", settings.host, exc, exc_info=True)
        result.add("internal", ExitCode.INTERNAL, f"internal error: {exc}")


def _run_host(settings: Settings, dry_run: bool, result: HostResult) -> None:
    log.info(
        "host %s: connecting as %s, port %d, key %s, host key pinned in %s",
        settings.host,
        settings.user,
        settings.port,
        settings.key_file,
        settings.known_hosts,
    )
    session = RemoteHost(settings)
    try:
        session.open()
    except EsxiSuspendError as exc:
        result.add("connect", exc.exit_code, one_line(exc))
        return
    result.add("connect", ExitCode.OK, f"host key {session.host_key} matches; key accepted")
    try:
        if dry_run:
            check_host(
                session,
                settings,
                result,
                (session.server_banner, session.key_base64),
                lambda: _reconnect(settings),
            )
        else:
            shutdown_host(session, settings, result, lambda: _reconnect(settings))
    finally:
        session.close()


def _by_bmc(settings: Settings, dry_run: bool, result: HostResult) -> None:
    """A host with a BMC (ESXI_IPMI_HOST): `check` reads its power state; a shutdown that
    powered it off has it confirmed off; one that could not reach it by SSH has its BMC press
    the power button (power/bmc.py)."""
    target = bmc.bmc_target(settings)
    if target is None:
        return
    if dry_run:
        code, text = bmc.describe(target, settings)
        result.add("ipmi", code, text)
        line = f"ipmi: {text}"
        result.report = f"{result.report}\n{line}" if result.report else f"{result.host}: {line}"
        return
    if any(step.name == "poweroff" and step.ok for step in result.steps):
        bmc.confirm_off(settings, target, result.add)
        for step in result.steps:
            if step.name == "off":
                step.word = "confirmed by BMC" if step.ok else "NOT confirmed by BMC"
        return
    unreachable = [
        step
        for step in result.steps
        if step.name in ("connect", "poweroff") and step.exit_code == ExitCode.CONNECTION
    ]
    if unreachable:
        bmc.press_power_button(settings, target, result.add)
        for step in result.steps:
            if step.name == "poweroff" and step.ok and "BMC" in step.detail:
                step.word = "ok (BMC)"


def _reconnect(settings: Settings) -> RemoteHost | None:
    remote = RemoteHost(settings)
    try:
        remote.open()
    except EsxiSuspendError as exc:
        log.error("host %s: reconnect failed: %s", settings.host, one_line(exc))
        return None
    return remote


def restart_local(settings: RestartSettings, dry_run: bool) -> tuple[ExitCode, str]:
    """Restart the NUT monitor (in a dry run: only find out how); never raises."""
    try:
        plan = plan_restart(settings)
        if dry_run:
            text = f"would run {plan.describe()} (dry run; not run)"
            log.info("local: %s", text)
            return ExitCode.OK, text
        log.info("local: restarting the NUT monitor: %s", plan.describe())
        text = run_restart(plan)
    except EsxiSuspendError as exc:
        _log_error(exc, prefix="local: ")
        return exc.exit_code, "FAILED"
    log.info("local: NUT monitor restart done: %s", text)
    return ExitCode.OK, f"ok ({text})"


def _log_error(exc: BaseException, prefix: str = "") -> None:
    for line in str(exc).splitlines():
        log.error("%s%s", prefix, line.rstrip())
