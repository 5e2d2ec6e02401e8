"""Settings from the env file: read once, validated whole, every problem reported together.

The file is parsed with `dotenv_values(..., interpolate=False)` so a `$` in a passphrase stays a
`$`, and nothing leaks into `os.environ` (and from there into every child process). Each
setting is checked by validation.py; the result is model.py's model.
"""

from __future__ import annotations

import io
import logging
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from dotenv import dotenv_values

from esxi_suspend.errors import ConfigError, ExitCode
from esxi_suspend.settings.model import ALIASES, ENV_FILE_VARIABLE, RestartSettings, Settings
from esxi_suspend.settings.problems import NO_HOST, Problem
from esxi_suspend.settings.validation import Reader

log = logging.getLogger(__name__)


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
    reader = Reader(path, values, problems)
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
