"""The simulated `sh`'s grammar: a script parsed into a tree of commands, before anything runs.

    body      : and-or lists separated by `;`, `&` (in the background) or newlines
    and-or    : pipeline (`&&`|`||` pipeline)...
    pipeline  : [`!`] command (`|` command)...
    command   : simple command (NAME=value words, redirections)
              | `{ body; }` | `( body )` | `if`/`elif`/`else`/`fi` | `while ... do ... done`
              | `for NAME in WORDS; do ... done` | `case WORD in PAT|PAT) body ;; ... esac`
              | `NAME() compound-command`; each compound command takes redirections after it

Nothing else: `until`, `for NAME` without `in`, `NAME=value` before a command, here-documents,
`((`, `[[`-style syntax are ShellSyntaxErrors (see lexer.py for the words' own limits).
"""

from __future__ import annotations

import re
from dataclasses import replace

from esxi_suspend.simulator.shell.lexer import (
    End,
    Lexer,
    Op,
    RedirOp,
    ShellSyntaxError,
    Token,
    unsupported,
)
from esxi_suspend.simulator.shell.tree import (
    AndOr,
    Body,
    Case,
    CaseItem,
    Command,
    Compound,
    For,
    FunctionDef,
    Group,
    If,
    Lit,
    Pipeline,
    Redirect,
    Simple,
    Subshell,
    While,
    Word,
)

RESERVED = frozenset({
    "!", "{", "}", "case", "do", "done", "elif", "else", "esac", "fi", "for", "if", "in", "then",
    "until", "while",
})  # fmt: skip


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def parse(text: str) -> list[AndOr]:
    """A whole script; raises ShellSyntaxError before anything runs."""
    parser = Parser(text, 0)
    body = parser.body()
    token = parser.peek()
    if not isinstance(token, End):
        raise parser.unexpected(token)
    return list(body)


def is_name(word: str | None) -> bool:
    return word is not None and _NAME.match(word) is not None


class Parser:
    def __init__(self, text: str, pos: int) -> None:
        self.text = text
        self.lexer = Lexer(text, pos, self._substitution)
        self.token: Token | None = None
        self.last_end = pos

    # -- tokens ---------------------------------------------------------------------------
    def peek(self) -> Token:
        if self.token is None:
            self.token = self.lexer.next()
        return self.token

    def take(self) -> Token:
        token = self.peek()
        self.token = None
        self.last_end = token.end
        return token

    def reserved(self) -> str | None:
        """The next token as a reserved word (only meaningful where a command starts)."""
        token = self.peek()
        word = token.literal() if isinstance(token, Word) else None
        return word if word in RESERVED else None

    def is_op(self, value: str) -> bool:
        token = self.peek()
        return isinstance(token, Op) and token.value == value

    def skip_newlines(self) -> None:
        while self.is_op("\n"):
            self.take()

    def unexpected(self, token: Token, expecting: str = "") -> ShellSyntaxError:
        if isinstance(token, End):
            what = "end of file"
        elif isinstance(token, Op) and token.value == "\n":
            what = "newline"
        else:
            what = f'"{self.text[token.start : token.end]}"'
        hint = f' (expecting "{expecting}")' if expecting else ""
        return ShellSyntaxError(f"unexpected {what}{hint}")

    def expect_word(self, word: str) -> None:
        if self.reserved() != word:
            raise self.unexpected(self.peek(), word)
        self.take()

    def expect_op(self, value: str) -> None:
        if not self.is_op(value):
            raise self.unexpected(self.peek(), value)
        self.take()

    def any_word(self) -> Word:
        token = self.take()
        if not isinstance(token, Word):
            raise self.unexpected(token)
        return token

    def _substitution(self, pos: int) -> tuple[Body, int]:
        inner = Parser(self.text, pos)
        body = inner.body(stop_ops=frozenset({")"}))
        inner.expect_op(")")
        return body, inner.last_end

    # -- lists ----------------------------------------------------------------------------
    def body(
        self, stop_words: frozenset[str] = frozenset(), stop_ops: frozenset[str] = frozenset()
    ) -> Body:
        items: list[AndOr] = []
        while True:
            self.skip_newlines()
            token = self.peek()
            if isinstance(token, End) or self.reserved() in stop_words:
                return tuple(items)
            if isinstance(token, Op) and token.value in stop_ops:
                return tuple(items)
            first, rest = self.and_or()
            source = self.text[token.start : self.last_end]
            separator = self.peek()
            if not (isinstance(separator, Op) and separator.value in (";", "&", "\n")):
                items.append(AndOr(first, rest, False, source))
                return tuple(items)  # the caller checks what ends it
            self.take()
            items.append(AndOr(first, rest, separator.value == "&", source))

    def nonempty_body(self, *stop_words: str) -> Body:
        body = self.body(stop_words=frozenset(stop_words))
        if not body:
            raise self.unexpected(self.peek())
        return body

    def and_or(self) -> tuple[Pipeline, tuple[tuple[str, Pipeline], ...]]:
        first = self.pipeline()
        rest: list[tuple[str, Pipeline]] = []
        while True:
            token = self.peek()
            if not (isinstance(token, Op) and token.value in ("&&", "||")):
                return first, tuple(rest)
            self.take()
            self.skip_newlines()
            rest.append((token.value, self.pipeline()))

    def pipeline(self) -> Pipeline:
        negate = self.reserved() == "!"
        if negate:
            self.take()
        commands = [self.command()]
        while self.is_op("|"):
            self.take()
            self.skip_newlines()
            commands.append(self.command())
        return Pipeline(tuple(commands), negate)

    # -- commands -------------------------------------------------------------------------
    def command(self) -> Command:
        word = self.reserved()
        node: Compound
        if self.is_op("("):
            self.take()
            body = self.body(stop_ops=frozenset({")"}))
            if not body:
                raise self.unexpected(self.peek())
            self.expect_op(")")
            node = Subshell(body)
        elif word == "{":
            self.take()
            node = Group(self.nonempty_body("}"))
            self.expect_word("}")
        elif word == "if":
            node = self.if_command()
        elif word == "while":
            self.take()
            condition = self.nonempty_body("do")
            self.expect_word("do")
            node = While(condition, self.nonempty_body("done"))
            self.expect_word("done")
        elif word == "for":
            node = self.for_command()
        elif word == "case":
            node = self.case_command()
        elif word == "until":
            raise unsupported("until loops are")
        elif word is not None:
            raise self.unexpected(self.peek())
        else:
            return self.simple()
        redirs: list[Redirect] = []
        while isinstance(self.peek(), RedirOp):
            redirs.append(self.redirect())
        return replace(node, redirs=tuple(redirs))

    def redirect(self) -> Redirect:
        token = self.take()
        assert isinstance(token, RedirOp)
        target = self.take()
        if not isinstance(target, Word):
            raise self.unexpected(target)
        inward = token.op == "<" or (token.op == "<&" and target.literal() == "-")
        if (token.fd == 0) != inward or (token.op == "<&" and not inward):
            raise unsupported(f"{self.text[token.start : target.end]} is")
        return Redirect(token.fd, token.op, target)

    def simple(self) -> Command:
        assigns: list[tuple[str, Word]] = []
        words: list[Word] = []
        redirs: list[Redirect] = []
        while True:
            token = self.peek()
            if isinstance(token, RedirOp):
                redirs.append(self.redirect())
                continue
            if not isinstance(token, Word):
                break
            self.take()
            assignment = None if words else _assignment(token)
            if assignment is not None:
                assigns.append(assignment)
                continue
            words.append(token)
            if len(words) == 1 and not assigns and not redirs and self.is_op("("):
                return self.function(token)
        if not (assigns or words or redirs):
            raise self.unexpected(self.peek())
        if assigns and words:
            raise unsupported("NAME=value before a command is")
        return Simple(tuple(assigns), tuple(words), tuple(redirs))

    def function(self, name: Word) -> FunctionDef:
        if not is_name(name.literal()):
            raise ShellSyntaxError(f'bad function name "{self.text[name.start : name.end]}"')
        self.take()
        self.expect_op(")")
        self.skip_newlines()
        body = self.command()
        if isinstance(body, (Simple, FunctionDef)):
            raise ShellSyntaxError("a function body must be a compound command: { ...; }")
        return FunctionDef(name.literal() or "", body)

    def if_command(self) -> If:
        self.take()
        branches: list[tuple[Body, Body]] = []
        otherwise: Body | None = None
        while True:
            condition = self.nonempty_body("then")
            self.expect_word("then")
            branches.append((condition, self.nonempty_body("elif", "else", "fi")))
            if self.reserved() != "elif":
                break
            self.take()
        if self.reserved() == "else":
            self.take()
            otherwise = self.nonempty_body("fi")
        self.expect_word("fi")
        return If(tuple(branches), otherwise)

    def for_command(self) -> For:
        self.take()
        name = self.any_word().literal()
        if not is_name(name):
            raise ShellSyntaxError("bad for loop variable")
        self.skip_newlines()
        if self.reserved() != "in":
            raise unsupported("for without in is")
        self.take()
        words: list[Word] = []
        while isinstance(self.peek(), Word):
            words.append(self.any_word())
        if not (self.is_op(";") or self.is_op("\n")):
            raise self.unexpected(self.peek(), "do")
        self.take()
        self.skip_newlines()
        self.expect_word("do")
        body = self.nonempty_body("done")
        self.expect_word("done")
        return For(name or "", tuple(words), body)

    def case_command(self) -> Case:
        self.take()
        word = self.any_word()
        self.skip_newlines()
        self.expect_word("in")
        self.skip_newlines()
        items: list[CaseItem] = []
        while self.reserved() != "esac":
            if self.is_op("("):
                self.take()
            patterns = [self.any_word()]
            while self.is_op("|"):
                self.take()
                patterns.append(self.any_word())
            self.expect_op(")")
            body = self.body(stop_words=frozenset({"esac"}), stop_ops=frozenset({";;"}))
            items.append(CaseItem(tuple(patterns), body))
            if self.is_op(";;"):
                self.take()
                self.skip_newlines()
            elif self.reserved() != "esac":
                raise self.unexpected(self.peek(), "esac")
        self.take()
        return Case(word, tuple(items))


def _assignment(word: Word) -> tuple[str, Word] | None:
    first = word.parts[0] if word.parts else None
    if not isinstance(first, Lit) or first.quoted or "=" not in first.text:
        return None
    name, value = first.text.split("=", 1)
    if not is_name(name):
        return None
    rest = ((Lit(value, False),) if value else ()) + word.parts[1:]
    return name, Word(rest, word.start, word.end)
