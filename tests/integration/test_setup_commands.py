"""`trust` and `enroll` against a real OpenSSH fake ESXi host that takes a user's password.

The server runs in a private mount namespace with its own /etc/shadow, /etc/ssh and /root (and,
for a user other than root, /etc/passwd and /home: sshservers.running_enroll_server): this
machine's passwords and keys are never touched. Prompts are answered on a real
pseudo-terminal, as an admin would type them.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import unavailable
from sshservers import (
    FAKEHOST_DIR,
    EnrollServer,
    ServerUnavailable,
    known_hosts_line,
    running_enroll_server,
    ssh_keygen,
)
from terminal import run_on_terminal

from esxi_suspend.errors import ExitCode
from esxi_suspend.ssh.hostkeys import public_key_info

pytestmark = pytest.mark.servers
COMMAND = [sys.executable, "-m", "esxi_suspend"]
PROMPT_YES = "Type yes if the fingerprint matches the console: "
PROMPT_AGAIN = "Please type 'yes', 'no' or the fingerprint: "
PROMPT_PASSWORD = "password (used for this one login, never stored): "
USER = "esxadmin"  # a user other than root, with a uid of its own on the fake host
# What enroll puts before our key on an OpenSSH host it reaches from 127.0.0.1.
RESTRICTED = 'from="127.0.0.1",no-port-forwarding,no-agent-forwarding,no-X11-forwarding,no-pty '


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


def _serve(tmp_path: Path, version: str, user: str = "root") -> Iterator[EnrollServer]:
    try:
        with running_enroll_server(tmp_path / f"esxi-{version}", version, user) as server:
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


@pytest.fixture
def esxi7_user(tmp_path: Path) -> Iterator[EnrollServer]:
    yield from _serve(tmp_path, "7.0.3", USER)


@pytest.fixture
def esxi4_user(tmp_path: Path) -> Iterator[EnrollServer]:
    yield from _serve(tmp_path, "4.1.0", USER)


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


def trust_on_terminal(
    etc: Path, server: EnrollServer, *answers: tuple[str, str]
) -> tuple[int, str]:
    return run_on_terminal(
        [*COMMAND, "trust", server.host, "--port", str(server.port)],
        answers or [(PROMPT_YES, "yes\n")],
        env=env_for(etc),
    )


def enroll_on_terminal(
    etc: Path, server: EnrollServer, password: str, *host: str
) -> tuple[int, str]:
    """`enroll HOST --port PORT`, or `enroll ARGS...` when given."""
    return run_on_terminal(
        [*COMMAND, "enroll", *(host or (server.host, "--port", str(server.port)))],
        [(PROMPT_PASSWORD, password + "\n")],
        env=env_for(etc),
    )


def target(server: EnrollServer) -> str:
    """`user@127.0.0.1:PORT`, as ESXI_HOST would say it."""
    return f"{server.user}@{server.host}:{server.port}"


def host_fingerprint(server: EnrollServer, directory: Path) -> str:
    pub = directory / "host_key.pub"
    pub.write_text(server.host_pub + "\n")
    return public_key_info(pub).fingerprint


def test_trust_enroll_check_flow(setup_dir: Path, esxi6: EnrollServer) -> None:
    known_hosts = setup_dir / "known_hosts"
    env = setup_dir / "esxi-suspend.env"

    refused = run(setup_dir, "trust", esxi6.host, "--port", str(esxi6.port))
    assert refused.returncode == ExitCode.USAGE, refused.stderr
    assert "no terminal to ask on, and no --yes" in refused.stderr
    assert not known_hosts.exists()

    declined, shown = trust_on_terminal(
        setup_dir, esxi6, (PROMPT_YES, "y\n"), (PROMPT_AGAIN, "No\n")
    )
    assert declined == ExitCode.USAGE, shown
    assert "not confirmed: nothing was changed" in shown
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
    assert 'restrictions: from="127.0.0.1", no-port-forwarding' in shown
    assert "from=127.0.0.1: the address the host sees us connect from" in shown
    public = RESTRICTED + (setup_dir / "id_ed25519.pub").read_text()
    assert esxi6.keys_file.read_text() == public

    rerun = run(setup_dir, "enroll")  # no terminal: asking a password would fail it
    assert rerun.returncode == ExitCode.OK, rerun.stdout + rerun.stderr
    assert "our key already works" in rerun.stdout and "no password asked" in rerun.stdout
    assert "our key's line was already so in: /etc/ssh/keys-root" in rerun.stdout
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
    public = RESTRICTED + Path(f"{rsa}.pub").read_text()  # the fake runs OpenSSH
    assert esxi4.keys_file.read_text() == public  # the fake's home is /root, ESXi 4.x's is /
    assert "lost at the next reboot" in shown and "/bootbank/oem.tgz" in shown
    with tarfile.open(setup_dir / "oem.tgz") as archive:
        member = archive.getmember("root/.ssh/authorized_keys")
        assert member.mode == 0o600
        data = archive.extractfile(member)
        assert data is not None and data.read().decode() == public
    assert run(setup_dir, "check").returncode == ExitCode.OK

    (setup_dir / "oem.tgz").unlink()
    rerun = run(setup_dir, "enroll")  # key login first: no password, oem.tgz built again
    assert rerun.returncode == ExitCode.OK, rerun.stdout + rerun.stderr
    assert "our key already works" in rerun.stdout and "/bootbank/oem.tgz" in rerun.stdout
    assert (setup_dir / "oem.tgz").exists()
    assert esxi4.keys_file.read_text() == public


def test_trust_asks_again_until_yes_no_or_the_fingerprint(
    setup_dir: Path, esxi6: EnrollServer
) -> None:
    known_hosts = setup_dir / "known_hosts"
    fingerprint = host_fingerprint(esxi6, setup_dir)

    status, shown = trust_on_terminal(
        setup_dir,
        esxi6,
        (PROMPT_YES, "y\n"),
        (PROMPT_AGAIN, "SHA256:not-the-fingerprint\n"),
        (PROMPT_AGAIN, f"{fingerprint}\n"),
    )
    assert status == ExitCode.OK, shown
    assert shown.count(PROMPT_AGAIN) == 2, shown
    assert known_hosts.read_text() == known_hosts_line(esxi6.port, esxi6.host_pub)

    known_hosts.unlink()
    status, shown = trust_on_terminal(setup_dir, esxi6, (PROMPT_YES, "\n"))
    assert status == ExitCode.USAGE, shown  # an empty line is a no, as in OpenSSH
    assert not known_hosts.exists()

    status, shown = run_on_terminal(  # end of input (Ctrl-D) at the second question
        [*COMMAND, "trust", esxi6.host, "--port", str(esxi6.port)],
        [(PROMPT_YES, "maybe\n"), (PROMPT_AGAIN, "\x04")],
        env=env_for(setup_dir),
    )
    assert status == ExitCode.USAGE, shown
    assert "no answer (end of input): nothing was changed" in shown
    assert not known_hosts.exists()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["trust", "bad host"], "argument HOST 'bad host': "),
        (["trust", "root@esxi1:99999"], "argument HOST 'root@esxi1:99999': "),
        (["enroll", "a@b@c"], "argument HOST 'a@b@c': "),
        (["enroll", "esxi1,esxi2"], "argument HOST 'esxi1,esxi2': one host only"),
        (["trust", "esxi1:2222", "--port", "22"], "says port 2222, --port says 22"),
        (["trust", "esxi1", "--port", "0"], "argument --port 0: out of range"),
    ],
)
def test_a_bad_command_line_host_is_blamed_on_the_argument(
    setup_dir: Path, args: list[str], expected: str
) -> None:
    done = run(setup_dir, *args)
    assert done.returncode == ExitCode.USAGE, done.stderr
    assert expected in done.stderr
    assert "esxi-suspend.env" not in done.stderr and "configuration" not in done.stderr
    assert "Traceback" not in done.stderr


def test_check_with_a_refused_key_points_to_enroll(setup_dir: Path, esxi6: EnrollServer) -> None:
    assert run(setup_dir, "trust", esxi6.host, "--port", str(esxi6.port), "--yes").returncode == 0
    check = run(setup_dir, "check")
    assert check.returncode == ExitCode.CONNECTION, check.stdout + check.stderr
    env = setup_dir / "esxi-suspend.env"
    hint = f"esxi-suspend enroll root@{esxi6.host}:{esxi6.port} --env-file {env}"
    lines = [line for line in check.stderr.splitlines() if "refused our key" in line]
    assert lines and all(line.rstrip().endswith(hint) for line in lines), check.stderr
    for line in lines:  # the host is the line's subject once, then only in the command
        ours = f"we connected from {esxi6.host})"  # our own address: 127.0.0.1 here too
        assert line.count(ours) == 1 and line.replace(ours, "").count(esxi6.host) == 2, line


def test_a_user_other_than_root_runs_fake_commands_it_can_reach(esxi7_user: EnrollServer) -> None:
    """Its logins run a copy of tests/fakehost/, not the checkout's (a clone in /root, 0700 on
    Debian, is out of that user's reach): every directory on the way lets others through,
    every file lets them read it, and the wrapper runs as that user."""
    fakehost, checkout = esxi7_user.fakehost, FAKEHOST_DIR.parents[1]
    assert not fakehost.is_relative_to(checkout), fakehost
    for directory in fakehost.parents:
        assert directory.stat().st_mode & 0o001, f"{directory} stops others"
    copied = sorted(path.relative_to(fakehost) for path in fakehost.rglob("*"))
    assert copied == sorted(path.relative_to(FAKEHOST_DIR) for path in FAKEHOST_DIR.rglob("*"))
    for name in copied:
        path, source = fakehost / name, FAKEHOST_DIR / name
        wanted = 0o755 if source.is_dir() or os.access(source, os.X_OK) else 0o644
        assert stat.S_IMODE(path.stat().st_mode) == wanted, name
        assert path.is_dir() or path.read_bytes() == source.read_bytes(), name

    owner = esxi7_user.fake_dir.stat()
    assert owner.st_uid != 0
    done = subprocess.run(
        [str(fakehost / "wrapper"), str(esxi7_user.fake_dir)],
        env={"PATH": "/usr/bin:/bin", "SSH_ORIGINAL_COMMAND": "vmware -v"},
        user=owner.st_uid,
        group=owner.st_gid,
        extra_groups=[],
        cwd="/",
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert (done.returncode, done.stdout, done.stderr) == (
        0,
        "VMware ESXi 7.0.3 build-8169922\n",
        "",
    )


def test_enroll_a_user_other_than_root(setup_dir: Path, esxi7_user: EnrollServer) -> None:
    server, env = esxi7_user, setup_dir / "esxi-suspend.env"
    assert run(setup_dir, "trust", target(server), "--yes").returncode == ExitCode.OK
    assert f"ESXI_HOST={USER}@{server.host}\n" in env.read_text()
    assert f"ESXI_PORT={server.port}\n" in env.read_text()

    check = run(setup_dir, "check")  # not enrolled yet: the hint names the user
    assert check.returncode == ExitCode.CONNECTION, check.stdout + check.stderr
    assert f"user {USER} refused our key" in check.stderr
    assert f"esxi-suspend enroll {target(server)} --env-file {env}" in check.stderr

    status, shown = enroll_on_terminal(setup_dir, server, server.password, target(server))
    assert status == ExitCode.OK, shown
    assert f"{USER}@{server.host}'s {PROMPT_PASSWORD}" in shown
    assert f"added our key to: /etc/ssh/keys-{USER}/authorized_keys" in shown
    assert "verified: key login works" in shown
    public = RESTRICTED + (setup_dir / "id_ed25519.pub").read_text()
    assert server.keys_file.read_text() == public
    assert not (server.keys_file.parent.parent / "keys-root" / "authorized_keys").exists()

    rerun = run(setup_dir, "enroll")  # ESXI_HOST's user, no terminal: no password asked
    assert rerun.returncode == ExitCode.OK, rerun.stdout + rerun.stderr
    assert f"our key already works: {target(server)} logs in" in rerun.stdout
    check = run(setup_dir, "check")
    assert check.returncode == ExitCode.OK, check.stdout + check.stderr


def test_enroll_says_so_when_the_user_cannot_write_its_keys_file(
    setup_dir: Path, esxi7_user: EnrollServer
) -> None:
    keys_dir = esxi7_user.keys_file.parent
    keys_dir.rmdir()  # only root may create /etc/ssh/keys-USER
    assert run(setup_dir, "trust", target(esxi7_user), "--yes").returncode == ExitCode.OK
    status, shown = enroll_on_terminal(
        setup_dir, esxi7_user, esxi7_user.password, target(esxi7_user)
    )
    assert status == ExitCode.REMOTE_COMMAND, shown
    assert f"adding the key to /etc/ssh/keys-{USER}/authorized_keys failed" in shown
    assert f"as root on the host, add the line of {setup_dir / 'id_ed25519.pub'}" in shown
    assert not keys_dir.exists()


def test_enroll_on_4x_refuses_a_user_other_than_root(
    setup_dir: Path, esxi4_user: EnrollServer
) -> None:
    rsa = setup_dir / "id_rsa"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "rsa", "-b", "3072", "-N", "", "-f", str(rsa)], check=True
    )
    env = setup_dir / "esxi-suspend.env"
    env.write_text(env.read_text().replace("id_ed25519", "id_rsa"))
    assert run(setup_dir, "trust", target(esxi4_user), "--yes").returncode == ExitCode.OK
    status, shown = enroll_on_terminal(
        setup_dir, esxi4_user, esxi4_user.password, target(esxi4_user)
    )
    assert status == ExitCode.CONFIG, shown
    assert "on 4.x it sets up root only; nothing was changed" in shown
    assert f"esxi-suspend enroll root@{esxi4_user.host}" in shown
    assert not esxi4_user.keys_file.exists()
    assert not (setup_dir / "oem.tgz").exists()


def _trusted(setup_dir: Path, server: EnrollServer) -> None:
    done = run(setup_dir, "trust", server.host, "--port", str(server.port), "--yes")
    assert done.returncode == ExitCode.OK, done.stdout + done.stderr


def test_a_rerun_replaces_our_line_and_no_other(setup_dir: Path, esxi6: EnrollServer) -> None:
    """Our key already works (an old unrestricted line, and a second copy): enroll rewrites
    it through our key, no password; the other keys' lines stay as they were, in order."""
    _trusted(setup_dir, esxi6)
    ours = (setup_dir / "id_ed25519.pub").read_text().strip()
    other = ssh_keygen(setup_dir / "someone_else")
    theirs = Path(f"{other}.pub").read_text().strip()
    admin = f'from="10.1.1.1",no-pty {theirs} admin key'
    esxi6.keys_file.write_text(f"{theirs}\n{ours}\n{admin}\nno-pty {ours}")  # no final newline

    rerun = run(setup_dir, "enroll")  # no terminal: a password prompt would fail it
    assert rerun.returncode == ExitCode.OK, rerun.stdout + rerun.stderr
    assert "no password asked" in rerun.stdout
    assert "replaced our key's line in (it was on 2 lines: now on one)" in rerun.stdout
    assert esxi6.keys_file.read_text() == f"{theirs}\n{admin}\n{RESTRICTED}{ours}\n"
    assert "verified: key login works" in rerun.stdout

    again = run(setup_dir, "enroll")
    assert again.returncode == ExitCode.OK, again.stdout + again.stderr
    assert "our key's line was already so in" in again.stdout
    assert esxi6.keys_file.read_text() == f"{theirs}\n{admin}\n{RESTRICTED}{ours}\n"

    check = run(setup_dir, "check")
    assert check.returncode == ExitCode.OK, check.stdout + check.stderr
    shown = [line for line in check.stdout.splitlines() if line.startswith("  key: ")]
    assert shown == [
        '  key: our line in /etc/ssh/keys-root/authorized_keys: from="127.0.0.1", '
        "no-port-forwarding, no-agent-forwarding, no-X11-forwarding, no-pty"
    ], check.stdout


def test_check_says_when_our_key_is_unrestricted(setup_dir: Path, esxi6: EnrollServer) -> None:
    _trusted(setup_dir, esxi6)
    esxi6.keys_file.write_text((setup_dir / "id_ed25519.pub").read_text())
    check = run(setup_dir, "check")
    assert check.returncode == ExitCode.OK, check.stdout + check.stderr  # still ready
    env = setup_dir / "esxi-suspend.env"
    fix = f"fix: esxi-suspend enroll root@{esxi6.host}:{esxi6.port} --env-file {env}"
    line = next(line for line in check.stdout.splitlines() if line.startswith("  key: "))
    assert "our line in /etc/ssh/keys-root/authorized_keys: none;" in line
    assert "WARNING: our key is unrestricted" in line and line.endswith(fix), line
    assert "WARNING: host" in check.stderr and "unrestricted" in check.stderr

    esxi6.keys_file.write_text("no-pty " + (setup_dir / "id_ed25519.pub").read_text())
    check = run(setup_dir, "check")
    line = next(line for line in check.stdout.splitlines() if line.startswith("  key: "))
    assert "WARNING: OpenSSH_" in line and "would also take from=, no-port-forwarding" in line
    assert line.endswith(fix), line

    done = run(setup_dir, "enroll")  # the one command that fixes it: no password needed
    assert done.returncode == ExitCode.OK, done.stdout + done.stderr
    assert esxi6.keys_file.read_text().startswith(RESTRICTED)
    check = run(setup_dir, "check")
    line = next(line for line in check.stdout.splitlines() if line.startswith("  key: "))
    assert "WARNING" not in line and "unrestricted" not in check.stderr, check.stdout


def test_a_key_restricted_to_another_address_is_refused(
    setup_dir: Path, esxi6: EnrollServer
) -> None:
    _trusted(setup_dir, esxi6)
    public = (setup_dir / "id_ed25519.pub").read_text()
    esxi6.keys_file.write_text(RESTRICTED.replace("127.0.0.1", "192.0.2.7") + public)
    check = run(setup_dir, "check")
    assert check.returncode == ExitCode.CONNECTION, check.stdout + check.stderr
    assert "result: NOT ready (exit 5 CONNECTION)" in check.stdout
    refused = next(line for line in check.stderr.splitlines() if "refused our key" in line)
    assert "a from= on its line must allow the address the host sees us at" in refused
    assert "we connected from 127.0.0.1" in refused


def test_the_key_refuses_port_forwarding_and_a_pty(setup_dir: Path, esxi6: EnrollServer) -> None:
    """The fake host allows both (sshd_config): without our options the same key forwards a
    port and gets a pty; with them, OpenSSH refuses both (nothing we run asks for a pty)."""
    _trusted(setup_dir, esxi6)
    public = (setup_dir / "id_ed25519.pub").read_text()
    esxi6.keys_file.write_text(public)
    forward = [*esxi6_ssh(setup_dir, esxi6), "-W", f"{esxi6.host}:{esxi6.port}"]
    pty = [*esxi6_ssh(setup_dir, esxi6), "-tt", "vmware -v"]

    opened = subprocess.run(forward, capture_output=True, timeout=30, check=False)
    assert opened.stdout.startswith(b"SSH-2.0-OpenSSH"), opened  # forwarded to sshd itself
    with_pty = subprocess.run(pty, capture_output=True, text=True, timeout=30, check=False)
    assert with_pty.returncode == 0 and "PTY allocation request failed" not in with_pty.stderr

    esxi6.keys_file.write_text(RESTRICTED + public)
    refused = subprocess.run(forward, capture_output=True, timeout=30, check=False)
    assert refused.returncode != 0 and not refused.stdout, refused
    assert b"administratively prohibited" in refused.stderr, refused.stderr
    no_pty = subprocess.run(pty, capture_output=True, text=True, timeout=30, check=False)
    assert "PTY allocation request failed" in no_pty.stderr, no_pty.stderr
    assert no_pty.returncode != 0 and not no_pty.stdout  # -tt insists: nothing ran


def esxi6_ssh(setup_dir: Path, server: EnrollServer) -> list[str]:
    """OpenSSH's client with our key alone, the pinned host key, no config of this machine."""
    return [
        "ssh", "-F", "/dev/null",
        "-i", str(setup_dir / "id_ed25519"),
        "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
        "-o", f"UserKnownHostsFile={setup_dir / 'known_hosts'}",
        "-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes",
        "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
        "-p", str(server.port), f"root@{server.host}",
    ]  # fmt: skip


def test_key_from_set_by_hand_and_none(setup_dir: Path, esxi6: EnrollServer) -> None:
    _trusted(setup_dir, esxi6)
    env = setup_dir / "esxi-suspend.env"
    public = (setup_dir / "id_ed25519.pub").read_text()
    esxi6.keys_file.write_text(public)
    env.write_text(env.read_text() + "ESXI_KEY_FROM=10.0.0.0/8, 127.0.0.1\n")
    done = run(setup_dir, "enroll")
    assert done.returncode == ExitCode.OK, done.stdout + done.stderr
    assert "from=10.0.0.0/8,127.0.0.1 (ESXI_KEY_FROM)" in done.stdout
    assert (
        esxi6.keys_file.read_text()
        == RESTRICTED.replace('"127.0.0.1"', '"10.0.0.0/8,127.0.0.1"') + public
    )

    env.write_text(env.read_text() + "ESXI_KEY_FROM=none\n")
    done = run(setup_dir, "enroll")
    assert done.returncode == ExitCode.OK, done.stdout + done.stderr
    assert esxi6.keys_file.read_text() == RESTRICTED.replace('from="127.0.0.1",', "") + public


def test_a_refused_new_line_is_put_back(setup_dir: Path, esxi6: EnrollServer) -> None:
    """ESXI_KEY_FROM names an address the host never sees us at: the host refuses the new
    line, so enroll puts the line that worked back, and says what to set."""
    _trusted(setup_dir, esxi6)
    env = setup_dir / "esxi-suspend.env"
    public = (setup_dir / "id_ed25519.pub").read_text()
    esxi6.keys_file.write_text(public)
    env.write_text(env.read_text() + "ESXI_KEY_FROM=192.0.2.7\n")
    done = run(setup_dir, "enroll")
    assert done.returncode == ExitCode.REMOTE_COMMAND, done.stdout + done.stderr
    assert "its previous line was put back" in done.stderr
    assert "set ESXI_KEY_FROM to that address" in done.stderr
    assert esxi6.keys_file.read_text() == public
