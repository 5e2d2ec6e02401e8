"""The simulated host's `sh`: the subset of busybox ash that our commands and ESXi scripts use.

Supported: `;`, `&&`, `||`, newlines, a trailing `&` (a background job that outlives its SSH
session), single and double quotes, backslash escapes, `#` comments, redirections (`> F`,
`>> F`, `2> F`, `2>&1`, `>&2`, `< F`; files live in the host's in-memory file system,
`/dev/null` discards), `$?`, `$$`, `$!` and `$NAME`/`${NAME}` (no word splitting), and the
commands in `COMMANDS`. Not supported (exit 2, said on stderr): pipes, command substitution,
globbing, `if`/loops. Anything else is `sh: NAME: not found`, exit 127.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Callable, Protocol

from esxi_suspend.simulator import vimcmd
from esxi_suspend.simulator.host import HostDown, HostModel, Interrupted, Job

PATH_DIRS = ("/bin/", "/sbin/", "/usr/bin/", "/usr/sbin/", "/usr/lib/vmware/bin/")
# Where `command -v` says each program lives; builtins answer with their own name.
COMMANDS = {
    "vim-cmd": "/bin/vim-cmd",
    "vmware": "/bin/vmware",
    "poweroff": "/sbin/poweroff",
    "shutdown.sh": "/sbin/shutdown.sh",
    "sh": "/bin/sh",
    "nohup": "/bin/nohup",
    "setsid": "/bin/setsid",
    "sleep": "/bin/sleep",
    "cat": "/bin/cat",
    "rm": "/bin/rm",
    "echo": "echo",
    "true": "true",
    "false": "false",
    "trap": "trap",
    "command": "command",
    "exit": "exit",
    ":": ":",
}


class ShellSyntaxError(Exception):
    pass


class Terminal(Protocol):
    """The SSH channel of one exec request, as the shell sees it."""

    def write(self, fd: int, text: str) -> None: ...

    def hold(self) -> None: ...  # a background job keeps the channel's stdout open

    def release(self) -> None: ...


# -- output sinks -----------------------------------------------------------------------------
class Sink:
    def write(self, text: str) -> None:
        raise NotImplementedError

    @property
    def terminal(self) -> Terminal | None:
        return None


class NullSink(Sink):
    def write(self, text: str) -> None:
        return


@dataclass
class TerminalSink(Sink):
    term: Terminal
    fd: int

    def write(self, text: str) -> None:
        self.term.write(self.fd, text)

    @property
    def terminal(self) -> Terminal | None:
        return self.term


@dataclass
class FileSink(Sink):
    host: HostModel
    path: str

    def write(self, text: str) -> None:
        self.host.write_file(self.path, text, append=True)


# -- tokens and syntax ------------------------------------------------------------------------
@dataclass(frozen=True)
class Part:
    text: str
    expand: bool  # not single-quoted: $ expansions apply


@dataclass
class Word:
    parts: list[Part] = field(default_factory=list)


@dataclass(frozen=True)
class Op:
    value: str  # ; && || & | newline


@dataclass(frozen=True)
class Redir:
    fd: int
    op: str  # > >> < >& <&
    target: Word | None = None


@dataclass
class Command:
    words: list[Word] = field(default_factory=list)
    redirs: list[Redir] = field(default_factory=list)


@dataclass
class AndOr:
    first: Command
    rest: list[tuple[str, Command]] = field(default_factory=list)
    background: bool = False


def tokenize(text: str) -> list[Word | Op | Redir]:
    tokens: list[Word | Op | Redir] = []
    word: Word | None = None
    literal = ""
    i = 0

    def flush_literal(expand: bool = True) -> None:
        nonlocal literal, word
        if literal:
            word = word or Word()
            word.parts.append(Part(literal, expand))
            literal = ""

    def end_word() -> None:
        nonlocal word
        flush_literal()
        if word is not None:
            tokens.append(word)
            word = None

    while i < len(text):
        ch = text[i]
        if ch in " \t":
            end_word()
            i += 1
        elif ch == "#" and word is None and not literal:
            while i < len(text) and text[i] != "\n":
                i += 1
        elif ch == "'":
            flush_literal()
            end = text.find("'", i + 1)
            if end < 0:
                raise ShellSyntaxError("unterminated quoted string")
            word = word or Word()
            word.parts.append(Part(text[i + 1 : end], False))
            i = end + 1
        elif ch == '"':
            flush_literal()
            i += 1
            buf = ""
            while True:
                if i >= len(text):
                    raise ShellSyntaxError("unterminated quoted string")
                c = text[i]
                if c == '"':
                    break
                if c == "\\" and i + 1 < len(text) and text[i + 1] in '"\\$`\n':
                    buf += "" if text[i + 1] == "\n" else text[i + 1]
                    i += 2
                    continue
                if c == "`" or text.startswith("$(", i):
                    raise ShellSyntaxError("command substitution is not supported")
                buf += c
                i += 1
            word = word or Word()
            word.parts.append(Part(buf, True))
            i += 1
        elif ch == "\\":
            if i + 1 < len(text) and text[i + 1] != "\n":
                flush_literal()
                word = word or Word()
                word.parts.append(Part(text[i + 1], False))
            i += 2
        elif ch == "`" or text.startswith("$(", i):
            raise ShellSyntaxError("command substitution is not supported")
        elif ch in ";&|\n":
            end_word()
            two = text[i : i + 2]
            if two in ("&&", "||", ";;"):
                tokens.append(Op(two))
                i += 2
            else:
                tokens.append(Op(ch))
                i += 1
        elif ch in "<>":
            fd = 1 if ch == ">" else 0
            if word is None and literal.isdigit():
                fd, literal = int(literal), ""
            elif word is not None or literal:
                end_word()
            if text.startswith(">>", i):
                op, i = ">>", i + 2
            elif text.startswith(">&", i) or text.startswith("<&", i):
                op, i = ch + "&", i + 2
            else:
                op, i = ch, i + 1
                if text.startswith("|", i):  # >| clobber
                    i += 1
            tokens.append(Redir(fd, op))
        else:
            literal += ch
            i += 1
    end_word()
    return tokens


def parse(text: str) -> list[AndOr]:
    """A script: and-or lists separated by `;`, `&` or newlines."""
    tokens = tokenize(text)
    items: list[AndOr] = []
    current: Command | None = None
    pending: AndOr | None = None
    joiner: str | None = None
    i = 0

    def finish_command() -> None:
        nonlocal current, pending, joiner
        if current is None:
            if joiner is not None:
                raise ShellSyntaxError(f'unexpected end after "{joiner}"')
            return
        if pending is None:
            pending = AndOr(current)
        else:
            pending.rest.append((joiner or "&&", current))
        current, joiner = None, None

    while i < len(tokens):
        token = tokens[i]
        if isinstance(token, Word):
            current = current or Command()
            current.words.append(token)
        elif isinstance(token, Redir):
            if token.op in (">&", "<&") or token.op in (">", ">>", "<"):
                if i + 1 >= len(tokens) or not isinstance(tokens[i + 1], Word):
                    raise ShellSyntaxError("unexpected redirection without a target")
                target = tokens[i + 1]
                assert isinstance(target, Word)
                current = current or Command()
                current.redirs.append(Redir(token.fd, token.op, target))
                i += 1
        elif token.value in ("&&", "||"):
            if current is None:
                raise ShellSyntaxError(f'unexpected "{token.value}"')
            finish_command()
            joiner = token.value
        elif token.value == "|":
            raise ShellSyntaxError("pipes are not supported by the ESXi simulator")
        elif token.value == ";;":
            raise ShellSyntaxError('unexpected ";;"')
        else:  # ; & newline
            if current is None and pending is None:
                if token.value != "\n":
                    raise ShellSyntaxError(f'unexpected "{token.value}"')
            else:
                finish_command()
                assert pending is not None
                pending.background = token.value == "&"
                items.append(pending)
                pending = None
        i += 1
    finish_command()
    if pending is not None:
        items.append(pending)
    return items


# -- running ----------------------------------------------------------------------------------
class ShellExit(Exception):
    def __init__(self, status: int) -> None:
        self.status = status


@dataclass
class Context:
    """What a running command line shares: its job, file descriptors and shell variables."""

    job: Job
    fds: dict[int, Sink]
    status: int = 0
    last_bg: int | None = None
    env: dict[str, str] = field(default_factory=lambda: {"HOME": "/", "PATH": "/bin:/sbin"})

    def out(self, fd: int, text: str) -> None:
        sink = self.fds.get(fd)
        if sink is not None:
            sink.write(text)


_VARIABLE = re.compile(r"\$(\{(\w+)\}|(\w+)|([?$!#]))")


class Shell:
    """Runs command lines on a HostModel; one per SSH exec request (and per `&` job)."""

    def __init__(self, host: HostModel, session: int | None) -> None:
        self.host = host
        self.session = session

    # entry point for an exec request
    def run(self, command: str, term: Terminal | None) -> int:
        """Run `command` as `sh -c` does; raises HostDown (no exit status) or Interrupted."""
        job = self.host.new_job(command, self.session, background=False)
        fds: dict[int, Sink] = {1: NullSink(), 2: NullSink()}
        if term is not None:
            fds = {1: TerminalSink(term, 1), 2: TerminalSink(term, 2)}
        try:
            return self.run_script(command, Context(job, fds))
        finally:
            self.host.end_job(job)

    def run_script(self, text: str, ctx: Context) -> int:
        try:
            items = parse(text)
        except ShellSyntaxError as exc:
            ctx.out(2, f"sh: syntax error: {exc}\n")
            return 2
        try:
            for item in items:
                if item.background:
                    self._background(item, ctx)
                    ctx.status = 0
                else:
                    ctx.status = self._and_or(item, ctx)
        except ShellExit as done:
            return done.status
        return ctx.status

    def _and_or(self, item: AndOr, ctx: Context) -> int:
        status = self._command(item.first, ctx)
        for joiner, command in item.rest:
            ctx.status = status
            if (joiner == "&&") == (status == 0):
                status = self._command(command, ctx)
        return status

    def _background(self, item: AndOr, ctx: Context) -> None:
        fds = dict(ctx.fds)
        if not item.rest:
            # A simple command: the forked child applies its redirections before running, so
            # `cmd >/dev/null 2>&1 &` no longer holds the session's stdout open.
            redirected = self._redirect(item.first.redirs, ctx)
            if isinstance(redirected, str):
                ctx.out(2, redirected)
                return
            fds = redirected
            item = AndOr(Command(item.first.words, []))
        job = self.host.new_job(_describe(item), self.session, background=True)
        child = Context(job, fds, env=dict(ctx.env), status=ctx.status)
        terminals = {id(s.terminal): s.terminal for s in child.fds.values() if s.terminal}
        for term in terminals.values():
            term.hold()
        ctx.last_bg = job.jid
        self.host.record("background", f"job {job.jid} started: {job.command}", self.session)

        def body() -> None:
            outcome = "done"
            try:
                status = self._and_or(item, child)
                outcome = f"exit {status}"
            except HostDown:
                outcome = "ended by host power-off"
            except Interrupted:
                outcome = "cancelled"
            except ShellExit as done:
                outcome = f"exit {done.status}"
            finally:
                self.host.end_job(job)
                for term in terminals.values():
                    term.release()
            if not self.host.powered_off:
                self.host.record("background", f"job {job.jid} {outcome}", self.session)

        thread = threading.Thread(target=body, name=f"esxi-sim-job-{job.jid}", daemon=True)
        job.thread = thread
        thread.start()

    def _expand(self, word: Word, ctx: Context) -> str:
        def value(match: re.Match[str]) -> str:
            special = match.group(4)
            if special == "?":
                return str(ctx.status)
            if special == "$":
                return str(ctx.job.jid)
            if special == "!":
                return "" if ctx.last_bg is None else str(ctx.last_bg)
            if special == "#":
                return "0"
            return ctx.env.get(match.group(2) or match.group(3), "")

        return "".join(
            _VARIABLE.sub(value, part.text) if part.expand else part.text for part in word.parts
        )

    def _redirect(self, redirs: list[Redir], ctx: Context) -> dict[int, Sink] | str:
        fds = dict(ctx.fds)
        for redir in redirs:
            assert redir.target is not None
            target = self._expand(redir.target, ctx)
            if redir.op in (">&", "<&"):
                if target == "-":
                    fds.pop(redir.fd, None)
                elif target.isdigit() and int(target) in fds:
                    fds[redir.fd] = fds[int(target)]
                else:
                    return f"sh: {target}: bad file descriptor\n"
            elif redir.op == "<":
                if target != "/dev/null" and self.host.read_file(_abs(target)) is None:
                    return f"sh: can't open '{target}': No such file or directory\n"
            elif target == "/dev/null":
                fds[redir.fd] = NullSink()
            else:
                path = _abs(target)
                if redir.op == ">" or self.host.read_file(path) is None:
                    self.host.write_file(path, "")
                fds[redir.fd] = FileSink(self.host, path)
        return fds

    def _command(self, command: Command, ctx: Context) -> int:
        self.host.check(ctx.job)
        argv = [self._expand(word, ctx) for word in command.words]
        fds = self._redirect(command.redirs, ctx)
        if isinstance(fds, str):
            ctx.out(2, fds)
            return 1
        inner = Context(ctx.job, fds, ctx.status, ctx.last_bg, ctx.env)
        try:
            return self.execute(argv, inner)
        finally:
            ctx.last_bg = inner.last_bg

    def execute(self, argv: list[str], ctx: Context) -> int:
        if not argv:
            return 0
        name = program_name(argv[0])
        args = argv[1:]
        handler: Callable[[list[str], Context], int] | None = self._handlers().get(name or "")
        if handler is None:
            ctx.out(2, f"sh: {argv[0]}: not found\n")
            return 127
        return handler(args, ctx)

    def _handlers(self) -> dict[str, Callable[[list[str], Context], int]]:
        host = self.host

        def write(ctx: Context) -> vimcmd.Write:
            return ctx.out

        return {
            "vim-cmd": lambda a, c: vimcmd.vim_cmd(host, c.job, a, write(c)),
            "vmware": lambda a, c: vimcmd.vmware(host, a, write(c)),
            "poweroff": lambda a, c: vimcmd.poweroff(host, c.job),
            "shutdown.sh": lambda a, c: vimcmd.shutdown_sh(host, c.job),
            "sh": self._sh,
            "nohup": self._wrapper("nohup"),
            "setsid": self._wrapper("setsid"),
            "sleep": self._sleep,
            "echo": self._echo,
            "cat": self._cat,
            "rm": self._rm,
            "true": lambda a, c: 0,
            ":": lambda a, c: 0,
            "false": lambda a, c: 1,
            "trap": lambda a, c: 0,
            "command": self._command_v,
            "exit": self._exit,
        }

    def _sh(self, args: list[str], ctx: Context) -> int:
        if len(args) >= 2 and args[0] == "-c":
            return self.run_script(
                args[1], Context(ctx.job, ctx.fds, ctx.status, None, dict(ctx.env))
            )
        ctx.out(2, "sh: only `sh -c STRING` is supported by the ESXi simulator\n")
        return 2

    def _wrapper(self, name: str) -> Callable[[list[str], Context], int]:
        def run(args: list[str], ctx: Context) -> int:
            if not args:
                ctx.out(2, f"Usage: {name} PROG ARGS\n")
                return 1
            status = self.execute(args, ctx)
            return status

        return run

    def _sleep(self, args: list[str], ctx: Context) -> int:
        try:
            seconds = sum(float(a) for a in args) if args else None
        except ValueError:
            seconds = None
        if seconds is None:
            ctx.out(2, f"sleep: invalid number '{' '.join(args)}'\n")
            return 1
        self.host.sleep(seconds, ctx.job)
        return 0

    def _echo(self, args: list[str], ctx: Context) -> int:
        newline = "\n"
        if args and args[0] == "-n":
            args, newline = args[1:], ""
        ctx.out(1, " ".join(args) + newline)
        return 0

    def _cat(self, args: list[str], ctx: Context) -> int:
        status = 0
        for name in args:
            if name == "/dev/null":
                continue
            text = self.host.read_file(_abs(name))
            if text is None:
                ctx.out(2, f"cat: can't open '{name}': No such file or directory\n")
                status = 1
            else:
                ctx.out(1, text)
        return status

    def _rm(self, args: list[str], ctx: Context) -> int:
        force = any(a.startswith("-") and "f" in a for a in args)
        status = 0
        for name in (a for a in args if not a.startswith("-")):
            with self.host.cond:
                if self.host.files.pop(_abs(name), None) is None and not force:
                    ctx.out(2, f"rm: can't remove '{name}': No such file or directory\n")
                    status = 1
        return status

    def _command_v(self, args: list[str], ctx: Context) -> int:
        if len(args) != 2 or args[0] != "-v":
            ctx.out(2, "sh: command: only `command -v NAME` is supported\n")
            return 2
        name = program_name(args[1])
        if name is None or name not in COMMANDS:
            return 1
        ctx.out(1, f"{COMMANDS[name]}\n")
        return 0

    def _exit(self, args: list[str], ctx: Context) -> int:
        raise ShellExit(int(args[0]) if args and args[0].isdigit() else ctx.status)


def program_name(word: str) -> str | None:
    """`poweroff`, `/sbin/poweroff` → `poweroff`; an unknown path → None."""
    if "/" not in word:
        return word
    for directory in PATH_DIRS:
        if word.startswith(directory) and word[len(directory) :] in COMMANDS:
            return word[len(directory) :]
    return None


def _abs(path: str) -> str:
    return path if path.startswith("/") else "/" + path


def _describe(item: AndOr) -> str:
    def words(command: Command) -> str:
        return " ".join("".join(p.text for p in w.parts) for w in command.words)

    text = words(item.first)
    for joiner, command in item.rest:
        text += f" {joiner} {words(command)}"
    return text
