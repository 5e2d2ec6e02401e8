"""The command line contract: words, exit codes, and the restart that always runs."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from esxi_suspend.cli import build_parser, main
from esxi_suspend.errors import ExitCode
from esxi_suspend.helptext import reflow


@pytest.mark.parametrize("argv", [[], ["reboot"], ["shutdown", "--bogus"], ["check", "--dry-run"]])
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == ExitCode.USAGE
    assert "usage: esxi-suspend" in capsys.readouterr().err


def test_help_lists_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "shutdown" in out and "check" in out and "exit codes" in out


def test_config_error_still_restarts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "restarted"
    env = tmp_path / "bad.env"
    env.write_text(f"ESXI_PORT=abc\nUPS_RESTART_COMMAND=touch {marker}\n")
    env.chmod(0o600)
    assert main(["shutdown", "--env-file", str(env)]) == ExitCode.CONFIG
    assert marker.exists()
    err = capsys.readouterr().err
    assert "ESXI_PORT='abc'" in err and str(env) in err
    assert "Traceback" not in err


def test_check_does_not_restart(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "restarted"
    env = tmp_path / "bad.env"
    env.write_text(f"UPS_RESTART_COMMAND=touch {marker}\n")
    assert main(["check", "--env-file", str(env)]) == ExitCode.CONFIG
    assert not marker.exists()
    assert "NOT ready" in capsys.readouterr().out


def test_internal_error_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def boom(*_args: object, **_kwargs: object) -> ExitCode:
        raise RuntimeError("simulated bug")

    monkeypatch.setattr("esxi_suspend.cli.run", boom)
    assert main(["check"]) == ExitCode.INTERNAL
    err = capsys.readouterr().err
    assert "internal error" in err and "Traceback" not in err


def test_demo_verbose_reaches_demo_run(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, object]] = []

    def fake_run(*args: object, **kwargs: object) -> int:
        calls.append(kwargs)
        return 0

    monkeypatch.setattr("esxi_suspend.demo.command.run", fake_run)
    assert main(["demo", "--dry-run"]) == 0
    assert main(["demo", "-v"]) == 0
    assert main(["demo", "-vv"]) == 0
    assert [call["verbose"] for call in calls] == [False, True, True]


def _parsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {"": parser, **commands.choices}


def _slashed_words(parser: argparse.ArgumentParser) -> set[str]:
    """Every word of the parser's own texts that holds a `/`: paths, mostly."""
    texts = [parser.description or "", parser.epilog or ""]
    texts += [action.help or "" for action in parser._actions]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            texts += [choice.help or "" for choice in action._choices_actions]
    return {word for text in texts for word in text.split() if "/" in word}


def _help(
    command: str, columns: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> str:
    monkeypatch.setenv("COLUMNS", str(columns))
    assert main([command, "--help"] if command else ["--help"]) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("command", list(_parsers()))
def test_help_fits_80_columns_and_never_splits_a_path(
    command: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    words = _slashed_words(_parsers()[command])
    assert words or command == "check"  # the test looks at something
    texts = {}
    for columns in (80, 200):
        text = texts[columns] = _help(command, columns, monkeypatch, capsys)
        lines = text.splitlines()
        assert [line for line in lines if len(line) > 80] == [], columns
        for word in words:
            assert any(word in line for line in lines), (columns, word)
    assert texts[200] == texts[80]  # never wider than 80, whatever the terminal
    narrow = _help(command, 60, monkeypatch, capsys).splitlines()
    assert [line for line in narrow if len(line) > 60] == []


@pytest.mark.parametrize(
    ("text", "width", "expected"),
    [
        # a paragraph is refilled; a path is never split, even at its hyphens
        (
            "see /etc/esxi-suspend/esxi-suspend.env\nfor more",
            20,
            ["see", "/etc/esxi-suspend/esxi-suspend.env", "for more"],
        ),
        # a heading stays; table rows go on under their text column
        (
            "files:\n  a/b   alpha bravo charlie delta\n        echo foxtrot golf\n  c     six",
            38,
            [
                "files:",
                "  a/b   alpha bravo charlie delta echo",
                "        foxtrot golf",
                "  c     six",
            ],
        ),
        # too narrow for the text column: the text goes under its term
        ("  TERM        some words here", 36, ["  TERM", "      some words here"]),
        # indented paragraph lines join; blank lines stay
        ("x:\n  one two\n  three\n\nend", 40, ["x:", "  one two three", "", "end"]),
    ],
)
def test_reflow_keeps_the_shape(text: str, width: int, expected: list[str]) -> None:
    assert reflow(text, width) == expected
