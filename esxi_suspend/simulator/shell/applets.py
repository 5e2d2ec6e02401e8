"""The busybox applets the simulated `sh` runs for our scripts (besides its builtins and
ESXi's own programs, in commands.py): each takes its arguments and the Context it runs in,
returns a status.

    sleep N  cat [FILE...]  rm [-f] FILE...  date +%s  grep [-q] [-e PATTERN]... [PATTERN] [FILE]
    tail [-n N] [-f] FILE  mkdir DIR  rmdir DIR

A directory is an entry of the host's files holding DIRECTORY (nothing is ever under it).

Any other form exits 2 saying so.
"""

from __future__ import annotations

import math
import re
from typing import Callable

from esxi_suspend.simulator.shell.expand import basic_regex
from esxi_suspend.simulator.shell.state import Context, command_line, host_path, refuse

DIRECTORY = "\0directory"  # the text of a host "file" that is a directory
# Seconds between two looks at the file of `tail -f` (busybox's own: one second).
TAIL_FOLLOW_SECONDS = 1.0


def _sleep(args: list[str], ctx: Context) -> int:
    try:
        seconds = sum(float(a) for a in args) if args else None
    except ValueError:
        seconds = None
    if seconds is None or not math.isfinite(seconds):
        ctx.out(2, f"sleep: invalid number '{' '.join(args)}'\n")
        return 1
    ctx.host.sleep(seconds, ctx.job)
    return 0


def _cat(args: list[str], ctx: Context) -> int:
    status = 0
    for name in args or ["-"]:
        if name == "-":
            ctx.out(1, ctx.stdin.read())
            continue
        text = "" if name == "/dev/null" else ctx.host.read_file(host_path(name))
        if text is None:
            ctx.out(2, f"cat: can't open '{name}': No such file or directory\n")
            status = 1
        else:
            ctx.out(1, text)
    return status


def _rm(args: list[str], ctx: Context) -> int:
    force = any(a.startswith("-") and "f" in a for a in args)
    status = 0
    for name in (a for a in args if not a.startswith("-")):
        with ctx.host.cond:
            if ctx.host.files.pop(host_path(name), None) is None and not force:
                ctx.out(2, f"rm: can't remove '{name}': No such file or directory\n")
                status = 1
    return status


def _mkdir(args: list[str], ctx: Context) -> int:
    """`mkdir DIR`: fails when DIR exists (atomic: the lock our slots rely on)."""
    if len(args) != 1 or args[0].startswith("-"):
        return refuse(ctx, command_line("mkdir", args), "mkdir DIR")
    path = host_path(args[0])
    with ctx.host.cond:
        if path in ctx.host.files:
            ctx.out(2, f"mkdir: can't create directory '{args[0]}': File exists\n")
            return 1
        ctx.host.files[path] = DIRECTORY
    return 0


def _rmdir(args: list[str], ctx: Context) -> int:
    if len(args) != 1 or args[0].startswith("-"):
        return refuse(ctx, command_line("rmdir", args), "rmdir DIR")
    path = host_path(args[0])
    with ctx.host.cond:
        if ctx.host.files.get(path) != DIRECTORY:
            ctx.out(2, f"rmdir: '{args[0]}': No such file or directory\n")
            return 1
        del ctx.host.files[path]
    return 0


def _date(args: list[str], ctx: Context) -> int:
    if args != ["+%s"]:
        return refuse(ctx, command_line("date", args), "date +%s")
    ctx.out(1, f"{ctx.host.wall_clock()}\n")
    return 0


def _grep(args: list[str], ctx: Context) -> int:
    quiet, patterns, operands = False, [], []
    usage = "grep [-q] [-e PATTERN]... [PATTERN] [FILE]"
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "-q":
            quiet = True
        elif arg == "-e" and i + 1 < len(args):
            patterns.append(args[i + 1])
            i += 1
        elif arg.startswith("-") and arg != "-":
            return refuse(ctx, f"grep {arg}", usage)
        else:
            operands.append(arg)
        i += 1
    if not patterns and operands:
        patterns.append(operands.pop(0))
    if not patterns or len(operands) > 1:
        return refuse(ctx, command_line("grep", args), usage)
    if operands and operands[0] != "-":
        text = ctx.host.read_file(host_path(operands[0]))
        if text is None:
            ctx.out(2, f"grep: {operands[0]}: No such file or directory\n")
            return 2
    else:
        text = ctx.stdin.read()
    regexes = [re.compile(basic_regex(p)) for p in patterns]
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    matched = False
    for line in lines:
        if any(r.search(line) for r in regexes):
            if quiet:
                return 0
            matched = True
            ctx.out(1, line + "\n")
    return 0 if matched else 1


def _tail(args: list[str], ctx: Context) -> int:
    """The last N lines (10 by default); with -f, then what is appended, every second, until
    the host goes down or the session is gone (a write to it would end tail, as SIGPIPE does)."""
    usage = "tail [-n N] [-f] FILE"
    count, follow, files = 10, False, []
    i = 0
    while i < len(args):
        if args[i] == "-f":
            follow = True
        elif args[i] == "-n" and i + 1 < len(args) and args[i + 1].isdigit():
            count = int(args[i + 1])
            i += 1
        elif args[i].startswith("-"):
            return refuse(ctx, command_line("tail", args), usage)
        else:
            files.append(args[i])
        i += 1
    if len(files) != 1:
        return refuse(ctx, command_line("tail", args), usage)
    path = host_path(files[0])
    text = ctx.host.read_file(path)
    if text is None:
        ctx.out(2, f"tail: can't open '{files[0]}': No such file or directory\n")
        return 1
    lines = text.splitlines(keepends=True)
    ctx.out(1, "".join(lines[len(lines) - count :] if count else []))
    sink = ctx.fds.get(1)
    terminal = sink.terminal if sink is not None else None
    seen = len(text)
    while follow:
        ctx.host.sleep(TAIL_FOLLOW_SECONDS, ctx.job)
        if terminal is not None and terminal.closed:
            return 141  # killed by SIGPIPE
        now = ctx.host.read_file(path) or ""
        if len(now) > seen:
            ctx.out(1, now[seen:])
        seen = len(now)
    return 0


APPLETS: dict[str, Callable[[list[str], Context], int]] = {
    "sleep": _sleep,
    "cat": _cat,
    "rm": _rm,
    "grep": _grep,
    "date": _date,
    "tail": _tail,
    "mkdir": _mkdir,
    "rmdir": _rmdir,
}
