"""What a test session leaves behind on the machine: a snapshot before, a comparison after.

The suite runs on an admin's machine, next to the real NUT and sshd. `conftest.py` takes a
`snapshot()` when the session starts and, when it ends, removes the lock files the session's
runs of `esxi-suspend shutdown` created and an empty `/run/sshd` it created (`clean`), then
lists with `leftovers()` everything still different:

- `/tmp`: entries that did not exist before (pytest's own `pytest-of-*` excepted: pytest
  keeps and prunes its base temporary directories itself);
- `/run/esxi-suspend`: entries that did not exist before (the directory too);
- `/run/nut`: any entry created, removed or changed (the admin's NUT state, upsmon's pid file);
- `/run`: entries that did not exist before (`/run/sshd`, which the OpenSSH fixtures create for
  sshd when it is missing, is removed if the session created it and left it empty);
- the working tree: `git status --porcelain` lines that appeared or disappeared.

This module knows nothing of pytest.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

TMP = Path("/tmp")
# tests/run.sh gives the session a temporary directory of its own ($TMPDIR, under /tmp): all
# that is left there is ours. In /tmp itself, on a machine where other programs write too,
# only our own names count then.
SESSION_TMP = Path(os.environ.get("TMPDIR") or TMP)
OWN_TMP_NAMES = ("esxi-*",)
RUN = Path("/run")
SSHD_RUN = RUN / "sshd"
LOCK_DIR = Path("/run/esxi-suspend")  # esxi_suspend.lock.LOCK_DIR
NUT_RUN = Path("/run/nut")
TMP_IGNORED = ("pytest-of-*",)
LOCK_NAME = re.compile(r"[A-Za-z0-9_.:-]+:\d+\.lock")  # esxi_suspend.lock.lock_path


@dataclass(frozen=True)
class Entry:
    kind: str
    size: int
    mtime_ns: int
    inode: int

    def __str__(self) -> str:
        return f"{self.kind}, {self.size} bytes, mtime {self.mtime_ns / 1e9:.0f}"


Listing = dict[str, Entry]


@dataclass(frozen=True)
class Snapshot:
    tmp: Listing | None
    run: Listing | None
    lock_dir: Listing | None
    nut_run: Listing | None
    git_status: frozenset[str] | None  # None: no git, or not a work tree
    session_tmp: Listing | None = None  # $TMPDIR's entries, when it is not /tmp itself


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "directory"), (stat.S_ISLNK, "symlink")):
        if test(mode):
            return name
    return "socket" if stat.S_ISSOCK(mode) else "file"


def listing(directory: Path) -> Listing | None:
    """Name -> Entry for each entry of `directory` (not followed); None if it is not there."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return None
    entries = {}
    for name in names:
        try:
            info = os.lstat(directory / name)
        except FileNotFoundError:  # gone between the listing and the look
            continue
        entries[name] = Entry(_kind(info.st_mode), info.st_size, info.st_mtime_ns, info.st_ino)
    return entries


def git_status(worktree: Path) -> frozenset[str] | None:
    git = shutil.which("git")
    if git is None:
        return None
    result = subprocess.run(
        [git, "status", "--porcelain", "--untracked-files=all"],
        cwd=worktree,
        capture_output=True,
        text=True,
        timeout=60,
        # read only: no refresh of .git/index under a concurrent git command
        env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"},
    )
    if result.returncode != 0:  # not a work tree (an unpacked release): nothing to compare
        return None
    return frozenset(result.stdout.splitlines())


def snapshot(worktree: Path) -> Snapshot:
    own = listing(SESSION_TMP) if SESSION_TMP.resolve() != TMP.resolve() else None
    return Snapshot(
        listing(TMP),
        listing(RUN),
        listing(LOCK_DIR),
        listing(NUT_RUN),
        git_status(worktree),
        own,
    )


def held_locks() -> set[str]:
    """`MAJ:MIN:INODE` (hex device numbers) of every file another process holds a lock on now
    (a lock of this process is one an in-process test left open: it goes when pytest exits)."""
    try:
        text = Path("/proc/locks").read_text()
    except OSError:
        return set()
    held = set()
    for pid, file in re.findall(r"\b(\d+) ([0-9a-f]+:[0-9a-f]+:\d+) ", text):
        if int(pid) != os.getpid():
            held.add(file)
    return held


def _lock_id(info: os.stat_result) -> str:
    return f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"


def clean(before: Snapshot) -> list[str]:
    """Remove what the session leaves by design (`remove_new_locks`, an empty `/run/sshd` it
    created); return what was removed."""
    removed = remove_new_locks(before)
    if before.run is not None and SSHD_RUN.name not in before.run:
        try:
            SSHD_RUN.rmdir()
        except OSError:  # not there, or in use: what is left is reported
            pass
        else:
            removed.append(f"{SSHD_RUN}/")
    return removed


def remove_new_locks(before: Snapshot) -> list[str]:
    """Remove the lock files created in `LOCK_DIR` since `before` that no process holds now,
    and the directory itself if it was not there before and is left empty; return the
    removed names.

    A `shutdown` run leaves its `HOST:PORT.lock` behind by design (the kernel drops the lock,
    the file stays): the tests' hosts are new ports each time. A lock file nobody holds is
    only a name: removing one, even a real host's, changes nothing for the next run. One that
    is held belongs to a process still running: it is left, and reported as a leftover.
    """
    now = listing(LOCK_DIR)
    if now is None:
        return []
    old = before.lock_dir or {}
    held = held_locks()
    removed = []
    for name in sorted(set(now) - set(old)):
        path = LOCK_DIR / name
        if not LOCK_NAME.fullmatch(name):
            continue
        try:
            info = os.lstat(path)
            if not stat.S_ISREG(info.st_mode) or _lock_id(info) in held:
                continue
            path.unlink()
        except FileNotFoundError:
            continue
        removed.append(name)
    if before.lock_dir is None:
        try:
            LOCK_DIR.rmdir()
        except OSError:  # not empty: what is left is reported
            pass
        else:
            removed.append(f"{LOCK_DIR}/ (the directory)")
    return removed


def _created(where: Path, old: Listing | None, new: Listing | None) -> list[str]:
    if new is None:
        return []
    if old is None:
        return [f"{where}/ (created, holding {sorted(new) or 'nothing'})"]
    return [f"{where / name} ({new[name]})" for name in sorted(set(new) - set(old))]


def _changed(where: Path, old: Listing | None, new: Listing | None) -> list[str]:
    if old is None or new is None:
        return [] if old is new else [f"{where}/ ({'removed' if new is None else 'created'})"]
    lines = [f"{where / name} (removed)" for name in sorted(set(old) - set(new))]
    lines += _created(where, old, new)
    lines += [
        f"{where / name} (changed: was {old[name]}, now {new[name]})"
        for name in sorted(set(old) & set(new))
        if old[name] != new[name]
    ]
    return lines


def leftovers(before: Snapshot, after: Snapshot) -> list[str]:
    """One line per difference that the session must not leave."""

    def kept(listing: Listing | None, ignored: tuple[str, ...]) -> Listing | None:
        if listing is None:
            return None
        return {
            name: entry
            for name, entry in listing.items()
            if not any(fnmatch.fnmatch(name, pattern) for pattern in ignored)
        }

    if before.session_tmp is None:
        lines = _created(TMP, kept(before.tmp, TMP_IGNORED), kept(after.tmp, TMP_IGNORED))
    else:  # our own $TMPDIR: all of it; /tmp: our names only, the session's $TMPDIR aside

        def ours(listing: Listing | None) -> Listing | None:
            if listing is None:
                return None
            return {
                name: entry
                for name, entry in listing.items()
                if any(fnmatch.fnmatch(name, p) for p in OWN_TMP_NAMES)
                and TMP / name != SESSION_TMP
            }

        lines = _created(TMP, ours(before.tmp), ours(after.tmp))
        lines += _created(
            SESSION_TMP,
            kept(before.session_tmp, TMP_IGNORED),
            kept(after.session_tmp, TMP_IGNORED),
        )
    # /run/esxi-suspend and /run/nut are compared below, entry by entry
    run_ignored = (LOCK_DIR.name, NUT_RUN.name)
    lines += _created(RUN, kept(before.run, run_ignored), kept(after.run, run_ignored))
    lines += _created(LOCK_DIR, before.lock_dir, after.lock_dir)
    lines += _changed(NUT_RUN, before.nut_run, after.nut_run)
    if before.git_status is not None and after.git_status is not None:
        lines += [
            f"git status: new {line!r}" for line in sorted(after.git_status - before.git_status)
        ]
        lines += [
            f"git status: gone {line!r}" for line in sorted(before.git_status - after.git_status)
        ]
    return lines
