"""The simulated host's `sh`: runs the two command lines our shutdown path sends to a host (see
host/inventory.py and host/script.py) with busybox ash's semantics, and nothing fancier.

Syntax (syntax.py, lexer.py): `;`, newlines, `&&`, `||`, `!` before a pipeline,
pipelines `a | b`, `&` after an and-or list; `{ ...; }`, `( ... )`, `if/elif/else/fi`,
`while ...; do ...; done`, `for NAME in WORDS`, `case WORD in PAT|PAT) ...;; esac`, functions
`NAME() { ...; }`; `NAME=value` (alone: not before a command); single and double quotes,
backslash escapes, `#` comments; redirections `> F`, `>> F`, `< F`, `N>&M`, `N>&-`, `<&-`, on
simple and compound commands (files live in the host's memory; `/dev/null` discards).
Expansions (expand.py): `$NAME`, `${NAME}`, `${NAME:-word}`, `$1`..., `$#`, `$@`, `$?`,
`$$`, `$!`, `$0`, `$(...)`, `$(( ))`; unquoted results split on blanks; no globbing.
Commands (commands.py): the builtins, busybox applets and ESXi programs listed there.

How it runs: a script is parsed whole before it runs. A pipeline runs its commands one after
the other, each in a subshell, one's output the next one's input; its status is the last one's.
`(...)` and `$(...)` run on a copy of the shell's variables and functions; so does `&`, in a
host job and thread of its own, with no input; `$!` is that job's id, which `wait` and `kill -0`
take. Foreground commands die with their SSH session (`Interrupted`); `&` jobs, and the jobs
they start, survive it; everything stops when the host powers off (`HostDown`). Anything else
exits 2 with `sh: ... not supported` on stderr; an unknown program is `not found`, exit 127.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Callable

from esxi_suspend.simulator.host import HostDown, HostModel, Interrupted, Job
from esxi_suspend.simulator.shell import expand
from esxi_suspend.simulator.shell.commands import COMMANDS, program_name, run_program
from esxi_suspend.simulator.shell.lexer import ShellSyntaxError
from esxi_suspend.simulator.shell.state import (
    BreakSignal,
    BufferSink,
    Child,
    Context,
    ContinueSignal,
    ExpansionError,
    FileSink,
    Frame,
    NullSink,
    ReturnSignal,
    ShellExit,
    Sink,
    Source,
    Terminal,
    TerminalSink,
    host_path,
)
from esxi_suspend.simulator.shell.syntax import parse
from esxi_suspend.simulator.shell.tree import (
    AndOr,
    Body,
    Case,
    Command,
    Compound,
    For,
    FunctionDef,
    Group,
    If,
    Pipeline,
    Redirect,
    Simple,
    Subshell,
    While,
)

__all__ = ["COMMANDS", "Shell", "ShellSyntaxError", "Terminal", "parse", "program_name"]

Run = Callable[[Context], int]


class Shell:
    """Runs command lines on a HostModel; one per SSH exec request."""

    def __init__(self, host: HostModel, session: int | None) -> None:
        self.host = host
        self.session = session
        self._foreground: Job | None = None
        self._started: list[Child] = []  # the `&` jobs the exec request's own shell started

    # -- entry points -------------------------------------------------------------------------
    def run(self, command: str, term: Terminal | None, stdin: Source | None = None) -> int:
        """Run `command` as `sh -c` does, reading `stdin` (the channel's input: none by
        default); raises HostDown (no exit status) or Interrupted."""
        job = self.host.new_job(_describe(command), self.session, background=False)
        self._foreground = job
        fds: dict[int, Sink] = {1: NullSink(), 2: NullSink()}
        if term is not None:
            fds = {1: TerminalSink(term, 1), 2: TerminalSink(term, 2)}
        ctx = Context(self, self.host, job, Frame(job.jid), fds, stdin or Source())
        try:
            return self.run_script(command, ctx)
        finally:
            self.host.end_job(job)
            self._note_left_running()

    def run_script(self, text: str, ctx: Context) -> int:
        try:
            body = parse(text)
        except ShellSyntaxError as exc:
            ctx.out(2, f"sh: syntax error: {exc}\n")
            return 2
        return self._process(lambda c: self.run_body(tuple(body), c), ctx)

    def substitute(self, body: Body, ctx: Context) -> str:
        """`$(...)`: run in a subshell, its output collected."""
        sink = BufferSink()
        sub = replace(ctx, fds={**ctx.fds, 1: sink}, frame=ctx.frame.subshell())
        status = self._process(lambda c: self.run_body(body, c), sub)
        ctx.frame.substitution_status = status
        return sink.text()

    # -- lists ----------------------------------------------------------------------------------
    def run_body(self, body: Body, ctx: Context) -> int:
        status = 0
        for item in body:
            self.host.check(ctx.job)
            if item.background:
                self._background(item, ctx)
                status = 0
            else:
                status = self._and_or(item, ctx)
            ctx.frame.status = status
        return status

    def _and_or(self, item: AndOr, ctx: Context) -> int:
        status = self._pipeline(item.first, ctx)
        for joiner, pipeline in item.rest:
            ctx.frame.status = status
            if (joiner == "&&") == (status == 0):
                status = self._pipeline(pipeline, ctx)
        return status

    def _pipeline(self, pipeline: Pipeline, ctx: Context) -> int:
        commands = pipeline.commands
        if len(commands) == 1:
            status = self._command(commands[0], ctx)
        else:
            stdin = ctx.stdin
            for command in commands[:-1]:
                sink = BufferSink()
                part = replace(ctx, fds={**ctx.fds, 1: sink}, stdin=stdin)
                self._subshell(self._runner(command), part)
                stdin = Source(sink.text())
            status = self._subshell(self._runner(commands[-1]), replace(ctx, stdin=stdin))
        return int(status == 0) if pipeline.negate else status

    # -- shell processes: subshells, `&` jobs ---------------------------------------------------
    def _process(self, run: Run, ctx: Context) -> int:
        """Run as a shell process of its own: `exit`, a stray `return`/`break` or an
        expansion error ends it here."""
        try:
            return run(ctx)
        except ShellExit as done:
            return done.status
        except (BreakSignal, ContinueSignal):
            return ctx.frame.status
        except ExpansionError as exc:
            ctx.out(2, f"sh: {exc}\n")
            return 2

    def _runner(self, command: Command) -> Run:
        return lambda ctx: self._command(command, ctx)

    def _subshell(self, run: Run, ctx: Context) -> int:
        return self._process(run, ctx.subshell())

    def _background(self, item: AndOr, ctx: Context) -> None:
        run: Run = lambda c: self._and_or(item, c)  # noqa: E731
        fds, stdin = ctx.fds, Source()  # no terminal input for a `&` job
        pipeline = item.first
        single = pipeline.commands[0] if len(pipeline.commands) == 1 else None
        alone = not item.rest and not pipeline.negate and single is not None
        if alone and single is not None and not isinstance(single, FunctionDef) and single.redirs:
            # The child applies its redirections before it runs, so that
            # `cmd >/dev/null 2>&1 &` no longer holds the session's stdout open.
            redirected = self._redirect(single.redirs, replace(ctx, stdin=stdin))
            if isinstance(redirected, str):
                ctx.out(2, redirected)
                return
            fds, stdin = redirected.fds, redirected.stdin
            bare: Command = replace(single, redirs=())
            run = lambda c: self._command(bare, c)  # noqa: E731
        job = self.host.new_job(_describe(item.text), self.session, True, ctx.job.jid)
        child = Child(job)
        ctx.frame.children[job.jid] = child
        ctx.frame.last_bg = job.jid
        if ctx.job is self._foreground:
            self._started.append(child)
        sub = Context(self, self.host, job, ctx.frame.subshell(), fds, stdin)
        terminals = {id(s.terminal): s.terminal for s in fds.values() if s.terminal}
        for term in terminals.values():
            term.hold()
        thread = threading.Thread(
            target=self._job_body,
            args=(run, sub, child, list(terminals.values())),
            name=f"esxi-sim-job-{job.jid}",
            daemon=True,
        )
        job.thread = thread
        thread.start()

    def _job_body(self, run: Run, ctx: Context, child: Child, terminals: list[Terminal]) -> None:
        status, outcome = 0, "done"
        try:
            status = self._process(run, ctx)
            outcome = f"exit {status}"
        except HostDown:
            outcome = "ended by host power-off"
        except Interrupted:
            outcome = "cancelled"
        except Exception as exc:  # a simulator bug: say so, and never leave a `wait` hanging
            status, outcome = 70, f"internal error: {type(exc).__name__}: {exc}"
            ctx.out(2, f"esxi-sim: {outcome}\n")
        finally:
            child.status = status
            with self.host.cond:
                self.host.end_job(ctx.job)
                left_running = child.left_running
            for term in terminals:
                term.release()
        if left_running and not self.host.powered_off:
            self.host.record("background", f"job {ctx.job.jid} {outcome}", self.session)

    def _note_left_running(self) -> None:
        """The exec request's command is over: say which of its `&` jobs still run."""
        with self.host.cond:
            if self.host.powered_off:
                return
            for child in self._started:
                if not child.job.done:
                    child.left_running = True
                    self.host.record(
                        "background",
                        f"job {child.job.jid} runs on after its session's command: "
                        f"{child.job.command}",
                        self.session,
                    )

    # -- commands -------------------------------------------------------------------------------
    def _command(self, command: Command, ctx: Context) -> int:
        self.host.check(ctx.job)
        if isinstance(command, Simple):
            return self._simple(command, ctx)
        if isinstance(command, FunctionDef):
            ctx.frame.functions[command.name] = command.body
            return 0
        redirected = self._redirect(command.redirs, ctx)
        if isinstance(redirected, str):
            ctx.out(2, redirected)
            return 1
        return self._compound(command, redirected)

    def _simple(self, command: Simple, ctx: Context) -> int:
        ctx.frame.substitution_status = None
        argv = expand.fields(command.words, ctx)
        values = [(name, expand.text(word.parts, ctx)) for name, word in command.assigns]
        redirected = self._redirect(command.redirs, ctx)
        if isinstance(redirected, str):
            ctx.out(2, redirected)
            return 1
        if not argv:
            ctx.frame.variables.update(values)
            return ctx.frame.substitution_status or 0
        return self.execute(argv, redirected)

    def execute(self, argv: list[str], ctx: Context) -> int:
        """A function of this shell, else a builtin or program."""
        function = ctx.frame.functions.get(argv[0])
        if function is None:
            return run_program(argv, ctx)
        frame = ctx.frame
        saved, frame.args = frame.args, argv[1:]
        try:
            return self._command(function, ctx)
        except ReturnSignal as done:
            return done.status
        finally:
            frame.args = saved

    def _compound(self, command: Compound, ctx: Context) -> int:
        if isinstance(command, Group):
            return self.run_body(command.body, ctx)
        if isinstance(command, Subshell):
            body = command.body
            return self._subshell(lambda c: self.run_body(body, c), ctx)
        if isinstance(command, If):
            for condition, then in command.branches:
                if self.run_body(condition, ctx) == 0:
                    return self.run_body(then, ctx)
            return self.run_body(command.otherwise, ctx) if command.otherwise else 0
        if isinstance(command, Case):
            value = expand.text(command.word.parts, ctx)
            for item in command.items:
                if any(expand.matches(p, value, ctx) for p in item.patterns):
                    return self.run_body(item.body, ctx)
            return 0
        return self._loop(command, ctx)

    def _loop(self, command: While | For, ctx: Context) -> int:
        status = 0
        try:
            if isinstance(command, For):
                for value in expand.fields(command.words, ctx):
                    ctx.frame.variables[command.name] = value
                    status = self._turn(command.body, ctx)
                return status
            while self.run_body(command.condition, ctx) == 0:
                status = self._turn(command.body, ctx)
        except BreakSignal:
            pass
        return status

    def _turn(self, body: Body, ctx: Context) -> int:
        """One turn of a loop's body; `continue` ends it early."""
        try:
            return self.run_body(body, ctx)
        except ContinueSignal:
            return 0

    # -- redirections ---------------------------------------------------------------------------
    def _redirect(self, redirs: tuple[Redirect, ...], ctx: Context) -> Context | str:
        """The context with `redirs` applied, in order; or the error to print (status 1)."""
        if not redirs:
            return ctx
        fds, stdin = dict(ctx.fds), ctx.stdin
        for redir in redirs:
            target = expand.text(redir.target.parts, ctx)
            fd, op = redir.fd, redir.op
            if op == "<&":  # <&- (the parser takes no other)
                stdin = Source()
            elif op == ">&":
                if target == "-":
                    fds.pop(fd, None)
                elif target.isdigit() and int(target) in fds:
                    fds[fd] = fds[int(target)]
                else:
                    return f"sh: {target}: bad file descriptor\n"
            elif op == "<":
                text = "" if target == "/dev/null" else self.host.read_file(host_path(target))
                if text is None:
                    return f"sh: can't open '{target}': No such file or directory\n"
                stdin = Source(text)
            elif target == "/dev/null":
                fds[fd] = NullSink()
            else:
                path = host_path(target)
                if op == ">" or self.host.read_file(path) is None:
                    self.host.write_file(path, "")
                fds[fd] = FileSink(self.host, path)
        return replace(ctx, fds=fds, stdin=stdin)


def _describe(text: str, limit: int = 160) -> str:
    """A command line on one line, for the host's job list and event log."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."
