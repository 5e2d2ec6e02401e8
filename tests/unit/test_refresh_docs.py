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
    for name in ("install", "trust", "enroll"):
        assert f"missing: no `<!-- refresh: {name} -->` block" in err
    (tmp_path / "docs" / "b.md").write_text(
        "".join(
            f"<!-- refresh: {name} -->\n<!-- /refresh -->\n"
            for name in ("check", "outage-timeline", "install", "trust", "enroll")
        )
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


def test_every_source_has_a_name_for_only() -> None:
    assert set(tool.SOURCES) == {
        "demo", "check", "outage-timeline", "outage-log", "install", "trust", "enroll"
    }  # fmt: skip
    args = tool._parser().parse_args(["--only", "install", "--only", "trust", "--only", "enroll"])
    assert args.only == ["install", "trust", "enroll"]


TREE = Path("/tmp/esxi-abc/root")
SOURCE = Path("/tmp/esxi-abc/src")
PIP_WARNING = (
    "WARNING: Location 'file:///opt/pypi/simple/fabric/' is ignored: it is neither a file nor "
    "a directory.\n"
)
INSTALLED = f"""\
Installing esxi-suspend from {SOURCE} into {TREE}:
  created   {TREE}/opt/esxi-suspend (venv, Python 3.11.7)
  pip install --upgrade {SOURCE} (fetches fabric and python-dotenv if missing) ...
{PIP_WARNING}{PIP_WARNING}  installed {TREE}/opt/esxi-suspend/bin/esxi-suspend (esxi-suspend 0.1.0)
NUT upsmon.conf:
  no upsmon.conf in {TREE}/etc/nut or {TREE}/etc/ups: when NUT is installed, add
    SHUTDOWNCMD "{TREE}/usr/local/sbin/esxi-suspend shutdown --env-file {TREE}/etc/e.env"
"""


def test_install_output_as_on_the_machine_itself_and_what_root_changed() -> None:
    excerpt = tool.install_excerpt(INSTALLED, TREE, SOURCE)
    text, _, note = excerpt.partition("```\n\n")
    assert text == (
        "```\n"
        "Installing esxi-suspend from /root/esxi-suspend:\n"
        "  created   /opt/esxi-suspend (venv, Python 3.11.7)\n"
        "  pip install --upgrade /root/esxi-suspend (fetches fabric and python-dotenv if "
        "missing) ...\n"
        "  installed /opt/esxi-suspend/bin/esxi-suspend (esxi-suspend 0.1.0)\n"
        "NUT upsmon.conf:\n"
        "  no upsmon.conf in /etc/nut or /etc/ups: when NUT is installed, add\n"
        '    SHUTDOWNCMD "/usr/local/sbin/esxi-suspend shutdown --env-file /etc/e.env"\n'
    )
    assert note.startswith("(`bash install.sh --root T`") and note.endswith(".)\n")
    assert "`--env-file /etc/esxi-suspend/esxi-suspend.env` here" in note
    assert "no upsmon.conf is found" in note
    assert "2 warnings of this machine's pip configuration" in note


def test_install_note_says_only_what_happened() -> None:
    plain = INSTALLED.replace(PIP_WARNING, "").replace(f" --env-file {TREE}/etc/e.env", "")
    plain = plain.replace("  no upsmon.conf in", "  found upsmon.conf in")
    note = tool.install_excerpt(plain, TREE, SOURCE).partition("```\n\n")[2]
    assert "--env-file" not in note and "pip" not in note and "upsmon" not in note


@pytest.mark.parametrize(
    "output",
    [
        "",
        "install.sh: error: pip install failed\n",
        INSTALLED + f"  created   {TREE}\n",  # the tree itself, left in a path
    ],
)
def test_install_output_not_of_an_install_into_its_tree_is_refused(output: str) -> None:
    with pytest.raises(tool.RefreshError, match=r"^install: not the output"):
        tool.install_excerpt(output, TREE, SOURCE)


def test_the_fake_hosts_port_shown_as_the_docs_port_where_a_port_is_written() -> None:
    text = (
        "host 127.0.0.1 port 40123 shows this host key:\n"
        "  256 SHA256:ab+40123/x [127.0.0.1]:40123 (ED25519)\n"
        "set: ESXI_PORT=40123 in …/esxi-suspend.env\n"
        "verified: key login works (root@127.0.0.1:40123, key …/id_ed25519)\n"
        "port 401234\n"
    )
    assert tool.show_port(text, 40123) == (
        "host 127.0.0.1 port 2299 shows this host key:\n"
        "  256 SHA256:ab+40123/x [127.0.0.1]:2299 (ED25519)\n"
        "set: ESXI_PORT=2299 in …/esxi-suspend.env\n"
        "verified: key login works (root@127.0.0.1:2299, key …/id_ed25519)\n"
        "port 401234\n"
    )


def test_trust_and_enroll_excerpts() -> None:
    trust = tool.trust_excerpt("pin [127.0.0.1]:40123? yes\n", 40123)
    assert trust.startswith("```\npin [127.0.0.1]:2299? yes\n```\n\n(`esxi-suspend trust ")
    enroll = tool.enroll_excerpt("added\n", "our key already works: 127.0.0.1:40123\n", 40123)
    assert enroll.startswith(
        "```\nadded\n```\n\nRun again, once our key works:\n\n"
        "```\nour key already works: 127.0.0.1:2299\n```\n\n(`esxi-suspend enroll "
    )
    assert "40123" not in trust + enroll


def test_committed_docs_have_every_marker_once() -> None:
    """`tools/refresh_docs.py --check`; the excerpts moved from README.md to docs/*.md, so
    it skips only while no page has a marker at all."""
    docs = tool.documents(ROOT)
    if not any("<!-- refresh:" in text for text in docs.values()):
        pytest.skip("no <!-- refresh: NAME --> marker in README.md or docs/*.md yet")
    assert tool.marker_problems(docs, tool.SOURCES) == []
