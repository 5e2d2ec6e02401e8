"""Programs run in a private mount namespace whose /run is an empty tmpfs.

NUT's upsmon 2.8 writes `/run/nut/upsmon.pid` whatever NUT_ALTPIDPATH says, and refuses to
start when that file names a live process ("A previous upsmon instance is already running!").
On an admin's machine the test's upsmon would then fail, or overwrite the pid file of the
admin's own upsmon. So the tests run NUT's programs inside a `PrivateRun`:

- `unshare --mount --propagation private` makes a mount namespace; nothing mounted in it
  reaches the machine's, and it goes away with its last process;
- a tmpfs is mounted over `/run` in it, holding an empty `/run/nut`: upsmon's pid file, the
  `esxi-suspend` lock files (`/run/esxi-suspend`), utmp (so upsmon's WALL messages reach no
  terminal) and systemd's journal socket (`/dev/log` links to it) are private or gone;
- a syslog socket that is not under /run (`/dev/log` of a syslog daemon) gets `/dev/null`
  bound over it: what runs inside logs nothing to the machine's syslog, and `esxi-suspend`
  logs every step on stderr, where the test reads it.

A holder process (`sleep`) keeps the namespace; `argv()` runs a program in it with `nsenter`
(it execs: the process you start is the program), `path()` reads a file as the namespace sees
it (`/proc/PID/root`). A `PrivateRun` can be made inside another (`outside`): the test that
stands an "admin's upsmon" in one namespace runs the chain in a namespace made from there.

Leaving the `with` block kills whatever still runs in the namespace. This module knows
nothing of pytest: `Unavailable` (not root, no unshare, no mount allowed) becomes a skip, or
a failure when CI=true.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
READY_TIMEOUT = 10.0
SYSLOG_SOCKETS = ("/dev/log", "/var/run/syslog", "/var/run/log")  # esxi_suspend.logs

# `mount -n`: libmount records nothing in /run/mount/utab (without -n the first mount would
# create /run/mount on the machine's /run when it is missing)
SETUP = f"""\
set -e
mount -n -t tmpfs -o mode=0755,size=8m esxi-suspend-tests /run
mkdir -m 0755 /run/nut
for socket in {" ".join(SYSLOG_SOCKETS)}; do
    if [ -S "$socket" ]; then mount -n --bind /dev/null "$socket"; fi
done
echo ready
exec sleep infinity
"""


class Unavailable(Exception):
    """This machine cannot make a private mount namespace with a tmpfs (not root, no unshare,
    mounts not allowed): skip, or fail on CI."""


@dataclass
class PrivateRun:
    holder: subprocess.Popen[bytes]
    namespace_fd: int  # an open /proc/PID/ns/mnt: the namespace cannot end (or its inode be
    # reused by another) while this is open

    @property
    def namespace(self) -> tuple[int, int]:
        info = os.fstat(self.namespace_fd)
        return info.st_dev, info.st_ino

    def argv(self, *argv: str) -> list[str]:
        """`argv` run inside the namespace (nsenter execs it: same pid as the one started)."""
        nsenter = shutil.which("nsenter", path=PATH)
        assert nsenter is not None  # checked by private_run
        return [nsenter, f"--target={self.holder.pid}", "--mount", "--", *argv]

    def path(self, inside: str | Path) -> Path:
        """Where the file the namespace sees at `inside` (absolute) is, seen from here."""
        return Path(f"/proc/{self.holder.pid}/root") / str(inside).lstrip("/")

    def contains(self, pid: int) -> bool:
        try:
            info = os.stat(f"/proc/{pid}/ns/mnt")
        except OSError:
            return False
        return (info.st_dev, info.st_ino) == self.namespace

    def processes(self) -> list[int]:
        """Live processes in the namespace, the holder included."""
        return [
            int(p.name)
            for p in Path("/proc").iterdir()
            if p.name.isdigit() and self.contains(int(p.name))
        ]


def _tools() -> tuple[str, str]:
    unshare, nsenter = shutil.which("unshare", path=PATH), shutil.which("nsenter", path=PATH)
    if not (unshare and nsenter):
        raise Unavailable("unshare or nsenter not found (util-linux)")
    if os.geteuid() != 0:
        raise Unavailable("a private mount namespace with a tmpfs over /run needs root")
    return unshare, nsenter


@contextlib.contextmanager
def private_run(log: Path, outside: PrivateRun | None = None) -> Iterator[PrivateRun]:
    """A private mount namespace with a fresh tmpfs over /run; `log` gets the setup's errors.

    Made from the machine's namespace, or from inside `outside`.
    """
    unshare, _nsenter = _tools()
    argv = [unshare, "--mount", "--propagation", "private", "--", "sh", "-c", SETUP]
    if outside is not None:
        argv = outside.argv(*argv)
    with log.open("ab") as errors:
        holder = subprocess.Popen(
            argv,
            env={"PATH": PATH},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=errors,
            start_new_session=True,
            cwd="/",
        )
    namespace_fd = -1
    try:
        assert holder.stdout is not None
        ready, _, _ = select.select([holder.stdout], [], [], READY_TIMEOUT)
        line = holder.stdout.readline() if ready else b""
        if line != b"ready\n":
            _stop(holder)
            errors_text = log.read_text(errors="replace").strip() or "it never said ready"
            raise Unavailable(
                f"cannot mount a tmpfs over /run in a private mount namespace (unshare --mount): "
                f"{errors_text}"
            )
        namespace_fd = os.open(f"/proc/{holder.pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        run = PrivateRun(holder, namespace_fd)
        if run.namespace == _own_namespace():  # cannot be: unshare said ready
            raise Unavailable("unshare --mount left the holder in this namespace")
        yield run
    finally:
        _stop(holder)
        if holder.stdout is not None:
            holder.stdout.close()
        if namespace_fd >= 0:
            try:
                _kill_all(PrivateRun(holder, namespace_fd))
            finally:
                os.close(namespace_fd)


def _own_namespace() -> tuple[int, int]:
    info = os.stat("/proc/self/ns/mnt")
    return info.st_dev, info.st_ino


def _stop(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=5)


def _kill_all(run: PrivateRun, timeout: float = 5.0) -> None:
    """SIGKILL what still runs in the namespace; fail if something survives."""
    deadline = time.monotonic() + timeout
    while pids := run.processes():
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes in the private namespace survive SIGKILL: {pids}")
        time.sleep(0.02)
