"""NUT's side: which UPSes this machine watches, their status (`upsc`, bounded), the wait for power.

upsmon exits after its SHUTDOWNCMD has run; a monitor restarted while the UPS is still `OB LB`
calls us again at once. So after the host steps a shutdown run waits, polling the UPS status,
until the UPS is back on line, and only then restarts the monitor (outage.py; which hosts it
powered off is in the outage record, record.py).

Every look at the UPS is one `upsc UPS ups.status`, bounded by UPSC_TIMEOUT; a status that
cannot be read is an answer too ("unreadable"), never a hang.
"""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from esxi_suspend import clock
from esxi_suspend.machine import run_program, search_path, which
from esxi_suspend.settings.values import parse_ups_name

log = logging.getLogger(__name__)

UPSC_TIMEOUT = 5.0
UPSMON_CONF_DIRS = (Path("/etc/nut"), Path("/etc/ups"))  # Debian/Fedora, older Fedora
CONFPATH_VARIABLE = "NUT_CONFPATH"  # NUT's own: where its programs read their *.conf
MONITOR_TYPES = ("primary", "secondary", "master", "slave")
UNREADABLE_LIMIT = 3  # looks in a row without a status end a wait


class UpsUnreadable(Exception):
    """The UPS status cannot be read: no upsc, upsd down, unknown UPS, no UPS configured."""


def upsmon_conf_paths() -> list[Path]:
    """Where upsmon.conf is: $NUT_CONFPATH (as NUT's programs read it), else /etc/nut, /etc/ups."""
    configured = os.environ.get(CONFPATH_VARIABLE)
    if configured:
        return [Path(configured) / "upsmon.conf"]
    return [directory / "upsmon.conf" for directory in UPSMON_CONF_DIRS]


def conf_lines(text: str) -> list[list[str]]:
    """A NUT .conf file's lines as upsmon reads them: words, quotes and `#` comments
    understood; blank lines and lines with an unbalanced quote (upsmon would not read them
    either) left out."""
    lines: list[list[str]] = []
    for line in text.splitlines():
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            continue
        if words:
            lines.append(words)
    return lines


def parse_monitor_lines(text: str) -> list[str]:
    """The UPSes of `MONITOR ups@host[:port] powervalue user password type` lines.

    A power value of 0 (monitoring only: that UPS does not feed this machine) is left out,
    unless every line has 0. Lines that are not MONITOR lines, or do not parse, are skipped.
    """
    feeding: list[str] = []
    monitored: list[str] = []
    for words in conf_lines(text):
        if len(words) < 6 or words[0].upper() != "MONITOR":
            continue
        system, power, kind = words[1], words[2], words[5].lower()
        if kind not in MONITOR_TYPES or not power.isdigit():
            continue
        try:
            name = parse_ups_name(system)
        except ValueError:
            continue
        monitored.append(name)
        if int(power) > 0:
            feeding.append(name)
    return list(dict.fromkeys(feeding or monitored))


def upsmon_confs(paths: Sequence[Path] | None = None) -> Iterator[tuple[Path, str | None, str]]:
    """Each upsmon.conf where upsmon looks (upsmon_conf_paths): its path, its text (None if
    it cannot be read), and why not."""
    for path in paths if paths is not None else upsmon_conf_paths():
        try:
            yield path, path.read_text(encoding="utf-8", errors="replace"), ""
        except FileNotFoundError:
            yield path, None, "not found"
        except OSError as exc:
            yield path, None, str(exc.strerror or exc)


def monitored_upses(paths: Sequence[Path] | None = None) -> tuple[list[str], str]:
    """The UPSes upsmon.conf's MONITOR lines name, and where they were read (or why none)."""
    tried: list[str] = []
    for path, text, why in upsmon_confs(paths):
        names = parse_monitor_lines(text) if text is not None else []
        if names:
            return names, str(path)
        tried.append(f"{path}: {why or 'no MONITOR line'}")
    return [], "; ".join(tried)


def ups_names(configured: tuple[str, ...]) -> list[str]:
    """The UPSes to ask: UPS_NAME's, else upsmon.conf's; raise UpsUnreadable when none."""
    if configured == ("none",):
        raise UpsUnreadable("UPS_NAME=none")
    if configured:
        return list(configured)
    names, where = monitored_upses()
    if not names:
        raise UpsUnreadable(f"no UPS known ({where}); set UPS_NAME=ups@host")
    return names


def upsc(ups: str, variable: str, timeout: float = UPSC_TIMEOUT) -> str:
    """`upsc UPS VARIABLE`'s value; raise UpsUnreadable (what went wrong, one line)."""
    program = which("upsc")
    if program is None:
        raise UpsUnreadable(f"upsc not found (searched {search_path()}; it comes with NUT)")
    try:
        done = run_program([program, ups, variable], timeout)
    except subprocess.TimeoutExpired:
        raise UpsUnreadable(
            f"`upsc {ups} {variable}` gave no answer within {timeout:g} s"
        ) from None
    except OSError as exc:
        raise UpsUnreadable(f"`upsc {ups}` could not start ({exc.strerror or exc})") from None
    value = done.stdout.strip()
    if done.returncode != 0 or not value:
        lines = (done.stderr.strip() or done.stdout.strip()).splitlines()
        tail = lines[-1][:200] if lines else "no output"
        raise UpsUnreadable(f"`upsc {ups} {variable}` exited {done.returncode} ({tail})")
    return value


@dataclass(frozen=True)
class UpsStatus:
    """What every UPS says now: `ups.status` words per UPS, or why it could not be read."""

    statuses: tuple[tuple[str, str], ...]  # (ups, status) for those read
    problems: tuple[str, ...] = ()  # one line per UPS that could not be read

    @property
    def on_battery(self) -> bool:
        """Any UPS on battery (`OB`), or in a forced shutdown (`FSD`): the outage goes on.

        A primary upsmon sets FSD before its SHUTDOWNCMD and upsd keeps it, even once the UPS
        is back on line, until upsd restarts: a monitor restarted under it shuts down again."""
        return any({"OB", "FSD"} & set(status.split()) for _, status in self.statuses)

    @property
    def forced(self) -> bool:
        """Some UPS has FSD set but none is on battery: power is back, FSD stays."""
        words = [set(status.split()) for _, status in self.statuses]
        return any("FSD" in w for w in words) and not any("OB" in w for w in words)

    @property
    def online(self) -> bool:
        """Every UPS read and none on battery: power is back."""
        return bool(self.statuses) and not self.problems and not self.on_battery

    @property
    def unreadable(self) -> bool:
        """Nothing tells us the power is cut, and some UPS could not be read."""
        return not self.on_battery and bool(self.problems)

    def describe(self) -> str:
        parts = [f"{ups}: {status}" for ups, status in self.statuses] + list(self.problems)
        return "; ".join(parts) or "no UPS"


def read_values(
    configured: tuple[str, ...],
    variable: str,
    timeout: float = UPSC_TIMEOUT,
    upsc_: Callable[..., str] | None = None,
) -> tuple[list[tuple[str, str]], list[str]]:
    """`variable` of every UPS, each bounded by `timeout`: (ups, value) for those read, one
    line per one that could not be; never raises."""
    ask = upsc_ or upsc
    try:
        names = ups_names(configured)
    except UpsUnreadable as exc:
        return [], [str(exc)]
    values: list[tuple[str, str]] = []
    problems: list[str] = []
    for name in names:
        try:
            values.append((name, ask(name, variable, timeout)))
        except UpsUnreadable as exc:
            problems.append(str(exc))
    return values, problems


def read_status(
    configured: tuple[str, ...],
    timeout: float = UPSC_TIMEOUT,
    upsc_: Callable[..., str] | None = None,
) -> UpsStatus:
    """Every UPS's `ups.status`, each bounded by `timeout`; never raises."""
    values, problems = read_values(configured, "ups.status", timeout, upsc_)
    statuses = tuple((name, " ".join(value.split())) for name, value in values)
    return UpsStatus(statuses, tuple(problems))


# -- the wait --------------------------------------------------------------------------------


@dataclass(frozen=True)
class WaitResult:
    """How a wait for power ended: `online`, `unreadable`, `limit` or `stopped` (SIGTERM)."""

    outcome: str
    seconds: float
    detail: str


STEP = 0.25  # the wait sleeps in slices this long, so SIGTERM is seen soon: no busy loop


def wait_for_power(
    configured: tuple[str, ...],
    poll_interval: float,
    limit: float,
    stopped: Callable[[], bool],
    on_look: Callable[[], None] = lambda: None,
    read: Callable[[tuple[str, ...]], UpsStatus] = read_status,
    on_forced: Callable[[UpsStatus], None] | None = None,
) -> WaitResult:
    """Poll the UPS status every `poll_interval` s until power is back, it cannot be read
    UNREADABLE_LIMIT times in a row, `limit` s pass, or `stopped()` says so (SIGTERM)."""
    started = time.monotonic()
    unreadable = 0
    told = False
    while True:
        elapsed = time.monotonic() - started
        if stopped():
            return WaitResult("stopped", elapsed, "SIGTERM received")
        if elapsed >= limit:
            return WaitResult("limit", elapsed, f"still on battery after {elapsed:.0f} s")
        clock.pause(poll_interval, stopped, STEP)
        if stopped():
            continue
        status = read(configured)
        on_look()
        elapsed = time.monotonic() - started
        if status.online:
            return WaitResult("online", elapsed, status.describe())
        if status.on_battery:
            unreadable = 0
            if status.forced and not told:
                told = True
                if on_forced is not None:  # e.g. clear it (outage.py)
                    on_forced(status)
                    continue
                log.warning(
                    "ups: %s: power is back but upsd still has FSD (forced shutdown) set: a "
                    "NUT monitor restarted now would shut down again; waiting until it is "
                    "cleared (it is when upsd restarts, e.g. systemctl restart nut-server)",
                    status.describe(),
                )
            continue
        unreadable += 1
        log.warning("ups: status unreadable while waiting for power: %s", status.describe())
        if unreadable >= UNREADABLE_LIMIT:
            return WaitResult("unreadable", elapsed, status.describe())
