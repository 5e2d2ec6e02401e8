"""`esxi-suspend enroll HOST`: authorize our public key for root on the host, once, by password.

The root password is asked on the terminal (no echo), used for one login and kept nowhere: not
in a log, an argument, the environment or a file. The host key must be pinned first (`trust`):
the password is never sent to a host we cannot recognise. Every remote command line is a
constant of this module; the key line travels on stdin.
"""

from __future__ import annotations

import getpass
import io
import re
import tarfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from esxi_suspend.config import load_settings, read_env_values
from esxi_suspend.errors import (
    ConfigError,
    EsxiSuspendError,
    ExitCode,
    HostKeyRejected,
    RemoteCommandFailed,
)
from esxi_suspend.remote import (
    HostKeyInfo,
    PasswordSession,
    RemoteHost,
    pinned_host_keys,
    public_key_info,
)
from esxi_suspend.trust import Target, resolve_target

Say = Callable[[str], None]
AskPassword = Callable[[str], "str | None"]  # None: no terminal

COMMAND_TIMEOUT = 30
VERSION_COMMAND = "vmware -v"
KEYS_5 = "/etc/ssh/keys-root/authorized_keys"

# Appends the key line read from stdin to $f unless a line of $f already holds its key
# (second field); prints `added` or `present`. Busybox sh/awk on ESXi, any POSIX sh here.
_APPEND_TEMPLATE = r"""umask 077
f=@FILE@
IFS= read -r line || { echo "no key line on stdin" >&2; exit 3; }
set -f; set -- $line; set +f
mkdir -p "${f%/*}" && touch "$f" || exit 4
if awk -v k="$2" '{ for (i = 1; i <= NF; i++) if ($i == k) found = 1 } END { exit !found }' "$f"
then
    echo present
else
    if [ -s "$f" ] && [ -n "$(tail -c 1 "$f")" ]; then echo >>"$f"; fi
    printf '%s\n' "$line" >>"$f" && echo added
fi"""
APPEND_5 = _APPEND_TEMPLATE.replace("@FILE@", KEYS_5)
READ_5 = f"cat {KEYS_5}"
# ESXi 4.x: root's home is /, so this is /.ssh/authorized_keys there; lost at reboot unless in
# /bootbank/oem.tgz, which the host unpacks over / when it boots.
APPEND_4 = _APPEND_TEMPLATE.replace("@FILE@", '"${HOME%/}/.ssh/authorized_keys"')
READ_4 = (
    'echo "${HOME:-/}"; if [ -e /bootbank/oem.tgz ]; then echo oem=yes; else echo oem=no; fi; '
    'cat "${HOME%/}/.ssh/authorized_keys"'
)

_VERSION_RE = re.compile(r"VMware ESXi? (\d+)\.(\d+)(?:\.(\d+))?")
NEW_KEY_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521")


class EnrollFailed(EsxiSuspendError):
    """The key could not be authorized, or key login does not work after it."""

    exit_code = ExitCode.REMOTE_COMMAND


class NoTerminal(EsxiSuspendError):
    exit_code = ExitCode.USAGE


@dataclass(frozen=True)
class EsxiVersion:
    major: int
    minor: int
    text: str

    @property
    def accepted_key_types(self) -> tuple[str, ...]:
        """Key types root's authorized_keys works with on this release.

        4.x (dropbear) and 5.x (OpenSSH 5.x) predate ed25519 and ecdsa; 6.0 and later run an
        OpenSSH that has both. DSA is refused from 6.5 on and weak before: never offered.
        """
        if self.major >= 6:
            return (*NEW_KEY_TYPES, "ssh-rsa")
        return ("ssh-rsa",)


def parse_version(text: str) -> EsxiVersion | None:
    match = _VERSION_RE.search(text)
    if not match:
        return None
    return EsxiVersion(int(match.group(1)), int(match.group(2)), match.group(0))


def ask_password(prompt: str) -> str | None:
    """getpass on the controlling terminal, no echo; None if there is no terminal (getpass
    would otherwise fall back to reading stdin with echo)."""
    try:
        with open("/dev/tty", "rb"):
            pass
    except OSError:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("error", getpass.GetPassWarning)
        try:
            return getpass.getpass(prompt)
        except (getpass.GetPassWarning, EOFError):
            return None


def enroll(
    env_file: Path, host: str | None, port: int | None, *, ask: AskPassword, say: Say
) -> ExitCode:
    """Authorize ESXI_KEY_FILE's public key for ESXI_USER on the host; then prove key login."""
    target = resolve_target(env_file, host, port)
    values = read_env_values(env_file)
    if not env_file.exists():
        raise ConfigError(str(env_file), [f"{env_file}: file not found; run install.sh first"])
    key_path = values.get("ESXI_KEY_FILE")
    if not key_path:
        raise ConfigError(str(env_file), ["ESXI_KEY_FILE: missing; it is required"])
    public_path = Path(f"{key_path}.pub")
    public = public_key_info(public_path)
    key_line = public_path.read_text(encoding="ascii").strip().splitlines()[0]
    user = values.get("ESXI_USER", "root")
    if not pinned_host_keys(target.known_hosts, target.host, target.port):
        raise HostKeyRejected(
            f"host {target.name}: no host key pinned in {target.known_hosts}; run "
            f"`esxi-suspend trust {target.host}` first (no password was asked or sent)"
        )
    password = ask(f"{user}@{target.host}'s password (used for this one login, never stored): ")
    if password is None:
        raise NoTerminal(
            "enroll asks the root password on a terminal, and there is none: run it on a "
            "terminal (nothing was changed)"
        )
    session = PasswordSession(target.host, target.port, user, target.known_hosts, target.timeout)
    with session:
        session.open(password)
        del password
        say(f"logged in to {target.name} as {user} with the password (host key pinned)")
        version = _version(session)
        say(f"host runs {version.text}")
        if public.key_type not in version.accepted_key_types:
            raise ConfigError(
                str(env_file),
                [
                    f"ESXI_KEY_FILE={key_path}: a {public.label} key, which ESXi "
                    f"{version.major}.{version.minor} does not accept "
                    f"(it takes: {', '.join(version.accepted_key_types)}); nothing was changed. "
                    "Make an RSA key: ssh-keygen -t rsa -b 3072 -N '' -f "
                    f"{Path(key_path).parent}/id_rsa, set ESXI_KEY_FILE to it, run enroll again"
                ],
            )
        if version.major >= 5:
            where, text = _append(session, APPEND_5, READ_5, key_line, public)
            say(f"{where}: {KEYS_5} (persists across reboots)")
        else:
            where, text = _append(session, APPEND_4, READ_4, key_line, public)
    if version.major < 5 and text is not None:
        _oem_tgz(env_file.parent / "oem.tgz", text, target, where, say)
    _verify_key_login(env_file, target, say)
    return ExitCode.OK


def _version(session: PasswordSession) -> EsxiVersion:
    result = session.run(VERSION_COMMAND, COMMAND_TIMEOUT)
    version = parse_version(result.stdout) if result.ok else None
    if version is None:
        raise RemoteCommandFailed(
            f"host {session.host}: `{VERSION_COMMAND}` gave no ESXi version "
            f"({result.error_tail()}); is it an ESXi host? nothing was changed",
            VERSION_COMMAND,
            result.exit_status,
        )
    return version


def _append(
    session: PasswordSession, append: str, read: str, line: str, key: HostKeyInfo
) -> tuple[str, str | None]:
    """Append (or find) the key; read the file back and count it. Returns (what, file text)."""
    result = session.run(append, COMMAND_TIMEOUT, stdin=f"{line}\n".encode())
    outcome = result.stdout.strip().splitlines()[-1:] if result.ok else []
    if outcome not in (["added"], ["present"]):
        raise EnrollFailed(
            f"host {session.host}: adding the key to authorized_keys failed "
            f"(exit {result.exit_status}: {result.error_tail()})"
        )
    back = session.run(read, COMMAND_TIMEOUT)
    if not back.ok:
        raise EnrollFailed(
            f"host {session.host}: cannot read authorized_keys back ({back.error_tail()})"
        )
    count = sum(key.base64 in text_line.split() for text_line in back.stdout.splitlines())
    if count == 0:
        raise EnrollFailed(
            f"host {session.host}: the key is not in authorized_keys after adding it"
        )
    what = "added our key to" if outcome == ["added"] else "our key was already in"
    if count > 1:
        what += f" (note: {count} lines hold it; only one was ours to add)"
    return what, back.stdout if read == READ_4 else None


def _oem_tgz(path: Path, text: str, target: Target, what: str, say: Say) -> None:
    """ESXi 4.x: build oem.tgz holding root's authorized_keys, and explain where it goes."""
    home, oem, *lines = text.splitlines()
    relative = f"{home.strip('/')}/.ssh".lstrip("/")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        now = time.time()
        directory = tarfile.TarInfo(relative)
        directory.type, directory.mode, directory.mtime = tarfile.DIRTYPE, 0o700, now
        archive.addfile(directory)
        data = "".join(f"{line}\n" for line in lines).encode()
        member = tarfile.TarInfo(f"{relative}/authorized_keys")
        member.size, member.mode, member.mtime = len(data), 0o600, now
        archive.addfile(member, io.BytesIO(data))
    path.write_bytes(buffer.getvalue())
    path.chmod(0o600)
    say(f"{what}: {home.rstrip('/')}/.ssh/authorized_keys (ESXi 4.x: lost at the next reboot)")
    say(f"built {path}: {relative}/authorized_keys as it is on the host now")
    say("ESXi 4.x unpacks /bootbank/oem.tgz over / at boot; to keep the key across reboots:")
    if oem == "oem=yes":
        say("  the host already HAS a /bootbank/oem.tgz (drivers?): do not overwrite it; merge:")
        say(f"  unpack it here, add {relative}/ from {path}, pack it again, copy it back")
    else:
        say(f"  scp -P {target.port} {path} root@{target.host}:/bootbank/oem.tgz")
    say("  (then reboot once when convenient, and run `esxi-suspend check` after it)")


def _verify_key_login(env_file: Path, target: Target, say: Say) -> None:
    settings = load_settings(
        env_file, overrides={"ESXI_HOST": target.host, "ESXI_PORT": str(target.port)}
    )
    remote = RemoteHost(settings)
    with remote:
        shown = remote.host_key
        result = remote.run(VERSION_COMMAND, COMMAND_TIMEOUT)
    if not result.ok:
        raise EnrollFailed(f"host {target.name}: key login works but `{VERSION_COMMAND}` failed")
    say(
        f"verified: key login works ({settings.user}@{target.name}, key {settings.key_file}, "
        f"host key {shown})"
    )
