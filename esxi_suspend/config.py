"""Settings from the env file: read once, validated whole, every problem reported together.

The file is parsed with `dotenv_values(..., interpolate=False)` so a `$` in a passphrase stays a
`$`, and nothing leaks into `os.environ` (and from there into every child process).
"""

from __future__ import annotations

import difflib
import io
import logging
import os
import re
import shlex
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, TypeVar

from dotenv import dotenv_values

from esxi_suspend.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_ENV_FILE = Path("/etc/esxi-suspend/esxi-suspend.env")
ENV_FILE_VARIABLE = "ESXI_SUSPEND_ENV"
DEFAULT_KNOWN_HOSTS = Path("/etc/esxi-suspend/known_hosts")

# Every key the file may hold, with its default (None: required, or optional without default).
KNOWN_KEYS: dict[str, str | None] = {
    "ESXI_HOST": None,
    "ESXI_USER": "root",
    "ESXI_PORT": "22",
    "ESXI_KEY_FILE": None,
    "ESXI_KEY_PASSPHRASE": None,
    "ESXI_KNOWN_HOSTS": str(DEFAULT_KNOWN_HOSTS),
    "ESXI_CONNECT_TIMEOUT": "10",
    "ESXI_COMMAND_TIMEOUT": "300",
    "ESXI_STRATEGY": "autostop",
    "ESXI_DEADLINE": "240",
    "ESXI_VM_ORDER": None,
    "ESXI_STOP_ACTIONS": "shutdown,suspend,poweroff",
    "ESXI_STRAGGLER_ACTION": "suspend",
    "ESXI_SELF_VM": None,
    "ESXI_POLL_INTERVAL": "2",
    "UPS_SERVICE": "auto",
    "UPS_RESTART_COMMAND": None,
}
STRATEGIES = ("autostop", "parallel")
VM_ACTIONS = ("shutdown", "suspend", "poweroff")
REQUIRED_KEYS = ("ESXI_HOST", "ESXI_KEY_FILE")
# The names the original shell script used; accepted so an old env file keeps working.
ALIASES = {"ESXIHOST": "ESXI_HOST", "ESXIUSER": "ESXI_USER"}

_HOST_RE = re.compile(
    r"^(?:[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,251}[A-Za-z0-9_])?|\[?[0-9A-Fa-f:.]+\]?)$"
)
_USER_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}$")
_SERVICE_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@-]{0,127}$")

T = TypeVar("T")


@dataclass(frozen=True)
class RestartSettings:
    """How to restart the local NUT monitor: known even when the rest of the file is broken."""

    service: str = "auto"
    command: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Target:
    """One host of `ESXI_HOST`: `[user@]host[:port]`, user and port defaulting to the file's."""

    host: str
    user: str
    port: int


@dataclass(frozen=True)
class Settings:
    """Everything one run needs, validated; the passphrase never shows in a repr or a log.

    `host`, `user` and `port` are those of one target; `for_target` gives each host its own.
    """

    source: Path
    host: str
    user: str
    port: int
    key_file: Path
    known_hosts: Path
    connect_timeout: int
    command_timeout: int
    restart: RestartSettings
    key_passphrase: str | None = field(default=None, repr=False)
    targets: tuple[Target, ...] = ()
    strategy: str = "autostop"
    deadline: int = 240
    vm_order: tuple[tuple[str, ...], ...] = ()
    stop_actions: tuple[str, ...] = VM_ACTIONS
    straggler_action: str = "suspend"
    self_vm: str | None = None
    poll_interval: float = 2.0
    # `time.monotonic()` when upsmon called us: ESXI_DEADLINE counts from there.
    called_at: float = field(default_factory=time.monotonic)

    def for_target(self, target: Target) -> Settings:
        return replace(self, host=target.host, user=target.user, port=target.port)

    @property
    def all_targets(self) -> tuple[Target, ...]:
        return self.targets or (Target(self.host, self.user, self.port),)


def env_file_path(cli_value: str | None) -> Path:
    """`--env-file`, else `$ESXI_SUSPEND_ENV`, else the system-wide default."""
    if cli_value:
        return Path(cli_value)
    from_env = os.environ.get(ENV_FILE_VARIABLE)
    return Path(from_env) if from_env else DEFAULT_ENV_FILE


def load_settings(path: Path, overrides: Mapping[str, str] | None = None) -> Settings:
    """Read and validate `path`; raise one ConfigError naming every problem found.

    `overrides` (e.g. ESXI_HOST from `enroll HOST`) replace the file's values and aliases.
    """
    text, problems = _read_text(path)
    if text is None:
        raise RestartAwareConfigError(str(path), problems, RestartSettings())
    values = _with_overrides(_parse(text, problems), overrides)
    reader = _Reader(path, values, problems)
    restart = reader.restart_settings()
    settings = reader.settings(restart)
    if problems or settings is None:
        raise RestartAwareConfigError(str(path), problems, restart)
    _warn_if_exposed(path, "the env file (it can hold ESXI_KEY_PASSPHRASE)")
    _warn_if_exposed(settings.key_file, "ESXI_KEY_FILE (the private key)")
    return settings


def read_env_values(path: Path) -> dict[str, str]:
    """The file's non-empty settings, aliases resolved, unvalidated: for `trust` and `enroll`,
    which run before the file is complete. A missing file gives {}; an unreadable one raises."""
    if not path.exists():
        return {}
    text, problems = _read_text(path)
    if text is None:
        raise ConfigError(str(path), problems)
    values = _parse(text, problems)
    if problems:
        raise ConfigError(str(path), problems)
    return {ALIASES.get(k, k): v.strip() for k, v in values.items() if v and v.strip()}


def _with_overrides(
    values: dict[str, str | None], overrides: Mapping[str, str] | None
) -> dict[str, str | None]:
    if not overrides:
        return values
    replaced = {ALIASES.get(key, key) for key in values} & set(overrides)
    kept = {k: v for k, v in values.items() if ALIASES.get(k, k) not in replaced}
    return {**kept, **overrides}


class RestartAwareConfigError(ConfigError):
    """A ConfigError that still knows how to restart the local service, so that step runs."""

    def __init__(self, source: str, problems: list[str], restart: RestartSettings) -> None:
        super().__init__(source, problems)
        self.restart = restart


def _read_text(path: Path) -> tuple[str | None, list[str]]:
    try:
        return path.read_text(encoding="utf-8"), []
    except FileNotFoundError:
        hint = (
            f"create it (install.sh writes a template), or point --env-file or "
            f"${ENV_FILE_VARIABLE} at the right file"
        )
        return None, [f"{path}: file not found; {hint}"]
    except PermissionError:
        return None, [f"{path}: not readable by this user; run as root or fix its permissions"]
    except IsADirectoryError:
        return None, [f"{path}: is a directory, not an env file"]
    except UnicodeDecodeError as exc:
        return None, [f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})"]
    except OSError as exc:
        return None, [f"{path}: cannot be read ({exc.strerror or exc})"]


class _ParseWarnings(logging.Handler):
    """Collects python-dotenv's "could not parse" warnings, which it only logs."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _parse(text: str, problems: list[str]) -> dict[str, str | None]:
    dotenv_logger = logging.getLogger("dotenv.main")
    collector = _ParseWarnings()
    saved_propagate = dotenv_logger.propagate
    dotenv_logger.addHandler(collector)
    dotenv_logger.propagate = False
    try:
        values = dotenv_values(stream=io.StringIO(text), interpolate=False)
    finally:
        dotenv_logger.removeHandler(collector)
        dotenv_logger.propagate = saved_propagate
    for message in collector.messages:
        line = re.search(r"line (\d+)", message)
        where = f"line {line.group(1)}" if line else "a line"
        problems.append(f"{where}: cannot be parsed; write it as KEY=value")
    return dict(values)


class _Reader:
    """Turns raw values into typed settings, appending a problem for each bad one."""

    def __init__(self, path: Path, values: dict[str, str | None], problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        self.values = self._resolve_aliases(values)

    def _resolve_aliases(self, raw: dict[str, str | None]) -> dict[str, str | None]:
        values: dict[str, str | None] = {}
        for key, value in raw.items():
            canonical = ALIASES.get(key, key)
            if canonical not in KNOWN_KEYS:
                self.problems.append(f"{key}: unknown setting{_did_you_mean(key)}")
                continue
            if canonical in values and values[canonical] != value:
                self.problems.append(f"{key}: conflicts with {canonical}; keep only one of them")
                continue
            values[canonical] = value
        return values

    def _raw(self, key: str) -> str | None:
        value = self.values.get(key, KNOWN_KEYS[key])
        if value is not None:
            value = value.strip()
        if value == "" and key in self.values:
            if key in REQUIRED_KEYS:
                self.problems.append(f"{key}: is empty; it is required")
            return None if KNOWN_KEYS[key] is None else self._default(key)
        if value is None and key in REQUIRED_KEYS:
            self.problems.append(f"{key}: missing; it is required")
        return value

    @staticmethod
    def _default(key: str) -> str | None:
        return KNOWN_KEYS[key]

    def _checked(self, key: str, convert: Callable[[str], T]) -> T | None:
        value = self._raw(key)
        if value is None:
            return None
        try:
            return convert(value)
        except ValueError as exc:
            self.problems.append(f"{key}={value!r}: {exc}")
            return None

    def restart_settings(self) -> RestartSettings:
        service = self._checked("UPS_SERVICE", _service_name) or "auto"
        command = self._checked("UPS_RESTART_COMMAND", _command_line)
        return RestartSettings(service=service, command=command)

    def settings(self, restart: RestartSettings) -> Settings | None:
        user = self._checked("ESXI_USER", _user_name)
        port = self._checked("ESXI_PORT", _integer_in(1, 65535))
        targets = self._checked("ESXI_HOST", _host_list(user or "root", port or 22))
        key_file = self._checked("ESXI_KEY_FILE", _existing_file("ESXI_KEY_FILE"))
        known_hosts = self._checked("ESXI_KNOWN_HOSTS", _existing_file("ESXI_KNOWN_HOSTS"))
        connect_timeout = self._checked("ESXI_CONNECT_TIMEOUT", _integer_in(1, 600))
        command_timeout = self._checked("ESXI_COMMAND_TIMEOUT", _integer_in(1, 86400))
        strategy = self._checked("ESXI_STRATEGY", _one_of(STRATEGIES))
        deadline = self._checked("ESXI_DEADLINE", _integer_in(10, 86400))
        vm_order = self._checked("ESXI_VM_ORDER", _vm_groups) or ()
        stop_actions = self._checked("ESXI_STOP_ACTIONS", _action_list)
        straggler = self._checked("ESXI_STRAGGLER_ACTION", _one_of(("suspend", "poweroff")))
        self_vm = self._raw("ESXI_SELF_VM") or None
        poll = self._checked("ESXI_POLL_INTERVAL", _seconds(0.01, 60.0))
        if vm_order and strategy == "autostop":
            self.problems.append(
                "ESXI_VM_ORDER: groups need ESXI_STRATEGY=parallel (autostop follows the host's "
                "own autostart order)"
            )
            return None
        passphrase = self.values.get("ESXI_KEY_PASSPHRASE") or None
        if (
            targets is None
            or user is None
            or port is None
            or key_file is None
            or known_hosts is None
            or connect_timeout is None
            or command_timeout is None
            or strategy is None
            or deadline is None
            or stop_actions is None
            or straggler is None
            or poll is None
        ):
            return None
        first = targets[0]
        return Settings(
            source=self.path,
            host=first.host,
            user=first.user,
            port=first.port,
            key_file=key_file,
            known_hosts=known_hosts,
            connect_timeout=connect_timeout,
            command_timeout=command_timeout,
            restart=restart,
            key_passphrase=passphrase,
            targets=targets,
            strategy=strategy,
            deadline=deadline,
            vm_order=vm_order,
            stop_actions=stop_actions,
            straggler_action=straggler,
            self_vm=self_vm,
            poll_interval=poll,
        )


def _did_you_mean(key: str) -> str:
    close = difflib.get_close_matches(key, [*KNOWN_KEYS, *ALIASES], n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _host_name(value: str) -> str:
    if not _HOST_RE.match(value):
        raise ValueError("not a host name or IP address (one host; no spaces, ports or options)")
    return value.strip("[]")


_TARGET_RE = re.compile(
    r"^(?:(?P<user>[^@\s]+)@)?(?P<host>\[[^\]]+\]|[^:\s]+|[0-9A-Fa-f:]+)(?::(?P<port>\d+))?$"
)


def _host_list(default_user: str, default_port: int) -> Callable[[str], tuple[Target, ...]]:
    """`ESXI_HOST=esxi1, root@esxi2:2222, [fe80::1]:22`: one or more `[user@]host[:port]`."""

    def convert(value: str) -> tuple[Target, ...]:
        targets: list[Target] = []
        for entry in (part.strip() for part in value.split(",")):
            match = _TARGET_RE.match(entry)
            if not entry or match is None:
                raise ValueError(f"{entry!r} is not [user@]host[:port]; separate hosts with ','")
            host = _host_name(match.group("host"))
            user = _user_name(match.group("user")) if match.group("user") else default_user
            port = match.group("port")
            number = _integer_in(1, 65535)(port) if port else default_port
            if any(t.host == host and t.port == number for t in targets):
                raise ValueError(f"{host} is listed twice")
            targets.append(Target(host, user, number))
        return tuple(targets)

    return convert


def _one_of(choices: tuple[str, ...]) -> Callable[[str], str]:
    def convert(value: str) -> str:
        if value.lower() not in choices:
            raise ValueError(f"use one of: {', '.join(choices)}")
        return value.lower()

    return convert


def _action_list(value: str) -> tuple[str, ...]:
    actions = tuple(part.strip().lower() for part in value.split(",") if part.strip())
    unknown = [a for a in actions if a not in VM_ACTIONS]
    if unknown or not actions or len(set(actions)) != len(actions):
        raise ValueError(f"a comma-separated order of {', '.join(VM_ACTIONS)}, each once")
    return actions


def _vm_groups(value: str) -> tuple[tuple[str, ...], ...]:
    """`web1, web2; db1; nas`: groups stop one after another, in this order."""
    groups = tuple(
        tuple(name.strip() for name in group.split(",") if name.strip())
        for group in value.split(";")
    )
    if any(not group for group in groups):
        raise ValueError("an empty group; write groups of VM names or ids separated by ';'")
    return groups


def _seconds(low: float, high: float) -> Callable[[str], float]:
    def convert(value: str) -> float:
        if not re.fullmatch(r"[0-9]+(\.[0-9]+)?", value):
            raise ValueError(f"not a number of seconds; use {low:g} to {high:g}")
        number = float(value)
        if not low <= number <= high:
            raise ValueError(f"out of range; use {low:g} to {high:g} seconds")
        return number

    return convert


def _user_name(value: str) -> str:
    if not _USER_RE.match(value):
        raise ValueError("not a user name")
    return value


def _integer_in(low: int, high: int) -> Callable[[str], int]:
    def convert(value: str) -> int:
        if not re.fullmatch(r"[0-9]+", value):
            raise ValueError(f"not a whole number; use an integer from {low} to {high}")
        number = int(value)
        if not low <= number <= high:
            raise ValueError(f"out of range; use an integer from {low} to {high}")
        return number

    return convert


def _existing_file(key: str) -> Callable[[str], Path]:
    def convert(value: str) -> Path:
        path = Path(value)
        if not path.is_absolute():
            raise ValueError("must be an absolute path (upsmon runs us from /)")
        if not path.exists():
            raise ValueError(f"file not found; {_MISSING_FILE_HINTS[key]}")
        if not path.is_file():
            raise ValueError("is not a regular file")
        if not os.access(path, os.R_OK):
            raise ValueError("not readable by this user; run as root or fix its permissions")
        return path

    return convert


_MISSING_FILE_HINTS = {
    "ESXI_KEY_FILE": "create one with: ssh-keygen -t ed25519 -N '' -f /etc/esxi-suspend/id_ed25519",
    "ESXI_KNOWN_HOSTS": (
        "pin the host key with: esxi-suspend trust HOST (it shows the fingerprint to "
        "compare with the host's console first)"
    ),
}


def _service_name(value: str) -> str:
    if not _SERVICE_RE.match(value):
        raise ValueError("not a service name; use auto, none, or a name such as nut-monitor")
    return value


def _command_line(value: str) -> tuple[str, ...]:
    try:
        argv = tuple(shlex.split(value))
    except ValueError as exc:
        raise ValueError(f"cannot be split into words ({exc})") from None
    if not argv:
        raise ValueError("is empty")
    return argv


def _warn_if_exposed(path: Path, what: str) -> None:
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning(
            "%s %s is readable or writable by group/others (mode %04o); run: chmod 600 %s",
            what,
            path,
            stat.S_IMODE(mode),
            path,
        )
