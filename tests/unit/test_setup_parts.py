"""Pure parts of trust and enroll: known_hosts names and entries, ESXi versions, key types,
HOST arguments, the yes/no/fingerprint question, the refused-key hint."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable
from pathlib import Path

import pytest

from esxi_suspend.errors import BadArgument, ConfigError, NotConfirmed
from esxi_suspend.settings.envfile import load_settings, read_env_values
from esxi_suspend.settings.model import DEFAULT_ENV_FILE, Target
from esxi_suspend.setup.authkeys import WRITE_4, keys_file, parse_version, read_5, write_5
from esxi_suspend.setup.target import resolve_target
from esxi_suspend.setup.trust import AGAIN, _confirm, entry_names_host, replace_entries
from esxi_suspend.ssh.hostkeys import HostKeyInfo, known_hosts_name
from esxi_suspend.ssh.remote import enroll_command, host_argument

KEY = HostKeyInfo("ssh-ed25519", "AAAAC3NzaC1lZDI1NTE5AAAAIFAKE", 256, "SHA256:x")


def hashed(name: str, salt: bytes = b"0123456789abcdefghij") -> str:
    digest = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"


@pytest.mark.parametrize(
    ("field", "name", "expected"),
    [
        ("esxi1", "esxi1", True),
        ("esxi1,10.0.0.5", "10.0.0.5", True),
        ("[esxi1]:2222", "esxi1", False),
        ("[esxi1]:2222", "[esxi1]:2222", True),
        (hashed("esxi1"), "esxi1", True),
        (hashed("esxi1"), "esxi2", False),
        ("|1|broken", "esxi1", False),
    ],
)
def test_entry_names_host(field: str, name: str, expected: bool) -> None:
    assert entry_names_host(field, name) is expected


def test_known_hosts_name() -> None:
    assert known_hosts_name("esxi1", 22) == "esxi1"
    assert known_hosts_name("esxi1", 2222) == "[esxi1]:2222"


def test_replace_entries_keeps_other_hosts_and_markers(tmp_path: Path) -> None:
    path = tmp_path / "known_hosts"
    path.write_text(
        "# comment\nother ssh-ed25519 AAAAother\n@revoked esxi1 ssh-rsa AAAArev\n"
        f"esxi1 ssh-rsa AAAAold\n{hashed('esxi1')} ssh-rsa AAAAold2\n"
    )
    assert replace_entries(path, "esxi1", KEY) == 2
    assert path.read_text() == (
        "# comment\nother ssh-ed25519 AAAAother\n@revoked esxi1 ssh-rsa AAAArev\n"
        f"esxi1 {KEY.entry}\n"
    )


@pytest.mark.parametrize(
    ("text", "major", "ed25519"),
    [
        ("VMware ESXi 6.7.0 build-8169922\n", 6, True),
        ("VMware ESXi 8.0.2 build-22380479", 8, True),
        ("VMware ESXi 5.5.0 build-1331820", 5, False),
        ("VMware ESXi 4.1.0 build-260247", 4, False),
        ("VMware ESX 4.0.0 build-164009", 4, False),
    ],
)
def test_versions_and_key_types(text: str, major: int, ed25519: bool) -> None:
    version = parse_version(text)
    assert version is not None and version.major == major
    assert ("ssh-ed25519" in version.accepted_key_types) is ed25519
    assert "ssh-rsa" in version.accepted_key_types
    assert "ssh-dss" not in version.accepted_key_types


def test_no_version_in_other_output() -> None:
    assert parse_version("sh: vmware: not found") is None


def test_remote_commands_are_constants_without_key_material() -> None:
    for command in (WRITE_4, write_5("root"), write_5("esxadmin")):
        assert "ssh-" not in command and "AAAA" not in command
        assert "read -r line" in command  # the key line comes on stdin


@pytest.mark.parametrize(
    ("user", "path"),
    [
        ("root", "/etc/ssh/keys-root/authorized_keys"),  # as before: root's own file
        ("esxadmin", "/etc/ssh/keys-esxadmin/authorized_keys"),
        ("svc.nut-1", "/etc/ssh/keys-svc.nut-1/authorized_keys"),
    ],
)
def test_keys_file_is_the_users_own(user: str, path: str) -> None:
    assert keys_file(user) == path
    assert f"f={path}\n" in write_5(user)
    assert read_5(user) == f"cat {path}"


def env(tmp_path: Path, text: str = "") -> Path:
    path = tmp_path / "e.env"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("host", "port", "file", "expected"),
    [
        ("esxi1", None, "", ("esxi1", "root", 22)),
        ("admin@esxi1:2222", None, "", ("esxi1", "admin", 2222)),
        ("esxi1", 2200, "ESXI_PORT=2222\n", ("esxi1", "root", 2200)),
        ("esxi1", None, "ESXI_PORT=2222\nESXI_USER=nut\n", ("esxi1", "nut", 2222)),
        ("root@esxi1", None, "ESXIUSER=nut\n", ("esxi1", "root", 22)),
        ("[fe80::1]:2222", None, "", ("fe80::1", "root", 2222)),
        ("[fe80::1]", None, "", ("fe80::1", "root", 22)),
        ("10.0.0.5:22", 22, "ESXI_PORT=2222\n", ("10.0.0.5", "root", 22)),
        (None, None, "ESXI_HOST=nut@esxi2:2022\n", ("esxi2", "nut", 2022)),
        (None, 2022, "ESXI_HOST=esxi2\n", ("esxi2", "root", 2022)),
    ],
)
def test_resolve_target_takes_what_esxi_host_takes(
    tmp_path: Path, host: str | None, port: int | None, file: str, expected: tuple[str, str, int]
) -> None:
    setup = resolve_target(env(tmp_path, file), host, port)
    assert setup.target == Target(*expected)


@pytest.mark.parametrize(
    ("host", "port", "file", "message"),
    [
        ("bad host", None, "", "argument HOST 'bad host': "),
        ("esxi1:0", None, "", "argument HOST 'esxi1:0': out of range"),
        ("a@b@c", None, "", "argument HOST 'a@b@c': "),
        ("bad user@esxi1", None, "", "argument HOST 'bad user@esxi1': "),
        ("esxi1, esxi2", None, "", "argument HOST 'esxi1, esxi2': one host only"),
        ("esxi1:2222", 22, "", "argument HOST 'esxi1:2222' says port 2222, --port says 22"),
        ("esxi1", 70000, "", "argument --port 70000: out of range"),
        (None, 22, "ESXI_HOST=esxi1:2222\n", "ESXI_HOST='esxi1:2222' says port 2222, --port"),
        # the file is fine but names no host, or several: the command line has to say which
        (None, None, "", "no HOST given, and "),
        (None, None, "ESXI_HOST=esxi1,esxi2\n", "names several hosts: give the one"),
        # a bad HOST is reported even when the env file has problems of its own
        ("bad host", None, "ESXI_PORT=x\n", "argument HOST 'bad host': "),
    ],
)
def test_a_bad_host_argument_is_a_usage_error(
    tmp_path: Path, host: str | None, port: int | None, file: str, message: str
) -> None:
    with pytest.raises(BadArgument) as caught:
        resolve_target(env(tmp_path, file), host, port)
    assert message in str(caught.value)
    assert "e.env" not in str(caught.value) or host is None


@pytest.mark.parametrize(
    ("file", "problem"),
    [
        ("ESXI_HOST=bad host\n", "ESXI_HOST='bad host': "),
        ("ESXI_PORT=x\n", "ESXI_PORT='x': "),
        ("ESXI_USER=bad user\n", "ESXI_USER='bad user': "),
        ("ESXI_CONNECT_TIMEOUT=0\n", "ESXI_CONNECT_TIMEOUT='0': "),
        ("ESXI_KNOWN_HOSTS=relative\n", "ESXI_KNOWN_HOSTS=relative: must be an absolute path"),
    ],
)
def test_a_bad_env_file_value_is_blamed_on_the_file(
    tmp_path: Path, file: str, problem: str
) -> None:
    path = env(tmp_path, file)
    with pytest.raises(ConfigError) as caught:
        resolve_target(path, None if "ESXI_HOST" in file else "esxi1", None)
    assert str(path) in str(caught.value) and problem in str(caught.value)


@pytest.mark.parametrize(
    ("file", "host", "port", "argument"),
    [
        ("", "esxi1", None, "esxi1"),
        ("", "nut@esxi1:2222", None, "nut@esxi1:2222"),
        ("ESXI_PORT=2222\nESXI_USER=nut\n", "nut@esxi1:2222", None, "esxi1"),
        ("ESXI_PORT=2222\n", "esxi1:22", None, "esxi1:22"),  # not what ESXI_PORT would give
        ("ESXI_USER=nut\n", "root@esxi1", None, "root@esxi1"),
        ("", "[fe80::1]:2222", None, "[fe80::1]:2222"),
    ],
)
def test_setup_argument_gives_back_the_same_target(
    tmp_path: Path, file: str, host: str, port: int | None, argument: str
) -> None:
    path = env(tmp_path, file)
    setup = resolve_target(path, host, port)
    assert setup.argument() == argument
    again = resolve_target(path, setup.argument(), None)
    assert again.target == setup.target


FINGERPRINT = "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU"


def asking(*answers: str | None) -> tuple[list[str], Callable[[str], str | None]]:
    prompts: list[str] = []
    left = list(answers)

    def ask(prompt: str) -> str | None:
        prompts.append(prompt)
        return left.pop(0)

    return prompts, ask


@pytest.mark.parametrize(
    "answers",
    [
        ["yes\n"],
        ["YES\n"],
        ["  yes \n"],
        [f"{FINGERPRINT}\n"],
        ["y\n", "yes\n"],
        ["maybe\n", "SHA256:wrong\n", f"{FINGERPRINT}\n"],
    ],
)
def test_confirm_takes_yes_or_the_fingerprint(answers: list[str]) -> None:
    prompts, ask = asking(*answers)
    _confirm("Pin?", FINGERPRINT, False, ask)
    assert prompts[0].startswith("Pin? ") and prompts[1:] == [AGAIN] * (len(answers) - 1)


@pytest.mark.parametrize(
    ("answers", "message"),
    [
        (["no\n"], "not confirmed"),
        (["No\n"], "not confirmed"),
        (["\n"], "not confirmed"),  # an empty line is a no, as in OpenSSH
        (["y\n", "n\n", "no\n"], "not confirmed"),
        ([f"{FINGERPRINT.lower()}\n", "no\n"], "not confirmed"),  # the fingerprint, exactly
        ([""], r"no answer \(end of input\)"),
        (["y\n", ""], r"no answer \(end of input\)"),
        ([None], "no terminal to ask on, and no --yes"),
    ],
)
def test_confirm_refuses_no_empty_end_of_input_and_no_terminal(
    answers: list[str | None], message: str
) -> None:
    prompts, ask = asking(*answers)
    with pytest.raises(NotConfirmed, match=message):
        _confirm("Pin?", FINGERPRINT, False, ask)
    assert len(prompts) == len(answers)


def test_confirm_with_yes_asks_nothing() -> None:
    prompts, ask = asking()
    _confirm("Pin?", FINGERPRINT, True, ask)
    assert prompts == []


@pytest.mark.parametrize(
    ("user", "host", "port", "text"),
    [
        ("root", "esxi1", 22, "root@esxi1"),
        ("nut", "esxi1", 2222, "nut@esxi1:2222"),
        (None, "10.0.0.5", 22, "10.0.0.5"),
        ("root", "fe80::1", 22, "root@[fe80::1]"),
        ("root", "fe80::1", 2222, "root@[fe80::1]:2222"),
    ],
)
def test_host_argument(user: str | None, host: str, port: int, text: str) -> None:
    assert host_argument(user, host, port) == text


def test_the_refused_key_hint_is_a_command_for_the_same_target(tmp_path: Path) -> None:
    key = tmp_path / "id"
    key.write_text("x")
    known = tmp_path / "known hosts"
    known.write_text("")
    path = env(tmp_path, f"ESXI_HOST=nut@[fe80::1]:2222, esxi2\nESXI_KEY_FILE={key}\n")
    path.write_text(path.read_text() + f"ESXI_KNOWN_HOSTS='{known}'\n")
    settings = load_settings(path)
    first, second = (settings.for_target(target) for target in settings.all_targets)
    assert enroll_command(first) == f"esxi-suspend enroll nut@[fe80::1]:2222 --env-file {path}"
    assert enroll_command(second).startswith("esxi-suspend enroll root@esxi2 --env-file")
    default = type(settings)(**{**vars(second), "source": DEFAULT_ENV_FILE})
    assert enroll_command(default) == "esxi-suspend enroll root@esxi2"
    for target in settings.all_targets:  # what the hint names is what enroll resolves
        hinted = enroll_command(settings.for_target(target)).split()[2]
        assert resolve_target(path, hinted, None).target == target


def test_read_env_values_and_overrides(tmp_path: Path) -> None:
    key = tmp_path / "id"
    key.write_text("x")
    known = tmp_path / "known_hosts"
    known.write_text("")
    env = tmp_path / "e.env"
    env.write_text(f"ESXIHOST=old\nESXI_KEY_FILE={key}\nESXI_KNOWN_HOSTS={known}\nESXI_USER=\n")
    assert read_env_values(env) == {
        "ESXI_HOST": "old",
        "ESXI_KEY_FILE": str(key),
        "ESXI_KNOWN_HOSTS": str(known),
    }
    assert read_env_values(tmp_path / "missing.env") == {}
    settings = load_settings(env, overrides={"ESXI_HOST": "new", "ESXI_PORT": "2222"})
    assert (settings.host, settings.port) == ("new", 2222)
