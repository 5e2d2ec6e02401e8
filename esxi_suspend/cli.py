"""The command line, and the only place where errors become exit codes.

Whatever happens on the way, the local NUT monitor restart is attempted last, because it is
what re-arms monitoring when this machine (often a VM on the host) comes back.
"""

from __future__ import annotations

import argparse
import logging
import re
import shutil
import signal
import sys
import textwrap
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from types import FrameType

from esxi_suspend import (
    __version__,
    clock,
    deadline,
    early,
    lock,
    logs,
    remote,
    setupcli,
    ups,
    wake,
)
from esxi_suspend.config import (
    DEFAULT_ENV_FILE,
    DEFAULT_KNOWN_HOSTS,
    ENV_FILE_VARIABLE,
    RestartAwareConfigError,
    RestartSettings,
    Settings,
    Validation,
    env_file_path,
    load_settings,
    validate,
)
from esxi_suspend.errors import EsxiSuspendError, ExitCode, one_line
from esxi_suspend.local import plan_restart, run_restart
from esxi_suspend.outage import Outage
from esxi_suspend.remote import RemoteHost
from esxi_suspend.shutdown import HostResult, check_host, shutdown_host

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

NUT's upsmon runs `esxi-suspend shutdown` as its SHUTDOWNCMD. On each host it reads the
VMs, then starts a shutdown sequence on the host that drives itself, detached from our
session: VMs stopped cleanly (guest shutdown, else suspend), by autostop or all at once
(ESXI_STRATEGY), then the host powered off within ESXI_DEADLINE, counted from upsmon's call.
Then, whatever happened, it restarts the local NUT monitor service. `check` proves that path
without changing anything."""

EPILOG = f"""\
files:
  {DEFAULT_ENV_FILE}   settings (or --env-file, or ${ENV_FILE_VARIABLE}); each
                                       one is described in `man esxi-suspend`
  {DEFAULT_KNOWN_HOSTS}        the pinned host key (ESXI_KNOWN_HOSTS)

exit codes (the worst outcome wins):
{EXIT_CODES_HELP}
"""

# Every setting of config.KNOWN_KEYS: (key, default, meaning), as README's Configuration table
# says; the man page's SETTINGS section is made from it (tools/manpage.py), and a test checks
# it names every key with config's defaults.
SETTINGS_HELP: tuple[tuple[str, str, str], ...] = (
    (
        "ESXI_HOST",
        "required",
        "the ESXi host(s): `[user@]host[:port]`, several separated by commas "
        "(`ESXIHOST` is accepted too)",
    ),
    ("ESXI_USER", "root", "login on the host (`ESXIUSER` is accepted too)"),
    ("ESXI_PORT", "22", "SSH port"),
    ("ESXI_KEY_FILE", "required", "absolute path of the private key (ed25519, ecdsa or rsa)"),
    ("ESXI_KEY_PASSPHRASE", "none", "the key's passphrase, if it has one; never logged"),
    (
        "ESXI_KNOWN_HOSTS",
        str(DEFAULT_KNOWN_HOSTS),
        "the pinned host key, OpenSSH format (`[host]:port` when the port is not 22)",
    ),
    (
        "ESXI_CONNECT_TIMEOUT",
        "10",
        "seconds for name lookup, TCP connect, SSH handshake and login, each",
    ),
    ("ESXI_COMMAND_TIMEOUT", "300", "seconds any one remote command of ours may take"),
    (
        "ESXI_STRATEGY",
        "autostop",
        "`autostop`: ESXi's autostop, after our own clean stop of every VM it would hard power "
        "off; `parallel`: every VM at once",
    ),
    (
        "ESXI_DEADLINE",
        "240",
        "seconds from upsmon's call (our start-up and the inventory included) to the host "
        "poweroff: the host sequence gets what is left, budgets are cut to fit, what still "
        "runs near the end is suspended, and a watchdog on the host powers it off at the "
        "deadline; `auto`: the UPS's `battery.runtime` when we are called, minus "
        "UPS_RUNTIME_MARGIN (the smallest of several UPSes; 240 when no UPS reports it)",
    ),
    (
        "ESXI_VM_ORDER",
        "none",
        "`parallel` only: groups stopped one after another, e.g. `web1,web2; db1; nas` "
        "(names or ids; unlisted VMs stop with the first group)",
    ),
    (
        "ESXI_STOP_ACTIONS",
        "shutdown,suspend,poweroff",
        "order of preference for a VM's own stop: guest shutdown (only with VMware Tools "
        "running), suspend; `poweroff` only when neither is allowed",
    ),
    (
        "ESXI_STRAGGLER_ACTION",
        "suspend",
        "what VMs still running at the end get: `suspend`, or `poweroff` (left to the host's "
        "poweroff)",
    ),
    (
        "ESXI_SELF_VM",
        "auto",
        "this machine's VM on the host (name or id), stopped last, by suspend; found by its "
        "SMBIOS UUID when this is a VMware VM",
    ),
    (
        "ESXI_POLL_INTERVAL",
        "2",
        "seconds between two looks at the host while we follow its sequence",
    ),
    (
        "ESXI_WOL_MAC",
        "none",
        "Wake-on-LAN, to power hosts back on when mains returns (or by `esxi-suspend wake`): "
        "`host=MAC` for each host to wake, the host as in ESXI_HOST, the MAC its NIC's, e.g. "
        "`esxi1=aa:bb:cc:dd:ee:ff, esxi2=AA-BB-CC-DD-EE-01`; a host left out is not woken",
    ),
    (
        "ESXI_WOL_BROADCAST",
        "255.255.255.255",
        "where the magic packets go: an IPv4 address, the broadcast address of the hosts' "
        "network (e.g. `192.168.1.255`); `host=address` entries set one host's, e.g. "
        "`192.168.1.255, esxi3=10.0.3.255`",
    ),
    ("ESXI_WOL_PORT", "9", "UDP port of the magic packets (usually 9, the discard port, or 7)"),
    (
        "UPS_SERVICE",
        "auto",
        "local NUT monitor to restart: `auto` (with systemd, nut-monitor.service else "
        "nut-client.service, restarted with `systemctl --no-block`; without systemd, "
        "`service nut-client restart` or `service ups restart`), a service name, or `none`",
    ),
    (
        "UPS_RESTART_COMMAND",
        "none",
        "a full command line run instead of the service restart (split into words, no shell)",
    ),
    (
        "UPS_NAME",
        "auto",
        "the UPS(es) whose status says when to restart the NUT monitor: `auto` (the MONITOR "
        "lines of upsmon.conf, in $NUT_CONFPATH, /etc/nut or /etc/ups), `ups@host[:port]`, "
        "several separated by commas (on battery if any is), or `none` (restart at once)",
    ),
    (
        "UPS_POLL_INTERVAL",
        "5",
        "seconds between two looks at the UPS status (`upsc`) while a shutdown run waits for "
        "power to come back before it restarts the NUT monitor",
    ),
    (
        "UPS_WAIT_LIMIT",
        "86400",
        "seconds a shutdown run waits at most for power to come back; then it restarts the "
        "NUT monitor anyway",
    ),
    (
        "UPS_RUNTIME_MARGIN",
        "30",
        "`ESXI_DEADLINE=auto` only: seconds of battery kept back from the UPS's estimate "
        "(estimates drift as the battery ages)",
    ),
    (
        "UPS_EARLY_SHUTDOWN",
        "300",
        "seconds on battery before the shutdown starts, by NUT's upssched (install.sh "
        "--configure-upsmon writes it into upssched.conf; `check` compares); `0`: only at low "
        "battery (OB LB)",
    ),
)

WAKE_EPILOG = f"""\
files:
  {DEFAULT_ENV_FILE}   settings (or --env-file, or ${ENV_FILE_VARIABLE})

exit codes (the worst outcome wins):
  {ExitCode.OK:>3}  every packet sent (hosts without ESXI_WOL_MAC skipped), or dry run
  {ExitCode.USAGE:>3}  usage error, or HOST is not in ESXI_HOST: nothing sent
  {ExitCode.CONNECTION:>3}  a packet could not be sent (network error); the other hosts got theirs
  {ExitCode.CONFIG:>3}  env file wrong, or HOST (or every host) has no usable ESXI_WOL_MAC
  {ExitCode.INTERNAL:>3}  internal error (a bug: please report it)
"""

HELP_WIDTH = 80  # --help is never wider, whatever the terminal
_MIN_TEXT = 30  # a table row's text column needs this much room, else it goes under its term
_TABLE_ROW = re.compile(r"( +)(\S+(?: \S+)*) {2,}(\S.*)")


def _wrap(text: str, width: int, first: str = "", hang: str = "") -> list[str]:
    return textwrap.wrap(
        text,
        width,
        initial_indent=first,
        subsequent_indent=hang,
        break_on_hyphens=False,  # /etc/esxi-suspend/... stays whole
        break_long_words=False,
    )


def reflow(text: str, width: int) -> list[str]:
    """Refill `text` to `width`, keeping its shape; only spaces ever break a line.

    The shapes: paragraphs at the margin; a `heading:` line at the margin followed by indented
    lines; indented paragraphs; and table rows, `  TERM  text` (two spaces or more after TERM),
    whose text goes on in lines indented to its first word.
    """
    lines = text.splitlines()
    out: list[str] = []
    first = hang = ""  # the open block: its first line's prefix, the others' indent
    column = -1  # how far the open block's source lines are indented
    words: list[str] = []

    def close() -> None:
        out.extend(_wrap(" ".join(words), width, first, hang))
        words.clear()

    for number, line in enumerate(lines):
        line = line.rstrip()
        lead = len(line) - len(line.lstrip(" "))
        following = lines[number + 1] if number + 1 < len(lines) else ""
        if not line:
            close()
            out.append("")
        elif lead == 0 and line.endswith(":") and following.startswith(" "):
            close()
            out.append(line)
        elif words and lead == column:
            words.extend(line.split())
        else:
            close()
            row = _TABLE_ROW.fullmatch(line) if lead else None
            if row is None:
                first = hang = " " * lead
                column = lead
                words.extend(line.split())
                continue
            column = row.start(3)
            first, hang = line[:column], " " * column
            if width - column < _MIN_TEXT:  # too narrow: the text goes under its term
                out.append(first.rstrip())
                first = hang = " " * (lead + 4)
            words.extend(row[3].split())
    close()
    return out


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """`--help` at the terminal's width but never wider than HELP_WIDTH; words stay whole.

    argparse's own formatter breaks words at hyphens (a path across two lines) and the raw one
    never wraps: this one reflows descriptions and epilogs (see `reflow`) and wraps argument
    help at spaces only.
    """

    def __init__(self, prog: str) -> None:
        columns = min(shutil.get_terminal_size().columns, HELP_WIDTH)
        super().__init__(prog, width=columns - 2)  # argparse's own right margin

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return "\n".join(indent + line if line else "" for line in reflow(text, width))

    def _split_lines(self, text: str, width: int) -> list[str]:
        return _wrap(" ".join(text.split()), width)


def build_parser() -> argparse.ArgumentParser:
    formatter = HelpFormatter
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
            "Read each host's VMs, start the shutdown sequence on the host (VM stop actions, "
            "autostop or all at once, then host poweroff, within ESXI_DEADLINE of this call) "
            "and follow its log; then restart the local NUT monitor. CHANGES: stops VMs and "
            "powers the hosts off."
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
            "autostart sequence, and print what `shutdown` would do, with the time the "
            "inventory took and what it leaves of ESXI_DEADLINE. CHANGES: nothing."
        ),
        epilog=EPILOG,
        formatter_class=formatter,
    )
    check.add_argument("--env-file", metavar="PATH", help=env_help)
    check.add_argument(
        "-v", "--verbose", action="count", default=0, help="more on stderr (-vv: debug)"
    )

    demo = commands.add_parser(
        "demo",
        help="run the real shutdown path against a simulated ESXi host (no host needed)",
        description=(
            "Start a simulated ESXi host on 127.0.0.1, run `shutdown` against it as upsmon "
            "would, and print a timeline of what happened to each VM. CHANGES: nothing."
        ),
        epilog=(
            "files:\n  a throwaway key, known_hosts and env file in a temporary directory, "
            "removed at the end;\n  nothing in /etc, nothing sent to syslog\n\n"
            "exit codes: those of `shutdown` (0: the simulated host was shut down cleanly)"
        ),
        formatter_class=formatter,
    )
    demo.add_argument("--fleet", metavar="FILE", help="fleet file (JSON, or TOML on 3.11+)")
    demo.add_argument("--dry-run", action="store_true", help="show the plan only")
    demo.add_argument(
        "--strategy",
        choices=("autostop", "parallel"),
        default="autostop",
        help="ESXI_STRATEGY for the run (default: autostop)",
    )
    demo.add_argument(
        "--time-scale", type=float, default=0.01, help="real seconds per simulated second"
    )
    demo.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="also show each command sent to the host (the exec: lines)",
    )
    wake_command = commands.add_parser(
        "wake",
        help="power hosts back on by Wake-on-LAN (ESXI_WOL_MAC)",
        description=(
            "Send Wake-on-LAN magic packets (UDP, to ESXI_WOL_BROADCAST port ESXI_WOL_PORT) "
            "to HOST, or to every ESXI_HOST entry that has an ESXI_WOL_MAC, as a shutdown "
            "run does by itself when the UPS is back online. A host without one is skipped "
            "with one line. A packet sent is not a host up: its firmware and NIC must have "
            "Wake-on-LAN enabled. CHANGES: powers the hosts on."
        ),
        epilog=WAKE_EPILOG,
        formatter_class=formatter,
    )
    wake_command.add_argument(
        "host",
        metavar="HOST",
        nargs="?",
        help="one ESXI_HOST entry, as [user@]host[:port] (default: every host with a MAC)",
    )
    wake_command.add_argument("--env-file", metavar="PATH", help=env_help)
    wake_command.add_argument(
        "--dry-run", action="store_true", help="say what would be sent; send nothing"
    )
    wake_command.add_argument(
        "-v", "--verbose", action="count", default=0, help="more on stderr (-vv: debug)"
    )
    setupcli.add_parsers(commands, env_help)  # trust, enroll: setting up, never for upsmon
    for sub in commands.choices.values():  # setupcli's too: every --help wraps the same way
        sub.formatter_class = formatter
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, run, and map every outcome to an ExitCode; never lets a traceback out."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse: usage error (2) or --help/--version (0)
        return int(exc.code) if isinstance(exc.code, int) else ExitCode.USAGE
    if args.command == "demo":  # the simulator is imported only here, never by `shutdown`
        from esxi_suspend import demo

        return demo.run(
            args.fleet, args.dry_run, args.time_scale, args.strategy, verbose=args.verbose > 0
        )
    logs.setup(args.verbose)
    try:
        if args.command in setupcli.COMMANDS:
            return int(setupcli.run(args))
        if args.command == "wake":
            return int(wake.run(args.env_file, args.host, args.dry_run))
        dry_run = args.command == "check" or args.dry_run
        return int(run(args.env_file, dry_run, called_at=clock.process_started()))
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


def run(env_file: str | None, dry_run: bool, called_at: float | None = None) -> ExitCode:
    """Config, hosts, local restart: each failure recorded, none stopping the next step.

    `called_at` (`clock.now()`): when upsmon called us; by default, when the settings
    are read. ESXI_DEADLINE counts from it.
    """
    with _sigterm_handled() as sigterm:
        return _run(env_file, dry_run, sigterm, called_at)


def _run(
    env_file: str | None, dry_run: bool, sigterm: _Sigterm, called_at: float | None
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
    # machine already powered off in it are not contacted again (see ups.py)
    outage = Outage(restart_settings) if not dry_run else None
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
    """One host, from connect to poweroff (or the dry run's report); never raises."""
    try:
        _run_host(settings, dry_run, result)
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
            check_host(session, settings, result)
        else:
            shutdown_host(session, settings, result, lambda: _reconnect(settings))
    finally:
        session.close()


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
