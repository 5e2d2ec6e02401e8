"""The simulated host's clock: simulated seconds on the real clock, and waits on it.

Apart from `host.py` because every wait of the simulation goes through here and nowhere
else: `time_scale` real seconds per simulated second, one condition variable (the host's lock,
`HostModel.cond`) that wakes waiters whenever the host changes, and waits that end early
when their `check` raises (the host powered off, the job's session was dropped).
"""

from __future__ import annotations

import threading
import time
from typing import Callable


class SimClock:
    """Simulated time since the host started; `cond` is the lock every part of it shares."""

    def __init__(self, time_scale: float) -> None:
        if not time_scale > 0:
            raise ValueError("time_scale must be > 0")
        self.time_scale = time_scale
        self.cond = threading.Condition(threading.RLock())
        self._t0 = time.monotonic()
        self._epoch = int(time.time())

    def now(self) -> float:
        """Simulated seconds since the host started."""
        return (time.monotonic() - self._t0) / self.time_scale

    def wall_clock(self) -> int:
        """The host's `date +%s`: a fixed epoch plus the simulated seconds since the start."""
        return self._epoch + int(self.now())

    def sleep(
        self, seconds: float, check: Callable[[], None], until: Callable[[], bool] | None = None
    ) -> bool:
        """Wait `seconds` simulated seconds, or less if `until()` becomes true (returns True).
        `check()` runs at each wake-up and ends the wait by raising."""
        deadline = self.now() + max(0.0, seconds)
        with self.cond:
            while True:
                check()
                if until is not None and until():
                    return True
                left = deadline - self.now()
                if left <= 0:
                    return until() if until is not None else False
                self.cond.wait(min(left * self.time_scale, 0.25))
