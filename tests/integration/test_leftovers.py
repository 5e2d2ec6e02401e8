"""The session's leftovers check (leftovers.py, run by conftest.py) finds what it must find.

The comparisons are pure: a table of snapshots. Two tests use the machine itself, each with a
name of its own that it removes: a directory in /tmp, and lock files in /run/esxi-suspend (one
held by a process, which must be reported and kept, one not, which is removed).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import leftovers
import pytest
from leftovers import Entry, Snapshot
from sshservers import free_port

ROOT = Path(__file__).resolve().parents[2]
FILE = Entry("file", 5, 1_000_000_000, 7)
OTHER = Entry("file", 6, 2_000_000_000, 7)
EMPTY = Snapshot(tmp={}, run={}, lock_dir={}, nut_run={}, git_status=frozenset())
OWN_TMP = replace(EMPTY, session_tmp={})
SESSION_TMP = leftovers.SESSION_TMP


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        (EMPTY, EMPTY, []),
        (EMPTY, replace(EMPTY, tmp={"host.log": FILE}), ["/tmp/host.log (file, 5 bytes"]),
        # an older entry of /tmp that changed: not the session's doing to judge
        (replace(EMPTY, tmp={"old": FILE}), replace(EMPTY, tmp={"old": OTHER}), []),
        (EMPTY, replace(EMPTY, tmp={"pytest-of-root": FILE}), []),  # pytest prunes its own
        (EMPTY, replace(EMPTY, run={"mount": FILE}), ["/run/mount ("]),
        (EMPTY, replace(EMPTY, run={"esxi-suspend": FILE}), []),  # compared on its own
        (
            EMPTY,
            replace(EMPTY, lock_dir={"127.0.0.1:2222.lock": FILE}),
            ["/run/esxi-suspend/127.0.0.1:2222.lock"],
        ),
        (
            replace(EMPTY, lock_dir=None),
            replace(EMPTY, lock_dir={}),
            ["/run/esxi-suspend/ (created, holding nothing)"],
        ),
        (EMPTY, replace(EMPTY, nut_run={"upsmon.pid": FILE}), ["/run/nut/upsmon.pid (file"]),
        (
            replace(EMPTY, nut_run={"upsmon.pid": FILE}),
            replace(EMPTY, nut_run={"upsmon.pid": OTHER}),
            ["/run/nut/upsmon.pid (changed: was file, 5 bytes"],
        ),
        (replace(EMPTY, nut_run={"upsmon.pid": FILE}), EMPTY, ["/run/nut/upsmon.pid (removed)"]),
        (replace(EMPTY, nut_run=None), replace(EMPTY, nut_run={}), ["/run/nut/ (created)"]),
        (
            replace(EMPTY, git_status=frozenset({" M README.md"})),
            replace(EMPTY, git_status=frozenset({"?? x.log"})),
            ["git status: new '?? x.log'", "git status: gone ' M README.md'"],
        ),
        # no git, or not a work tree, at the start: nothing to compare
        (replace(EMPTY, git_status=None), replace(EMPTY, git_status=frozenset({"?? x"})), []),
        # the session has a $TMPDIR of its own: all of it counts, in /tmp only our names
        (OWN_TMP, replace(OWN_TMP, tmp={"other-tool-1": FILE}), []),
        (OWN_TMP, replace(OWN_TMP, tmp={"esxi-x": FILE}), ["/tmp/esxi-x (file"]),
        (OWN_TMP, replace(OWN_TMP, session_tmp={"tmpab": FILE}), [f"{SESSION_TMP}/tmpab (file"]),
        (OWN_TMP, replace(OWN_TMP, session_tmp={"pytest-of-root": FILE}), []),
    ],
)
def test_what_counts_as_a_leftover(before: Snapshot, after: Snapshot, expected: list[str]) -> None:
    lines = leftovers.leftovers(before, after)
    assert len(lines) == len(expected), lines
    for line, start in zip(lines, expected):
        assert line.startswith(start), lines


def test_a_new_entry_in_tmp_is_found() -> None:
    before = leftovers.snapshot(ROOT)
    probe = Path(tempfile.mkdtemp(prefix="esxi-suspend-leftover-probe-", dir=leftovers.TMP))
    try:
        found = leftovers.leftovers(before, leftovers.snapshot(ROOT))
    finally:
        probe.rmdir()
    assert [line for line in found if line.startswith(f"{probe} (directory")], found
    assert not [
        line for line in leftovers.leftovers(before, leftovers.snapshot(ROOT)) if str(probe) in line
    ]


def test_lock_files_of_the_session_are_removed_unless_held() -> None:
    flock = shutil.which("flock")
    if flock is None or os.geteuid() != 0:
        pytest.skip("needs root and flock (util-linux)")
    before = leftovers.snapshot(ROOT)
    names = [f"127.0.0.1:{port}.lock" for port in _unused_ports(before, 2)]
    free, held = (leftovers.LOCK_DIR / name for name in names)
    leftovers.LOCK_DIR.mkdir(mode=0o700, exist_ok=True)
    free.touch(mode=0o600)
    holder = subprocess.Popen(
        [flock, "--exclusive", str(held), "sleep", "60"], start_new_session=True
    )
    try:
        deadline = time.monotonic() + 10
        while not (held.exists() and leftovers._lock_id(held.stat()) in leftovers.held_locks()):
            assert time.monotonic() < deadline, "flock did not take the lock"
            time.sleep(0.02)
        removed = leftovers.clean(before)
        assert free.name in removed and not free.exists()
        assert held.name not in removed and held.exists()
        found = leftovers.leftovers(before, leftovers.snapshot(ROOT))
        assert [line for line in found if line.startswith(str(held))], found
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(holder.pid, signal.SIGKILL)
        holder.wait(timeout=5)
    assert held.name in leftovers.clean(before)  # no longer held: removed
    assert not held.exists()


def _unused_ports(before: Snapshot, count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        name = f"127.0.0.1:{port}.lock"
        new = name not in (before.lock_dir or {}) and not (leftovers.LOCK_DIR / name).exists()
        if new and port not in ports:
            ports.append(port)
    return ports
