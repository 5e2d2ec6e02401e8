"""The tree a simulated `sh` script parses into: commands (syntax.py builds them), the
words in them and the parts of each word (lexer.py reads them). Immutable data only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union


# -- words ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Lit:
    text: str
    quoted: bool  # inside quotes or escaped: taken as it is


@dataclass(frozen=True)
class Param:
    """`$NAME`, `${NAME}`, `$1`, `$?`...; `${NAME:-word}` has a default; `${#NAME}` is the
    length of the value."""

    name: str
    quoted: bool
    default: tuple[Part, ...] | None = None
    length: bool = False


@dataclass(frozen=True)
class CommandSub:
    """`$(...)`: its output, trailing newlines stripped."""

    body: Body
    quoted: bool


@dataclass(frozen=True)
class Arith:
    """`$(( ))`: its text is expanded (`$x`, `$(...)`) first, then evaluated."""

    parts: tuple[Part, ...]
    quoted: bool


Part = Union[Lit, Param, CommandSub, Arith]


@dataclass(frozen=True)
class Word:
    parts: tuple[Part, ...]
    start: int
    end: int

    def literal(self) -> str | None:
        """The word's text when it holds no quote and no expansion (reserved words, names)."""
        if all(isinstance(p, Lit) and not p.quoted for p in self.parts):
            return "".join(p.text for p in self.parts if isinstance(p, Lit))
        return None


# -- commands -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Redirect:
    fd: int
    op: str  # > >> < >& <&
    target: Word


@dataclass(frozen=True)
class Simple:
    assigns: tuple[tuple[str, Word], ...]  # only without words: NAME=value alone
    words: tuple[Word, ...]
    redirs: tuple[Redirect, ...] = ()


@dataclass(frozen=True)
class Group:
    body: Body
    redirs: tuple[Redirect, ...] = ()


@dataclass(frozen=True)
class Subshell:
    body: Body
    redirs: tuple[Redirect, ...] = ()


@dataclass(frozen=True)
class If:
    branches: tuple[tuple[Body, Body], ...]  # (condition, then), for `if` and each `elif`
    otherwise: Body | None
    redirs: tuple[Redirect, ...] = ()


@dataclass(frozen=True)
class While:
    condition: Body
    body: Body
    redirs: tuple[Redirect, ...] = ()


@dataclass(frozen=True)
class For:
    name: str
    words: tuple[Word, ...]
    body: Body
    redirs: tuple[Redirect, ...] = ()


@dataclass(frozen=True)
class CaseItem:
    patterns: tuple[Word, ...]
    body: Body


@dataclass(frozen=True)
class Case:
    word: Word
    items: tuple[CaseItem, ...]
    redirs: tuple[Redirect, ...] = ()


Compound = Union[Group, Subshell, If, While, For, Case]


@dataclass(frozen=True)
class FunctionDef:
    name: str
    body: Compound


Command = Union[Simple, Compound, FunctionDef]


@dataclass(frozen=True)
class Pipeline:
    commands: tuple[Command, ...]
    negate: bool = False


@dataclass(frozen=True)
class AndOr:
    first: Pipeline
    rest: tuple[tuple[str, Pipeline], ...] = ()  # ("&&" | "||", pipeline)
    background: bool = False
    text: str = ""  # its source, to name a background job


Body = tuple[AndOr, ...]
