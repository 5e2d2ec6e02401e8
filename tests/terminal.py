"""Run a command on a pseudo-terminal of its own, as an admin at a shell would, and answer its
prompts: the only way to test a getpass prompt (which reads /dev/tty, never stdin)."""

from __future__ import annotations

import fcntl
import os
import select
import subprocess
import termios
import time
from collections.abc import Mapping, Sequence


def _take_terminal() -> None:
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)  # stdin (the pty) becomes the controlling terminal


def run_on_terminal(
    argv: Sequence[str],
    answers: Sequence[tuple[str, str]] = (),
    env: Mapping[str, str] | None = None,
    timeout: float = 60,
) -> tuple[int, str]:
    """Run `argv`; when the output shows answers[i][0], type answers[i][1] (then the next).

    Returns the exit status and everything the terminal showed (typed text only if echoed).
    """
    master, slave = os.openpty()
    process = subprocess.Popen(
        list(argv),
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=dict(env) if env is not None else None,
        start_new_session=True,
        preexec_fn=_take_terminal,
    )
    os.close(slave)
    shown = b""
    waiting = list(answers)
    searched_from = 0
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the command closed the terminal (exited)
                    break
                if not data:
                    break
                shown += data
                if waiting and waiting[0][0].encode() in shown[searched_from:]:
                    searched_from = len(shown)
                    os.write(master, waiting.pop(0)[1].encode())
            elif process.poll() is not None:
                break
        else:
            process.kill()
            raise TimeoutError(f"{argv} still running after {timeout} s:\n{shown.decode()}")
        status = process.wait(timeout=timeout)
    finally:
        os.close(master)
        if process.poll() is None:
            process.kill()
            process.wait()
    return status, shown.decode("utf-8", "replace").replace("\r\n", "\n")
