"""esxi-suspend.8 is generated from the `--help` text; the committed page must be current."""

from __future__ import annotations

import importlib.util
import shlex
from pathlib import Path
from types import ModuleType

import pytest

from esxi_suspend.cli import build_parser
from esxi_suspend.settings.model import KNOWN_KEYS

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "esxi-suspend.8"


def manpage_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("manpage", ROOT / "tools" / "manpage.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def generated() -> str:
    text: str = manpage_tool().render()
    return text


def test_committed_man_page_matches_the_help_text(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    assert PAGE.read_text() == generated(), (
        "esxi-suspend.8 is stale: run python tools/manpage.py > esxi-suspend.8"
    )


def test_man_page_names_every_command_exit_codes_and_files() -> None:
    page = PAGE.read_text()
    for text in (".SS shutdown", ".SS check", ".SS trust", ".SS enroll", "exit codes:", "files:"):
        assert text in page
    for text in (".SS demo", ".SH SETTINGS", ".SH EXAMPLES", 'SHUTDOWNCMD "'):
        assert text in page


def test_man_page_describes_every_setting() -> None:
    page = PAGE.read_text()
    for key in KNOWN_KEYS:
        assert f"\\fB{key}\\fR" in page, key


@pytest.mark.parametrize(
    "line",
    [line for _, lines in manpage_tool().EXAMPLES for line in lines if "esxi-suspend " in line],
)
def test_every_example_command_line_parses(line: str) -> None:
    words = shlex.split(line)
    if words[0] == "SHUTDOWNCMD":  # upsmon.conf: the command is the quoted string
        words = shlex.split(words[1])
    assert Path(words[0]).name == "esxi-suspend"
    build_parser().parse_args(words[1:])  # a usage error would exit here


def test_no_fill_blocks_fit_80_columns_under_mans_indent() -> None:
    width = manpage_tool().TEXT_WIDTH
    assert width + 7 <= 80  # man indents section text by 7 columns
    inside, too_long = False, []
    for line in PAGE.read_text().splitlines():
        if line in (".nf", ".fi"):
            inside = line == ".nf"
            continue
        shown = line.replace("\\-", "-").replace("\\e", "\\").removeprefix("\\&")
        if inside and len(shown) > width:
            too_long.append(shown)
    assert too_long == []
