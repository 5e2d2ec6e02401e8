"""What `--help` and the man page say: the texts, the settings table, a formatter that wraps
them at spaces only. Kept apart from the parser so the man page tool reads the same words."""

from __future__ import annotations

import argparse
import re
import shutil
import textwrap

from esxi_suspend.errors import ExitCode
from esxi_suspend.settings.model import DEFAULT_ENV_FILE, DEFAULT_KNOWN_HOSTS, ENV_FILE_VARIABLE

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

# Every setting of settings.KNOWN_KEYS: (key, default, meaning), as README's Configuration table
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
        "seconds before we read the host's log again when its reader ended on its own (the "
        "log streams while the session lasts)",
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
    (
        "UPS_CLEAR_FSD",
        "auto",
        "when power is back but this machine's upsd keeps the FSD flag a primary upsmon set "
        "(a monitor restarted then would shut down again): `auto` restarts NUT's server "
        "(nut-server.service, or `service nut-server restart`), `none` waits for you to, or a "
        "command line that restarts upsd",
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
