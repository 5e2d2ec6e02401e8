"""The clock ESXI_DEADLINE is counted on, from upsmon's call, our own start-up included.

The interpreter and its imports take a noticeable part of a second before `main` runs, so the
command line counts from this process's start, as /proc tells it. `now` is `time.monotonic`,
except inside `counting_on` (the demo counts on its simulated host's clock).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Callable

_now: Callable[[], float] = time.monotonic


def now() -> float:
    """Seconds on the deadline's clock (`time.monotonic()` unless `counting_on` says else)."""
    return _now()


@contextmanager
def counting_on(clock: Callable[[], float]) -> Iterator[None]:
    """Count the deadline on `clock` for a while: the demo's simulated seconds."""
    global _now
    saved, _now = _now, clock
    try:
        yield
    finally:
        _now = saved


def process_started() -> float:
    """The `time.monotonic()` value at which this process started (now, where /proc is silent)."""
    now = time.monotonic()
    try:
        with open("/proc/self/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime", encoding="ascii") as uptime:
            up = float(uptime.read().split()[0])
        age = up - int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return now
    return now - min(max(0.0, age), 60.0)


def pause(seconds: float, stopped: Callable[[], bool], step: float = 0.25) -> None:
    """Sleep `seconds` (real time) in slices of `step`, cut short once `stopped()` (SIGTERM):
    a wait that a signal ends soon, without a busy loop."""
    end = time.monotonic() + seconds
    while not stopped() and time.monotonic() < end:
        time.sleep(min(step, max(0.0, end - time.monotonic())))
