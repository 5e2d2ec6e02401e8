"""`esxi-suspend trust HOST`: show the host's SSH key, and pin it after the admin says yes.

Never part of the shutdown path, and never trusts on its own: the key is pinned only after a
"yes" typed on a terminal, or `--yes` on the command line. A key that differs from the pinned
one is refused unless `--replace` (both fingerprints shown). The key is fetched in the SSH
handshake: nothing is sent to the host, no login is tried.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import io
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from esxi_suspend.config import DEFAULT_KNOWN_HOSTS, _host_name, read_env_values
from esxi_suspend.errors import ConfigError, EsxiSuspendError, ExitCode
from esxi_suspend.remote import (
    HostKeyInfo,
    fetch_host_key,
    known_hosts_name,
    pinned_host_keys,
)

Say = Callable[[str], None]
Ask = Callable[[str], "bool | None"]  # None: no terminal to ask on

CONSOLE_HINT = """\
Compare it with the fingerprint the host itself shows (its console, ESXi Shell:
Alt-F1 on the DCUI, or the vSphere client's ESXi Shell), not with another network scan:
  ssh-keygen -lf /etc/ssh/ssh_host_{kind}_key.pub
(ESXi 5.x: /usr/lib/vmware/openssh/bin/ssh-keygen; ESXi 4.x runs dropbear, whose
`dropbearkey -y -f /etc/dropbear/dropbear_{kind}_host_key` prints an older MD5 form.)"""


class NotConfirmed(EsxiSuspendError):
    """The admin did not say yes (or could not be asked): nothing was changed."""

    exit_code = ExitCode.USAGE


class KeyChanged(EsxiSuspendError):
    """The host shows another key than the pinned one, and --replace was not given."""

    exit_code = ExitCode.CONNECTION


@dataclass(frozen=True)
class Target:
    """Where to connect and where to pin, from HOST/--port and the env file."""

    host: str
    port: int
    known_hosts: Path
    timeout: int
    env_file: Path
    env_values: dict[str, str]

    @property
    def name(self) -> str:
        return known_hosts_name(self.host, self.port)


def resolve_target(env_file: Path, host: str | None, port: int | None) -> Target:
    """HOST and --port win; then ESXI_HOST/ESXI_PORT of the env file; defaults last."""
    values = read_env_values(env_file)
    problems: list[str] = []
    host = host or values.get("ESXI_HOST")
    if not host:
        problems.append("no HOST given and no ESXI_HOST in the env file: give the host's name")
    else:
        try:
            host = _host_name(host)
        except ValueError as exc:
            problems.append(f"HOST {host!r}: {exc}")
    port_text = str(port) if port is not None else values.get("ESXI_PORT", "22")
    timeout_text = values.get("ESXI_CONNECT_TIMEOUT", "10")
    number = _number(port_text, "ESXI_PORT (or --port)", 1, 65535, problems)
    timeout = _number(timeout_text, "ESXI_CONNECT_TIMEOUT", 1, 600, problems)
    known_hosts = Path(values.get("ESXI_KNOWN_HOSTS", str(DEFAULT_KNOWN_HOSTS)))
    if not known_hosts.is_absolute():
        problems.append(f"ESXI_KNOWN_HOSTS={known_hosts}: must be an absolute path")
    if problems or not host:
        raise ConfigError(str(env_file), problems)
    return Target(host, number, known_hosts, timeout, env_file, values)


def _number(text: str, what: str, low: int, high: int, problems: list[str]) -> int:
    if text.isdigit() and low <= int(text) <= high:
        return int(text)
    problems.append(f"{what}={text!r}: use a whole number from {low} to {high}")
    return low


def trust(target: Target, *, yes: bool, replace: bool, ask: Ask, say: Say) -> ExitCode:
    """Show the host key; pin it (confirmed), or refuse. Raises on every failure."""
    pinned = pinned_host_keys(target.known_hosts, target.host, target.port)
    shown = fetch_host_key(
        target.host, target.port, target.timeout, prefer=[key.key_type for key in pinned]
    )
    say(f"host {target.host} port {target.port} shows this host key:")
    say(f"  {shown.ssh_keygen_line(target.name)}")
    say(CONSOLE_HINT.format(kind=shown.label.lower()))
    if any(shown.same_key(key) for key in pinned):
        say(f"already pinned in {target.known_hosts}: nothing to change there.")
        confirmed = yes
    elif pinned:
        say(f"HOST KEY CHANGED: {target.known_hosts} pins for {target.name}:")
        for key in pinned:
            say(f"  {key.ssh_keygen_line(target.name)}")
        if not replace:
            raise KeyChanged(
                f"host {target.name}: its key differs from the pinned one; nothing was changed. "
                "Someone may be impersonating the host. If it was reinstalled and the new "
                "fingerprint above matches its console, run again with --replace"
            )
        _confirm(
            f"Replace the pinned key(s) of {target.name} with this one in {target.known_hosts}?",
            yes,
            ask,
        )
        removed = replace_entries(target.known_hosts, target.name, shown)
        say(f"replaced: removed {removed} line(s) for {target.name} from {target.known_hosts}")
        say(f"  added: {target.name} {shown.key_type} {shown.base64[:16]}...")
        confirmed = True
    else:
        _confirm(f"Pin this key for {target.name} in {target.known_hosts}?", yes, ask)
        replace_entries(target.known_hosts, target.name, shown)
        say(f"pinned: added {target.name} {shown.key_type} to {target.known_hosts}")
        confirmed = True
    _settle_env_host(target, confirmed, say)
    return ExitCode.OK


def _confirm(question: str, yes: bool, ask: Ask) -> None:
    if yes:
        return
    answer = ask(f"{question} Type yes if the fingerprint matches the console: ")
    if answer is None:
        raise NotConfirmed(
            "no terminal to ask on, and no --yes: nothing was changed. Run it on a terminal, "
            "or add --yes once you have compared the fingerprint with the host's console"
        )
    if not answer:
        raise NotConfirmed("not confirmed: nothing was changed")


def _settle_env_host(target: Target, confirmed: bool, say: Say) -> None:
    """Point the env file at this host, if it names none yet (only once the admin agreed)."""
    current = target.env_values.get("ESXI_HOST")
    if not target.env_file.exists():
        say(f"no env file {target.env_file} (run install.sh); ESXI_HOST not set anywhere")
        return
    if current:
        if current != target.host:
            say(
                f"note: {target.env_file} has ESXI_HOST={current}; check and shutdown use that "
                f"host, not {target.host}"
            )
        return
    lines = [f"ESXI_HOST={target.host}"]
    if target.port != 22 and "ESXI_PORT" not in target.env_values:
        lines.append(f"ESXI_PORT={target.port}")
    if not confirmed:
        say(f"{target.env_file} names no host yet; add (or rerun with --yes to add):")
        for line in lines:
            say(f"  {line}")
        return
    text = target.env_file.read_text(encoding="utf-8")
    addition = "".join(f"{line}\n" for line in lines)
    separator = "" if not text or text.endswith("\n") else "\n"
    _write_keeping_mode(
        target.env_file, f"{text}{separator}# set by esxi-suspend trust\n{addition}"
    )
    for line in lines:
        say(f"set: {line} in {target.env_file}")


def entry_names_host(field: str, name: str) -> bool:
    """Whether the first field of a known_hosts line names `name` (plain list or |1| hash)."""
    if field.startswith("|1|"):
        try:
            _, _, salt, digest = field.split("|", 3)
            mac = hmac.new(base64.b64decode(salt), name.encode(), hashlib.sha1).digest()
            return hmac.compare_digest(base64.b64encode(mac).decode(), digest)
        except ValueError:
            return False
    return name in field.split(",")


def replace_entries(known_hosts: Path, name: str, key: HostKeyInfo) -> int:
    """Drop the plain lines for `name`, add `name type base64`; returns the lines removed.

    Lines with markers (@revoked, @cert-authority) and other hosts' lines are kept as they are.
    """
    try:
        old = known_hosts.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        old = []
    kept: list[str] = []
    removed = 0
    for line in old:
        fields = line.split()
        if (
            fields
            and not line.lstrip().startswith(("#", "@"))
            and entry_names_host(fields[0], name)
        ):
            removed += 1
            continue
        kept.append(line)
    kept.append(f"{name} {key.entry}")
    known_hosts.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    _write_keeping_mode(known_hosts, "".join(f"{line}\n" for line in kept), new_mode=0o644)
    return removed


def _write_keeping_mode(path: Path, text: str, new_mode: int = 0o600) -> None:
    """Replace `path` atomically, keeping its mode (or `new_mode` for a new file)."""
    try:
        mode = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = new_mode
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def ask_on_terminal(question: str) -> bool | None:
    """Ask on the controlling terminal; True only for `yes`. None when there is no terminal."""
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        return None
    with io.TextIOWrapper(io.FileIO(fd, "w+"), encoding="utf-8") as tty:
        tty.write(question)
        tty.flush()
        answer = tty.readline()
    return answer.strip().lower() == "yes"
