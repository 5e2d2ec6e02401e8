"""A Problem in the env file, and the reader that records one for each bad value.

The reading is generic: a key's raw text (aliases resolved, unknown keys said with the key
meant), a documented default for a bad optional value, nothing for a bad required one. What
each setting must be is validation.py's.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar

from esxi_suspend.settings.model import ALIASES, KNOWN_KEYS, REQUIRED_KEYS

NO_HOST = "no host can be contacted"


T = TypeVar("T")


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


class ValueReader:
    """Raw values into typed ones, recording a classified Problem for each bad one."""

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


def not_contacted(entries: list[str], left: int, why: str = "") -> str:
    names = ", ".join(repr(entry) for entry in dict.fromkeys(entries))
    if left:
        return f"this shutdown does not contact {names}{why}; the other hosts go on"
    return f"this shutdown does not contact {names}{why}: {NO_HOST}"


def _did_you_mean(key: str) -> str:
    close = difflib.get_close_matches(key, [*KNOWN_KEYS, *ALIASES], n=1)
    return f" (did you mean {close[0]}?)" if close else ""
