"""Generate esxi-suspend.8 from the same text as `--help` (cli.build_parser).

    python tools/manpage.py > esxi-suspend.8

tests/unit/test_manpage.py checks the committed page equals this output. The help of each
command is formatted at a fixed width of 80 columns, so the page does not depend on the
terminal it was made on.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from esxi_suspend import __version__
from esxi_suspend.cli import build_parser


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _roff_text(text: str) -> str:
    lines = []
    for line in text.rstrip("\n").splitlines():
        line = line.replace("\\", "\\e")
        if line.startswith((".", "'")):
            line = "\\&" + line
        lines.append(line)
    return "\n".join(lines)


def render() -> str:
    os.environ["COLUMNS"] = "80"
    parser = build_parser()
    out = [
        f'.TH ESXI-SUSPEND 8 "" "esxi-suspend {__version__}" "System Administration"',
        ".SH NAME",
        "esxi-suspend \\- shut VMware ESXi hosts down over SSH when the UPS battery runs out",
        ".SH SYNOPSIS",
        ".nf",
        _roff_text(parser.format_usage().replace("usage: ", "")),
    ]
    commands = _subparsers(parser)
    for parser_ in commands.values():
        out.append(_roff_text(parser_.format_usage().replace("usage: ", "")))
    out += [".fi", ".SH DESCRIPTION", ".nf", _roff_text(parser.format_help()), ".fi"]
    out.append(".SH COMMANDS")
    for name, sub in commands.items():
        out += [".SS " + name, ".nf", _roff_text(sub.format_help()), ".fi"]
    out += [
        ".SH SEE ALSO",
        "upsmon(8), upsmon.conf(5), ssh\\-keygen(1), sshd(8)",
        "",
    ]
    return "\n".join(out)


if __name__ == "__main__":
    sys.stdout.write(render())
