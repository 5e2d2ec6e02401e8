"""Where an authorized key lasts on each ESXi release, and which key types the release takes.

ESXi 5.x and later: `/etc/ssh/keys-USER/authorized_keys`, root's persisting across reboots.
ESXi 4.x: root's `/.ssh/authorized_keys`, lost at reboot unless `/bootbank/oem.tgz` restores
it, so enroll sets up root only there and builds that oem.tgz. Kept apart from the enroll flow
(log in, append, read back, verify), which takes each release's commands and paths from here.
"""

from __future__ import annotations

import io
import re
import shlex
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from esxi_suspend.errors import UserNotSupported
from esxi_suspend.setup.target import Setup
from esxi_suspend.ssh.remote import host_argument

Say = Callable[[str], None]

# Puts our key's line (stdin's second line) in $f in place of every line holding our key
# (stdin's first line: its base64), other lines untouched; prints `added`, `replaced` or
# `present` (that very line, once, already there: nothing written). The file is rewritten in
# place (cat >), not replaced by mv: its inode, owner and mode stay, and ESXi keeps backing it
# up. Busybox sh and grep on ESXi, any POSIX sh here.
_WRITE_TEMPLATE = r"""umask 077
f=@FILE@
IFS= read -r k && IFS= read -r line || { echo "no key on stdin" >&2; exit 3; }
case "$k" in ''|*[!A-Za-z0-9+/=]*) echo "not a key: $k" >&2; exit 3;; esac
mkdir -p "${f%/*}" && touch "$f" || exit 4
n=$(grep -c -F -e "$k" "$f")
if [ "$n" = 1 ] && grep -q -x -F -e "$line" "$f"; then echo present; exit 0; fi
t="$f.esxi-suspend.$$"
{ grep -v -F -e "$k" "$f"; printf '%s\n' "$line"; } >"$t" || { rm -f "$t"; exit 4; }
if cat "$t" >"$f"; then rm -f "$t"; else rm -f "$t"; exit 4; fi
if [ "$n" = 0 ]; then echo added; else echo replaced; fi"""

# ESXi 4.x: root's home is /, so this is /.ssh/authorized_keys there; lost at reboot unless in
# /bootbank/oem.tgz, which the host unpacks over / when it boots.
WRITE_4 = _WRITE_TEMPLATE.replace("@FILE@", '"${HOME%/}/.ssh/authorized_keys"')
READ_4 = (
    'echo "${HOME:-/}"; if [ -e /bootbank/oem.tgz ]; then echo oem=yes; else echo oem=no; fi; '
    'cat "${HOME%/}/.ssh/authorized_keys"'
)

_VERSION_RE = re.compile(r"VMware ESXi? (\d+)\.(\d+)(?:\.(\d+))?")
NEW_KEY_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521")


def keys_file(user: str) -> str:
    """ESXi 5.x and later: where sshd reads `user`'s authorized keys (root's persists)."""
    return f"/etc/ssh/keys-{user}/authorized_keys"


def write_5(user: str) -> str:
    """The write script for `user`'s keys file (`user` is a validated ESXI_USER name)."""
    return _WRITE_TEMPLATE.replace("@FILE@", shlex.quote(keys_file(user)))


def read_5(user: str) -> str:
    return f"cat {shlex.quote(keys_file(user))}"


@dataclass(frozen=True)
class EsxiVersion:
    major: int
    minor: int
    text: str

    @property
    def accepted_key_types(self) -> tuple[str, ...]:
        """Key types authorized_keys works with on this release.

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


def persists(user: str) -> str:
    if user == "root":
        return "(persists across reboots)"
    return f"(root's persists; for {user}, run `esxi-suspend check` after the next reboot)"


def only_root_on_4x(version: EsxiVersion, setup: Setup, public_path: Path) -> None:
    """ESXi 4.x: enroll knows where root's key goes and how it survives a reboot (oem.tgz);
    for other users it cannot find out, so it changes nothing."""
    user = setup.target.user
    if user == "root":
        return
    root = host_argument("root", setup.target.host, setup.target.port, setup.default_port)
    raise UserNotSupported(
        f"host {setup.name}: ESXi {version.major}.{version.minor} keeps only what "
        "/bootbank/oem.tgz restores at boot, and enroll cannot find out where a key for "
        f"{user} would survive a reboot: on 4.x it sets up root only; nothing was "
        f"changed. Use root (esxi-suspend enroll {root}), or add {public_path} to "
        f"~{user}/.ssh/authorized_keys on the host by hand and keep it in oem.tgz"
    )


def oem_tgz(path: Path, text: str, setup: Setup, what: str, say: Say) -> None:
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
        scp_host = host_argument(None, setup.target.host, 22)
        say(f"  scp -P {setup.target.port} {path} root@{scp_host}:/bootbank/oem.tgz")
    say("  (then reboot once when convenient, and run `esxi-suspend check` after it)")
