"""The demo's output: each host event and log line printed as it happens, in simulated seconds.

The simulator stamps events on its own clock; a line is held a moment so that one stamped a
little late still prints in order, and on a terminal a status line shows the simulated clock
between lines. Kept apart from command.py, which sets up the run.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TextIO

from esxi_suspend.logs import LOGGER_NAME
from esxi_suspend.simulator import Event, SimulatedHost

# Host events worth a line in the timeline (logins and exits are in our own log lines);
# `exec` (each command line we send) only with --verbose.
SHOWN_KINDS = {"exec", "vm", "autostop", "poweroff", "background", "dropped", "host"}
VERBOSE_KINDS = {"exec"}
# A line waits this long (real seconds) before it is printed, so that an event stamped a
# moment late still prints in time order; every few hundredths of a second, a look for more.
HOLD_SECONDS = 0.2
TICK_SECONDS = 0.05
# On a terminal only: after this long without a line, a status line shows the simulated clock.
STATUS_AFTER = 1.0
_CLEAR_LINE = "\r\x1b[K"
_TEXT_COLUMN = 26  # where a timeline line's text starts: "  " + 8 + "  " + 12 + "  "


@dataclass(frozen=True)
class Line:
    at: float
    who: str
    text: str

    def render(self) -> str:
        """The timeline line; the text's own further lines (a command) indented under it."""
        first, *rest = self.text.splitlines() or [""]
        lines = [f"  {self.at:8.1f}  {self.who:<12}  {first}"]
        lines += [" " * _TEXT_COLUMN + line for line in rest]
        return "\n".join(lines)


class Timeline:
    """Prints our log lines and the host's events as they happen, in simulated-time order.

    A thread looks every TICK_SECONDS; `write` (what `runner.run` prints: the check report, the
    verdict) first prints every line due, so the report takes its place in the timeline.
    On a terminal a status line shows the simulated clock while nothing happens; piped, the
    output is plain lines, no control codes.
    """

    def __init__(self, host: SimulatedHost, out: TextIO, verbose: bool) -> None:
        self.host = host
        self.out = out
        self.verbose = verbose
        self.tty = out.isatty()
        self.lock = threading.Lock()
        self.pending: list[Line] = []
        self.seen: set[int] = set()  # ids of the host events already taken
        self.status_shown = False
        self.last_line = time.monotonic()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="demo-timeline", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        """Stop looking and print everything left."""
        self.stopping.set()
        self.thread.join()
        with self.lock:
            self._print_due(None)
            self._clear_status()

    def add(self, line: Line) -> None:
        with self.lock:
            self.pending.append(line)

    def write(self, text: str) -> int:
        with self.lock:
            self._print_due(None)
            self._clear_status()
            self.out.write(text)
            self.out.flush()
            self.last_line = time.monotonic()
        return len(text)

    def _loop(self) -> None:
        hold = HOLD_SECONDS / self.host.model.time_scale
        while not self.stopping.wait(TICK_SECONDS):
            with self.lock:
                self._print_due(self.host.simulated_now() - hold)
                if self.tty and time.monotonic() - self.last_line > STATUS_AFTER:
                    self._show_status()

    def _shown(self, event: Event) -> Line | None:
        if event.kind not in SHOWN_KINDS or (event.kind in VERBOSE_KINDS and not self.verbose):
            return None
        text = event.text
        if event.kind == "background" and not self.verbose and "session's command: " in text:
            text = text.split(": ", 1)[0]  # the command itself is an exec line's
        return Line(event.at, "host", text)

    def _print_due(self, upto: float | None) -> None:
        """Print the lines stamped up to `upto` (all of them: None), oldest first."""
        for event in self.host.events:
            if id(event) not in self.seen:
                self.seen.add(id(event))
                line = self._shown(event)
                if line is not None:
                    self.pending.append(line)
        due = [line for line in self.pending if upto is None or line.at <= upto]
        if not due:
            return
        self.pending = [line for line in self.pending if upto is not None and line.at > upto]
        self._clear_status()
        for line in sorted(due, key=lambda item: item.at):
            self.out.write(line.render() + "\n")
        self.out.flush()
        self.last_line = time.monotonic()

    def _show_status(self) -> None:
        now = self.host.simulated_now()
        self.out.write(f"{_CLEAR_LINE}  {now:8.1f}  (simulated clock: waiting for the host)")
        self.out.flush()
        self.status_shown = True

    def _clear_status(self) -> None:
        if self.status_shown:
            self.out.write(_CLEAR_LINE)
            self.status_shown = False


class ThroughTimeline(io.TextIOBase):
    """sys.stdout while `runner.run` runs: its prints go out in their place in the timeline."""

    def __init__(self, timeline: Timeline) -> None:
        super().__init__()
        self.timeline = timeline

    def write(self, text: str) -> int:
        return self.timeline.write(text)

    def flush(self) -> None:
        self.timeline.out.flush()


class Capture(logging.Handler):
    """Our log records, stamped with the simulated host's clock, into the timeline."""

    def __init__(self, host: SimulatedHost, timeline: Timeline) -> None:
        super().__init__(logging.INFO)
        self.host = host
        self.timeline = timeline

    def emit(self, record: logging.LogRecord) -> None:
        level = "" if record.levelno == logging.INFO else f"{record.levelname}: "
        line = Line(self.host.simulated_now(), "esxi-suspend", level + record.getMessage())
        self.timeline.add(line)


@contextmanager
def own_logging() -> Iterator[logging.Logger]:
    """Our logger to the timeline only (no syslog, no stderr), paramiko silent; as it was after.

    Yields our logger, with no handler and INFO level: the timeline's capture is added to it.
    """
    logger = logging.getLogger(LOGGER_NAME)
    paramiko = logging.getLogger("paramiko")
    saved = (logger.level, logger.propagate, list(logger.handlers), paramiko.level)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    for handler in saved[2]:
        logger.removeHandler(handler)
    paramiko.setLevel(logging.CRITICAL + 1)
    try:
        yield logger
    finally:
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        for handler in saved[2]:
            logger.addHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
        paramiko.setLevel(saved[3])
