"""The early shutdown: is upssched's timer set as UPS_EARLY_SHUTDOWN says? (`check` asks.)

`OB LB` comes with one to three minutes of battery left: often less than a host full of VMs
needs. NUT's upssched starts a timer on ONBATT and cancels it on ONLINE; when it fires, the
timer script (`upssched-cmd`, installed by install.sh) runs `upsmon -c fsd`, and upsmon runs
its SHUTDOWNCMD, us, at once. install.sh --configure-upsmon writes the timer with the delay
UPS_EARLY_SHUTDOWN gives; this module only reads NUT's files to tell whether that is so.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from esxi_suspend.nut.ups import conf_lines, upsmon_confs

TIMER = "early-shutdown"  # the timer's name in upssched.conf and the script's argument
_TIMER_RE = re.compile(
    r"^\s*AT\s+ONBATT\s+\S+\s+START-TIMER\s+" + re.escape(TIMER) + r"\s+([0-9]+)\s*(?:#.*)?$",
    re.MULTILINE,
)


@dataclass(frozen=True)
class EarlyShutdown:
    """What NUT's files say: the timer's delay (None: no timer), and why not, if not set."""

    seconds: int | None
    where: str  # the upssched.conf read, or what was looked at
    problem: str = ""  # upsmon.conf does not run upssched on ONBATT: the timer never starts


def upsmon_runs_upssched(text: str) -> str:
    """'' if upsmon.conf's NOTIFYCMD is upssched and ONBATT and ONLINE carry EXEC; else why not."""
    lines = conf_lines(text)
    command = next((w[1] for w in lines if w[0].upper() == "NOTIFYCMD" and len(w) > 1), None)
    if command is None or Path(command).name != "upssched":
        return f"upsmon.conf's NOTIFYCMD is {command or 'not set'}, not upssched"
    flags = {
        w[1].upper(): w[2].upper() for w in lines if w[0].upper() == "NOTIFYFLAG" and len(w) > 2
    }
    without = [e for e in ("ONBATT", "ONLINE") if "EXEC" not in flags.get(e, "").split("+")]
    if without:
        return f"upsmon.conf's NOTIFYFLAG {' and '.join(without)} lack(s) EXEC"
    return ""


def read(paths: Sequence[Path] | None = None) -> EarlyShutdown:
    """The early-shutdown timer NUT's configuration holds (upssched.conf beside upsmon.conf)."""
    looked: list[str] = []
    for upsmon_conf, upsmon_text, why in upsmon_confs(paths):
        if upsmon_text is None:
            looked.append(f"{upsmon_conf}: {why}")
            continue
        conf = upsmon_conf.with_name("upssched.conf")
        try:
            match = _TIMER_RE.search(conf.read_text(encoding="utf-8", errors="replace"))
        except OSError:
            return EarlyShutdown(None, f"{conf}: not found")
        if match is None:
            return EarlyShutdown(None, f"{conf}: no `AT ONBATT * START-TIMER {TIMER}` line")
        return EarlyShutdown(int(match.group(1)), str(conf), upsmon_runs_upssched(upsmon_text))
    return EarlyShutdown(None, "; ".join(looked) or "no upsmon.conf")


def describe(wanted: int, found: EarlyShutdown) -> tuple[bool, str]:
    """`check`'s line on the early shutdown: (as UPS_EARLY_SHUTDOWN says?, the line)."""
    fix = "run install.sh --configure-upsmon (or see docs/outage.md, Early shutdown)"
    if wanted == 0:
        if found.seconds is None:
            return True, "off (UPS_EARLY_SHUTDOWN=0): the shutdown starts at low battery (OB LB)"
        return False, (
            f"UPS_EARLY_SHUTDOWN=0, but {found.where} still starts a {found.seconds} s timer; {fix}"
        )
    if found.seconds is None:
        return False, (
            f"UPS_EARLY_SHUTDOWN={wanted}, but no timer is set ({found.where}): the shutdown "
            f"starts only at low battery (OB LB); {fix}"
        )
    if found.problem:
        return False, f"{found.where} sets {found.seconds} s, but {found.problem}; {fix}"
    if found.seconds != wanted:
        return False, (
            f"UPS_EARLY_SHUTDOWN={wanted}, but {found.where} says {found.seconds} s; {fix}"
        )
    return True, (
        f"after {wanted} s on battery ({found.where}; upssched runs upsmon -c fsd), or at low "
        "battery if that comes first"
    )
