"""This machine: its local programs, found as upsmon's minimal environment would find them, and
its SMBIOS UUID.

The one module that starts local processes: on a fixed system PATH as well as ours, never through
a shell, always bounded.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def search_path() -> str:
    own = os.environ.get("PATH", "")
    return f"{own}:{SYSTEM_PATH}" if own else SYSTEM_PATH


def which(program: str) -> str | None:
    if "/" in program:
        return program if os.access(program, os.X_OK) and os.path.isfile(program) else None
    return shutil.which(program, path=search_path())


def run_program(
    argv: Sequence[str], timeout: float, env: Mapping[str, str | None] | None = None
) -> subprocess.CompletedProcess[str]:
    """A local program, as upsmon's minimal environment would find it: our PATH, no stdin, cwd
    /, output captured; bounded (subprocess.TimeoutExpired), OSError if it cannot start.

    `env`: variables set for this program only (None: taken out), e.g. a secret it reads
    from its environment rather than from its command line."""
    environment = {**os.environ, "PATH": search_path()}
    for name, value in (env or {}).items():
        if value is None:
            environment.pop(name, None)
        else:
            environment[name] = value
    return subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        errors="replace",
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
        env=environment,
        cwd="/",
    )


def start_detached(argv: Sequence[str]) -> int:
    """Start a program that outlives us (its own session, cwd /, our PATH); its pid. Its
    stderr is ours only when that is a regular file: a pipe would keep its reader waiting
    until the program ends. OSError if it cannot start."""
    stderr: int | None = subprocess.DEVNULL
    try:
        if stat.S_ISREG(os.fstat(2).st_mode):
            stderr = None
    except OSError:
        pass
    process = subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        start_new_session=True,
        close_fds=True,
        cwd="/",
        env={**os.environ, "PATH": search_path()},
    )
    return process.pid


DMI = Path("/sys/class/dmi/id")


def smbios_uuid() -> str | None:
    """This machine's SMBIOS UUID when it is a VMware VM (root can read it), else None."""
    try:
        if "vmware" not in (DMI / "sys_vendor").read_text().lower():
            return None
        return (DMI / "product_uuid").read_text().strip() or None
    except OSError:
        return None
