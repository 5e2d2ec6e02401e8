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
from pathlib import Path

from esxi_suspend.errors import ExitCode, KeyChanged, NotConfirmed
from esxi_suspend.settings.values import parse_host_entry
from esxi_suspend.setup.target import Setup
from esxi_suspend.ssh.hostkeys import HostKeyInfo, pinned_host_keys
from esxi_suspend.ssh.logins import fetch_host_key
from esxi_suspend.ssh.remote import host_argument

Say = Callable[[str], None]
Ask = Callable[[str], "str | None"]  # the line typed ("" at end of input); None: no terminal

AGAIN = "Please type 'yes', 'no' or the fingerprint: "  # OpenSSH's own words

CONSOLE_HINT = """\
Compare it with the fingerprint the host itself shows (its console, ESXi Shell:
Alt-F1 on the DCUI, or the vSphere client's ESXi Shell), not with another network scan:
  ssh-keygen -lf /etc/ssh/ssh_host_{kind}_key.pub
(ESXi 5.x: /usr/lib/vmware/openssh/bin/ssh-keygen; ESXi 4.x runs dropbear, whose
`dropbearkey -y -f /etc/dropbear/dropbear_{kind}_host_key` prints an older MD5 form.)"""


def trust(setup: Setup, *, yes: bool, replace: bool, ask: Ask, say: Say) -> ExitCode:
    """Show the host key; pin it (confirmed), or refuse. Raises on every failure."""
    target = setup.target
    pinned = pinned_host_keys(setup.known_hosts, target.host, target.port)
    shown = fetch_host_key(
        target.host, target.port, setup.timeout, prefer=[key.key_type for key in pinned]
    )
    say(f"host {target.host} port {target.port} shows this host key:")
    say(f"  {shown.ssh_keygen_line(setup.name)}")
    say(CONSOLE_HINT.format(kind=shown.label.lower()))
    if any(shown.same_key(key) for key in pinned):
        say(f"already pinned in {setup.known_hosts}: nothing to change there.")
        confirmed = yes
    elif pinned:
        say(f"HOST KEY CHANGED: {setup.known_hosts} pins for {setup.name}:")
        for key in pinned:
            say(f"  {key.ssh_keygen_line(setup.name)}")
        if not replace:
            raise KeyChanged(
                f"host {setup.name}: its key differs from the pinned one; nothing was changed. "
                "Someone may be impersonating the host. If it was reinstalled and the new "
                "fingerprint above matches its console, run again with --replace"
            )
        _confirm(
            f"Replace the pinned key(s) of {setup.name} with this one in {setup.known_hosts}?",
            shown.fingerprint,
            yes,
            ask,
        )
        removed = replace_entries(setup.known_hosts, setup.name, shown)
        say(f"replaced: removed {removed} line(s) for {setup.name} from {setup.known_hosts}")
        say(f"  added: {setup.name} {shown.key_type} {shown.base64[:16]}...")
        confirmed = True
    else:
        _confirm(
            f"Pin this key for {setup.name} in {setup.known_hosts}?", shown.fingerprint, yes, ask
        )
        replace_entries(setup.known_hosts, setup.name, shown)
        say(f"pinned: added {setup.name} {shown.key_type} to {setup.known_hosts}")
        confirmed = True
    _settle_env_host(setup, confirmed, say)
    return ExitCode.OK


def _confirm(question: str, fingerprint: str, yes: bool, ask: Ask) -> None:
    """Yes, or the fingerprint itself, confirms; no (or an empty line) refuses; any other
    answer asks again, in OpenSSH's words. No terminal, or end of input: refused."""
    if yes:
        return
    prompt = f"{question} Type yes if the fingerprint matches the console: "
    while True:
        line = ask(prompt)
        if line is None:
            raise NotConfirmed(
                "no terminal to ask on, and no --yes: nothing was changed. Run it on a terminal, "
                "or add --yes once you have compared the fingerprint with the host's console"
            )
        if not line:
            raise NotConfirmed("no answer (end of input): nothing was changed")
        answer = line.strip()
        if answer.lower() == "yes" or answer == fingerprint:
            return
        if answer.lower() in ("no", ""):
            raise NotConfirmed("not confirmed: nothing was changed")
        prompt = AGAIN


def _settle_env_host(setup: Setup, confirmed: bool, say: Say) -> None:
    """Point the env file at this host, if it names none yet (only once the admin agreed)."""
    current = setup.env_values.get("ESXI_HOST")
    if not setup.env_file.exists():
        say(f"no env file {setup.env_file} (run install.sh); ESXI_HOST not set anywhere")
        return
    if current:
        if not _names(current, setup):
            say(
                f"note: {setup.env_file} has ESXI_HOST={current}; check and shutdown use that, "
                f"not {setup.argument()}"
            )
        return
    target = setup.target
    if "ESXI_PORT" not in setup.env_values and target.port != 22:
        user = target.user if target.user != setup.default_user else None
        lines = [f"ESXI_HOST={host_argument(user, target.host, 22)}", f"ESXI_PORT={target.port}"]
    else:
        lines = [f"ESXI_HOST={setup.argument()}"]
    if not confirmed:
        say(f"{setup.env_file} names no host yet; add (or rerun with --yes to add):")
        for line in lines:
            say(f"  {line}")
        return
    text = setup.env_file.read_text(encoding="utf-8")
    addition = "".join(f"{line}\n" for line in lines)
    separator = "" if not text or text.endswith("\n") else "\n"
    _write_keeping_mode(setup.env_file, f"{text}{separator}# set by esxi-suspend trust\n{addition}")
    for line in lines:
        say(f"set: {line} in {setup.env_file}")


def _names(listed: str, setup: Setup) -> bool:
    """Whether ESXI_HOST=`listed` has an entry for this host and port."""
    target = setup.target
    for text in listed.split(","):
        try:
            entry = parse_host_entry(text.strip())
        except ValueError:
            continue
        if entry.host == target.host and (entry.port or setup.default_port) == target.port:
            return True
    return False


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


def ask_on_terminal(question: str) -> str | None:
    """Ask on the controlling terminal; the line typed ("" at end of input), or None when
    there is no terminal."""
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        return None
    with io.TextIOWrapper(io.FileIO(fd, "w+"), encoding="utf-8", errors="replace") as tty:
        tty.write(question)
        tty.flush()
        return tty.readline()
