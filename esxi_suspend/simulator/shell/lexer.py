"""The simulated `sh`'s lexer: a script's text to tokens: words (their quoted and `$` parts, see
tree.py), operators, redirections.

A pull lexer: the parser asks for one token at a time, so that `$(...)` can hand the rest of
the text to a nested parser (the `substitute` callback) and go on after its `)`. Quoting is
kept in the parts of a word (a quoted part is never split nor used as a pattern); reserved
words are the parser's business. What busybox ash has but this shell does not (here-documents,
backquotes, the `${...}` forms but `${NAME}`, `${#NAME}` and `${NAME:-word}`, `$*`) is a
ShellSyntaxError naming it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Union

from esxi_suspend.simulator.shell.tree import (
    Arith,
    Body,
    CommandSub,
    Lit,
    Param,
    Part,
    Word,
)

NAME_START = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_"
NAME_CHARS = NAME_START + "0123456789"
SPECIAL_PARAMS = "?$!#@0123456789"
_META = " \t\n;&|()<>"  # characters that end an unquoted word


class ShellSyntaxError(Exception):
    """The text is not a script this shell runs (said as `sh: syntax error: ...`, exit 2)."""


def unsupported(what: str) -> ShellSyntaxError:
    return ShellSyntaxError(f"{what} not supported by the ESXi simulator")


@dataclass(frozen=True)
class Op:
    value: str  # ; & | && || ;; ( ) and "\n"
    start: int
    end: int


@dataclass(frozen=True)
class RedirOp:
    fd: int
    op: str  # > >> < >& <&
    start: int
    end: int


@dataclass(frozen=True)
class End:
    start: int
    end: int


Token = Union[Word, Op, RedirOp, End]
Substitute = Callable[[int], tuple[Body, int]]  # start of `$(`'s body -> (body, end)


class Lexer:
    def __init__(self, text: str, pos: int, substitute: Substitute) -> None:
        self.text = text
        self.pos = pos
        self.substitute = substitute

    def next(self) -> Token:
        text = self.text
        while True:
            while self.pos < len(text) and text[self.pos] in " \t":
                self.pos += 1
            if text.startswith("\\\n", self.pos):
                self.pos += 2
            elif self.pos < len(text) and text[self.pos] == "#":
                while self.pos < len(text) and text[self.pos] != "\n":
                    self.pos += 1
            else:
                break
        start = self.pos
        if start >= len(text):
            return End(start, start)
        ch = text[start]
        two = text[start : start + 2]
        if two in ("&&", "||", ";;"):
            self.pos += 2
            return Op(two, start, self.pos)
        if ch in ";&|()\n":
            self.pos += 1
            return Op(ch, start, self.pos)
        if ch in "<>":
            return self._redirection(1 if ch == ">" else 0, start)
        return self._word(start)

    def _redirection(self, fd: int, start: int) -> RedirOp:
        text, i = self.text, self.pos
        two = text[i : i + 2]
        if two == "<<":
            raise unsupported("here-documents (<<) are")
        if two == "<>":
            raise unsupported("<> is")
        if two in (">>", ">&", "<&"):
            op, i = two, i + 2
        else:
            op, i = text[i], i + 1
            if op == ">" and text.startswith("|", i):  # >| clobber: the same as >
                i += 1
        self.pos = i
        return RedirOp(fd, op, start, i)

    def _word(self, start: int) -> Word | RedirOp:
        parts, i = self.parts(start, _META, quoted=False)
        self.pos = i
        if i < len(self.text) and self.text[i] in "<>" and parts:
            digits = "".join(p.text for p in parts if isinstance(p, Lit) and not p.quoted)
            if len(parts) == 1 and digits.isdigit():  # 2>&1: the digits are the fd
                return self._redirection(int(digits), start)
        return Word(tuple(parts), start, i)

    def parts(self, i: int, stops: str, quoted: bool) -> tuple[list[Part], int]:
        """The parts from `i` to the first unquoted character in `stops` (not consumed).
        `quoted`: inside double quotes (only \\ before $ ` " \\ newline escapes; ' is plain)."""
        text = self.text
        parts: list[Part] = []
        literal = ""

        def flush() -> None:
            nonlocal literal
            if literal:
                parts.append(Lit(literal, quoted))
                literal = ""

        while i < len(text) and text[i] not in stops:
            ch = text[i]
            if ch == "\\":
                nxt = text[i + 1 : i + 2]
                if nxt == "\n":
                    i += 2
                elif quoted and nxt not in ('"', "\\", "$", "`"):
                    literal += ch
                    i += 1
                else:
                    flush()
                    parts.append(Lit(nxt, True))
                    i += 2
            elif ch == "'" and not quoted:
                flush()
                end = text.find("'", i + 1)
                if end < 0:
                    raise ShellSyntaxError("unterminated quoted string")
                parts.append(Lit(text[i + 1 : end], True))
                i = end + 1
            elif ch == '"' and not quoted:
                flush()
                inner, i = self.parts(i + 1, '"', quoted=True)
                if i >= len(text):
                    raise ShellSyntaxError("unterminated quoted string")
                parts.extend(inner or [Lit("", True)])
                i += 1
            elif ch == "`":
                raise unsupported("backquote command substitution (use $(...)) is")
            elif ch == "$":
                part, i = self._dollar(i, quoted)
                if isinstance(part, str):
                    literal += part
                else:
                    flush()
                    parts.append(part)
            else:
                literal += ch
                i += 1
        flush()
        return parts, i

    def _dollar(self, i: int, quoted: bool) -> tuple[Part | str, int]:
        text = self.text
        nxt = text[i + 1 : i + 2]
        if text.startswith("$((", i):
            end = _arith_end(text, i + 3)
            inner, _ = Lexer(text[:end], i + 3, self.substitute).parts(i + 3, "", quoted=True)
            return Arith(tuple(inner), quoted), end + 2
        if nxt == "(":
            body, end = self.substitute(i + 2)
            return CommandSub(body, quoted), end
        if nxt == "{":
            return self._braced(i + 2, quoted)
        if nxt and nxt in SPECIAL_PARAMS:
            return Param(nxt, quoted), i + 2
        if nxt and nxt in NAME_START:
            j = i + 1
            while j < len(text) and text[j] in NAME_CHARS:
                j += 1
            return Param(text[i + 1 : j], quoted), j
        if nxt in ("*", "-"):
            raise unsupported(f"${nxt} is")
        return "$", i + 1

    def _braced(self, i: int, quoted: bool) -> tuple[Part, int]:
        text = self.text
        if text.startswith("#", i) and text[i + 1 : i + 2] and text[i + 1] in NAME_START:
            j = i + 1
            while j < len(text) and text[j] in NAME_CHARS:
                j += 1
            if not text.startswith("}", j):
                raise ShellSyntaxError("missing }")
            return Param(text[i + 1 : j], quoted, length=True), j + 1
        j = i
        chars = "0123456789" if text[j : j + 1].isdigit() else NAME_CHARS
        if text[j : j + 1] and text[j] in SPECIAL_PARAMS and not text[j].isdigit():
            j += 1
        else:
            while j < len(text) and text[j] in chars:
                j += 1
        name = text[i:j]
        if j >= len(text):
            raise ShellSyntaxError("missing }")
        if name and text.startswith("}", j):
            return Param(name, quoted), j + 1
        if not name or not text.startswith(":-", j):
            close = text.find("}", i)
            what = text[i - 2 : close + 1] if close >= 0 else text[i - 2 :]
            raise unsupported(f"{what} (only ${{NAME}}, ${{#NAME}} and ${{NAME:-word}}) is")
        default, end = self.parts(j + 2, "}", quoted)
        if end >= len(text):
            raise ShellSyntaxError("missing }")
        return Param(name, quoted, tuple(default)), end + 1


def _arith_end(text: str, i: int) -> int:
    """Where the `))` closing a `$((` whose body starts at `i` begins."""
    depth = 0
    while i < len(text):
        if text[i] == "(":
            depth += 1
        elif text[i] == ")":
            if depth == 0:
                if text.startswith("))", i):
                    return i
                raise ShellSyntaxError("missing )) after $((")
            depth -= 1
        i += 1
    raise ShellSyntaxError("missing )) after $((")
