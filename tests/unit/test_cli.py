"""The command line contract: words, exit codes, and the restart that always runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from esxi_suspend.cli import main
from esxi_suspend.errors import ExitCode


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


def test_python_dash_m_is_the_same_command() -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "esxi_suspend"], capture_output=True, text=True, check=False
    )
    assert done.returncode == ExitCode.USAGE
    assert "usage: esxi-suspend" in done.stderr
