"""Pure parts of trust and enroll: known_hosts names and entries, ESXi versions, key types."""

from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path

import pytest

from esxi_suspend.config import load_settings, read_env_values
from esxi_suspend.enroll import APPEND_4, APPEND_5, parse_version
from esxi_suspend.remote import HostKeyInfo, known_hosts_name
from esxi_suspend.trust import entry_names_host, replace_entries

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
    for command in (APPEND_4, APPEND_5):
        assert "ssh-" not in command and "AAAA" not in command
        assert "read -r line" in command  # the key line comes on stdin


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
