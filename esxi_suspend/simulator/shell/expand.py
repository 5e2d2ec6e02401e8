"""The simulated `sh`'s expansions: words to fields, `$(( ))`, `case` and `grep` patterns.

- parameters: `$NAME`, `${NAME}`, `${NAME:-word}` (word if unset or empty), `${#NAME}`
  (the value's length), `$1`..., `$#`,
  `$@` (`"$@"`: one field per parameter), `$?`, `$$`, `$!`, `$0`;
- `$(...)`: its output, trailing newlines stripped (run by the interpreter);
- `$(( ))`: decimal integers, variables by `$x` or bare name (unset or empty: 0), `+ - * / %`
  (C's truncating division), unary `+ -`, parentheses;
- unquoted expansion results are split on blanks (space, tab, newline; IFS is not read);
  nothing is globbed;
- `case` patterns: `*`, `?`, `[...]`, `[!...]`; quoted characters match themselves.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Optional

from esxi_suspend.simulator.shell.state import Context, ExpansionError
from esxi_suspend.simulator.shell.tree import Arith, CommandSub, Lit, Param, Part, Word

BLANKS = " \t\n"
# (text, quoted, expanded); None: a field break between two of "$@"'s parameters
Segment = Optional[tuple[str, bool, bool]]


def fields(words: Iterable[Word], ctx: Context) -> list[str]:
    """Words to the argument list: expanded, unquoted expansions split on blanks."""
    result: list[str] = []
    for word in words:
        current, have = "", False
        for segment in segments(word.parts, ctx):
            if segment is None:
                if have:
                    result.append(current)
                current, have = "", False
                continue
            value, quoted, expanded = segment
            if quoted or not expanded:
                current, have = current + value, True
                continue
            for k, piece in enumerate(re.split(r"[ \t\n]+", value) if value else []):
                if k > 0:
                    if have:
                        result.append(current)
                    current, have = "", False
                if piece:
                    current, have = current + piece, True
        if have:
            result.append(current)
    return result


def text(parts: Iterable[Part], ctx: Context) -> str:
    """Expanded without splitting (assignments, redirection targets, `case` words)."""
    return "".join(" " if s is None else s[0] for s in segments(parts, ctx))


def segments(parts: Iterable[Part], ctx: Context) -> list[Segment]:
    out: list[Segment] = []
    for part in parts:
        if isinstance(part, Lit):
            out.append((part.text, part.quoted, False))
        elif isinstance(part, Param):
            if part.name == "@":
                for k, arg in enumerate(ctx.frame.args):
                    if k:
                        out.append(None)
                    out.append((arg, part.quoted, True))
                continue
            value = parameter(part.name, ctx)
            if part.length:
                value = str(len(value))
            if part.default is not None and value == "":  # unquoted, the word is split too
                out.extend(
                    s if s is None or s[1] else (s[0], False, True)
                    for s in segments(part.default, ctx)
                )
            else:
                out.append((value, part.quoted, True))
        elif isinstance(part, CommandSub):
            output = ctx.shell.substitute(part.body, ctx).rstrip("\n")
            out.append((output, part.quoted, True))
        elif isinstance(part, Arith):
            out.append((str(arithmetic(text(part.parts, ctx), ctx)), part.quoted, True))
    return out


def parameter(name: str, ctx: Context) -> str:
    frame = ctx.frame
    special = {
        "?": lambda: str(frame.status),
        "$": lambda: str(frame.pid),
        "!": lambda: "" if frame.last_bg is None else str(frame.last_bg),
        "#": lambda: str(len(frame.args)),
        "0": lambda: frame.name,
    }
    if name in special:
        return special[name]()
    if name.isdigit():
        index = int(name) - 1
        return frame.args[index] if index < len(frame.args) else ""
    return frame.variables.get(name, "")


# -- $(( )) -----------------------------------------------------------------------------------
_ARITH_TOKEN = re.compile(r"\s*(?:(\d+)|([A-Za-z_]\w*)|(\S))")


def arithmetic(expression: str, ctx: Context) -> int:
    tokens: list[str] = []
    pos = 0
    while pos < len(expression):
        match = _ARITH_TOKEN.match(expression, pos)
        if match is None:  # only blanks left
            break
        pos = match.end()
        number, name, other = match.groups()
        if number is not None:
            if len(number) > 1 and number.startswith("0"):
                raise ExpansionError(f"arithmetic: {number}: octal numbers not supported")
            tokens.append(number)
        elif name is not None:
            tokens.append(name)
        elif other in "+-*/%()":
            tokens.append(other)
        else:
            raise ExpansionError(f"arithmetic: {other} not supported by the ESXi simulator")
    evaluator = _Arithmetic(tokens, ctx)
    value = evaluator.sum()
    if evaluator.pos != len(tokens):
        raise ExpansionError(f"arithmetic syntax error: {expression.strip()}")
    return value


class _Arithmetic:
    def __init__(self, tokens: list[str], ctx: Context) -> None:
        self.tokens = tokens
        self.pos = 0
        self.ctx = ctx

    def _peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def sum(self) -> int:
        value = self.product()
        while self._peek() in ("+", "-"):
            op = self.tokens[self.pos]
            self.pos += 1
            right = self.product()
            value = value + right if op == "+" else value - right
        return value

    def product(self) -> int:
        value = self.unary()
        while self._peek() in ("*", "/", "%"):
            op = self.tokens[self.pos]
            self.pos += 1
            right = self.unary()
            if op == "*":
                value *= right
                continue
            if right == 0:
                raise ExpansionError("divide by zero")
            quotient = abs(value) // abs(right) * (1 if (value < 0) == (right < 0) else -1)
            value = quotient if op == "/" else value - quotient * right
        return value

    def unary(self) -> int:
        op = self._peek()
        if op in ("+", "-"):
            self.pos += 1
            operand = self.unary()
            return -operand if op == "-" else operand
        if op == "(":
            self.pos += 1
            inner = self.sum()
            if self._peek() != ")":
                raise ExpansionError("arithmetic syntax error: missing )")
            self.pos += 1
            return inner
        if op is None or op in "+-*/%)":
            raise ExpansionError("arithmetic syntax error")
        self.pos += 1
        if op.isdigit():
            return int(op)
        variable = self.ctx.frame.variables.get(op, "").strip()
        if variable == "":
            return 0
        if re.fullmatch(r"-?\d+", variable) is None:
            raise ExpansionError(f"arithmetic: {op}={variable}: not a number")
        return int(variable)


# -- patterns ---------------------------------------------------------------------------------
def matches(pattern: Word, value: str, ctx: Context) -> bool:
    """A `case` pattern: `*`, `?`, `[...]`, `[!...]` unless quoted."""
    chars: list[tuple[str, bool]] = []  # (character, special)
    for segment in segments(pattern.parts, ctx):
        if segment is not None:
            chars.extend((c, not segment[1]) for c in segment[0])
    regex, i = "", 0
    while i < len(chars):
        ch, special = chars[i]
        if special and ch == "*":
            regex += ".*"
        elif special and ch == "?":
            regex += "."
        elif special and ch == "[":
            source = "".join(c for c, _ in chars)
            bracket = bracket_class(source, i, "!")
            if bracket is not None:
                regex, i = regex + bracket[0], bracket[1]
                continue
            regex += re.escape(ch)
        else:
            regex += re.escape(ch)
        i += 1
    return re.fullmatch(regex, value, re.DOTALL) is not None


def bracket_class(pattern: str, i: int, negators: str) -> tuple[str, int] | None:
    """`[...]` starting at `i` as a regex class and the index after it; None if unclosed."""
    j = i + 1
    negate = j < len(pattern) and pattern[j] in negators
    if negate:
        j += 1
    close = pattern.find("]", j + 1)  # a `]` right after `[` or `[!` is a member
    if close < 0:
        return None
    members = "".join("\\" + c if c in "\\[]^" else c for c in pattern[j:close])
    return "[" + ("^" if negate else "") + members + "]", close + 1


def basic_regex(pattern: str) -> str:
    """A grep pattern (a simple BRE: `.`, `*`, `^`, `$`, `[...]`; the rest literal) as a
    Python regex."""
    regex, i = "", 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            regex, i = regex + re.escape(pattern[i + 1]), i + 2
            continue
        if ch == "[":
            bracket = bracket_class(pattern, i, "^")
            if bracket is not None:
                regex, i = regex + bracket[0], bracket[1]
                continue
        special = ch == "." or (ch == "*" and regex not in ("", "^"))
        if special or (ch == "^" and i == 0) or (ch == "$" and i == len(pattern) - 1):
            regex += ch
        else:
            regex += re.escape(ch)
        i += 1
    return regex
