"""The house's layout: README's layer table names every module, and each module imports only
modules of later layers (or of its own line, in the table's order): no import loop."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "esxi_suspend"
# README: never on upsmon's path
SETUP = ("setupcli", "enroll", "authkeys", "trust", "setuptarget", "setupssh")


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "esxi_suspend":
                found |= {alias.name for alias in node.names}
            elif node.module.startswith("esxi_suspend."):
                found.add(node.module.split(".")[1])
    return found - {"__version__", path.stem}


def _layers() -> list[list[str]]:
    """README's table, one list per row, each in its order (`a` → `b`: a imports b)."""
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("| layer | modules |") :].split("\n\n", 1)[0]
    rows = [line.split("|")[2] for line in table.splitlines()[2:]]
    return [re.findall(r"`(\w+)`", re.sub(r"\([^)]*\)", "", row)) for row in rows]


def test_every_module_is_in_the_layer_table() -> None:
    listed = {m for row in _layers() for m in row} | set(SETUP)
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__", "__main__", "helptext"}
    assert modules - listed == set(), "add them to README's layer table"
    assert listed - modules == set(), "README names modules that do not exist"


def test_modules_import_only_later_layers() -> None:
    order = [m for row in _layers() for m in row]
    rank = {m: float(i) for i, m in enumerate(order)}
    rank["helptext"] = rank["cli"] + 0.5  # the parser's texts, beside it
    rank.update({n: rank["runner"] + 0.5 + i / 10 for i, n in enumerate(SETUP)})
    wrong = [
        f"{module} imports {other}"
        for module in rank
        for other in _imports(PACKAGE / f"{module}.py")
        if other in rank and rank[other] <= rank[module]
    ]
    assert wrong == [], "an import against README's layers (or a loop)"
