"""`esxi-suspend enroll [user@]HOST`: authorize our public key for the user on the host, once
by password, restricted where the host's SSH server honours it.

If our key already logs in, that session does the work and no password is asked. Otherwise
the user's password is asked on the terminal (no echo), used for one login and kept nowhere:
not in a log, an argument, the environment or a file. The host key must be pinned first
(`trust`): the password is never sent to a host we cannot recognise. Our key's line gets
`from=` (ESXI_KEY_FROM; `auto`: the address the host sees us at) and the no-* options its
server takes (ssh/keyline.py); a rerun replaces our line, never another key's. Key login is
proven before the session ends: a line the host refuses is put back as it was. The remote
command lines are made of constants and the validated user name only; the key and its line
travel on stdin.
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
    READ_4,
    WRITE_4,
    EsxiVersion,
    keys_file,
    oem_tgz,
    only_root_on_4x,
    parse_version,
    persists,
    read_5,
    write_5,
)
from esxi_suspend.setup.target import Setup, resolve_target
from esxi_suspend.ssh import keyline
from esxi_suspend.ssh.hostkeys import HostKeyInfo, pinned_host_keys, public_key_info
from esxi_suspend.ssh.logins import PasswordSession
from esxi_suspend.ssh.remote import CommandResult, RemoteHost, host_argument

Say = Callable[[str], None]
AskPassword = Callable[[str], "str | None"]  # None: no terminal

COMMAND_TIMEOUT = 30
VERSION_COMMAND = "vmware -v"


class Runner(Protocol):
    """A logged-in session: PasswordSession, or RemoteHost once our key works."""

    @property
    def server_banner(self) -> str: ...

    def run(self, command: str, timeout: int, stdin: str = "") -> CommandResult: ...


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
    """Authorize ESXI_KEY_FILE's public key, restricted, for the user on the host; then prove
    key login. When our key already logs in, that session rewrites our line; no password."""
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
    fields = public_path.read_text(encoding="ascii").strip().splitlines()[0].split()
    enrollment = _Enrollment(settings, setup, public, public_path, " ".join(fields[2:]), say)
    remote = _key_session(settings, setup, say)
    if remote is not None:
        try:
            return enrollment.run(remote, by_key=True)
        finally:
            remote.close()
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
        return enrollment.run(session, by_key=False)


def _login(setup: Setup) -> str:
    """`user@host:port`, whole, for the log."""
    target = setup.target
    return host_argument(target.user, target.host, target.port)


def _key_session(settings: Settings, setup: Setup, say: Say) -> RemoteHost | None:
    """Log in with our key first (bounded by ESXI_CONNECT_TIMEOUT): if the host takes it, no
    password is needed. Only a refused key goes on to the password; any other failure (host
    down, host key changed, key file unreadable) is raised before a password is asked."""
    remote = RemoteHost(settings)
    try:
        remote.open()
    except KeyRefused:
        return None
    say(
        f"our key already works: {_login(setup)} logs in with {settings.key_file} (host key "
        f"{remote.host_key}); no password asked"
    )
    return remote


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


class _Enrollment:
    """One enroll over a logged-in session: version, our line, write, read back, prove."""

    def __init__(
        self,
        settings: Settings,
        setup: Setup,
        public: HostKeyInfo,
        public_path: Path,
        comment: str,
        say: Say,
    ) -> None:
        self.settings, self.setup, self.say = settings, setup, say
        self.public, self.public_path, self.comment = public, public_path, comment

    def run(self, session: Runner, *, by_key: bool) -> ExitCode:
        setup, user, say = self.setup, self.setup.target.user, self.say
        version = _version(session, setup.name)
        say(f"host runs {version.text}")
        if not by_key and self.public.key_type not in version.accepted_key_types:
            key_file = self.settings.key_file
            raise ConfigError(
                str(setup.env_file),
                [
                    f"ESXI_KEY_FILE={key_file}: a {self.public.label} key, which ESXi "
                    f"{version.major}.{version.minor} does not accept "
                    f"(it takes: {', '.join(version.accepted_key_types)}); nothing was changed. "
                    "Make an RSA key: ssh-keygen -t rsa -b 3072 -N '' -f "
                    f"{key_file.parent}/id_rsa, set ESXI_KEY_FILE to it, run enroll again"
                ],
            )
        if version.major < 5:
            if by_key and user != "root":
                say("ESXi 4.x: the key may not last a reboot; run `esxi-suspend check` after one")
                return ExitCode.OK
            only_root_on_4x(version, setup, self.public_path)
            write, read = WRITE_4, READ_4
        else:
            write, read = write_5(user), read_5(user)
        line, restricted_from = self._line(session)
        where, text, previous = self._write(session, write, read, line)
        if version.major >= 5:
            say(f"{where}: {keys_file(user)} {persists(user)}")
        self._prove(session, write, previous, line, restricted_from)
        if version.major < 5:
            oem_tgz(setup.env_file.parent / "oem.tgz", text, setup, where, say)
        return ExitCode.OK

    def _line(self, session: Runner) -> tuple[str, tuple[str, ...]]:
        """Our key's line for this host's SSH server; and the from= addresses it holds."""
        server = keyline.server_options(session.server_banner)
        wanted = self.settings.key_from
        addresses: tuple[str, ...] = ()
        said = ""
        if not server.takes_from:
            said = "no from=: the key works from any address"
        elif wanted == ("none",):
            said = "no from= (ESXI_KEY_FROM=none)"
        elif wanted == ("auto",):
            result = session.run(keyline.CLIENT_ADDRESS_COMMAND, COMMAND_TIMEOUT)
            address = keyline.client_address(result.stdout) if result.ok else None
            if address is None:
                said = (
                    "WARNING: no from=: the host did not say which address it sees us at "
                    "(SSH_CONNECTION); set ESXI_KEY_FROM to this machine's address"
                )
            else:
                addresses = (address,)
                said = f"from={address}: the address the host sees us connect from"
        else:
            addresses = wanted
            said = f"from={','.join(addresses)} (ESXI_KEY_FROM)"
        options = keyline.options_text(addresses, server.restrictions)
        shown = ", ".join(keyline.split_options(options)) or "none"
        self.say(f"restrictions: {shown}; {said} ({server.server}: {server.why})")
        public = self.public
        return keyline.key_line(options, public.key_type, public.base64, self.comment), addresses

    def _write(
        self, session: Runner, write: str, read: str, line: str
    ) -> tuple[str, str, list[str]]:
        """Put our line in the file (replacing ours, no other), read it back. Returns what
        was done, the file's text, and the lines that held our key before."""
        setup, base64 = self.setup, self.public.base64
        user = setup.target.user
        before = session.run(read, COMMAND_TIMEOUT)
        previous = _lines_holding(before.stdout, base64) if before.ok else []
        data = f"{base64}\n{line}\n"
        result = session.run(write, COMMAND_TIMEOUT, stdin=data)
        outcome = result.stdout.strip().splitlines()[-1:] if result.ok else []
        if outcome not in (["added"], ["replaced"], ["present"]):
            where = "authorized_keys" if read == READ_4 else keys_file(user)
            problem = (
                f"host {setup.name}: adding the key to {where} failed "
                f"(exit {result.exit_status}: {result.error_tail()})"
            )
            if user != "root":
                problem += (
                    f"; nothing was added. {user} may not write there: as root on the host, "
                    f"add the line of {self.public_path} to {where}, then run enroll again"
                )
            raise EnrollFailed(problem)
        back = session.run(read, COMMAND_TIMEOUT)
        if not back.ok:
            raise EnrollFailed(
                f"host {setup.name}: cannot read authorized_keys back ({back.error_tail()})"
            )
        if _lines_holding(back.stdout, base64) != [line]:
            raise EnrollFailed(
                f"host {setup.name}: our key's line is not in authorized_keys as written"
            )
        what = {
            "added": "added our key to",
            "replaced": "replaced our key's line in",
            "present": "our key's line was already so in",
        }[outcome[0]]
        if len(previous) > 1:
            what += f" (it was on {len(previous)} lines: now on one)"
        return what, back.stdout, previous

    def _prove(
        self,
        session: Runner,
        write: str,
        previous: list[str],
        line: str,
        restricted_from: tuple[str, ...],
    ) -> None:
        """Log in with the key alone while this session still holds; if the host refuses the
        new line, put the one before back (when there was one) and say why."""
        settings, setup = self.settings, self.setup
        user = setup.target.user
        remote = RemoteHost(settings)
        try:
            remote.open()
        except KeyRefused:
            put_back = ""
            if previous and previous[0] != line:
                again = session.run(
                    write, COMMAND_TIMEOUT, stdin=f"{self.public.base64}\n{previous[0]}\n"
                )
                put_back = (
                    "; its previous line was put back"
                    if again.ok
                    else "; putting its previous line back failed too"
                )
            if restricted_from:
                why = (
                    f"the line says from={','.join(restricted_from)}: if the host sees this "
                    "machine at another address (NAT), set ESXI_KEY_FROM to that address, or "
                    "none, and run enroll again"
                )
            else:
                why = "its sshd may read another file (AuthorizedKeysFile in /etc/ssh/sshd_config)"
            raise EnrollFailed(
                f"host {setup.name}: our key is in {user}'s authorized keys now, but the host "
                f"still refuses it for {user}{put_back}: {why}"
            ) from None
        try:
            shown = remote.host_key
            result = remote.run(VERSION_COMMAND, COMMAND_TIMEOUT)
        finally:
            remote.close()
        if not result.ok:
            raise EnrollFailed(f"host {setup.name}: key login works but `{VERSION_COMMAND}` failed")
        self.say(
            f"verified: key login works ({_login(setup)}, key {settings.key_file}, "
            f"host key {shown})"
        )


def _lines_holding(text: str, base64: str) -> list[str]:
    """The lines of an authorized_keys text that hold the key `base64`."""
    return [line for line in text.splitlines() if keyline.line_options(line, base64) is not None]
