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

# ESXi 4.x: root's home is /, so this is /.ssh/authorized_keys there; lost at reboot unless in
# /bootbank/oem.tgz, which the host unpacks over / when it boots.
APPEND_4 = _APPEND_TEMPLATE.replace("@FILE@", '"${HOME%/}/.ssh/authorized_keys"')
READ_4 = (
    'echo "${HOME:-/}"; if [ -e /bootbank/oem.tgz ]; then echo oem=yes; else echo oem=no; fi; '
    'cat "${HOME%/}/.ssh/authorized_keys"'
)

_VERSION_RE = re.compile(r"VMware ESXi? (\d+)\.(\d+)(?:\.(\d+))?")
NEW_KEY_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521")


def keys_file(user: str) -> str:
    """ESXi 5.x and later: where sshd reads `user`'s authorized keys (root's persists)."""
    return f"/etc/ssh/keys-{user}/authorized_keys"


def append_5(user: str) -> str:
    """The append script for `user`'s keys file (`user` is a validated ESXI_USER name)."""
    return _APPEND_TEMPLATE.replace("@FILE@", shlex.quote(keys_file(user)))


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
