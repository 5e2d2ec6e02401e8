"""The command line: the parser, and `main`, which never lets a traceback out.

The run itself (settings, hosts, outage, local restart, exit code) is runner.py's; the help
texts are helptext.py's.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from esxi_suspend import __version__, clock, daily, logs
from esxi_suspend.errors import ExitCode
from esxi_suspend.helptext import DESCRIPTION, EPILOG, WAKE_EPILOG, HelpFormatter
from esxi_suspend.nut import powerback
from esxi_suspend.power import wake
from esxi_suspend.runner import run
from esxi_suspend.settings.model import DEFAULT_ENV_FILE, ENV_FILE_VARIABLE
from esxi_suspend.setup import commands as setup_commands

log = logging.getLogger("esxi_suspend")


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
            "inventory took and what it leaves of ESXI_DEADLINE. It rehearses on the host, "
            "read-only: the host's busybox version and each applet we need, a few timed "
            "vim-cmd calls, a detached job that must outlive its SSH session, and the host "
            "script itself with a stand-in (an echo) for every vim-cmd vmsvc/power.*, autostop "
            "and poweroff, run by the host's own shell; each probe that fails makes it NOT "
            "ready, with the fix, and the time it added is printed. It shows our key's "
            "restrictions as the host has them (its line in the host's authorized keys, read "
            "only), and says when the key is unrestricted, with the `esxi-suspend enroll` "
            "line that fixes it. With --daily (the job install.sh sets up: a systemd timer, "
            "else /etc/cron.daily/esxi-suspend) it prints nothing when ready; when not, one "
            "WARNING to syslog and the reasons printed (cron mails them); it does nothing "
            "while a shutdown runs or the UPS is on battery. CHANGES: nothing."
        ),
        epilog=EPILOG,
        formatter_class=formatter,
    )
    check.add_argument("--env-file", metavar="PATH", help=env_help)
    check.add_argument(
        "--daily",
        action="store_true",
        help="the daily job's check: silent when ready; else one WARNING to syslog and the "
        "reasons printed; nothing while a shutdown runs or the UPS is on battery",
    )
    check.add_argument(
        "--capture",
        metavar="FILE",
        help="also write what each host printed, the probes' results and the timings to FILE "
        "(JSON, mode 0600): attach it to a bug report; `demo --fleet FILE` replays it",
    )
    check.add_argument(
        "--anonymize",
        action="store_true",
        help="with --capture: VM names become vm-ID; annotations, UUIDs and host names go",
    )
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
        help="power hosts back on by their BMC (ESXI_IPMI_HOST) or Wake-on-LAN (ESXI_WOL_MAC)",
        description=(
            "Power HOST, or every ESXI_HOST entry with a BMC or an ESXI_WOL_MAC, back on, as "
            "a shutdown run does by itself when the UPS is back online. A host with a BMC "
            "(ESXI_IPMI_HOST) is powered on by ipmitool if its power state is off, then its "
            "SSH port is waited for (ESXI_BOOT_WAIT); a host on is left alone. The others get "
            "Wake-on-LAN magic packets (UDP, to ESXI_WOL_BROADCAST port ESXI_WOL_PORT); a "
            "host with neither is skipped with one line. A packet sent is not a host up: its "
            "firmware and NIC must have Wake-on-LAN enabled. CHANGES: powers the hosts on."
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
    power_back = commands.add_parser(
        powerback.COMMAND,
        help="the wake after an outage, once power is steady (`shutdown` starts it)",
        description=(
            "Started by `shutdown`, detached, when power is back after an outage: waits until "
            "the UPS has been on line UPS_WAKE_STEADY s and the battery holds UPS_WAKE_CHARGE "
            "%% (and enough battery.runtime for another shutdown), at most UPS_WAKE_LIMIT s, "
            "then wakes the hosts named in /run/esxi-suspend/outage.json. A new outage "
            "meanwhile cancels it. Not meant to be run by hand: `wake` wakes at once. "
            "CHANGES: powers the hosts on."
        ),
        epilog=WAKE_EPILOG,
        formatter_class=formatter,
    )
    power_back.add_argument("--env-file", metavar="PATH", help=env_help)
    power_back.add_argument(
        "--token", required=True, help="the pending wake the outage record names"
    )
    power_back.add_argument(
        "-v", "--verbose", action="count", default=0, help="more on stderr (-vv: debug)"
    )
    setup_commands.add_parsers(commands, env_help)  # trust, enroll, install: never for upsmon
    for sub in commands.choices.values():  # setup's too: every --help wraps the same way
        sub.formatter_class = formatter
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, run, and map every outcome to an ExitCode; never lets a traceback out."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse: usage error (2) or --help/--version (0)
        return int(exc.code) if isinstance(exc.code, int) else ExitCode.USAGE
    if args.command == "demo":  # the simulator is imported only here, never by `shutdown`
        from esxi_suspend.demo import command as demo

        return demo.run(
            args.fleet, args.dry_run, args.time_scale, args.strategy, verbose=args.verbose > 0
        )
    logs.setup(args.verbose)
    try:
        if args.command in setup_commands.COMMANDS:
            return int(setup_commands.run(args))
        if args.command == "wake":
            code = wake.run(args.env_file, args.host, args.dry_run)
            if not args.dry_run:  # hosts woken by hand: no pending wake after power back
                powerback.woken_by_hand(args.host)
            return int(code)
        if args.command == powerback.COMMAND:
            return int(powerback.run(args.env_file, args.token))
        if args.command == "check" and args.daily:
            return int(daily.run_daily(args.env_file))
        dry_run = args.command == "check" or args.dry_run
        if args.command == "check" and args.anonymize and not args.capture:
            print("esxi-suspend check: --anonymize needs --capture FILE", file=sys.stderr)
            return int(ExitCode.USAGE)
        capture = args.capture if args.command == "check" else None
        anonymize = args.command == "check" and args.anonymize
        return int(run(args.env_file, dry_run, clock.process_started(), capture, anonymize))
    except Exception as exc:  # a bug: full traceback to syslog, one line to stderr
        log.critical("internal error (please report it): %s", exc, exc_info=True)
        return int(ExitCode.INTERNAL)


def main_exit() -> None:
    sys.exit(main())
