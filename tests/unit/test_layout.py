"""The house's layout: the README's layer table names every package and top-level module; each
imports only its own layer or later ones; no two modules import each other round a loop; the
shutdown path never reaches the setting-up, demo or simulator code; every package says what it
holds."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "esxi_suspend"
# Never on upsmon's path (README, "How the pieces talk").
OFF_THE_SHUTDOWN_PATH = ("setup", "demo", "simulator", "ssh.logins")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py") if _module_name(p)}


def _imports(name: str) -> set[str]:
    """The modules of ours that `name` imports (`from esxi_suspend.x import y` counts x.y when
    that is a module, else x)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(MODULES[name].read_text())):
        if not isinstance(node, ast.ImportFrom) or not node.module:
            continue
        if node.module != "esxi_suspend" and not node.module.startswith("esxi_suspend."):
            continue
        base = node.module.removeprefix("esxi_suspend").lstrip(".")
        for alias in node.names:
            full = f"{base}.{alias.name}".lstrip(".")
            found.add(full if full in MODULES else base)
    return found - {"", name}


def _unit(module: str) -> str:
    """What the layer table names: a package, or a top-level module."""
    return module.split(".")[0]


def _layers() -> list[list[str]]:
    """README's table, one list per row: the packages and modules it names."""
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("| layer | packages and modules |") :].split("\n\n", 1)[0]
    rows = [line.split("|")[2] for line in table.splitlines()[2:]]
    return [re.findall(r"`(\w+)/?`", re.sub(r"\([^)]*\)", "", row)) for row in rows]


def test_every_package_and_module_is_in_the_layer_table() -> None:
    listed = {unit for row in _layers() for unit in row}
    units = {_unit(m) for m in MODULES} - {"__main__"}
    assert units - listed == set(), "add them to README's layer table"
    assert listed - units == set(), "README names packages or modules that do not exist"


def test_imports_go_down_the_layers_only() -> None:
    rank = {unit: i for i, row in enumerate(_layers()) for unit in row}
    wrong = [
        f"{module} imports {other}"
        for module in MODULES
        if _unit(module) in rank
        for other in _imports(module)
        if rank[_unit(other)] < rank[_unit(module)]
    ]
    assert wrong == [], "an import against README's layers"


def test_no_import_loop() -> None:
    graph = {m: {o for o in _imports(m) if o in MODULES} for m in MODULES}
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, " -> ".join((*path, module))
        if module not in done:
            for other in sorted(graph[module]):
                visit(other, (*path, module))
            done.add(module)

    for module in sorted(graph):
        visit(module, ())


def test_the_simulator_imports_only_itself() -> None:
    wrong = [
        f"{m} imports {o}"
        for m in MODULES
        if _unit(m) == "simulator"
        for o in _imports(m)
        if _unit(o) != "simulator"
    ]
    assert wrong == []


def test_the_shutdown_path_never_reaches_setup_demo_or_the_simulator() -> None:
    reached: set[str] = set()
    todo = ["runner"]
    while todo:
        module = todo.pop()
        if module not in reached:
            reached.add(module)
            todo.extend(o for o in _imports(module) if o in MODULES)
    wrong = {
        m for m in reached if any(m == x or m.startswith(f"{x}.") for x in OFF_THE_SHUTDOWN_PATH)
    }
    assert wrong == set()


def test_every_package_names_its_modules() -> None:
    missing = []
    for init in PACKAGE.rglob("__init__.py"):
        if init.parent == PACKAGE:
            continue
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        for child in sorted(init.parent.iterdir()):
            name = child.name if child.suffix == ".py" else f"{child.name}/"
            if child.name in ("__init__.py", "__pycache__") or child.suffix not in (".py", ""):
                continue
            if name not in doc:
                missing.append(f"{init.parent.name}: {name}")
    assert missing == [], "name each module in its package's docstring"
