"""The simulated `sh`'s commands: its builtins, the busybox applets our scripts use, and ESXi's
own programs (vimcmd.py, esxcli.py). Each takes its arguments and the Context it runs in,
returns a status.

    :  true  false  echo [-n]  trap (accepted, does nothing)  exit [N]  return [N]  break
    continue
    read -r NAME...  test / [ ] (-z -n -f -d -e -x = != -eq -ne -lt -le -gt -ge, a leading !)
    command -v NAME  wait [ID...]  kill [-0] ID...  sh -c STRING [NAME [ARG...]]  sh FILE
    nohup / setsid PROGRAM...  and the busybox applets of applets.py
    vim-cmd  esxcli (vm process list)  vmware  poweroff  shutdown.sh  busybox (its version
    line, as 8.0.3's)

Any other form of these, and the ash builtins in UNSUPPORTED, exit 2 saying so; any other
name is `sh: NAME: not found`, exit 127, and so are the fleet's `missing_commands` (a 4.x-like
busybox; a host without esxcli). The fleet's `arg_limit` refuses a longer `sh -c STRING`;
its `script_dies_after` kills an `sh FILE` that far in, with its jobs.
"""

from __future__ import annotations

import math
import re
from dataclasses import replace
from typing import Callable

from esxi_suspend.simulator import esxcli, vimcmd
from esxi_suspend.simulator.host import Interrupted
from esxi_suspend.simulator.shell.applets import APPLETS, DIRECTORY
from esxi_suspend.simulator.shell.state import (
    BreakSignal,
    Child,
    Context,
    ContinueSignal,
    Frame,
    ReturnSignal,
    ShellExit,
    command_line,
    host_path,
    refuse,
)
from esxi_suspend.simulator.shell.syntax import is_name

TOO_LARGE = "File too large"  # what a host's sh answered a command line it would not take
PATH_DIRS = ("/bin/", "/sbin/", "/usr/bin/", "/usr/sbin/", "/usr/lib/vmware/bin/")
# Where `command -v` says each program lives; builtins answer with their own name.
COMMANDS = {
    "vim-cmd": "/bin/vim-cmd",
    "esxcli": "/bin/esxcli",
    "vmware": "/bin/vmware",
    "poweroff": "/sbin/poweroff",
    "shutdown.sh": "/sbin/shutdown.sh",
    "sh": "/bin/sh",
    "nohup": "/bin/nohup",
    "setsid": "/bin/setsid",
    "sleep": "/bin/sleep",
    "cat": "/bin/cat",
    "rm": "/bin/rm",
    "grep": "/bin/grep",
    "date": "/bin/date",
    "tail": "/usr/bin/tail",
    "mkdir": "/bin/mkdir",
    "rmdir": "/bin/rmdir",
    "busybox": "/bin/busybox",
}
BUILTINS = (
    "echo", "true", "false", ":", "trap", "command", "exit", "return", "break", "read", "test",
    "[", "wait", "kill", "continue",
)  # fmt: skip
COMMANDS.update((name, name) for name in BUILTINS)
# busybox ash builtins the simulator does not have: exit 2 and say so, rather than 127
UNSUPPORTED = frozenset({
    ".", "[[", "alias", "bg", "cd", "eval", "exec", "export", "fg", "getopts", "hash",
    "jobs", "let", "local", "printf", "readonly", "set", "shift", "source", "type", "ulimit",
    "umask", "unset",
})  # fmt: skip
Handler = Callable[[list[str], Context], int]
_BLANKS = " \t"


def program_name(word: str) -> str | None:
    """`poweroff`, `/sbin/poweroff` → `poweroff`; an unknown path → None."""
    if "/" not in word:
        return word
    for directory in PATH_DIRS:
        if word.startswith(directory) and word[len(directory) :] in COMMANDS:
            return word[len(directory) :]
    return None


def run_program(argv: list[str], ctx: Context) -> int:
    """A builtin or a program (functions are the interpreter's): 127 when there is none."""
    name = program_name(argv[0]) or ""
    if name in ctx.host.fleet.missing_commands:  # a 4.x-like busybox (the fleet's knob)
        ctx.out(2, f"sh: {argv[0]}: not found\n")
        return 127
    handler = HANDLERS.get(name)
    if handler is not None:
        return handler(argv[1:], ctx)
    if name in UNSUPPORTED:
        return refuse(ctx, name)
    ctx.out(2, f"sh: {argv[0]}: not found\n")
    return 127


# -- the shell's own ----------------------------------------------------------------------------
def _echo(args: list[str], ctx: Context) -> int:
    newline = "\n"
    if args and args[0] == "-n":
        args, newline = args[1:], ""
    ctx.out(1, " ".join(args) + newline)
    return 0


def _number(args: list[str], ctx: Context, name: str) -> int:
    if not args:
        return ctx.frame.status
    if len(args) > 1 or not args[0].isdigit():
        raise ShellExit(refuse(ctx, command_line(name, args), f"{name} [N]"))
    return int(args[0]) & 255


def _exit(args: list[str], ctx: Context) -> int:
    raise ShellExit(_number(args, ctx, "exit"))


def _return(args: list[str], ctx: Context) -> int:
    raise ReturnSignal(_number(args, ctx, "return"))


def _break(args: list[str], ctx: Context) -> int:
    if args not in ([], ["1"]):
        return refuse(ctx, command_line("break", args), "break")
    raise BreakSignal


def _continue(args: list[str], ctx: Context) -> int:
    if args not in ([], ["1"]):
        return refuse(ctx, command_line("continue", args), "continue")
    raise ContinueSignal


def _read(args: list[str], ctx: Context) -> int:
    names = args[1:]
    if not args or args[0] != "-r" or not names or not all(is_name(n) for n in names):
        return refuse(ctx, command_line("read", args), "read -r NAME...")
    line = ctx.stdin.readline()
    status = 0 if line is not None and line.endswith("\n") else 1
    rest = (line or "").rstrip("\n").lstrip(_BLANKS)
    for name in names[:-1]:
        end = next((i for i, c in enumerate(rest) if c in _BLANKS), len(rest))
        ctx.frame.variables[name] = rest[:end]
        rest = rest[end:].lstrip(_BLANKS)
    ctx.frame.variables[names[-1]] = rest.rstrip(_BLANKS)  # a CR stays: it is no blank
    return status


_INTEGER_TESTS: dict[str, Callable[[int, int], bool]] = {
    "-eq": lambda a, b: a == b,
    "-ne": lambda a, b: a != b,
    "-lt": lambda a, b: a < b,
    "-le": lambda a, b: a <= b,
    "-gt": lambda a, b: a > b,
    "-ge": lambda a, b: a >= b,
}


def _test(args: list[str], ctx: Context) -> int:
    negate = len(args) >= 2 and args[0] == "!"
    terms = args[1:] if negate else args
    if len(terms) <= 1:
        result = bool(terms and terms[0])
    elif len(terms) == 2 and terms[0] in ("-z", "-n"):
        result = (terms[1] == "") == (terms[0] == "-z")
    elif len(terms) == 2 and terms[0] == "-x":  # ESXi's own programs, at their paths
        name = program_name(terms[1])
        missing = ctx.host.fleet.missing_commands
        result = name is not None and "/" in terms[1] and COMMANDS.get(name) == terms[1]
        result = result and name not in missing
    elif len(terms) == 2 and terms[0] in ("-f", "-d", "-e"):
        text = ctx.host.read_file(host_path(terms[1]))
        is_dir = text == DIRECTORY
        result = text is not None and (terms[0] == "-e" or is_dir == (terms[0] == "-d"))
    elif len(terms) == 3 and terms[1] in ("=", "!="):
        result = (terms[0] == terms[2]) == (terms[1] == "=")
    elif len(terms) == 3 and terms[1] in _INTEGER_TESTS:
        for value in (terms[0], terms[2]):
            if re.fullmatch(r"\s*-?\d+\s*", value) is None:
                ctx.out(2, f"sh: {value}: bad number\n")
                return 2
        result = _INTEGER_TESTS[terms[1]](int(terms[0]), int(terms[2]))
    else:
        return refuse(
            ctx, command_line("test", args), "[ ! ] -z -n -f -d -e -x = != -eq -ne -lt -le -gt -ge"
        )
    return 0 if result != negate else 1


def _bracket(args: list[str], ctx: Context) -> int:
    if not args or args[-1] != "]":
        ctx.out(2, "sh: [: missing ]\n")
        return 2
    return _test(args[:-1], ctx)


def _command_v(args: list[str], ctx: Context) -> int:
    if len(args) != 2 or args[0] != "-v":
        return refuse(ctx, command_line("command", args), "command -v NAME")
    if args[1] in ctx.frame.functions:
        ctx.out(1, f"{args[1]}\n")
        return 0
    name = program_name(args[1])
    if name is None or name not in COMMANDS or name in ctx.host.fleet.missing_commands:
        return 127
    ctx.out(1, f"{COMMANDS[name]}\n")
    return 0


def _wait(args: list[str], ctx: Context) -> int:
    """No ID: every child of this shell, status 0. IDs: each; the last one's status (127 for
    an ID that is no child of this shell)."""
    if not all(a.isdigit() for a in args):
        return refuse(ctx, command_line("wait", args), "wait [ID...]")
    children = ctx.frame.children
    if not args:
        for child in list(children.values()):
            _wait_for(child, ctx)
        return 0
    status = 0
    for arg in args:
        known = children.get(int(arg))
        status = 127 if known is None else _wait_for(known, ctx)
    return status


def _wait_for(child: Child, ctx: Context) -> int:
    ctx.host.sleep(math.inf, ctx.job, until=lambda: child.job.done)
    return 127 if child.status is None else child.status


def _kill(args: list[str], ctx: Context) -> int:
    """`kill -0 ID...`: 0 while every one of those host jobs runs; `kill ID...`: ends them
    (SIGTERM: the job stops at its next wait)."""
    probe = bool(args) and args[0] == "-0"
    ids = args[1:] if probe else args
    if not ids or not all(a.isdigit() for a in ids):
        return refuse(ctx, command_line("kill", args), "kill [-0] ID...")
    status = 0
    for arg in ids:
        with ctx.host.cond:
            job = ctx.host.jobs.get(int(arg))
            if job is not None and not probe:
                job.cancelled = True
                ctx.host.cond.notify_all()
        if job is None:
            ctx.out(2, f"sh: can't kill pid {arg}: No such process\n")
            status = 1
    return status


def _sh(args: list[str], ctx: Context) -> int:
    """`sh -c STRING [NAME [ARG...]]` or `sh FILE [ARG...]`: a new shell process; no
    variable of ours is exported."""
    limit = ctx.host.fleet.arg_limit
    if len(args) >= 2 and args[0] == "-c" and limit and len(args[1].encode()) > limit:
        ctx.out(2, f"/bin/sh: {TOO_LARGE}\n")  # as a host answered a long one-shot command
        return 2
    if len(args) >= 2 and args[0] == "-c":
        frame = Frame(ctx.job.jid, name=args[2] if len(args) > 2 else "sh", args=args[3:])
        return ctx.shell.run_script(args[1], replace(ctx, frame=frame))
    if not args or args[0].startswith("-"):
        return refuse(ctx, command_line("sh", args), "sh -c STRING, sh FILE")
    text = ctx.host.read_file(host_path(args[0]))
    if text is None or text == DIRECTORY:
        ctx.out(2, f"sh: can't open '{args[0]}': No such file or directory\n")
        return 2
    if ctx.host.fleet.script_dies_after is None:
        frame = Frame(ctx.job.jid, name=args[0], args=args[1:])
        return ctx.shell.run_script(text, replace(ctx, frame=frame))
    # The fleet's knob: the script is killed this far in, with every job it started.
    job = ctx.host.new_job(f"sh {args[0]}", ctx.job.session, ctx.job.background, ctx.job.jid)
    ctx.host.kill_after(job, ctx.host.fleet.script_dies_after)
    try:
        frame = Frame(job.jid, name=args[0], args=args[1:])
        return ctx.shell.run_script(text, replace(ctx, frame=frame, job=job))
    except Interrupted:
        if ctx.job.cancelled:
            raise
        ctx.out(2, "Killed\n")
        return 137
    finally:
        ctx.host.end_job(job)


def _wrapper(name: str) -> Handler:
    def run(args: list[str], ctx: Context) -> int:
        if not args:
            ctx.out(2, f"Usage: {name} PROG ARGS\n")
            return 1
        return run_program(args, ctx)

    return run


# What `busybox` alone prints first on an 8.0.3 host (the version; the applets list follows).
BUSYBOX_VERSION = "BusyBox v1.29.3 (2019-02-01 00:00:00 UTC) multi-call binary."


def _busybox(args: list[str], ctx: Context) -> int:
    if args:
        return refuse(ctx, command_line("busybox", args), "busybox")
    ctx.out(1, f"{BUSYBOX_VERSION}\n\nUsage: busybox [function [arguments]...]\n")
    return 0


HANDLERS: dict[str, Handler] = {
    "busybox": _busybox,
    "vim-cmd": lambda a, c: vimcmd.vim_cmd(c.host, c.job, a, c.out),
    "esxcli": lambda a, c: esxcli.esxcli(c.host, c.job, a, c.out),
    "vmware": lambda a, c: vimcmd.vmware(c.host, a, c.out, c.job),
    "poweroff": lambda a, c: vimcmd.poweroff(c.host, c.job),
    "shutdown.sh": lambda a, c: vimcmd.shutdown_sh(c.host, c.job),
    "sh": _sh,
    "nohup": _wrapper("nohup"),
    "setsid": _wrapper("setsid"),
    "echo": _echo,
    "true": lambda a, c: 0,
    ":": lambda a, c: 0,
    "false": lambda a, c: 1,
    "trap": lambda a, c: 0,
    "command": _command_v,
    "exit": _exit,
    "return": _return,
    "break": _break,
    "continue": _continue,
    "read": _read,
    "test": _test,
    "[": _bracket,
    "wait": _wait,
    "kill": _kill,
    **APPLETS,
}
