"""esxi-suspend.8 is generated from the `--help` text; the committed page must be current."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def generated() -> str:
    spec = importlib.util.spec_from_file_location("manpage", ROOT / "tools" / "manpage.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text: str = module.render()
    return text


def test_committed_man_page_matches_the_help_text(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    assert (ROOT / "esxi-suspend.8").read_text() == generated(), (
        "esxi-suspend.8 is stale: run python tools/manpage.py > esxi-suspend.8"
    )


def test_man_page_names_every_command_exit_codes_and_files() -> None:
    page = (ROOT / "esxi-suspend.8").read_text()
    for text in (".SS shutdown", ".SS check", ".SS trust", ".SS enroll", "exit codes:", "files:"):
        assert text in page
