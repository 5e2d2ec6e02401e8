"""Settings from the env file: read once, validated whole, every problem reported together.

The file is parsed with `dotenv_values(..., interpolate=False)` so a `$` in a passphrase stays a
`$`, and nothing leaks into `os.environ` (and from there into every child process).
"""

from __future__ import annotations

import difflib
import io
import ipaddress
import logging
import os
import re
import shlex
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, TypeVar

from dotenv import dotenv_values

from esxi_suspend import clock
from esxi_suspend.errors import ConfigError, ExitCode

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
    "ESXI_WOL_MAC": None,
    "ESXI_WOL_BROADCAST": "255.255.255.255",
    "ESXI_WOL_PORT": "9",
    "UPS_SERVICE": "auto",
    "UPS_RESTART_COMMAND": None,
    "UPS_NAME": "auto",
    "UPS_POLL_INTERVAL": "5",
    "UPS_WAIT_LIMIT": "86400",
    "UPS_RUNTIME_MARGIN": "30",
    "UPS_EARLY_SHUTDOWN": "300",
}
STRATEGIES = ("autostop", "parallel")
VM_ACTIONS = ("shutdown", "suspend", "poweroff")
STRAGGLER_ACTIONS = ("suspend", "poweroff")
REQUIRED_KEYS = ("ESXI_HOST", "ESXI_KEY_FILE")
NO_HOST = "no host can be contacted"
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
    # The UPSes whose status says when to restart (UPS_NAME): () is `auto` (upsmon.conf's
    # MONITOR lines), ("none",) never waits; how often to look, how long to wait at most.
    ups_names: tuple[str, ...] = ()
    ups_poll_interval: int = 5
    ups_wait_limit: int = 86400
    # UPS_EARLY_SHUTDOWN: seconds on battery before upssched starts the shutdown (0: only at
    # low battery); install.sh writes it into upssched.conf, `check` compares the two.
    early_shutdown: int = 300


@dataclass(frozen=True)
class Target:
    """One host of `ESXI_HOST`: `[user@]host[:port]`, user and port defaulting to the file's."""

    host: str
    user: str
    port: int


@dataclass(frozen=True)
class WakeOnLan:
    """How to wake one ESXI_HOST entry: ESXI_WOL_MAC, ESXI_WOL_BROADCAST, ESXI_WOL_PORT."""

    target: Target
    mac: str  # aa:bb:cc:dd:ee:ff, lower case (parse_mac)
    broadcast: str  # an IPv4 address
    udp_port: int = 9


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
    # ESXI_DEADLINE=auto: the deadline is the UPS's battery.runtime minus UPS_RUNTIME_MARGIN,
    # read when we are called (deadline.py); `deadline` holds the fallback until then.
    deadline_auto: bool = False
    runtime_margin: int = 30
    vm_order: tuple[tuple[str, ...], ...] = ()
    stop_actions: tuple[str, ...] = VM_ACTIONS
    straggler_action: str = "suspend"
    self_vm: str | None = None
    poll_interval: float = 2.0
    wake_on_lan: tuple[WakeOnLan, ...] = ()  # only the hosts with a valid ESXI_WOL_MAC
    # `clock.now()` when upsmon called us: ESXI_DEADLINE counts from there.
    called_at: float = field(default_factory=clock.now)

    def for_target(self, target: Target) -> Settings:
        return replace(self, host=target.host, user=target.user, port=target.port)

    @property
    def all_targets(self) -> tuple[Target, ...]:
        return self.targets or (Target(self.host, self.user, self.port),)

    def wake_on_lan_for(self, target: Target) -> WakeOnLan | None:
        """`target`'s Wake-on-LAN, None when it has no (valid) ESXI_WOL_MAC entry."""
        key = (target.host, target.port)
        return next((w for w in self.wake_on_lan if (w.target.host, w.target.port) == key), None)


def env_file_path(cli_value: str | None) -> Path:
    """`--env-file`, else `$ESXI_SUSPEND_ENV`, else the system-wide default."""
    if cli_value:
        return Path(cli_value)
    from_env = os.environ.get(ENV_FILE_VARIABLE)
    return Path(from_env) if from_env else DEFAULT_ENV_FILE


@dataclass(frozen=True)
class Problem:
    """One thing wrong in the env file.

    `text` names the setting, the bad value and the fix (what `check` lists); `instead` says
    what a shutdown does about it (the default it uses, the line it ignores, the host it
    leaves alone); `fatal`: a host is not contacted because of it. Only what makes a host
    unreachable is fatal: its address (ESXI_HOST, ESXI_USER, ESXI_PORT), its key, its pinned
    host key, or an env file that cannot be read at all.
    """

    text: str
    instead: str
    fatal: bool = False

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Validation:
    """The one validation pass over the env file, for `check` and for `shutdown` alike.

    `settings` is what a shutdown can use (bad optional values replaced by their defaults,
    bad host entries left out), None when no host can be contacted; `problems` lists every
    problem, each classified; `skipped` names the ESXI_HOST entries left out.
    """

    source: Path
    settings: Settings | None
    problems: tuple[Problem, ...]
    restart: RestartSettings
    skipped: tuple[str, ...] = ()

    def report(self, goes_on: str, stops: str) -> list[str]:
        """The lines a run that goes on anyway logs: what is wrong, the fix, and what this run
        does instead (`goes_on`, or `stops` when no host can be used)."""
        usable = self.settings is not None
        lines = [
            f"configuration {self.source} has {len(self.problems)} problem(s); "
            f"{goes_on if usable else stops}; exit {int(ExitCode.CONFIG)} (CONFIG) at the end; "
            "fix them, then run: esxi-suspend check"
        ]
        for problem in self.problems:
            instead = f"; {problem.instead}" if usable or problem.fatal else ""
            lines.append(f"  - {problem.text}{instead}")
        return lines

    def error(self) -> RestartAwareConfigError:
        """The strict verdict (`check`): every problem, fatal or not, in one error."""
        return RestartAwareConfigError(
            str(self.source), [problem.text for problem in self.problems], self.restart
        )


def load_settings(path: Path, overrides: Mapping[str, str] | None = None) -> Settings:
    """Read and validate `path` strictly (`check`, setup): raise one ConfigError naming every
    problem found, fatal or not.

    `overrides` (e.g. ESXI_HOST from `enroll HOST`) replace the file's values and aliases.
    """
    validation = validate(path, overrides)
    if validation.problems or validation.settings is None:
        raise validation.error()
    return validation.settings


def validate(path: Path, overrides: Mapping[str, str] | None = None) -> Validation:
    """Read and validate `path` without raising: what `shutdown` uses, fail safe.

    A bad optional value is replaced by its documented default, an unknown key or a line that
    cannot be parsed is ignored, a bad ESXI_HOST entry is left out; each is a Problem. Only
    what makes hosts unreachable leaves them out (no settings at all when none is left).
    """
    text, read_problems = _read_text(path)
    if text is None:
        unreadable = tuple(Problem(p, NO_HOST, fatal=True) for p in read_problems)
        return Validation(path, None, unreadable, RestartSettings())
    problems: list[Problem] = []
    values = _with_overrides(_parse(text, problems), overrides)
    reader = _Reader(path, values, problems)
    restart = reader.restart_settings()
    settings = reader.settings(restart)
    if settings is not None:
        _warn_if_exposed(path, "the env file (it can hold ESXI_KEY_PASSPHRASE)")
        _warn_if_exposed(settings.key_file, "ESXI_KEY_FILE (the private key)")
    return Validation(path, settings, tuple(problems), restart, reader.skipped)


def read_env_values(path: Path) -> dict[str, str]:
    """The file's non-empty settings, aliases resolved, unvalidated: for `trust` and `enroll`,
    which run before the file is complete. A missing file gives {}; an unreadable one raises."""
    if not path.exists():
        return {}
    text, unreadable = _read_text(path)
    if text is None:
        raise ConfigError(str(path), unreadable)
    problems: list[Problem] = []
    values = _parse(text, problems)
    if problems:
        raise ConfigError(str(path), [problem.text for problem in problems])
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


def _parse(text: str, problems: list[Problem]) -> dict[str, str | None]:
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
        problems.append(
            Problem(f"{where}: cannot be parsed; write it as KEY=value", "this shutdown ignores it")
        )
    return dict(values)


class _Reader:
    """Turns raw values into typed settings, recording a classified Problem for each bad one."""

    def __init__(self, path: Path, values: dict[str, str | None], problems: list[Problem]) -> None:
        self.path = path
        self.problems = problems
        self.skipped: tuple[str, ...] = ()
        self.values = self._resolve_aliases(values)

    def _problem(self, text: str, instead: str, fatal: bool = False) -> None:
        self.problems.append(Problem(text, instead, fatal))

    def _resolve_aliases(self, raw: dict[str, str | None]) -> dict[str, str | None]:
        values: dict[str, str | None] = {}
        unknown: list[str] = []
        for key, value in raw.items():
            canonical = ALIASES.get(key, key)
            if canonical not in KNOWN_KEYS:
                unknown.append(key)
            elif canonical in values and values[canonical] != value:
                alias = next(old for old, new in ALIASES.items() if new == canonical)
                self._problem(
                    f"{alias}: conflicts with {canonical}; keep only one of them",
                    f"this shutdown uses {canonical}",
                )
                if key == canonical:
                    values[canonical] = value
            else:
                values[canonical] = value
        for key in unknown:
            self._problem(f"{key}: unknown setting{_did_you_mean(key)}", _ignored(key, values))
        return values

    def _raw(self, key: str) -> str | None:
        value = self.values.get(key, KNOWN_KEYS[key])
        if value is not None:
            value = value.strip()
        if value == "" and key in self.values:
            if key in REQUIRED_KEYS:
                self._problem(f"{key}: is empty; it is required", NO_HOST, fatal=True)
            return KNOWN_KEYS[key]
        if value is None and key in REQUIRED_KEYS:
            self._problem(f"{key}: missing; it is required", NO_HOST, fatal=True)
        return value

    def _optional(self, key: str, convert: Callable[[str], T]) -> T:
        """A setting with a documented default: a bad value is reported, the default used."""
        default = KNOWN_KEYS[key]
        assert default is not None, key
        value = self._raw(key) or default
        try:
            return convert(value)
        except ValueError as exc:
            used = f"this shutdown uses the default {key}={default}"
            self._problem(f"{key}={value!r}: {exc}", used)
            return convert(default)

    def _required(self, key: str, convert: Callable[[str], T]) -> T | None:
        """A setting no host can be reached without (its key, its pinned host key)."""
        value = self._raw(key)
        if value is None:
            return None
        try:
            return convert(value)
        except ValueError as exc:
            self._problem(f"{key}={value!r}: {exc}", NO_HOST, fatal=True)
            return None

    def _attempt(self, key: str, convert: Callable[[str], T]) -> tuple[T | None, str | None]:
        value = self._raw(key) or KNOWN_KEYS[key] or ""
        try:
            return convert(value), None
        except ValueError as exc:
            return None, f"{key}={value!r}: {exc}"

    def restart_settings(self) -> RestartSettings:
        service = self._optional("UPS_SERVICE", _service_name)
        value = self._raw("UPS_RESTART_COMMAND")
        command = None
        if value is not None:
            try:
                command = _command_line(value)
            except ValueError as exc:
                instead = f"this run restarts the NUT monitor by UPS_SERVICE={service} instead"
                self._problem(f"UPS_RESTART_COMMAND={value!r}: {exc}", instead)
        return RestartSettings(
            service=service,
            command=command,
            ups_names=self._optional("UPS_NAME", _ups_names),
            ups_poll_interval=self._optional("UPS_POLL_INTERVAL", integer_in(1, 300)),
            ups_wait_limit=self._optional("UPS_WAIT_LIMIT", integer_in(60, 604800)),
            early_shutdown=self._optional("UPS_EARLY_SHUTDOWN", integer_in(0, 86400)),
        )

    def targets(self) -> tuple[Target, ...]:
        """ESXI_HOST's entries; one that is bad, or needs a bad ESXI_USER or ESXI_PORT, is
        left out (it is not guessed), and the others still go on."""
        user, user_problem = self._attempt("ESXI_USER", parse_user_name)
        port, port_problem = self._attempt("ESXI_PORT", integer_in(1, 65535))
        value = self._raw("ESXI_HOST")
        entries = [part.strip() for part in value.split(",")] if value is not None else []
        if entries and not any(entries):  # `ESXI_HOST=,`
            self._problem(f"ESXI_HOST={value!r}: names no host; it is required", NO_HOST, True)
            entries = []
        bad: list[tuple[str, str]] = []
        twice: list[str] = []
        needs_user: list[str] = []
        needs_port: list[str] = []
        targets: list[Target] = []
        for text in entries:
            try:
                entry = parse_host_entry(text)
            except ValueError as exc:
                bad.append((text, str(exc)))
                continue
            entry_user, entry_port = entry.user or user, entry.port or port
            if entry_user is None:
                needs_user.append(text)
            if entry_port is None:
                needs_port.append(text)
            if entry_user is None or entry_port is None:
                continue
            if any(t.host == entry.host and t.port == entry_port for t in targets):
                twice.append(entry.host)
                continue
            targets.append(Target(entry.host, entry_user, entry_port))
        left = len(targets)
        for key, problem, needing in (
            ("ESXI_USER", user_problem, needs_user),
            ("ESXI_PORT", port_problem, needs_port),
        ):
            if problem is None:
                continue
            if needing:
                why = f" (no {key[5:].lower()} is guessed)"
                self._problem(problem, _not_contacted(needing, left, why), fatal=True)
            else:
                self._problem(problem, "unused: no ESXI_HOST entry relies on it")
        where = f"ESXI_HOST={value!r}"
        for text, why in bad:
            if not text:
                self._problem(f"{where}: an empty entry; separate hosts with ','", "ignored")
                continue
            entry_text = f", entry {text!r}" if len(entries) > 1 else ""
            self._problem(f"{where}{entry_text}: {why}", _not_contacted([text], left), fatal=True)
        for host in twice:
            self._problem(f"{where}: {host} is listed twice", "this shutdown contacts it once")
        self.skipped = tuple(text for text, _ in bad if text) + tuple(
            dict.fromkeys([*needs_user, *needs_port])
        )
        return tuple(targets)

    def settings(self, restart: RestartSettings) -> Settings | None:
        targets = self.targets()
        key_file = self._required("ESXI_KEY_FILE", _existing_file("ESXI_KEY_FILE"))
        known_hosts = self._required("ESXI_KNOWN_HOSTS", _existing_file("ESXI_KNOWN_HOSTS"))
        connect_timeout = self._optional("ESXI_CONNECT_TIMEOUT", integer_in(1, 600))
        command_timeout = self._optional("ESXI_COMMAND_TIMEOUT", integer_in(1, 86400))
        strategy = self._optional("ESXI_STRATEGY", _one_of(STRATEGIES))
        deadline, deadline_auto = self._deadline(restart)
        runtime_margin = self._optional("UPS_RUNTIME_MARGIN", integer_in(0, 3600))
        vm_order = self._vm_order(strategy)
        stop_actions = self._optional("ESXI_STOP_ACTIONS", _action_list)
        straggler = self._optional("ESXI_STRAGGLER_ACTION", _one_of(STRAGGLER_ACTIONS))
        self_vm = self._raw("ESXI_SELF_VM") or None
        poll = self._optional("ESXI_POLL_INTERVAL", _seconds(0.01, 60.0))
        wake_on_lan = self.wake_on_lan(targets)
        passphrase = self.values.get("ESXI_KEY_PASSPHRASE") or None
        if not targets or key_file is None or known_hosts is None:
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
            deadline_auto=deadline_auto,
            runtime_margin=runtime_margin,
            vm_order=vm_order,
            stop_actions=stop_actions,
            straggler_action=straggler,
            self_vm=self_vm,
            poll_interval=poll,
            wake_on_lan=wake_on_lan,
        )

    def _deadline(self, restart: RestartSettings) -> tuple[int, bool]:
        """ESXI_DEADLINE: seconds, or `auto` (the battery's runtime; the default is the
        fallback when no UPS tells it). `auto` needs a UPS to ask."""
        value = self._optional("ESXI_DEADLINE", _deadline)
        fallback = int(KNOWN_KEYS["ESXI_DEADLINE"] or 0)
        if value is not None:
            return value, False
        if restart.ups_names == ("none",):
            self._problem(
                "ESXI_DEADLINE='auto': needs a UPS to read battery.runtime from, but "
                "UPS_NAME=none; set UPS_NAME (or auto), or ESXI_DEADLINE to seconds",
                f"this shutdown uses ESXI_DEADLINE={fallback}",
            )
            return fallback, False
        return fallback, True

    def wake_on_lan(self, targets: tuple[Target, ...]) -> tuple[WakeOnLan, ...]:
        """ESXI_WOL_MAC's `host=MAC` entries with their broadcast address and port; a bad
        entry is left out (that host is not woken) and the others still go on."""
        udp_port = self._optional("ESXI_WOL_PORT", integer_in(1, 65535))
        default, broadcasts = self._wol_broadcasts(targets)
        value = self._raw("ESXI_WOL_MAC")
        found: list[WakeOnLan] = []
        for text, target, mac_text in self._per_host("ESXI_WOL_MAC", value, targets):
            where = f"ESXI_WOL_MAC={value!r}, entry {text!r}"
            if target is None:
                host = targets[0].host if targets else "esxi1"
                mac = mac_text if _MAC_RE.fullmatch(mac_text) else "aa:bb:cc:dd:ee:ff"
                why = f"no host; write host=MAC, the host as in ESXI_HOST, e.g. {host}={mac}"
                self._problem(f"{where}: {why}", "ignored: no host is woken by it")
                continue
            not_woken = f"{target.host} is not woken when power returns"
            try:
                mac = parse_mac(mac_text)
            except ValueError as exc:
                self._problem(f"{where}: {exc}", not_woken)
                continue
            found.append(WakeOnLan(target, mac, broadcasts.get(target, default), udp_port))
        return tuple(found)

    def _wol_broadcasts(self, targets: tuple[Target, ...]) -> tuple[str, dict[Target, str]]:
        """ESXI_WOL_BROADCAST: one address for every host and/or `host=address` entries."""
        fallback = KNOWN_KEYS["ESXI_WOL_BROADCAST"]
        assert fallback is not None
        value = self._raw("ESXI_WOL_BROADCAST")
        default: str | None = None
        per_host: dict[Target, str] = {}
        for text, target, address in self._per_host("ESXI_WOL_BROADCAST", value, targets):
            where = f"ESXI_WOL_BROADCAST={value!r}, entry {text!r}"
            instead = (
                f"ignored: {target.host}'s packets go to the address for every host"
                if target
                else f"ignored: the packets go to the other address given, else to the "
                f"default {fallback}"
            )
            try:
                parsed = parse_ipv4(address)
            except ValueError as exc:
                self._problem(f"{where}: {exc}", instead)
                continue
            if target is not None:
                per_host[target] = parsed
            elif default is not None:
                self._problem(f"{where}: a second address for every host; keep one", instead)
            else:
                default = parsed
        return default or fallback, per_host

    def _per_host(
        self, key: str, value: str | None, targets: tuple[Target, ...]
    ) -> list[tuple[str, Target | None, str]]:
        """`[host=]value` entries, comma-separated: (entry, its ESXI_HOST target, value).

        An entry without `host=` has no target; one whose host is not exactly one ESXI_HOST
        entry is a problem (left out)."""
        if not value:
            return []
        out: list[tuple[str, Target | None, str]] = []
        seen: set[Target] = set()
        for text in (part.strip() for part in value.split(",")):
            if not text:
                continue
            host_text, equals, rest = text.partition("=")
            if not equals:
                out.append((text, None, text))
                continue
            try:
                target = match_target(host_text.strip(), targets)
            except ValueError as exc:
                self._problem(f"{key}={value!r}, entry {text!r}: {exc}", "ignored")
                continue
            if target in seen:
                self._problem(f"{key}={value!r}: {target.host} is listed twice", "first applies")
                continue
            seen.add(target)
            out.append((text, target, rest.strip()))
        return out

    def _vm_order(self, strategy: str) -> tuple[tuple[str, ...], ...]:
        value = self._raw("ESXI_VM_ORDER")
        if not value:
            return ()
        try:
            groups = _vm_groups(value)
        except ValueError as exc:
            self._problem(f"ESXI_VM_ORDER={value!r}: {exc}", "this shutdown uses no order")
            return ()
        if strategy == "autostop":
            self._problem(
                "ESXI_VM_ORDER: groups need ESXI_STRATEGY=parallel (autostop follows the host's "
                "own autostart order)",
                "this shutdown ignores ESXI_VM_ORDER and uses autostop",
            )
            return ()
        return groups


def _ignored(key: str, values: Mapping[str, str | None]) -> str:
    """What a shutdown does about an unknown key: ignore it; say what the meant one is."""
    close = difflib.get_close_matches(key, [*KNOWN_KEYS, *ALIASES], n=1)
    if not close:
        return "this shutdown ignores it"
    meant = ALIASES.get(close[0], close[0])
    if (values.get(meant) or "").strip():
        return f"this shutdown ignores it ({meant} is set and applies)"
    default = KNOWN_KEYS[meant]
    if default is None:
        return f"this shutdown ignores it ({meant} is not set)"
    return f"this shutdown ignores it and uses the default {meant}={default}"


def _not_contacted(entries: list[str], left: int, why: str = "") -> str:
    names = ", ".join(repr(entry) for entry in dict.fromkeys(entries))
    if left:
        return f"this shutdown does not contact {names}{why}; the other hosts go on"
    return f"this shutdown does not contact {names}{why}: {NO_HOST}"


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


@dataclass(frozen=True)
class HostEntry:
    """One `[user@]host[:port]` of ESXI_HOST; user and port None when not given."""

    host: str
    user: str | None
    port: int | None


def parse_host_entry(text: str) -> HostEntry:
    """`ESXI_HOST=esxi1, root@esxi2:2222, [fe80::1]:22`: one or more `[user@]host[:port]`."""
    match = _TARGET_RE.match(text)
    if not text or match is None:
        raise ValueError("not [user@]host[:port]; separate hosts with ','")
    host = _host_name(match.group("host"))
    user = parse_user_name(match.group("user")) if match.group("user") else None
    port = integer_in(1, 65535)(match.group("port")) if match.group("port") else None
    return HostEntry(host, user, port)


def match_target(text: str, targets: tuple[Target, ...]) -> Target:
    """The one ESXI_HOST entry that `[user@]host[:port]` names (user and port may be left out
    when the host alone tells it)."""
    entry = parse_host_entry(text)
    found = [
        target
        for target in targets
        if target.host == entry.host
        and entry.port in (None, target.port)
        and entry.user in (None, target.user)
    ]
    if not found:
        hosts = ", ".join(t.host if t.port == 22 else f"{t.host}:{t.port}" for t in targets)
        raise ValueError(f"{text} is not in ESXI_HOST (it has: {hosts or 'no usable host'})")
    if len(found) > 1:
        raise ValueError(f"{text} is more than one ESXI_HOST entry; add its :port")
    return found[0]


_MAC_RE = re.compile(r"[0-9A-Fa-f]{2}([:-])(?:[0-9A-Fa-f]{2}\1){4}[0-9A-Fa-f]{2}")


def parse_mac(text: str) -> str:
    """`aa:bb:cc:dd:ee:ff` or `AA-BB-CC-DD-EE-FF` (a network card's own) -> `aa:bb:cc:dd:ee:ff`."""
    if not _MAC_RE.fullmatch(text):
        raise ValueError(
            "not a MAC address; write 6 two-digit hex octets separated by ':' or '-', "
            "e.g. aa:bb:cc:dd:ee:ff"
        )
    octets = bytes.fromhex(re.sub("[:-]", "", text))
    if octets[0] & 1 or not any(octets):
        kind = "all zeros" if not any(octets) else "a multicast or broadcast address"
        raise ValueError(
            f"{kind}, not a network card's; use the MAC of the host's NIC (on the host: "
            "esxcli network nic list)"
        )
    return ":".join(f"{octet:02x}" for octet in octets)


def parse_ipv4(text: str) -> str:
    """A Wake-on-LAN destination: an IPv4 address, the network's broadcast address usually."""
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        raise ValueError(
            "not an IPv4 address; use the broadcast address of the host's network, "
            "e.g. 192.168.1.255, or 255.255.255.255"
        ) from None


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


def _deadline(value: str) -> int | None:
    """ESXI_DEADLINE: whole seconds, or `auto` (None)."""
    if value.strip().lower() == "auto":
        return None
    try:
        return integer_in(10, 86400)(value)
    except ValueError as exc:
        raise ValueError(f"{exc}, or auto (the UPS's battery.runtime)") from None


def parse_user_name(value: str) -> str:
    if not _USER_RE.match(value):
        raise ValueError("not a user name")
    return value


def integer_in(low: int, high: int) -> Callable[[str], int]:
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


def _ups_names(value: str) -> tuple[str, ...]:
    from esxi_suspend.ups import parse_ups_names  # ups imports local, which imports this

    return parse_ups_names(value)


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
