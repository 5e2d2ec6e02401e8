"""ESXI_DEADLINE=auto: the battery's own estimate, read when upsmon calls us, minus a margin.

A fixed deadline is either too long for a battery that ages or too short for a fresh one. The
UPS tells how many seconds it has left (`battery.runtime`); we ask it once, at the start,
with `upsc` (bounded: RUNTIME_TIMEOUT per UPS, never a hang). With several UPSes the
smallest runtime wins. A UPS that does not report it is said once, with the fix, and the
run goes on with the stated fallback: the ESXI_DEADLINE default.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, replace

from esxi_suspend import clock
from esxi_suspend.nut import ups
from esxi_suspend.settings.model import KNOWN_KEYS, Settings

log = logging.getLogger(__name__)

RUNTIME_TIMEOUT = 2.0  # seconds per UPS: battery spent waiting on upsd is the hosts' loss
MIN_DEADLINE = 10  # ESXI_DEADLINE's own lower bound
FALLBACK = int(KNOWN_KEYS["ESXI_DEADLINE"] or 240)
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?")


@dataclass(frozen=True)
class Resolved:
    """The deadline a run uses, and one line saying where it came from (logged, `check`)."""

    seconds: int
    source: str
    ok: bool = True  # False: auto could not be read, the fallback is used


def battery_runtime(
    configured: tuple[str, ...], upsc: Callable[..., str] | None = None
) -> tuple[int | None, str, list[str]]:
    """The smallest `battery.runtime` of the UPSes, which UPS said it, and one line per UPS
    that did not (no UPS known, upsd silent, variable not reported)."""
    read, missing = ups.read_values(configured, "battery.runtime", RUNTIME_TIMEOUT, upsc)
    best: tuple[int, str] | None = None
    for name, text in read:
        if not _NUMBER.fullmatch(text.strip()):
            missing.append(f"{name}: battery.runtime is {text.strip()[:40]!r}, not seconds")
            continue
        seconds = int(float(text))
        if best is None or seconds < best[0]:
            best = (seconds, name)
    if best is None:
        return None, "", missing
    return best[0], best[1], missing


def resolve(
    settings: Settings,
    upsc: Callable[..., str] | None = None,
    now: Callable[[], float] | None = None,
) -> Resolved:
    """The deadline for this run: ESXI_DEADLINE's seconds, or for `auto` the runtime left
    (counted, like ESXI_DEADLINE, from upsmon's call) minus UPS_RUNTIME_MARGIN."""
    if not settings.deadline_auto:
        return Resolved(settings.deadline, f"ESXI_DEADLINE={settings.deadline} s")
    runtime, name, missing = battery_runtime(settings.restart.ups_names, upsc)
    if runtime is None:
        why = "; ".join(missing) or "no UPS answered"
        return Resolved(
            FALLBACK,
            f"ESXI_DEADLINE=auto: no battery.runtime ({why}): using the fallback {FALLBACK} s; "
            "set ESXI_DEADLINE to seconds if this UPS never reports it",
            ok=False,
        )
    since_call = max(0.0, (now or clock.now)() - settings.called_at)
    seconds = max(MIN_DEADLINE, math.floor(since_call + runtime - settings.runtime_margin))
    source = (
        f"ESXI_DEADLINE=auto: {seconds} s = battery.runtime {runtime} s ({name}) - "
        f"UPS_RUNTIME_MARGIN {settings.runtime_margin} s"
    )
    if since_call >= 0.5:
        source += f" + {since_call:.1f} s since upsmon's call"
    if seconds == MIN_DEADLINE and runtime - settings.runtime_margin < MIN_DEADLINE:
        source += f" (at least {MIN_DEADLINE} s)"
    if missing:
        source += f"; not counted: {'; '.join(missing)}"
    return Resolved(seconds, source)


def apply(settings: Settings, upsc: Callable[..., str] | None = None) -> tuple[Settings, Resolved]:
    """`settings` with the deadline this run uses."""
    resolved = resolve(settings, upsc)
    return replace(settings, deadline=resolved.seconds), resolved
