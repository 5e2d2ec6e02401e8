"""`esxi-suspend enroll [user@]HOST`: authorize our public key for the user on the host, once,
by password.

If our key already logs in, it says so and asks nothing. Otherwise the user's password is
asked on the terminal (no echo), used for one login and kept nowhere: not in a log, an
argument, the environment or a file. The host key must be pinned first (`trust`): the password
is never sent to a host we cannot recognise. The remote command lines are made of constants and
the validated user name only; the key line travels on stdin.
"""

from __future__ import annotations

import getpass
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from esxi_suspend.errors import (
    ConfigError,
    EnrollFailed,
    ExitCode,
    HostKeyRejected,
    KeyRefused,
    NoTerminal,
    RemoteCommandFailed,
)
from esxi_suspend.settings.envfile import load_settings
from esxi_suspend.settings.model import Settings
from esxi_suspend.setup.authkeys import (
    APPEND_4,
    READ_4,
    EsxiVersion,
    append_5,
    keys_file,
    oem_tgz,
    only_root_on_4x,
    parse_version,
    persists,
    read_5,
)
from esxi_suspend.setup.target import Setup, resolve_target
from esxi_suspend.ssh.hostkeys import HostKeyInfo, pinned_host_keys, public_key_info
from esxi_suspend.ssh.logins import PasswordSession
from esxi_suspend.ssh.remote import CommandResult, RemoteHost, host_argument

Say = Callable[[str], None]
AskPassword = Callable[[str], "str | None"]  # None: no terminal

COMMAND_TIMEOUT = 30
VERSION_COMMAND = "vmware -v"


class Runner(Protocol):
    """A logged-in session: PasswordSession, or RemoteHost once our key works."""

    def run(self, command: str, timeout: int) -> CommandResult: ...


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
    """Authorize ESXI_KEY_FILE's public key for the user on the host; then prove key login.

    When our key already logs in, say so and ask nothing.
    """
    setup = resolve_target(env_file, host, port)
    target = setup.target
    if not pinned_host_keys(setup.known_hosts, target.host, target.port):
        raise HostKeyRejected(
            f"host {setup.name}: no host key pinned in {setup.known_hosts}; run "
            f"`esxi-suspend trust {setup.argument()}` first (no password was asked or sent)"
        )
    # Strict, as `check`: every problem of the env file before any password is asked.
    settings = load_settings(
        env_file,
        overrides={
            "ESXI_HOST": host_argument(None, target.host, 22),
            "ESXI_USER": target.user,
            "ESXI_PORT": str(target.port),
        },
    )
    public_path = Path(f"{settings.key_file}.pub")
    public = public_key_info(public_path)
    key_line = public_path.read_text(encoding="ascii").strip().splitlines()[0]
    if _key_already_works(settings, setup, say):
        return ExitCode.OK
    user = target.user
    password = ask(f"{user}@{target.host}'s password (used for this one login, never stored): ")
    if password is None:
        raise NoTerminal(
            f"enroll asks {user}'s password on a terminal, and there is none: run it on a "
            "terminal (nothing was changed)"
        )
    session = PasswordSession(target, setup.known_hosts, setup.timeout)
    with session:
        session.open(password)
        del password
        say(f"logged in to {setup.name} as {user} with the password (host key pinned)")
        version = _version(session, setup.name)
        say(f"host runs {version.text}")
        if public.key_type not in version.accepted_key_types:
            raise ConfigError(
                str(env_file),
                [
                    f"ESXI_KEY_FILE={settings.key_file}: a {public.label} key, which ESXi "
                    f"{version.major}.{version.minor} does not accept "
                    f"(it takes: {', '.join(version.accepted_key_types)}); nothing was changed. "
                    "Make an RSA key: ssh-keygen -t rsa -b 3072 -N '' -f "
                    f"{settings.key_file.parent}/id_rsa, set ESXI_KEY_FILE to it, run enroll again"
                ],
            )
        if version.major < 5:
            only_root_on_4x(version, setup, public_path)
            commands = APPEND_4, READ_4
        else:
            commands = append_5(user), read_5(user)
        where, text = _append(session, *commands, key_line, public, setup, public_path)
    if version.major < 5:
        oem_tgz(env_file.parent / "oem.tgz", text, setup, where, say)
    else:
        say(f"{where}: {keys_file(user)} {persists(user)}")
    _verify_key_login(settings, setup, say)
    return ExitCode.OK


def _login(setup: Setup) -> str:
    """`user@host:port`, whole, for the log."""
    target = setup.target
    return host_argument(target.user, target.host, target.port)


def _key_already_works(settings: Settings, setup: Setup, say: Say) -> bool:
    """Log in with our key first (bounded by ESXI_CONNECT_TIMEOUT): if the host takes it, there
    is nothing to authorize. Only a refused key goes on to the password; any other failure
    (host down, host key changed, key file unreadable) is raised before a password is asked."""
    remote = RemoteHost(settings)
    try:
        remote.open()
    except KeyRefused:
        return False
    try:
        version = _version(remote, setup.name)
        say(
            f"our key already works: {_login(setup)} logs in with "
            f"{settings.key_file} (host key {remote.host_key}); nothing to change, "
            "no password asked"
        )
        say(f"host runs {version.text}")
        if version.major >= 5:
            return True
        if setup.target.user != "root":
            say("ESXi 4.x: the key may not last a reboot; run `esxi-suspend check` after one")
            return True
        back = remote.run(READ_4, COMMAND_TIMEOUT)
    finally:
        remote.close()
    if not back.ok:
        raise EnrollFailed(f"host {setup.name}: cannot read authorized_keys ({back.error_tail()})")
    oem_tgz(setup.env_file.parent / "oem.tgz", back.stdout, setup, "our key is in", say)
    return True


def _version(session: Runner, name: str) -> EsxiVersion:
    result = session.run(VERSION_COMMAND, COMMAND_TIMEOUT)
    version = parse_version(result.stdout) if result.ok else None
    if version is None:
        raise RemoteCommandFailed(
            f"host {name}: `{VERSION_COMMAND}` gave no ESXi version "
            f"({result.error_tail()}); is it an ESXi host? nothing was changed",
            VERSION_COMMAND,
            result.exit_status,
        )
    return version


def _append(
    session: PasswordSession,
    append: str,
    read: str,
    line: str,
    key: HostKeyInfo,
    setup: Setup,
    public_path: Path,
) -> tuple[str, str]:
    """Append (or find) the key; read the file back and count it. Returns (what, file text)."""
    user = setup.target.user
    result = session.run(append, COMMAND_TIMEOUT, stdin=f"{line}\n".encode())
    outcome = result.stdout.strip().splitlines()[-1:] if result.ok else []
    if outcome not in (["added"], ["present"]):
        where = "authorized_keys" if read == READ_4 else keys_file(user)
        problem = (
            f"host {setup.name}: adding the key to {where} failed "
            f"(exit {result.exit_status}: {result.error_tail()})"
        )
        if user != "root":
            problem += (
                f"; nothing was added. {user} may not write there: as root on the host, "
                f"add the line of {public_path} to {where}, then run enroll again"
            )
        raise EnrollFailed(problem)
    back = session.run(read, COMMAND_TIMEOUT)
    if not back.ok:
        raise EnrollFailed(
            f"host {setup.name}: cannot read authorized_keys back ({back.error_tail()})"
        )
    count = sum(key.base64 in text_line.split() for text_line in back.stdout.splitlines())
    if count == 0:
        raise EnrollFailed(f"host {setup.name}: the key is not in authorized_keys after adding it")
    what = "added our key to" if outcome == ["added"] else "our key was already in"
    if count > 1:
        what += f" (note: {count} lines hold it; only one was ours to add)"
    return what, back.stdout


def _verify_key_login(settings: Settings, setup: Setup, say: Say) -> None:
    user = setup.target.user
    remote = RemoteHost(settings)
    try:
        remote.open()
    except KeyRefused:
        raise EnrollFailed(
            f"host {setup.name}: our key is in {user}'s authorized keys now, but the host "
            f"still refuses it for {user}: its sshd may read another file "
            "(AuthorizedKeysFile in /etc/ssh/sshd_config)"
        ) from None
    try:
        shown = remote.host_key
        result = remote.run(VERSION_COMMAND, COMMAND_TIMEOUT)
    finally:
        remote.close()
    if not result.ok:
        raise EnrollFailed(f"host {setup.name}: key login works but `{VERSION_COMMAND}` failed")
    say(f"verified: key login works ({_login(setup)}, key {settings.key_file}, host key {shown})")
