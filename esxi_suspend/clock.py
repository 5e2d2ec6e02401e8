"""When upsmon called us: ESXI_DEADLINE counts from there, our own start-up included.

The interpreter and its imports take a noticeable part of a second before `main` runs, so the
command line counts from this process's start, as /proc tells it.
"""

from __future__ import annotations

import os
import time


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
