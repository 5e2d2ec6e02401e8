"""`trust` and `enroll` against a real OpenSSH fake ESXi host that takes the root password.

The server runs in a private mount namespace with its own /etc/shadow, /etc/ssh and /root
(sshservers.running_enroll_server): this machine's root password and keys are never touched.
Prompts are answered on a real pseudo-terminal, as an admin would type them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import unavailable
from sshservers import (
    EnrollServer,
    ServerUnavailable,
    known_hosts_line,
    running_enroll_server,
    ssh_keygen,
)
from terminal import run_on_terminal

from esxi_suspend.errors import ExitCode

pytestmark = pytest.mark.servers
COMMAND = [sys.executable, "-m", "esxi_suspend"]
PROMPT_YES = "Type yes if the fingerprint matches the console: "
PROMPT_PASSWORD = "password (used for this one login, never stored): "


@pytest.fixture
def setup_dir(tmp_path: Path) -> Path:
    """/etc/esxi-suspend as install.sh leaves it: a key and an env file without ESXI_HOST."""
    etc = tmp_path / "etc"
    etc.mkdir(mode=0o700)
    key = ssh_keygen(etc / "id_ed25519")
    env = etc / "esxi-suspend.env"
    env.write_text(
        f"ESXI_KEY_FILE={key}\nESXI_KNOWN_HOSTS={etc / 'known_hosts'}\n"
        f"ESXI_CONNECT_TIMEOUT=5\nUPS_SERVICE=none\nUPS_RESTART_COMMAND=/bin/true\n"
    )
    env.chmod(0o600)
    return etc


def _serve(tmp_path: Path, version: str) -> Iterator[EnrollServer]:
    try:
        with running_enroll_server(tmp_path / f"esxi-{version}", version) as server:
            yield server
    except ServerUnavailable as error:
        unavailable(str(error))


@pytest.fixture
def esxi6(tmp_path: Path) -> Iterator[EnrollServer]:
    yield from _serve(tmp_path, "6.7.0")


@pytest.fixture
def esxi4(tmp_path: Path) -> Iterator[EnrollServer]:
    yield from _serve(tmp_path, "4.1.0")


@pytest.fixture
def esxi5(tmp_path: Path) -> Iterator[EnrollServer]:
    yield from _serve(tmp_path, "5.5.0")


def env_for(etc: Path) -> dict[str, str]:
    return {**os.environ, "ESXI_SUSPEND_ENV": str(etc / "esxi-suspend.env")}


def run(etc: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """No terminal, stdin closed: as a script or upsmon would run it."""
    return subprocess.run(
        [*COMMAND, *args],
        env=env_for(etc),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def fingerprint_line(known_hosts: Path) -> str:
    done = subprocess.run(
        ["ssh-keygen", "-lf", str(known_hosts)], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def trust_on_terminal(etc: Path, server: EnrollServer, answer: str = "yes\n") -> tuple[int, str]:
    return run_on_terminal(
        [*COMMAND, "trust", server.host, "--port", str(server.port)],
        [(PROMPT_YES, answer)],
        env=env_for(etc),
    )


def enroll_on_terminal(etc: Path, server: EnrollServer, password: str) -> tuple[int, str]:
    return run_on_terminal(
        [*COMMAND, "enroll", server.host, "--port", str(server.port)],
        [(PROMPT_PASSWORD, password + "\n")],
        env=env_for(etc),
    )


def test_trust_enroll_check_flow(setup_dir: Path, esxi6: EnrollServer) -> None:
    known_hosts = setup_dir / "known_hosts"
    env = setup_dir / "esxi-suspend.env"

    refused = run(setup_dir, "trust", esxi6.host, "--port", str(esxi6.port))
    assert refused.returncode == ExitCode.USAGE, refused.stderr
    assert "no terminal to ask on, and no --yes" in refused.stderr
    assert not known_hosts.exists()

    declined, shown = trust_on_terminal(setup_dir, esxi6, "no\n")
    assert declined == ExitCode.USAGE, shown
    assert not known_hosts.exists()

    status, shown = trust_on_terminal(setup_dir, esxi6)
    assert status == ExitCode.OK, shown
    assert known_hosts.read_text() == known_hosts_line(esxi6.port, esxi6.host_pub)
    assert fingerprint_line(known_hosts) in shown  # exactly as ssh-keygen -lf prints it
    assert f"set: ESXI_HOST={esxi6.host} in {env}" in shown
    assert f"ESXI_PORT={esxi6.port}\n" in env.read_text()
    assert oct(env.stat().st_mode & 0o777) == "0o600"

    again = run(setup_dir, "trust", esxi6.host, "--port", str(esxi6.port))
    assert again.returncode == ExitCode.OK, again.stderr
    assert "already pinned" in again.stdout
    assert known_hosts.read_text() == known_hosts_line(esxi6.port, esxi6.host_pub)

    status, shown = enroll_on_terminal(setup_dir, esxi6, esxi6.password)
    assert status == ExitCode.OK, shown
    assert esxi6.password not in shown  # no echo
    assert "host runs VMware ESXi 6.7.0" in shown
    assert "added our key to: /etc/ssh/keys-root/authorized_keys" in shown
    assert "verified: key login works" in shown
    public = (setup_dir / "id_ed25519.pub").read_text()
    assert esxi6.keys_file.read_text() == public

    status, shown = enroll_on_terminal(setup_dir, esxi6, esxi6.password)
    assert status == ExitCode.OK, shown
    assert "our key was already in" in shown
    assert esxi6.keys_file.read_text() == public  # never a second line

    check = run(setup_dir, "check")
    assert check.returncode == ExitCode.OK, check.stdout + check.stderr
    assert "result: ready (exit 0 OK)" in check.stdout


def test_trust_refuses_a_changed_key_unless_replace(setup_dir: Path, esxi6: EnrollServer) -> None:
    known_hosts = setup_dir / "known_hosts"
    other = ssh_keygen(setup_dir / "other_host_key")
    old_pub = " ".join(Path(f"{other}.pub").read_text().split()[:2])
    old_line = known_hosts_line(esxi6.port, old_pub)
    kept = "otherhost " + " ".join(Path(f"{other}.pub").read_text().split()[:2]) + "\n"
    known_hosts.write_text(kept + old_line)
    old_fingerprint = fingerprint_line(known_hosts).splitlines()[-1]

    refused = run(setup_dir, "trust", esxi6.host, "--port", str(esxi6.port), "--yes")
    assert refused.returncode == ExitCode.CONNECTION, refused.stdout + refused.stderr
    assert "HOST KEY CHANGED" in refused.stdout
    assert old_fingerprint.split()[1] in refused.stdout  # both fingerprints shown
    assert "--replace" in refused.stderr
    assert known_hosts.read_text() == kept + old_line

    replaced = run(setup_dir, "trust", esxi6.host, "--port", str(esxi6.port), "--replace", "--yes")
    assert replaced.returncode == ExitCode.OK, replaced.stdout + replaced.stderr
    assert known_hosts.read_text() == (kept + known_hosts_line(esxi6.port, esxi6.host_pub))


def test_enroll_needs_a_pinned_key_and_the_right_password(
    setup_dir: Path, esxi6: EnrollServer
) -> None:
    unpinned = run(setup_dir, "enroll", esxi6.host, "--port", str(esxi6.port))
    assert unpinned.returncode == ExitCode.CONNECTION, unpinned.stderr
    assert f"esxi-suspend trust {esxi6.host}" in unpinned.stderr

    assert run(setup_dir, "trust", esxi6.host, "--port", str(esxi6.port), "--yes").returncode == 0
    no_terminal = run(setup_dir, "enroll")
    assert no_terminal.returncode == ExitCode.USAGE, no_terminal.stderr
    assert "terminal" in no_terminal.stderr

    status, shown = enroll_on_terminal(setup_dir, esxi6, "wrong password")
    assert status == ExitCode.CONNECTION, shown
    assert "password refused" in shown
    assert not esxi6.keys_file.exists()


def test_enroll_refuses_a_key_type_the_version_does_not_take(
    setup_dir: Path, esxi5: EnrollServer
) -> None:
    assert run(setup_dir, "trust", esxi5.host, "--port", str(esxi5.port), "--yes").returncode == 0
    status, shown = enroll_on_terminal(setup_dir, esxi5, esxi5.password)
    assert status == ExitCode.CONFIG, shown
    assert "ESXi 5.5 does not accept" in shown and "ssh-keygen -t rsa -b 3072" in shown
    assert not esxi5.keys_file.exists()


def test_enroll_on_4x_uses_home_ssh_and_builds_oem_tgz(
    setup_dir: Path, esxi4: EnrollServer
) -> None:
    rsa = setup_dir / "id_rsa"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "rsa", "-b", "3072", "-N", "", "-f", str(rsa)], check=True
    )
    env = setup_dir / "esxi-suspend.env"
    env.write_text(env.read_text().replace("id_ed25519", "id_rsa"))
    assert run(setup_dir, "trust", esxi4.host, "--port", str(esxi4.port), "--yes").returncode == 0

    status, shown = enroll_on_terminal(setup_dir, esxi4, esxi4.password)
    assert status == ExitCode.OK, shown
    public = Path(f"{rsa}.pub").read_text()
    assert esxi4.keys_file.read_text() == public  # the fake's home is /root, ESXi 4.x's is /
    assert "lost at the next reboot" in shown and "/bootbank/oem.tgz" in shown
    with tarfile.open(setup_dir / "oem.tgz") as archive:
        member = archive.getmember("root/.ssh/authorized_keys")
        assert member.mode == 0o600
        data = archive.extractfile(member)
        assert data is not None and data.read().decode() == public
    assert run(setup_dir, "check").returncode == ExitCode.OK
