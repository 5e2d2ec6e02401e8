"""Exit codes and the error classes that carry them.

Library code raises these; only `cli.main` turns them into exit codes and log lines. The codes
grow with severity, so the worst of several outcomes is simply the largest.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """What `esxi-suspend` exits with; documented in `--help`, the man page and docs/outage.md."""

    OK = 0
    USAGE = 2
    LOCAL_RESTART = 3
    REMOTE_COMMAND = 4
    CONNECTION = 5
    CONFIG = 6
    LOCKED = 7  # another run is shutting this host down; this one did nothing
    INTERNAL = 70
    TERMINATED = 143  # 128 + SIGTERM: stopped during the host steps; local restart still run


class EsxiSuspendError(Exception):
    """An expected failure: its message names what is at fault and what to do about it."""

    exit_code = ExitCode.INTERNAL


class ConfigError(EsxiSuspendError):
    """The env file or one of its settings is wrong; lists every problem at once."""

    exit_code = ExitCode.CONFIG

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = list(problems)
        lines = "\n".join(f"  - {problem}" for problem in self.problems)
        super().__init__(f"configuration {source} has {len(self.problems)} problem(s):\n{lines}")


class ConnectionFailed(EsxiSuspendError):
    """The host could not be reached, refused our key, or showed a host key we do not trust."""

    exit_code = ExitCode.CONNECTION


class HostKeyRejected(ConnectionFailed):
    """The host key is unknown or differs from the pinned one: we never talk to such a host."""


class KeyChanged(HostKeyRejected):
    """`trust`: the host shows another key than the pinned one, and --replace was not given."""


class KeyRefused(ConnectionFailed):
    """The host refused our key for the user: `enroll` can authorize it."""


class RemoteCommandFailed(EsxiSuspendError):
    """A command on the host exited non-zero, timed out, or could not be started."""

    exit_code = ExitCode.REMOTE_COMMAND

    def __init__(self, message: str, command: str, exit_status: int | None = None) -> None:
        self.command = command
        self.exit_status = exit_status
        super().__init__(message)


class RemoteTimeout(RemoteCommandFailed):
    """A remote command outlived ESXI_COMMAND_TIMEOUT."""


class SessionDropped(RemoteCommandFailed):
    """The SSH session ended before the command reported an exit status."""


class LocalRestartFailed(EsxiSuspendError):
    """Restarting the local NUT monitor service failed."""

    exit_code = ExitCode.LOCAL_RESTART


# -- setting up (`trust`, `enroll`): talking to a person, never on upsmon's path -----------


class BadArgument(EsxiSuspendError):
    """HOST or --port on the command line is wrong (the env file is not to blame)."""

    exit_code = ExitCode.USAGE


class NotConfirmed(EsxiSuspendError):
    """`trust`: the admin did not say yes (or could not be asked): nothing was changed."""

    exit_code = ExitCode.USAGE


class NoTerminal(EsxiSuspendError):
    """`enroll`: there is no terminal to ask the password on: nothing was changed."""

    exit_code = ExitCode.USAGE


class UserNotSupported(EsxiSuspendError):
    """`enroll`: ESXi 4.x and a user other than root: it cannot tell where its key would last."""

    exit_code = ExitCode.CONFIG


class EnrollFailed(EsxiSuspendError):
    """`enroll`: the key could not be authorized, or key login does not work after it."""

    exit_code = ExitCode.REMOTE_COMMAND


def first_line(exc: BaseException) -> str:
    """A library's exception in one of our messages: its first line, else its type's name."""
    text = str(exc).strip().splitlines()
    return text[0] if text and text[0] else type(exc).__name__


def one_line(exc: BaseException) -> str:
    """One log line: a problem list (a header, then `- item` lines) becomes `header: a; b`."""
    head, *rest = [line.strip(" -") for line in str(exc).splitlines() if line.strip()] or [""]
    return f"{head} {'; '.join(rest)}" if rest else head
