"""Config tables: every bad input gives one error naming the file and each key at fault."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from esxi_suspend.settings.envfile import RestartAwareConfigError, load_settings
from esxi_suspend.settings.model import DEFAULT_ENV_FILE, RestartSettings, env_file_path


def write_env(files: dict[str, Path], body: str, mode: int = 0o600) -> Path:
    path = files["dir"] / "esxi-suspend.env"
    text = body.replace("@KEY@", str(files["key"])).replace("@KNOWN@", str(files["known"]))
    path.write_text(text)
    path.chmod(mode)
    return path


GOOD = "ESXI_HOST=esxi1.lan\nESXI_KEY_FILE=@KEY@\nESXI_KNOWN_HOSTS=@KNOWN@\n"


def test_minimal_file_gets_the_documented_defaults(files: dict[str, Path]) -> None:
    settings = load_settings(write_env(files, GOOD))
    assert settings.host == "esxi1.lan"
    assert settings.user == "root"
    assert settings.port == 22
    assert settings.connect_timeout == 10
    assert settings.command_timeout == 300
    assert settings.restart == RestartSettings(service="auto", command=None)
    assert settings.key_passphrase is None


def test_all_settings_and_a_passphrase_that_stays_literal(files: dict[str, Path]) -> None:
    body = GOOD + (
        "ESXI_USER=admin\nESXI_PORT=2222\nESXI_KEY_PASSPHRASE='pa$$ ${word}'\n"
        "ESXI_CONNECT_TIMEOUT=3\nESXI_COMMAND_TIMEOUT=42\nUPS_SERVICE=nut-monitor\n"
        "UPS_RESTART_COMMAND=/usr/bin/logger -t test 'two words'\n"
    )
    settings = load_settings(write_env(files, body))
    assert (settings.user, settings.port) == ("admin", 2222)
    assert settings.key_passphrase == "pa$$ ${word}"
    assert "pa$$" not in repr(settings)
    assert (settings.connect_timeout, settings.command_timeout) == (3, 42)
    assert settings.restart.service == "nut-monitor"
    assert settings.restart.command == ("/usr/bin/logger", "-t", "test", "two words")
    assert "ESXI_KEY_PASSPHRASE" not in os.environ


def test_original_script_names_are_aliases(files: dict[str, Path]) -> None:
    body = "ESXIHOST=10.0.0.5\nESXIUSER=root\nESXI_KEY_FILE=@KEY@\nESXI_KNOWN_HOSTS=@KNOWN@\n"
    settings = load_settings(write_env(files, body))
    assert settings.host == "10.0.0.5"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("", ["ESXI_HOST: missing", "ESXI_KEY_FILE: missing"]),
        ("ESXI_HOST=\nESXI_KEY_FILE=@KEY@\nESXI_KNOWN_HOSTS=@KNOWN@\n", ["ESXI_HOST: is empty"]),
        (GOOD + "ESXI_PORT=twenty-two\n", ["ESXI_PORT='twenty-two': not a whole number"]),
        (GOOD + "ESXI_PORT=70000\n", ["ESXI_PORT='70000': out of range"]),
        (GOOD + "ESXI_CONNECT_TIMEOUT=-1\n", ["ESXI_CONNECT_TIMEOUT='-1': not a whole number"]),
        (GOOD + "ESXI_COMMAND_TIMEOUT=0\n", ["ESXI_COMMAND_TIMEOUT='0': out of range"]),
        (GOOD + "ESXI_HSOT=x\n", ["ESXI_HSOT: unknown setting (did you mean ESXI_HOST?)"]),
        (GOOD + "ESXIHOST=other\n", ["ESXIHOST: conflicts with ESXI_HOST"]),
        (GOOD.replace("esxi1.lan", "esxi1.lan; reboot"), ["ESXI_HOST='esxi1.lan; reboot'"]),
        (GOOD.replace("esxi1.lan", "-oProxyCommand=x"), ["ESXI_HOST='-oProxyCommand=x'"]),
        (
            GOOD.replace("esxi1.lan", "a b, esxi2, c@d@e"),
            ["entry 'a b': not [user@]host[:port]", "entry 'c@d@e': not a host name"],
        ),
        (GOOD + "ESXI_USER=root;id\n", ["ESXI_USER='root;id': not a user name"]),
        (GOOD + "ESXI_STRATEGY=paralel\n", ["ESXI_STRATEGY='paralel': use one of: autostop"]),
        (GOOD + "ESXI_DEADLIN=300\n", ["ESXI_DEADLIN: unknown setting (did you mean"]),
        ("ESXIHOST=other\n" + GOOD, ["ESXIHOST: conflicts with ESXI_HOST"]),
        (GOOD + "UPS_SERVICE=nut monitor\n", ["UPS_SERVICE='nut monitor'"]),
        (GOOD + "UPS_RESTART_COMMAND='unbalanced\n", ["line 4: cannot be parsed"]),
        (GOOD + 'UPS_RESTART_COMMAND="a \'b"\n', ['UPS_RESTART_COMMAND="a \'b": cannot be split']),
        (GOOD + "this line is not a setting\n", ["line 4: cannot be parsed"]),
        (
            "ESXI_HOST=h\nESXI_KEY_FILE=/nonexistent/key\nESXI_KNOWN_HOSTS=@KNOWN@\n",
            ["ESXI_KEY_FILE='/nonexistent/key': file not found; create one with: ssh-keygen"],
        ),
        (
            "ESXI_HOST=h\nESXI_KEY_FILE=relative/key\nESXI_KNOWN_HOSTS=@KNOWN@\n",
            ["ESXI_KEY_FILE='relative/key': must be an absolute path"],
        ),
        (
            "ESXI_HOST=h\nESXI_KEY_FILE=@KEY@\nESXI_KNOWN_HOSTS=/nonexistent/kh\n",
            ["ESXI_KNOWN_HOSTS='/nonexistent/kh': file not found; pin the host key"],
        ),
    ],
)
def test_every_problem_is_named(files: dict[str, Path], body: str, expected: list[str]) -> None:
    path = write_env(files, body)
    with pytest.raises(RestartAwareConfigError) as caught:
        load_settings(path)
    message = str(caught.value)
    assert str(path) in message
    for fragment in expected:
        assert fragment in message


def test_all_problems_reported_together(files: dict[str, Path]) -> None:
    body = "ESXI_PORT=x\nESXI_COMMAND_TIMEOUT=y\nBOGUS=1\n"
    with pytest.raises(RestartAwareConfigError) as caught:
        load_settings(write_env(files, body))
    keys = ["ESXI_PORT", "ESXI_COMMAND_TIMEOUT", "BOGUS", "ESXI_HOST", "ESXI_KEY_FILE"]
    assert all(any(key in p for p in caught.value.problems) for key in keys)


def test_restart_settings_survive_a_broken_file(files: dict[str, Path]) -> None:
    body = "ESXI_PORT=x\nUPS_RESTART_COMMAND=/bin/true now\n"
    with pytest.raises(RestartAwareConfigError) as caught:
        load_settings(write_env(files, body))
    assert caught.value.restart.command == ("/bin/true", "now")


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda d: d / "missing.env", "file not found"),
        (lambda d: d, "is a directory"),
    ],
)
def test_unreadable_file_is_one_clear_problem(
    files: dict[str, Path], make: object, expected: str
) -> None:
    assert callable(make)
    path = make(files["dir"])
    with pytest.raises(RestartAwareConfigError) as caught:
        load_settings(path)
    assert caught.value.problems == [caught.value.problems[0]]
    assert expected in caught.value.problems[0]
    assert caught.value.restart == RestartSettings()


def test_not_utf8_is_reported(files: dict[str, Path]) -> None:
    path = files["dir"] / "latin1.env"
    path.write_bytes(b"ESXI_HOST=caf\xe9\n")
    with pytest.raises(RestartAwareConfigError, match="not UTF-8"):
        load_settings(path)


def test_group_readable_files_warn(
    files: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    files["key"].chmod(0o644)
    path = write_env(files, GOOD, mode=0o640)
    with caplog.at_level(logging.WARNING, logger="esxi_suspend"):
        load_settings(path)
    text = caplog.text
    assert f"chmod 600 {path}" in text
    assert f"chmod 600 {files['key']}" in text


def test_env_file_path_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ESXI_SUSPEND_ENV", raising=False)
    assert env_file_path(None) == DEFAULT_ENV_FILE
    monkeypatch.setenv("ESXI_SUSPEND_ENV", "/from/env")
    assert env_file_path(None) == Path("/from/env")
    assert env_file_path("/from/cli") == Path("/from/cli")
