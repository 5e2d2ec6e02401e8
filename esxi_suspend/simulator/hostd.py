"""hostd's cost: each call (a `vim-cmd`, `vmware -v`) waits for one of a few slots, then
takes `command_latency` simulated seconds in it.

Apart from `host.py` because it models a different thing: not the host's state but the time
its management daemon takes to answer, which is most of a real shutdown's timing. The fleet
sets both numbers (`command_latency`, `hostd_concurrency`).
"""

from __future__ import annotations

from typing import Callable

from esxi_suspend.simulator.clock import SimClock
from esxi_suspend.simulator.fleet import Fleet


class Hostd:
    """hostd's slots: `hostd_concurrency` calls served at once, the others wait for one."""

    def __init__(self, clock: SimClock, fleet: Fleet) -> None:
        self._clock = clock
        self._fleet = fleet
        self._busy = 0  # calls being served

    def call(self, check: Callable[[], None]) -> None:
        """One call's round trip: a free slot (waiting if none is), then `command_latency`
        simulated seconds in it. `check()` ends the wait by raising, as in `SimClock.sleep`."""
        latency = self._fleet.command_latency
        if latency <= 0:
            return
        cond = self._clock.cond
        with cond:
            while True:
                check()
                if self._busy < self._fleet.hostd_concurrency:
                    break
                cond.wait(0.25)  # a released slot notifies
            self._busy += 1
        try:
            self._clock.sleep(latency, check)
        finally:
            with cond:
                self._busy -= 1
                cond.notify_all()
