"""Real SSH servers (OpenSSH sshd, dropbear) on 127.0.0.1 standing in for ESXi hosts.

Each server runs the scripts of `tests/fakehost/` as its forced command, so every command line a
client sends runs as on ESXi, under busybox ash (`busybox sh -c`, and `sh` on PATH is busybox
too), with fake `vim-cmd` and `poweroff` first on PATH; they log to `<fake_dir>/commands.log`.
The host's TMPDIR is `<fake_dir>/tmp` (`SshServer.host_tmp`): what a command line writes under
`${TMPDIR:-/tmp}` stays in the test's directory. Nothing here touches the real `/root/.ssh`
or `/etc/ssh`: dropbear, which only reads `~root/.ssh/authorized_keys`, runs in a private
mount namespace with a temporary home bind-mounted over `/root`.

Each server runs a copy of those scripts (`copy_fakehost`, `SshServer.fakehost`) next to its
FAKE_ESXI_DIR, never the checkout's: the servers see a temporary home over `/root`, and a user
other than root (`running_enroll_server`) may not get into the checkout, so a clone in /root
(mode 0700 on Debian) would be out of reach of every fake host.

This module knows nothing of pytest; `conftest.py` turns `ServerUnavailable` into skip/fail.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

FAKEHOST_DIR = Path(__file__).resolve().parent / "fakehost"
FAKEHOST_DATA = FAKEHOST_DIR / "data"
HOST = "127.0.0.1"
READY_TIMEOUT = 10.0
CLIENT_PASSPHRASE = "correct horse #7 $battery 'staple'"

ServerKind = Literal["openssh", "dropbear"]
KINDS: tuple[ServerKind, ...] = ("openssh", "dropbear")


class ServerUnavailable(Exception):
    """The server binary (or what it needs to run here) is missing: skip, or fail on CI."""


class ServerFailed(Exception):
    """The server was there but did not come up; carries its log."""


def copy_fakehost(directory: Path) -> Path:
    """A copy of `tests/fakehost/` at `directory` that every user can read and run.

    Modes are set, not copied: 0755 for directories and for files executable in the checkout,
    0644 for the others, whatever the checkout's modes (a clone made with umask 077) and the
    umask here. Every parent of `directory` must let others through for a user to reach it.
    """
    directory.mkdir(exist_ok=True)
    directory.chmod(0o755)
    for source in sorted(FAKEHOST_DIR.rglob("*")):
        target = directory / source.relative_to(FAKEHOST_DIR)
        if source.is_dir():
            target.mkdir(exist_ok=True)
            target.chmod(0o755)
        else:
            shutil.copyfile(source, target)
            target.chmod(0o755 if os.access(source, os.X_OK) else 0o644)
    return directory


def _forced_command(fake_dir: Path, fakehost: Path) -> str:
    """The servers' forced command: `fakehost`'s wrapper for the fake host in `fake_dir`."""
    return f"{shlex.quote(str(fakehost / 'wrapper'))} {shlex.quote(str(fake_dir))}"


def _run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        argv, check=True, capture_output=True, text=True, timeout=30, **kwargs
    )


@dataclass(frozen=True)
class ClientKeys:
    """Client key pairs: `key` unencrypted, `passphrase_key` protected by `passphrase`.

    `stranger_key` is a valid key pair that no server authorizes.
    """

    key: Path
    passphrase_key: Path
    passphrase: str
    stranger_key: Path
    other_host_pub: str  # an ed25519 public key no server uses, for a "changed" known_hosts

    @property
    def authorized_keys(self) -> str:
        pubs = [Path(f"{k}.pub").read_text().strip() for k in (self.key, self.passphrase_key)]
        return "\n".join(pubs) + "\n"


def ssh_keygen(path: Path, passphrase: str = "", comment: str = "esxi-suspend-test") -> Path:
    """An OpenSSH-format ed25519 key pair at `path` / `path.pub`, private part 0600."""
    if shutil.which("ssh-keygen") is None:
        raise ServerUnavailable("ssh-keygen not found (apt-get install openssh-client)")
    _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-C", comment, "-f", str(path)])
    path.chmod(0o600)
    return path


def make_client_keys(directory: Path) -> ClientKeys:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    other = ssh_keygen(directory / "other_host_ed25519")
    return ClientKeys(
        key=ssh_keygen(directory / "id_ed25519"),
        passphrase_key=ssh_keygen(directory / "id_ed25519_pass", CLIENT_PASSPHRASE),
        passphrase=CLIENT_PASSPHRASE,
        stranger_key=ssh_keygen(directory / "id_ed25519_stranger"),
        other_host_pub=_pub_key_fields(Path(f"{other}.pub").read_text()),
    )


def _pub_key_fields(text: str) -> str:
    """`ssh-ed25519 AAAA...` from a public key line or from dropbearkey's output."""
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0].startswith("ssh-"):
            return f"{fields[0]} {fields[1]}"
    raise ServerFailed(f"no public key in {text!r}")


def known_hosts_line(port: int, pub: str, address: str = HOST) -> str:
    host = address if port == 22 else f"[{address}]:{port}"
    return f"{host} {pub}\n"


def free_port(address: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


def read_banner(port: int, timeout: float = 2.0, address: str = HOST) -> str:
    """The server's identification line, e.g. `SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3`."""
    with socket.create_connection((address, port), timeout=timeout) as sock:
        data = b""
        while b"\n" not in data:
            chunk = sock.recv(256)
            if not chunk:
                break
            data += chunk
    return data.split(b"\n", 1)[0].decode("ascii", "replace").strip()


@dataclass
class SshServer:
    """A running fake ESXi host. `fake_dir` is its FAKE_ESXI_DIR; `fakehost` the directory of
    the fake commands its logins run (a copy of `tests/fakehost/`: `copy_fakehost`)."""

    kind: ServerKind
    port: int
    root: Path
    fake_dir: Path
    host_pub: str
    keys: ClientKeys
    process: subprocess.Popen[bytes]
    log_file: Path
    fakehost: Path
    banner: str = ""
    host: str = HOST
    local_dir: Path = field(init=False)

    def __post_init__(self) -> None:
        self.local_dir = self.root / "local"
        self.local_dir.mkdir(exist_ok=True)

    # -- what a client needs --------------------------------------------------------------
    @property
    def key_file(self) -> Path:
        return self.keys.key

    @property
    def passphrase_key_file(self) -> Path:
        return self.keys.passphrase_key

    @property
    def passphrase(self) -> str:
        return self.keys.passphrase

    @property
    def known_hosts(self) -> Path:
        """Pins this server's real host key."""
        path = self.local_dir / "known_hosts"
        if not path.exists():
            path.write_text(known_hosts_line(self.port, self.host_pub, self.host))
        return path

    @property
    def wrong_known_hosts(self) -> Path:
        """Pins another key for this host and port: the host key 'changed'."""
        path = self.local_dir / "known_hosts.wrong"
        if not path.exists():
            path.write_text(known_hosts_line(self.port, self.keys.other_host_pub, self.host))
        return path

    @property
    def empty_known_hosts(self) -> Path:
        path = self.local_dir / "known_hosts.empty"
        path.touch()
        return path

    @property
    def authorized_keys(self) -> Path:
        """The authorized keys file this server reads for root (dropbear: ~root/.ssh/, with
        the temporary home over /root)."""
        if self.kind == "dropbear":
            return self.root / "home" / ".ssh" / "authorized_keys"
        return self.root / "authorized_keys"

    # -- the fake host's state ------------------------------------------------------------
    def commands(self) -> list[str]:
        """Logged command lines in order, without timestamps: `vim-cmd vmsvc/getallvms`."""
        log = self.fake_dir / "commands.log"
        if not log.exists():
            return []
        return [line.split("\t", 1)[-1] for line in log.read_text().splitlines() if line]

    @property
    def host_tmp(self) -> Path:
        """The host's TMPDIR (`<fake_dir>/tmp`): where `${TMPDIR:-/tmp}` files land."""
        return self.fake_dir / "tmp"

    def host_logs(self) -> list[Path]:
        """The host sequence logs (`esxi-suspend-STAMP-PID.log`) in `host_tmp`, by name."""
        return sorted(self.host_tmp.glob("esxi-suspend-*.log"))

    def set_latency(self, seconds: float) -> None:
        """Every later `vim-cmd` call sleeps `seconds` before acting; 0 removes the latency."""
        if seconds < 0:
            raise ValueError(f"latency must be >= 0, not {seconds}")
        path = self.fake_dir / "latency"
        if seconds == 0:
            path.unlink(missing_ok=True)
        else:
            self.write_fake("latency", f"{seconds:g}")

    def write_fake(self, name: str, content: str) -> Path:
        """Write `<fake_dir>/<name>` (e.g. `getallvms.txt`, `state/12`, `poweroff_mode`)."""
        path = self.fake_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content if content.endswith("\n") else content + "\n")
        return path

    # -- the local side: restart marker and env file -------------------------------------
    @property
    def restart_marker(self) -> Path:
        return self.local_dir / "restart.marker"

    @property
    def restart_script(self) -> Path:
        """Stands in for restarting nut-monitor: appends one line to `restart_marker`."""
        path = self.local_dir / "restart-nut-monitor"
        if not path.exists():
            path.write_text(
                f'#!/bin/sh\necho "restarted $*" >>{shlex.quote(str(self.restart_marker))}\n'
            )
            path.chmod(0o755)
        return path

    def restarts(self) -> list[str]:
        if not self.restart_marker.exists():
            return []
        return self.restart_marker.read_text().splitlines()

    def env_settings(self, *, passphrase: bool = False) -> dict[str, str]:
        settings = {
            "ESXI_HOST": self.host,
            "ESXI_PORT": str(self.port),
            "ESXI_USER": "root",
            "ESXI_KEY_FILE": str(self.passphrase_key_file if passphrase else self.key_file),
            "ESXI_KNOWN_HOSTS": str(self.known_hosts),
            "ESXI_CONNECT_TIMEOUT": "5",
            "ESXI_COMMAND_TIMEOUT": "20",
            # Real seconds here (the fake host has no time scale): keep the sequence short.
            "ESXI_DEADLINE": "20",
            "ESXI_POLL_INTERVAL": "0.2",
            "UPS_SERVICE": "none",
            "UPS_RESTART_COMMAND": str(self.restart_script),
            # This machine's upsmon.conf and UPS are the admin's: read only where a test says.
            "UPS_NAME": "none",
        }
        if passphrase:
            settings["ESXI_KEY_PASSPHRASE"] = self.passphrase
        return settings

    def write_env(
        self,
        path: Path | None = None,
        *,
        passphrase: bool = False,
        mode: int = 0o600,
        settings: Mapping[str, str | None] | None = None,
        **overrides: str | None,
    ) -> Path:
        """An env file for esxi-suspend pointing at this server.

        `settings` and `overrides` replace the defaults of `env_settings`; a None value leaves
        the key out of the file.
        """
        merged: dict[str, str | None] = dict(self.env_settings(passphrase=passphrase))
        merged.update(settings or {})
        merged.update(overrides)
        path = path or self.local_dir / "esxi-suspend.env"
        path.write_text(dotenv_text({k: v for k, v in merged.items() if v is not None}))
        path.chmod(mode)
        return path

    def drop_sessions(self) -> None:
        """As a host dropping every connection: kill the listener's per-connection children.

        The host's own background jobs (a detached sequence) are not children of the listener
        once their session ended: they go on, as on a real host.
        """
        listener = self.process.pid
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if parent == listener:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(entry.name), signal.SIGKILL)

    def ssh_argv(self, *, key: Path | None = None, known_hosts: Path | None = None) -> list[str]:
        """An OpenSSH client command line for this server, ignoring every user/system config."""
        return [
            "ssh", "-F", "/dev/null",
            "-i", str(key or self.key_file),
            "-o", "IdentitiesOnly=yes",
            "-o", "IdentityAgent=none",
            "-o", f"UserKnownHostsFile={known_hosts or self.known_hosts}",
            "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "StrictHostKeyChecking=yes",
            "-o", "BatchMode=yes",
            "-o", "ConnectTimeout=5",
            "-p", str(self.port),
            f"root@{self.host}",
        ]  # fmt: skip

    def log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except OSError:
            return ""


def dotenv_text(settings: dict[str, str]) -> str:
    """Single-quoted dotenv lines: python-dotenv keeps them literal but for `\\'` and `\\\\`."""
    lines = []
    for key, value in settings.items():
        quoted = value.replace("\\", "\\\\").replace("'", "\\'")
        lines.append(f"{key}='{quoted}'")
    return "\n".join(lines) + "\n"


# -- starting servers ---------------------------------------------------------------------


def _sshd_config(
    root: Path, port: int, host_key: Path, fake_dir: Path, fakehost: Path, address: str = HOST
) -> Path:
    config = root / "sshd_config"
    forced = _forced_command(fake_dir, fakehost)
    config.write_text(
        f"""\
ListenAddress {address}
Port {port}
HostKey {host_key}
AuthorizedKeysFile {root / "authorized_keys"}
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
PidFile none
X11Forwarding no
AllowTcpForwarding no
PermitTTY no
ForceCommand {forced}
"""
    )
    return config


def _openssh_argv(
    root: Path, port: int, fake_dir: Path, fakehost: Path, keys: ClientKeys, address: str
) -> tuple[list[str], str]:
    sshd = "/usr/sbin/sshd"
    if not os.access(sshd, os.X_OK):
        raise ServerUnavailable(f"{sshd} not found (apt-get install openssh-server)")
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation directory
    host_key = root / "ssh_host_ed25519_key"
    if not host_key.exists():
        ssh_keygen(host_key, comment="fake-esxi-openssh")
    (root / "authorized_keys").write_text(keys.authorized_keys)
    config = _sshd_config(root, port, host_key, fake_dir, fakehost, address)
    home = root / "home"
    home.mkdir(mode=0o700, exist_ok=True)
    argv = _with_own_root_home(home, [sshd, "-D", "-e", "-f", str(config)])
    return argv, Path(f"{host_key}.pub").read_text()


def _with_own_root_home(home: Path, argv: list[str]) -> list[str]:
    """`argv` in a mount namespace of its own where /root is `home`.

    The servers run the forced command through root's login shell, and Debian's bash sources
    ~/.bashrc when sshd runs it: this machine's /root/.bashrc (a pyenv init costs ~80 ms a
    command) would run on every command of the fake ESXi host, whose root shell is busybox.
    """
    unshare = shutil.which("unshare")
    if not unshare:
        raise ServerUnavailable("unshare not found (util-linux)")
    if os.geteuid() != 0:
        raise ServerUnavailable("the fake hosts need root (a mount namespace over /root)")
    inner = " ".join(shlex.quote(arg) for arg in argv)
    script = f"mount -n --bind {shlex.quote(str(home))} /root && exec {inner}"
    return [unshare, "--mount", "--propagation", "private", "sh", "-c", script]


def _dropbear_argv(
    root: Path, port: int, fake_dir: Path, fakehost: Path, keys: ClientKeys, address: str
) -> tuple[list[str], str]:
    dropbear = shutil.which("dropbear") or shutil.which("dropbear", path="/usr/sbin:/sbin")
    dropbearkey = shutil.which("dropbearkey") or shutil.which("dropbearkey", path="/usr/sbin")
    if not (dropbear and dropbearkey):
        raise ServerUnavailable("dropbear not found (apt-get install dropbear-bin)")
    host_key = root / "dropbear_ed25519_host_key"
    if not host_key.exists():
        _run([dropbearkey, "-t", "ed25519", "-f", str(host_key)])
    pub = _run([dropbearkey, "-y", "-f", str(host_key)]).stdout
    home = root / "home"
    (home / ".ssh").mkdir(mode=0o700, parents=True, exist_ok=True)
    authorized = home / ".ssh" / "authorized_keys"
    authorized.write_text(keys.authorized_keys)
    authorized.chmod(0o600)
    home.chmod(0o700)
    forced = _forced_command(fake_dir, fakehost)
    argv = [
        dropbear, "-F", "-E", "-s", "-j", "-k",
        "-p", f"{address}:{port}",
        "-r", str(host_key),
        "-P", str(root / "dropbear.pid"),
        "-c", forced,
    ]  # fmt: skip
    return _with_own_root_home(home, argv), pub


def _wait_ready(
    process: subprocess.Popen[bytes], port: int, log_file: Path, address: str = HOST
) -> str:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerFailed(
                f"server exited with {process.returncode}:\n{log_file.read_text(errors='replace')}"
            )
        with contextlib.suppress(OSError):
            banner = read_banner(port, timeout=1.0, address=address)
            if banner.startswith("SSH-"):
                return banner
        time.sleep(0.05)
    raise ServerFailed(
        f"no SSH banner on {address}:{port} within {READY_TIMEOUT:.0f} s:\n"
        + log_file.read_text(errors="replace")
    )


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to its process group, SIGKILL after 5 s; reaped either way."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


def _make_fake_dir(root: Path) -> Path:
    """`root/fake`, the FAKE_ESXI_DIR, with its `tmp/` (the host's TMPDIR)."""
    if shutil.which("busybox") is None:
        raise ServerUnavailable(
            "busybox not found (apt-get install busybox): fake hosts run command lines with it"
        )
    fake_dir = root / "fake"
    (fake_dir / "tmp").mkdir(parents=True, exist_ok=True)
    return fake_dir


def host_processes(fake_dir: Path) -> list[int]:
    """Live processes with `FAKE_ESXI_DIR=fake_dir` in their environment (zombies have none)."""
    needle = f"FAKE_ESXI_DIR={fake_dir}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if needle in environ:
            found.append(int(entry.name))
    return found


def kill_leftovers(fake_dir: Path, timeout: float = 5.0) -> None:
    """SIGKILL processes still running a fake command of `fake_dir` (a sleeping autostop, a
    detached host sequence and its `sleep`s, a pending delayed guest shutdown).

    Per-connection server processes call setsid(), so killing the listener's process group
    does not reach them; they are found by the FAKE_ESXI_DIR in their environment. A shell can
    fork between two looks at /proc, so look again until a look finds nothing.
    """
    deadline = time.monotonic() + timeout
    while pids := host_processes(fake_dir):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            raise ServerFailed(f"processes of fake host {fake_dir} survive SIGKILL: {pids}")
        time.sleep(0.02)


@contextlib.contextmanager
def running_server(
    kind: ServerKind, root: Path, keys: ClientKeys, address: str = HOST
) -> Iterator[SshServer]:
    """Start a fake ESXi host of `kind` under `root`, listening on `address` (one of
    127.0.0.0/8: a second host with an address of its own); stop it (and its leftovers) on
    exit."""
    root.mkdir(parents=True, exist_ok=True)
    fake_dir = _make_fake_dir(root)
    fakehost = copy_fakehost(root / "fakehost")
    log_file = root / f"{kind}.log"
    build = _openssh_argv if kind == "openssh" else _dropbear_argv
    last_error: ServerFailed | None = None
    for _attempt in range(3):  # the free port can be taken between probe and bind
        port = free_port(address)
        argv, pub = build(root, port, fake_dir, fakehost, keys, address)
        with log_file.open("ab") as log:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            banner = _wait_ready(process, port, log_file, address)
        except ServerFailed as error:
            stop_process(process)
            last_error = error
            if kind == "dropbear" and ("unshare:" in str(error) or "mount:" in str(error)):
                raise ServerUnavailable(
                    f"cannot run dropbear in a mount namespace: {error}"
                ) from error
            continue
        (fake_dir / "server.pgid").write_text(f"{process.pid}\n")  # poweroff_mode halt
        server = SshServer(
            kind=kind,
            port=port,
            root=root,
            fake_dir=fake_dir,
            host_pub=_pub_key_fields(pub),
            keys=keys,
            process=process,
            log_file=log_file,
            fakehost=fakehost,
            banner=banner,
            host=address,
        )
        try:
            yield server
        finally:
            stop_process(process)
            kill_leftovers(fake_dir)
        return
    assert last_error is not None
    raise last_error


# -- a fake ESXi host that takes the root password, for `esxi-suspend enroll` -------------

ENROLL_PASSWORD = "fake-esxi root pw #1 'x'"


@dataclass
class EnrollServer(SshServer):
    """An OpenSSH fake ESXi host with password login for `user` and no key authorized yet.

    It runs in a private mount namespace: a temporary /etc/shadow (`user`'s hash is that of
    `password`), /etc/ssh (holding keys-root/) and /root are bind-mounted over the real ones,
    so nothing here touches this machine's passwords or authorized keys. For a `user` other
    than root, /etc/passwd (this machine's, plus that user with a uid of its own) and /home are
    bind-mounted too. `keys_file` is the host-side path of the authorized_keys file sshd reads
    for `user` (5.x and later: /etc/ssh/keys-USER/authorized_keys, as ESXi's sshd_config says;
    4.x: ~USER/.ssh/authorized_keys). For a user other than root, FAKE_ESXI_DIR and the copy
    of the fake commands (`fakehost`) are in a directory of /tmp every user can get through.
    It allows TCP forwarding and a pty: what refuses them is our key's line (its options).
    """

    password: str = ENROLL_PASSWORD
    keys_file: Path = Path("/nonexistent")
    esxi_version: str = "6.7.0"
    user: str = "root"


def _shadow_text(password: str, users: tuple[str, ...]) -> str:
    """A shadow file for every user in /etc/passwd and `users`, locked but for `users`."""
    if shutil.which("openssl") is None:
        raise ServerUnavailable("openssl not found (apt-get install openssl)")
    hashed = _run(["openssl", "passwd", "-6", "-stdin"], input=password).stdout.strip()
    names = [entry.split(":", 1)[0] for entry in Path("/etc/passwd").read_text().splitlines()]
    lines = [
        f"{name}:{hashed if name in users else '*'}:19000:0:99999:7:::"
        for name in dict.fromkeys([*names, *users])
        if name
    ]
    return "\n".join(lines) + "\n"


def _free_uid() -> int:
    taken = {
        int(fields[2])
        for fields in (line.split(":") for line in Path("/etc/passwd").read_text().splitlines())
        if len(fields) > 2 and fields[2].isdigit()
    }
    return next(uid for uid in range(4242, 60000) if uid not in taken)


@contextlib.contextmanager
def running_enroll_server(
    root: Path, esxi_version: str = "6.7.0", user: str = "root"
) -> Iterator[EnrollServer]:
    """Start a password-accepting OpenSSH fake ESXi host reporting `esxi_version`, where
    `user` logs in with ENROLL_PASSWORD (root, or a user of its own, not root)."""
    with contextlib.ExitStack() as stack:
        if user == "root":
            base = root
        else:  # the fake host's commands run as that user: they and its FAKE_ESXI_DIR must be
            # reachable (pytest's base directory is 0700)
            root.mkdir(parents=True, exist_ok=True)
            base = Path(tempfile.mkdtemp(prefix="esxi-suspend-enroll-", dir="/tmp"))
            stack.callback(shutil.rmtree, base, ignore_errors=True)
            base.chmod(0o711)
        yield stack.enter_context(_enroll_server(root, base, esxi_version, user))


@contextlib.contextmanager
def _enroll_server(root: Path, base: Path, esxi_version: str, user: str) -> Iterator[EnrollServer]:
    sshd, unshare = "/usr/sbin/sshd", shutil.which("unshare")
    if not os.access(sshd, os.X_OK):
        raise ServerUnavailable(f"{sshd} not found (apt-get install openssh-server)")
    if not unshare or os.geteuid() != 0:
        raise ServerUnavailable("the enroll fixture needs root and unshare (mount namespace)")
    root.mkdir(parents=True, exist_ok=True)
    fake_dir = _make_fake_dir(base)
    (fake_dir / "vmware_version").write_text(f"{esxi_version}\n")
    (fake_dir / "vmware_version").chmod(0o644)  # read by `user`, whatever the umask
    fakehost = copy_fakehost(base / "fakehost")
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    host_key = root / "ssh_host_ed25519_key"
    ssh_keygen(host_key, comment="fake-esxi-enroll")
    shadow = root / "shadow"
    shadow.write_text(_shadow_text(ENROLL_PASSWORD, (user,)))
    shadow.chmod(0o600)
    etc_ssh, home = root / "etc-ssh", root / "home"
    (etc_ssh / "keys-root").mkdir(parents=True)
    etc_ssh.chmod(0o755)  # as the host's /etc/ssh: `user` goes through it, whatever the umask
    home.mkdir(mode=0o700)
    binds = [(shadow, "/etc/shadow"), (etc_ssh, "/etc/ssh"), (home, "/root")]
    user_home = home
    if user != "root":
        uid = _free_uid()
        passwd = root / "passwd"
        passwd.write_text(
            Path("/etc/passwd").read_text().rstrip("\n")
            + f"\n{user}:x:{uid}:{uid}:fake ESXi user:/home/{user}:/bin/sh\n"
        )
        passwd.chmod(0o644)
        homes = root / "homes"
        homes.mkdir(mode=0o755)
        homes.chmod(0o755)  # the host's /home: `user` goes through it, whatever the umask
        user_home = homes / user
        user_home.mkdir(mode=0o700)
        (etc_ssh / f"keys-{user}").mkdir(mode=0o700)  # as root would make it for the user
        for path in (user_home, etc_ssh / f"keys-{user}", fake_dir, fake_dir / "tmp"):
            os.chown(path, uid, uid)
        binds += [(passwd, "/etc/passwd"), (homes, "/home")]
    if int(esxi_version.split(".")[0]) >= 5:
        authorized = "/etc/ssh/keys-%u/authorized_keys"
        keys_file = etc_ssh / f"keys-{user}" / "authorized_keys"
    else:
        authorized, keys_file = ".ssh/authorized_keys", user_home / ".ssh/authorized_keys"
    log_file = root / "openssh-enroll.log"
    forced = _forced_command(fake_dir, fakehost)
    for _attempt in range(3):
        port = free_port()
        config = root / "sshd_config"
        config.write_text(
            f"""\
ListenAddress {HOST}
Port {port}
HostKey {host_key}
AuthorizedKeysFile {authorized}
PasswordAuthentication yes
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin yes
PermitEmptyPasswords no
UsePAM no
StrictModes no
PidFile none
X11Forwarding no
AllowTcpForwarding yes
PermitTTY yes
ForceCommand {forced}
"""
        )
        mounts = " && ".join(
            f"mount -n --bind {shlex.quote(str(source))} {target}" for source, target in binds
        )
        script = f"{mounts} && exec {sshd} -D -e -f {shlex.quote(str(config))}"
        argv = [unshare, "--mount", "--propagation", "private", "sh", "-c", script]
        with log_file.open("ab") as log:
            process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        try:
            banner = _wait_ready(process, port, log_file)
        except ServerFailed as error:
            stop_process(process)
            if "mount:" in str(error) or "unshare:" in str(error):
                raise ServerUnavailable(f"cannot run sshd in a mount namespace: {error}") from error
            continue
        server = EnrollServer(
            kind="openssh",
            port=port,
            root=root,
            fake_dir=fake_dir,
            host_pub=_pub_key_fields(Path(f"{host_key}.pub").read_text()),
            keys=ClientKeys(host_key, host_key, "", host_key, ""),  # no client keys: enroll adds
            process=process,
            log_file=log_file,
            banner=banner,
            keys_file=keys_file,
            esxi_version=esxi_version,
            user=user,
            fakehost=fakehost,
        )
        try:
            yield server
        finally:
            stop_process(process)
            kill_leftovers(fake_dir)
        return
    raise ServerFailed(f"enroll server did not start:\n{log_file.read_text(errors='replace')}")
