"""What a running simulated `sh` holds, and the signals that unwind it.

A `Context` is one command's view: the host and host job it runs in, its file descriptors
(output sinks and the input it reads) and its `Frame`, the shell process: variables, functions,
positional parameters, `$?`, `$!` and the background children it can `wait` for. A subshell,
a `&` job, a pipeline's part and a `$(...)` run on a copy of the frame.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Callable, Protocol

from esxi_suspend.simulator.host import HostModel, Job

if TYPE_CHECKING:
    from esxi_suspend.simulator.shell.tree import Body, Compound


class Terminal(Protocol):
    """The SSH channel of one exec request, as the shell sees it."""

    def write(self, fd: int, text: str) -> None: ...

    def hold(self) -> None: ...  # a background job keeps the channel's stdout open

    def release(self) -> None: ...

    @property
    def closed(self) -> bool: ...  # the client is gone: what is written goes nowhere


# -- signals --------------------------------------------------------------------------------
class ShellExit(Exception):
    """`exit N`: ends the shell process (a subshell, a `&` job, an `sh -c`)."""

    def __init__(self, status: int) -> None:
        self.status = status


class ReturnSignal(ShellExit):
    """`return N`: ends the function (or, outside one, the shell process)."""


class BreakSignal(Exception):
    """`break`: ends the innermost loop."""


class ContinueSignal(Exception):
    """`continue`: ends this turn of the innermost loop."""


class ExpansionError(Exception):
    """A `$(( ))` that cannot be computed: the shell process ends with status 2 (busybox)."""


# -- file descriptors -------------------------------------------------------------------------
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


class BufferSink(Sink):
    """A pipe's or a `$(...)`'s output, collected."""

    def __init__(self) -> None:
        self._chunks: list[str] = []

    def write(self, text: str) -> None:
        self._chunks.append(text)

    def text(self) -> str:
        return "".join(self._chunks)


class Source:
    """An input (stdin): a file's text when it was opened, read by lines; shared by the
    commands that inherit it, as a file offset is (`while read ...; done < F`)."""

    def __init__(self, text: str = "") -> None:
        self._text = text
        self._pos = 0
        self._lock = threading.Lock()

    def _wait_for(self, enough: Callable[[str], bool]) -> None:
        """A file's text is all there from the start; ChannelSource reads more here."""

    def readline(self) -> str | None:
        """The next line with its newline (without one at the end of the text), None at EOF."""
        self._wait_for(lambda rest: "\n" in rest)
        with self._lock:
            if self._pos >= len(self._text):
                return None
            end = self._text.find("\n", self._pos)
            end = len(self._text) if end < 0 else end + 1
            line, self._pos = self._text[self._pos : end], end
            return line

    def read(self) -> str:
        self._wait_for(lambda rest: False)
        with self._lock:
            rest, self._pos = self._text[self._pos :], len(self._text)
            return rest


# -- the shell process ------------------------------------------------------------------------
@dataclass
class Child:
    """A `&` job this shell started: `wait` reads its status once its host job is done."""

    job: Job
    status: int | None = None
    left_running: bool = False  # still running when its session's command ended


DEFAULT_ENV = {"HOME": "/", "PATH": "/bin:/sbin"}


@dataclass
class Frame:
    pid: int  # $$ (a subshell keeps its parent's)
    variables: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_ENV))
    functions: dict[str, Compound] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)  # $1...
    name: str = "sh"  # $0
    status: int = 0  # $?
    last_bg: int | None = None  # $!
    children: dict[int, Child] = field(default_factory=dict)
    substitution_status: int | None = None  # the last $(...)'s, for `x=$(cmd)`

    def subshell(self) -> Frame:
        """A copy: variables, functions, parameters; no children of its own yet."""
        return Frame(
            self.pid,
            dict(self.variables),
            dict(self.functions),
            list(self.args),
            self.name,
            self.status,
            self.last_bg,
        )


class Interpreter(Protocol):
    """What commands and expansions ask of the shell that runs them."""

    def run_script(self, text: str, ctx: Context) -> int: ...

    def substitute(self, body: Body, ctx: Context) -> str: ...


@dataclass
class Context:
    shell: Interpreter
    host: HostModel
    job: Job  # the host job it runs in: cancelled with a dropped session, or by poweroff
    frame: Frame
    fds: dict[int, Sink]
    stdin: Source

    def out(self, fd: int, text: str) -> None:
        sink = self.fds.get(fd)
        if sink is not None:
            sink.write(text)

    def subshell(self) -> Context:
        return replace(self, frame=self.frame.subshell())


def host_path(path: str) -> str:
    """A path in the host's in-memory files: relative ones are from `/` (the cwd)."""
    return path if path.startswith("/") else "/" + path


def command_line(name: str, args: list[str]) -> str:
    """A command as a message quotes it."""
    return " ".join([name, *args])


def refuse(ctx: Context, what: str, supported: str = "") -> int:
    """Say a command or form is not simulated; exit 2."""
    also = f" (supported: {supported})" if supported else ""
    ctx.out(2, f"sh: {what}: not supported by the ESXi simulator{also}\n")
    return 2
