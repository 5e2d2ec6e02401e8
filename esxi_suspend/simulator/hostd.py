"""hostd's cost: each call (a `vim-cmd`, `esxcli`, `vmware -v`) waits for one of a few slots, then
takes `command_latency` simulated seconds in it (plus up to `command_jitter`, at random).

Apart from `host.py` because it models a different thing: not the host's state but the time
its management daemon takes to answer, which is most of a real shutdown's timing. The fleet
sets the numbers (`command_latency`, `command_jitter`, `hostd_concurrency`) and what a call
beyond the slots meets (`hostd_overflow`: it waits, or its login is reset at once), and how a
hostd client's output comes back (`fault_exit0`, `no_final_newline`: `shaped_call`).
"""

from __future__ import annotations

import random
from typing import Callable

from esxi_suspend.simulator.clock import SimClock
from esxi_suspend.simulator.fleet import Fleet

# What a busy hostd answers a login it has no room for (public reports of ESXi under load).
RESET = "Failed to login: Connection reset by peer"

Write = Callable[[int, str], None]  # (fd, text)


def shaped_call(
    fleet: Fleet, call: Callable[[Write], int], is_fault: Callable[[str], bool], write: Write
) -> int:
    """A hostd client's call (vim-cmd, esxcli) as the fleet has it come back: a failure whose
    text `is_fault` exits 0 with `fault_exit0`; the last output without its final newline
    with `no_final_newline`."""
    chunks: list[tuple[int, str]] = []
    status = call(lambda fd, text: chunks.append((fd, text)))
    if fleet.fault_exit0 and status == 1 and any(is_fault(text) for _fd, text in chunks):
        status = 0
    if fleet.no_final_newline and chunks:
        fd, text = chunks[-1]
        chunks[-1] = (fd, text.rstrip("\n"))
    for fd, text in chunks:
        if text:
            write(fd, text)
    return status


class HostdBusy(Exception):
    """hostd turned the call away (`hostd_overflow` "reset"): no slot was free."""


class Hostd:
    """hostd's slots: `hostd_concurrency` calls served at once; the others wait for one, or
    are turned away (`HostdBusy`) when the fleet says so."""

    def __init__(self, clock: SimClock, fleet: Fleet) -> None:
        self._clock = clock
        self._fleet = fleet
        self._busy = 0  # calls being served
        self._random = random.Random(fleet.name)  # noqa: S311 (delays, not secrets: the same each run)

    def call(self, check: Callable[[], None], may_reset: bool = True) -> None:
        """One call's round trip: a free slot (waiting if none is, or HostdBusy), then its
        latency in it. `check()` ends the wait by raising, as in `SimClock.sleep`."""
        fleet = self._fleet
        cond = self._clock.cond
        with cond:
            latency = fleet.command_latency + self._random.uniform(0, fleet.command_jitter)
            if latency <= 0:
                return
            while True:
                check()
                if self._busy < fleet.hostd_concurrency:
                    break
                if may_reset and fleet.hostd_overflow == "reset":
                    raise HostdBusy
                cond.wait(0.25)  # a released slot notifies
            self._busy += 1
        try:
            self._clock.sleep(latency, check)
        finally:
            with cond:
                self._busy -= 1
                cond.notify_all()
