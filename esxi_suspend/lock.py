"""One shutdown sequence per host at a time: a lock file per host and port.

upsmon runs SHUTDOWNCMD once, but a second run can start while one is under way (a person
running `shutdown` by hand, a restarted upsmon, two UPSes feeding one host). The host must get
one autostop and one poweroff, and the local NUT monitor must not be restarted under the run
that is still shutting the host down (with systemd that restart stops that run). So a second
run does not wait: it sees the lock held, logs who holds it, and exits with ExitCode.LOCKED,
doing nothing; the run holding the lock powers the host off and restarts the monitor.

The lock is `flock` on `/run/esxi-suspend/HOST:PORT.lock` (a root-only directory, so no other
user can hold it to block a shutdown). The kernel drops it when its holder exits, however it
exits. A lock that cannot be taken for any other reason (not root, no /run) only warns: the
lock must never be the reason a host stays up.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import re
import stat
from pathlib import Path

from esxi_suspend.errors import EsxiSuspendError, ExitCode

log = logging.getLogger(__name__)

LOCK_DIR = Path("/run/esxi-suspend")


class HeldElsewhere(EsxiSuspendError):
    """Another run holds this host's lock: it does the sequence and the local restart."""

    exit_code = ExitCode.LOCKED


def lock_path(host: str, port: int, directory: Path = LOCK_DIR) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.:-]", "_", host) or "_"
    return directory / f"{safe}:{port}.lock"


def acquire(host: str, port: int, directory: Path = LOCK_DIR) -> int | None:
    """Take the host's lock and return its descriptor, held until this process exits.

    Raise HeldElsewhere if another process holds it; return None (after a warning) if the
    lock cannot be used at all, so the run goes on without it.
    """
    path = lock_path(host, port, directory)
    try:
        fd = _open(path)
    except OSError as exc:
        log.warning(
            "lock %s cannot be used (%s); going on without it: a second run at the same "
            "time would not be stopped",
            path,
            exc.strerror or exc,
        )
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = _read_holder(fd)
        os.close(fd)
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            log.warning("lock %s: %s; going on without it", path, exc.strerror or exc)
            return None
        raise HeldElsewhere(
            f"host {host}: another esxi-suspend run ({holder}) is already shutting it down "
            f"(lock {path}); this run does nothing: that run powers the host off and restarts "
            "the local NUT monitor. If no such run exists, nothing holds the lock any more: "
            "run again"
        ) from None
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _open(path: Path) -> int:
    path.parent.mkdir(mode=0o700, exist_ok=True)
    info = os.lstat(path.parent)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
        raise OSError(errno.EPERM, f"{path.parent} is not a directory owned by this user")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise OSError(errno.EPERM, f"{path.parent} is writable by group or others")
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    return os.open(path, flags, 0o600)


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        text = ""
    return f"pid {text}" if text.isdigit() else "pid unknown"


PROC_LOCKS = Path("/proc/locks")


def held(host: str, port: int, directory: Path = LOCK_DIR, proc_locks: Path = PROC_LOCKS) -> bool:
    """Whether some process holds the host's lock now: read from /proc/locks, never by taking
    the lock (a look that took it, even briefly, could turn a real shutdown away)."""
    try:
        status = os.stat(lock_path(host, port, directory))
        text = proc_locks.read_text(encoding="ascii", errors="replace")
    except OSError:
        return False
    wanted = (os.major(status.st_dev), os.minor(status.st_dev), status.st_ino)
    for line in text.splitlines():
        fields = line.split()
        if "FLOCK" not in fields or "->" in fields:  # `->`: a process waiting for it
            continue
        for field in fields:
            parts = field.split(":")
            if len(parts) != 3:
                continue
            with contextlib.suppress(ValueError):
                if (int(parts[0], 16), int(parts[1], 16), int(parts[2])) == wanted:
                    return True
    return False
