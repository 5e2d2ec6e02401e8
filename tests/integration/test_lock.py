"""The per-host lock: a second holder is refused at once and told who holds it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from esxi_suspend import lock
from esxi_suspend.errors import ExitCode


def test_lock_path_is_per_host_and_port(tmp_path: Path) -> None:
    assert lock.lock_path("esxi1", 22, tmp_path) == tmp_path / "esxi1:22.lock"
    assert lock.lock_path("../../etc/x", 22, tmp_path).parent == tmp_path


def test_second_holder_is_refused_with_the_holders_pid(tmp_path: Path) -> None:
    directory = tmp_path / "locks"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from esxi_suspend import lock; "
            f"lock.acquire('esxi1', 22, Path({str(directory)!r})); print('held', flush=True); "
            "time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(lock.HeldElsewhere) as refused:
            lock.acquire("esxi1", 22, directory)
        assert f"pid {holder.pid}" in str(refused.value)
        assert refused.value.exit_code == ExitCode.LOCKED
        other = lock.acquire("esxi1", 2222, directory)  # another port: another lock
        assert other is not None
        os.close(other)
    finally:
        holder.kill()
        holder.wait()
    again = lock.acquire("esxi1", 22, directory)  # the kernel dropped the dead holder's lock
    assert again is not None
    os.close(again)
    assert (directory.stat().st_mode & 0o777) == 0o700


def test_unusable_lock_directory_only_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    open_dir = tmp_path / "open"
    open_dir.mkdir(mode=0o777)
    open_dir.chmod(0o777)

    assert lock.acquire("esxi1", 22, open_dir) is None
    assert "going on without it" in caplog.text
