"""The command line, and the only place where errors become exit codes.

Whatever happens on the way, the local NUT monitor restart is attempted last, because it is
what re-arms monitoring when this machine (often a VM on the host) comes back.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import FrameType

from esxi_suspend import __version__, lock, logs, remote
from esxi_suspend.config import (
    DEFAULT_ENV_FILE,
    ENV_FILE_VARIABLE,
    RestartAwareConfigError,
    RestartSettings,
    Settings,
    env_file_path,
    load_settings,
)
from esxi_suspend.errors import EsxiSuspendError, ExitCode
from esxi_suspend.local import plan_restart, run_restart
from esxi_suspend.remote import RemoteHost
from esxi_suspend.shutdown import HostResult, inspect_host, render_plan, shutdown_host

log = logging.getLogger("esxi_suspend")

EXIT_CODES_HELP = "\n".join(
    f"  {code.value:>3}  {text}"
    for code, text in (
        (ExitCode.OK, "everything done (check: the real run has all it needs)"),
        (ExitCode.USAGE, "usage error: nothing was done"),
        (ExitCode.LOCAL_RESTART, "restarting the local NUT monitor failed"),
        (ExitCode.REMOTE_COMMAND, "a command on the host failed or timed out"),
        (ExitCode.CONNECTION, "cannot connect, key refused, or host key unknown/changed"),
        (ExitCode.CONFIG, "env file or key file missing or wrong"),
        (ExitCode.LOCKED, "another run is shutting this host down: this one did nothing"),
        (ExitCode.INTERNAL, "internal error (a bug: please report it)"),
        (ExitCode.TERMINATED, "SIGTERM during the host steps (local restart still run)"),
    )
)

DESCRIPTION = """\
Shut VMware ESXi hosts down cleanly over SSH when the UPS battery runs out.
NUT's upsmon runs `esxi-suspend shutdown` as its SHUTDOWNCMD. On the host it runs
`vim-cmd hostsvc/autostartmanager/autostop`, then `poweroff`; then, whatever happened,
it restarts the local NUT monitor service. `check` proves that path without changing
anything."""

EPILOG = f"""\
files:
  {DEFAULT_ENV_FILE}   settings (or --env-file, or ${ENV_FILE_VARIABLE})
  /etc/esxi-suspend/known_hosts        the pinned host key (ESXI_KNOWN_HOSTS)

exit codes (the worst outcome wins):
{EXIT_CODES_HELP}
"""


def build_parser() -> argparse.ArgumentParser:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="esxi-suspend", description=DESCRIPTION, epilog=EPILOG, formatter_class=formatter
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    env_help = f"settings file (default: ${ENV_FILE_VARIABLE}, else {DEFAULT_ENV_FILE})"

    shutdown = commands.add_parser(
        "shutdown",
        help="stop the VMs and power the host off (what upsmon runs)",
        description=(
            "Run autostop, then poweroff, on the ESXi host; then restart the local NUT "
            "monitor. CHANGES: stops VMs and powers the host off."
        ),
        epilog=EPILOG,
        formatter_class=formatter,
    )
    shutdown.add_argument("--env-file", metavar="PATH", help=env_help)
    shutdown.add_argument(
        "--dry-run", action="store_true", help="prove the path and print the plan; change nothing"
    )
    shutdown.add_argument(
        "-v", "--verbose", action="count", default=0, help="more on stderr (-vv: debug)"
    )

    check = commands.add_parser(
        "check",
        help="same as `shutdown --dry-run`: prove the path, change nothing",
        description=(
            "Connect, authenticate, verify the host key, read the VM inventory and the "
            "autostart sequence, and print what `shutdown` would do. CHANGES: nothing."
        ),
        epilog=EPILOG,
        formatter_class=formatter,
    )
    check.add_argument("--env-file", metavar="PATH", help=env_help)
    check.add_argument(
        "-v", "--verbose", action="count", default=0, help="more on stderr (-vv: debug)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, run, and map every outcome to an ExitCode; never lets a traceback out."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse: usage error (2) or --help/--version (0)
        return int(exc.code) if isinstance(exc.code, int) else ExitCode.USAGE
    logs.setup(args.verbose)
    try:
        return int(run(args.env_file, dry_run=args.command == "check" or args.dry_run))
    except Exception as exc:  # a bug: full traceback to syslog, one line to stderr
        log.critical("internal error (please report it): %s", exc, exc_info=True)
        return int(ExitCode.INTERNAL)


def main_exit() -> None:
    sys.exit(main())


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


def run(env_file: str | None, dry_run: bool) -> ExitCode:
    """Config, host, local restart: each failure recorded, none stopping the next step."""
    with _sigterm_handled() as sigterm:
        return _run(env_file, dry_run, sigterm)


def _run(env_file: str | None, dry_run: bool, sigterm: _Sigterm) -> ExitCode:
    path = env_file_path(env_file)
    mode = "check (dry run: nothing will be changed)" if dry_run else "shutdown"
    log.info("esxi-suspend %s: %s, settings from %s", __version__, mode, path)
    codes: list[ExitCode] = []
    restart_settings = RestartSettings()
    settings: Settings | None = None
    try:
        settings = load_settings(path)
        restart_settings = settings.restart
    except RestartAwareConfigError as exc:
        _log_error(exc)
        codes.append(exc.exit_code)
        restart_settings = exc.restart

    host_result: HostResult | None = None
    if settings is not None and not dry_run:
        try:
            lock.acquire(settings.host, settings.port)
        except lock.HeldElsewhere as exc:
            log.error("%s", exc)
            log.info(
                "summary: host %s: not contacted (locked); exit %d (LOCKED)",
                settings.host,
                ExitCode.LOCKED,
            )
            return ExitCode.LOCKED
    if settings is not None:
        host_result = _run_host_interruptible(settings, dry_run, sigterm)
        codes.append(host_result.exit_code)

    restart_code, restart_text = restart_local(restart_settings, dry_run)
    codes.append(restart_code)
    worst = max(codes)
    host_text = host_result.summary() if host_result else "no host contacted (configuration)"
    log.info(
        "summary: %s; local restart: %s; exit %d (%s)",
        host_text,
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


def _run_host_interruptible(settings: Settings, dry_run: bool, sigterm: _Sigterm) -> HostResult:
    """run_host, stopped at once by SIGTERM: the step under way is recorded as interrupted."""
    if sigterm.received:  # arrived while the settings were read: do not start
        result = HostResult(settings.host)
        result.add("start", ExitCode.TERMINATED, "not contacted: SIGTERM received before")
        return result
    sigterm.interrupting = True
    try:
        return run_host(settings, dry_run)
    except Terminated:
        result = HostResult(settings.host)
        result.add(
            "host steps",
            ExitCode.TERMINATED,
            "SIGTERM received: stopped, nothing more is sent to the host; restarting the "
            f"local NUT monitor, then exiting {int(ExitCode.TERMINATED)}",
        )
        return result
    finally:
        sigterm.interrupting = False


def run_host(settings: Settings, dry_run: bool) -> HostResult:
    result = HostResult(settings.host)
    log.info(
        "host %s: connecting as %s, port %d, key %s, host key pinned in %s",
        settings.host,
        settings.user,
        settings.port,
        settings.key_file,
        settings.known_hosts,
    )
    remote = RemoteHost(settings)
    try:
        remote.open()
    except EsxiSuspendError as exc:
        result.add("connect", exc.exit_code, _one_line(exc))
        return result
    result.add("connect", ExitCode.OK, f"host key {remote.host_key} matches; key accepted")
    try:
        if dry_run:
            plan = inspect_host(remote, settings, result)
            restart = _describe_restart(settings.restart)
            print(render_plan(plan, settings, restart))
        else:
            shutdown_host(remote, settings, result, lambda: _reconnect(settings))
    finally:
        remote.close()
    return result


def _reconnect(settings: Settings) -> RemoteHost | None:
    remote = RemoteHost(settings)
    try:
        remote.open()
    except EsxiSuspendError as exc:
        log.error("host %s: reconnect failed: %s", settings.host, _one_line(exc))
        return None
    return remote


def _describe_restart(settings: RestartSettings) -> str:
    try:
        return plan_restart(settings).describe()
    except EsxiSuspendError as exc:
        return f"nothing: {exc}"


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


def _one_line(exc: BaseException) -> str:
    """A multi-line error (a problem list) as one log line: `header: one; two`."""
    head, *rest = [line.strip(" -") for line in str(exc).splitlines() if line.strip()] or [""]
    return f"{head} {'; '.join(rest)}" if rest else head


def _log_error(exc: BaseException, prefix: str = "") -> None:
    for line in str(exc).splitlines():
        log.error("%s%s", prefix, line.rstrip())
