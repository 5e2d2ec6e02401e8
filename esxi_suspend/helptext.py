"""What `--help` and the man page say: the texts and a formatter that wraps them at spaces only.
Kept apart from the parser so the man page tool reads the same words; the settings' own texts
are settings/catalog.py's."""

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
