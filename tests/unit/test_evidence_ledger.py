"""docs/esxi-evidence.md lists every command our host text runs: a command the host text
starts to use without a row (its evidence, or "none found") fails here."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from test_plan import FLEET
from test_shutdown import SETTINGS

from esxi_suspend.host.inventory import inventory_command
from esxi_suspend.host.plan import make_plan
from esxi_suspend.host.rehearsal import cleanup_command, probe_command
from esxi_suspend.host.script import (
    log_path,
    plain_command,
    rehearsal_script,
    sequence_script,
    shutdown_command,
)

LEDGER = Path(__file__).resolve().parents[2] / "docs" / "esxi-evidence.md"
# Shell words that are no command: keywords, and the functions our text defines.
KEYWORDS = {"if", "then", "else", "fi", "while", "do", "done", "for", "in", "case", "esac"}
KEYWORDS |= {"{", "}", "(", ")", "!", "||", "&&", ";;", "return", "break", "continue"}


def host_texts() -> list[str]:
    texts = [inventory_command(1), shutdown_command(1, log_path(1, 2), 9), plain_command(1, 9)]
    texts += [probe_command(1), cleanup_command(1, log_path(1, 2))]  # check's rehearsal
    for strategy in ("autostop", "parallel"):
        plan = make_plan(FLEET, replace(SETTINGS, strategy=strategy), self_vm=1)
        texts += [sequence_script(plan), rehearsal_script(plan)]
    return texts


def commands(text: str) -> set[str]:
    """The first word of each simple command (after `;`, `|`, `&`, `(`, `{`, `then`, ...)."""
    defined = set(re.findall(r"(?m)^\s*([a-z]+)\(\) \{", text))
    text = re.sub(r'"[^"]*"', '""', text)  # quoted words are arguments
    text = re.sub(r"\$\(\([^()]*(?:\([^()]*\)[^()]*)*\)\)", "0", text)  # arithmetic
    text = text.replace("$n ", "")  # `nohup ` or nothing
    found: set[str] = set()
    for piece in re.split(r"[;|&\n]|\$\(|\(|\)|\{|\}|\b(?:then|else|do)\b", text):
        words = piece.split()
        if words[:1] == ["for"]:  # `for NAME in WORDS`: no command
            continue
        while words and (re.fullmatch(r"[A-Za-z_]+=\S*", words[0]) or words[0] in KEYWORDS):
            words = words[1:]
        if words and words[0] not in defined and re.fullmatch(r"[a-z:\[.][\w.-]*", words[0]):
            found.add(words[0])
    return found


def test_the_ledger_lists_every_command_the_host_text_runs() -> None:
    ledger = LEDGER.read_text()
    used = set().union(*(commands(text) for text in host_texts()))
    assert {"vim-cmd", "poweroff", "mkdir", "sh", "tail", "nohup", "date", "grep"} <= used, used
    missing = sorted(c for c in used if f"`{c}" not in ledger)
    assert not missing, f"docs/esxi-evidence.md has no row for: {missing}"


def test_the_helper_sees_a_new_command() -> None:
    assert "timeout" in commands("x() { :; }\nif true; then timeout -t 3 vim-cmd a; fi | x")
    assert "x" not in commands("x() { :; }\nx | x")
