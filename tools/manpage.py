"""Generate esxi-suspend.8 from the same text as `--help` (cli.build_parser).

    python tools/manpage.py > esxi-suspend.8

tests/unit/test_manpage.py checks the committed page equals this output. The help of each
command is formatted at a fixed width (TEXT_WIDTH), so the page does not depend on the terminal
it was made on, and with man's indent of 7 columns it fits an 80-column terminal. SETTINGS
comes from settings/catalog.py, where each setting is written once; EXAMPLES is written here.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from esxi_suspend import __version__
from esxi_suspend.cli import build_parser
from esxi_suspend.settings.catalog import SETTINGS
from esxi_suspend.settings.model import DEFAULT_ENV_FILE, ENV_FILE_VARIABLE

TEXT_WIDTH = 72  # the help text's width; man indents it by 7
USAGE = "usage: "

SETTINGS_INTRO = f"""\
The env file (`{DEFAULT_ENV_FILE}`, else `--env-file PATH` or `${ENV_FILE_VARIABLE}`) is a \
dotenv file: `KEY=value` a line, `#` starts a comment; a value with spaces, `#` or quotes goes \
in single quotes. It is read as is: no `${{...}}` expansion, nothing exported to other \
programs. Keep it mode 0600 (a warning says so otherwise; the same for the key file). \
`install.sh` writes a template with every setting commented out at its default. \
`esxi-suspend check` reports every problem in the file together, each with the file and \
the key."""

# (what it does, the command lines): the page's EXAMPLES section.
EXAMPLES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "Try the real shutdown path against a simulated ESXi host on 127.0.0.1: no host "
        "needed, nothing changed. `-v` also shows each command sent to the host.",
        ("esxi-suspend demo", "esxi-suspend demo --strategy parallel -v"),
    ),
    (
        "Pin the host key of esxi1.example.lan: compare the fingerprint it shows with the "
        "host's console, then answer yes (it also sets ESXI_HOST in the env file if unset).",
        ("esxi-suspend trust esxi1.example.lan",),
    ),
    (
        "Authorize our key on the host: asks the password once, stores nothing, then logs in "
        "with the key to prove it works.",
        ("esxi-suspend enroll esxi1.example.lan",),
    ),
    (
        "Prove the shutdown path without changing anything: connect, read the VMs and print "
        "the plan. Exit status 0: the real run has all it needs.",
        ("esxi-suspend check",),
    ),
    (
        "The same through the command upsmon runs, with more detail on stderr; a second "
        "settings file for a test host.",
        (
            "esxi-suspend shutdown --dry-run -v",
            "esxi-suspend check --env-file /etc/esxi-suspend/lab.env",
        ),
    ),
    (
        "In NUT's upsmon.conf (/etc/nut/upsmon.conf on Debian): the line that makes upsmon "
        "run it when the battery runs out (`install.sh --configure-upsmon` writes it); "
        "restart upsmon afterwards (Debian: `systemctl restart nut-monitor`).",
        ('SHUTDOWNCMD "/usr/local/sbin/esxi-suspend shutdown"',),
    ),
)


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _escape(line: str) -> str:
    line = line.replace("\\", "\\e").replace("-", "\\-")  # \-: a minus one can paste
    return "\\&" + line if line.startswith((".", "'")) else line


def _roff_text(text: str) -> str:
    """Text for a no-fill (.nf) block: each line as it is."""
    return "\n".join(_escape(line) for line in text.rstrip("\n").splitlines())


def _roff_filled(text: str) -> str:
    """Running text for groff to fill; `code` in bold, never broken across lines."""

    def bold(code: re.Match[str]) -> str:
        return "\\fB" + code[1].replace(" ", "\\~") + "\\fR"

    return re.sub(r"`([^`]*)`", bold, _escape(" ".join(text.split())))


def _usage(parser: argparse.ArgumentParser) -> str:
    """The usage without `usage: `; its continuation lines moved left to match."""
    lines = parser.format_usage().rstrip("\n").splitlines()
    lines[0] = lines[0].removeprefix(USAGE)
    indent = " " * len(USAGE)
    return "\n".join([lines[0], *(line.removeprefix(indent) for line in lines[1:])])


def _without_usage(help_text: str) -> str:
    return help_text.split("\n\n", 1)[1] if help_text.startswith(USAGE) else help_text


def _settings() -> list[str]:
    out = [".SH SETTINGS", _roff_filled(SETTINGS_INTRO)]
    for setting in SETTINGS:
        default = setting.default_text
        when = "(required)" if default == "required" else f"(default: `{default}`)"
        if default in ("none", "auto"):
            when = f"(default: {default})"
        out += [".TP", _roff_filled(f"`{setting.key}` {when}"), _roff_filled(setting.meaning)]
    return out


def _examples() -> list[str]:
    out = [".SH EXAMPLES"]
    for text, commands in EXAMPLES:
        out += [".PP", _roff_filled(text), ".PP", ".RS", ".nf"]
        out += [_roff_text(command) for command in commands]
        out += [".fi", ".RE"]
    return out


def render() -> str:
    os.environ["COLUMNS"] = str(TEXT_WIDTH + 2)  # argparse keeps a right margin of 2
    parser = build_parser()
    commands = _subparsers(parser)
    out = [
        f'.TH ESXI-SUSPEND 8 "" "esxi-suspend {__version__}" "System Administration"',
        ".nh",
        ".ad l",
        ".SH NAME",
        "esxi\\-suspend \\- shut VMware ESXi hosts down over SSH when the UPS battery runs out",
        ".SH SYNOPSIS",
        ".nf",
        _roff_text(_usage(parser)),
        *(_roff_text(_usage(sub)) for sub in commands.values()),
        ".fi",
        ".SH DESCRIPTION",
        ".nf",
        _roff_text(_without_usage(parser.format_help())),
        ".fi",
        ".SH COMMANDS",
    ]
    for name, sub in commands.items():
        out += [".SS " + name, ".nf", _roff_text(sub.format_help()), ".fi"]
    out += _settings()
    out += _examples()
    out += [
        ".SH SEE ALSO",
        "upsmon(8), upsmon.conf(5), ssh\\-keygen(1), sshd(8)",
        "",
    ]
    return "\n".join(out)


if __name__ == "__main__":
    sys.stdout.write(render())
