"""The outage record: which hosts this machine powered off in this outage, and when.

upsmon calls us again when the NUT monitor is restarted while the UPS is still on battery. A
run that starts during the same outage (an admin restarting the monitor by hand) reads this
small file under /run/esxi-suspend and leaves those hosts alone (outage.py). Once power is
back the record stays while the wake waits for steady mains and battery (powerback.py): it
names that wait (`wake`, a token), so a run of a second outage cancels it by taking the record
over, and the one that claims the record wakes the hosts. It also keeps how long the hosts'
shutdown took (`shutdown_seconds`), the battery a wake must leave for the next one. Its own
module: the file's format, its freshness and its atomic write and claim are one thing, apart
from asking NUT.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

STATE_DIR = Path("/run/esxi-suspend")  # lock.LOCK_DIR: root only, gone at reboot
RECORD_NAME = "outage.json"
# The waiting run touches the record at every look at the UPS; a record not touched for this
# long belongs to no outage we still follow (its run was stopped and power came back).
RECORD_FRESH = 600.0


@dataclass(frozen=True)
class PoweredOff:
    """A host this machine powered off in the outage (the ESXI_HOST entry's host, user, port)."""

    host: str
    user: str
    port: int


@dataclass(frozen=True)
class OutageRecord:
    """Which hosts this machine powered off in this outage, and when (wall clock, epoch s)."""

    hosts: tuple[PoweredOff, ...]
    at: float
    pid: int
    shutdown_seconds: float = 0.0  # how long the hosts took to go down (0: not measured)
    wake: str = ""  # the pending wake's token once power is back ("" : none)
    back_at: float = 0.0  # when power came back (epoch s), for the pending wake

    def describe(self) -> str:
        names = ", ".join(f"{h.host}:{h.port}" for h in self.hosts) or "no host"
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.at))
        wake = ", wake pending" if self.wake else ""
        return f"{names} at {when} (pid {self.pid}{wake})"

    def covers(self, host: str, port: int) -> bool:
        return any(h.host == host and h.port == port for h in self.hosts)


def record_path(directory: Path = STATE_DIR) -> Path:
    return directory / RECORD_NAME


def write_record(record: OutageRecord, directory: Path = STATE_DIR) -> Path:
    """Write the record atomically (root only); raise OSError if it cannot be."""
    directory.mkdir(mode=0o700, exist_ok=True)
    path = record_path(directory)
    data = {
        "hosts": [{"host": h.host, "user": h.user, "port": h.port} for h in record.hosts],
        "at": record.at,
        "pid": record.pid,
        "shutdown_seconds": record.shutdown_seconds,
        "wake": record.wake,
        "back_at": record.back_at,
    }
    tmp = directory / f".{RECORD_NAME}.{os.getpid()}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(tmp, flags, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(data, out)
        out.write("\n")
    os.replace(tmp, path)
    return path


def read_record(directory: Path = STATE_DIR, fresh: float = RECORD_FRESH) -> OutageRecord | None:
    """The record, if there is one and a run touched it within `fresh` seconds; else None.

    A stale, unreadable or malformed record is removed (it describes no outage we follow)."""
    path = record_path(directory)
    try:
        age = time.time() - path.stat().st_mtime
        record = _parse(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("outage record %s cannot be read (%s): removed, not used", path, exc)
        remove_record(directory)
        return None
    if age > fresh:
        log.info(
            "outage record %s is stale (untouched for %.0f s, over %.0f s): removed, not used",
            path,
            age,
            fresh,
        )
        remove_record(directory)
        return None
    return record


def touch_record(directory: Path = STATE_DIR) -> None:
    """Mark the record as followed now (the waiting run does it at every look)."""
    with contextlib.suppress(OSError):
        os.utime(record_path(directory))


def remove_record(directory: Path = STATE_DIR) -> bool:
    """Remove the record; True if this call removed it."""
    try:
        record_path(directory).unlink()
    except FileNotFoundError:
        return False
    return True


def claim_record(directory: Path = STATE_DIR) -> OutageRecord | None:
    """Take the record away (power is back): the one run that gets it wakes the hosts.

    A second waiting run of the same outage gets None."""
    path = record_path(directory)
    claimed = directory / f".{RECORD_NAME}.claimed.{os.getpid()}"
    try:
        os.rename(path, claimed)
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("outage record %s cannot be claimed (%s)", path, exc.strerror or exc)
        return None
    try:
        return _parse(claimed.read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    finally:
        with contextlib.suppress(OSError):
            claimed.unlink()


def _parse(text: str) -> OutageRecord:
    """The record in `text`; raise ValueError, KeyError or TypeError when it is not one."""
    data = json.loads(text)
    hosts = tuple(PoweredOff(str(h["host"]), str(h["user"]), int(h["port"])) for h in data["hosts"])
    return OutageRecord(
        hosts,
        float(data["at"]),
        int(data["pid"]),
        float(data.get("shutdown_seconds", 0.0)),
        str(data.get("wake", "")),
        float(data.get("back_at", 0.0)),
    )
