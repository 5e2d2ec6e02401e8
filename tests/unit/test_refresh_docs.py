"""tools/refresh_docs.py: its markers, on small strings; no program is run here."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "refresh_docs", ROOT / "tools" / "refresh_docs.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


tool = _tool()
NAMES = ("demo", "check")

PAGE = """\
# Title

Intro.

<!-- refresh: demo -->
```
old demo
```
<!-- /refresh -->

Between.

<!-- refresh: check -->
old check
<!-- /refresh -->
End.
"""


def test_replace_changes_only_the_text_between_the_markers() -> None:
    new = tool.replace_blocks(PAGE, "README.md", NAMES, {"demo": "```\nnew demo\n```\n"})
    assert new == PAGE.replace("old demo", "new demo")


def test_replace_every_block_and_a_body_without_final_newline() -> None:
    new = tool.replace_blocks(PAGE, "README.md", NAMES, {"demo": "A", "check": "B\nC\n"})
    assert "<!-- refresh: demo -->\nA\n<!-- /refresh -->" in new
    assert "<!-- refresh: check -->\nB\nC\n<!-- /refresh -->\nEnd.\n" in new
    assert new.startswith("# Title\n\nIntro.\n\n") and "\n\nBetween.\n\n" in new


def test_replace_nothing_given_is_the_same_text() -> None:
    assert tool.replace_blocks(PAGE, "README.md", NAMES, {}) == PAGE


def test_blocks_found_with_their_lines() -> None:
    blocks = tool.find_blocks(PAGE, "README.md", NAMES)
    assert [(b.name, b.start + 1, b.end + 1) for b in blocks] == [("demo", 5, 9), ("check", 13, 15)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "a\n<!-- refresh: nope -->\nx\n<!-- /refresh -->\n",
            "doc.md:2: unknown refresh marker 'nope'",
        ),
        (
            "a\n\n<!-- refresh: demo -->\nx\n",
            "doc.md:3: refresh block 'demo' has no <!-- /refresh -->",
        ),
        (
            "<!-- refresh: demo -->\n<!-- refresh: check -->\n<!-- /refresh -->\n",
            "doc.md:1: refresh block 'demo' has no <!-- /refresh --> before the next marker "
            "(line 2)",
        ),
        ("x\n<!-- /refresh -->\n", "doc.md:2: <!-- /refresh --> without a start marker"),
        ("<!-- refresh: demo --> and text\n", "doc.md:1: a marker alone on its line"),
    ],
)
def test_marker_errors_name_the_file_and_line(text: str, message: str) -> None:
    with pytest.raises(tool.RefreshError, match="^" + re.escape(message)):
        tool.find_blocks(text, "doc.md", NAMES)


def test_markers_shown_in_a_code_block_or_in_prose_are_not_markers() -> None:
    text = "Mark it with `<!-- refresh: NAME -->`.\n\n````\n<!-- refresh: NAME -->\n```\n````\n"
    assert tool.find_blocks(text, "doc.md", NAMES) == []
    assert tool.find_blocks(text + PAGE, "doc.md", NAMES)[0].start == 10


def test_check_lists_missing_and_repeated_names() -> None:
    docs = {
        "README.md": PAGE.replace("refresh: check", "refresh: demo"),
        "docs/x.md": "no markers\n",
    }
    assert tool.marker_problems(docs, NAMES) == [
        "'demo' marked 2 times: README.md:5, README.md:13",
        "missing: no `<!-- refresh: check -->` block",
    ]
    assert tool.marker_problems({"README.md": PAGE}, NAMES) == []
    # --only NAME requires only NAME
    assert tool.marker_problems({"README.md": "x\n"}, NAMES, ["demo"]) == [
        "missing: no `<!-- refresh: demo -->` block"
    ]


def test_check_command_exit_status_and_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text("<!-- refresh: demo -->\n<!-- /refresh -->\n")
    (tmp_path / "docs" / "a.md").write_text("<!-- refresh: outage-log -->\n<!-- /refresh -->\n")
    assert tool.main(["--check"], root=tmp_path) == 1
    err = capsys.readouterr().err
    assert "missing: no `<!-- refresh: check -->` block" in err
    assert "outage-timeline" in err and "demo" not in err and "outage-log" not in err
    (tmp_path / "docs" / "b.md").write_text(
        "<!-- refresh: check -->\n<!-- /refresh -->\n"
        "<!-- refresh: outage-timeline -->\n<!-- /refresh -->\n"
    )
    assert tool.main(["--check"], root=tmp_path) == 0
    (tmp_path / "docs" / "c.md").write_text("\n<!-- refresh: bogus -->\n")
    assert tool.main(["--check"], root=tmp_path) == 1
    assert "docs/c.md:2: unknown refresh marker 'bogus'" in capsys.readouterr().err


def test_shortened_paths_keep_the_file_name() -> None:
    tmp = Path("/tmp/esxi-abc")
    text = (
        "settings from /tmp/esxi-abc/t/pytest-of-root/x0/chain/esxi-suspend.env, (/tmp/esxi-abc/r)"
    )
    assert tool.shorten(text, tmp) == "settings from …/esxi-suspend.env, (…/r)"


def test_kept_file_parsed_and_rendered() -> None:
    kept = tool.parse_kept(
        "FINALDELAY 0\n\nt+  0.0 s  a\nt+  1.0 s  b\n\n"
        "esxi-suspend: INFO: host h: plan: x\nesxi-suspend: INFO: summary: ok\n"
        "esxi-suspend exit 0\n"
    )
    assert tool.timeline_excerpt(kept) == (
        "```\nt+  0.0 s  a\nt+  1.0 s  b\n```\n\nupsmon ran with `FINALDELAY 0`: with Debian's "
        "default `FINALDELAY 5` upsmon runs SHUTDOWNCMD, and everything after it, 5 s later.\n"
    )
    assert tool.log_excerpt(kept) == "```\nesxi-suspend: INFO: summary: ok\n```\n"
    with pytest.raises(tool.RefreshError, match="kept no `FINALDELAY N`"):
        tool.parse_kept("t+  0.0 s  a\n\nlog\n")


def test_committed_docs_have_every_marker_once() -> None:
    """`tools/refresh_docs.py --check`; the excerpts moved from README.md to docs/*.md, so
    it skips only while no page has a marker at all."""
    docs = tool.documents(ROOT)
    if not any("<!-- refresh:" in text for text in docs.values()):
        pytest.skip("no <!-- refresh: NAME --> marker in README.md or docs/*.md yet")
    assert tool.marker_problems(docs, tool.SOURCES) == []
