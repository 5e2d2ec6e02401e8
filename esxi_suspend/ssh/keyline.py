"""Our key's line in the host's authorized keys: the restrictions the host's SSH server takes,
the line `enroll` writes, and the line `check` reads back (pure, but for nothing).

A copy of our private key must not be root on the host from anywhere with a terminal and
port forwarding: the line says `from=` (the address the host sees us at) and `no-pty`,
`no-port-forwarding`, `no-agent-forwarding`, `no-X11-forwarding`, where the server honours
them. An option the server does not know makes it skip the whole line (our key refused), so
the options follow the server's own banner (docs/esxi-evidence.md, "Key restrictions"):
OpenSSH (ESXi 5.x and later) takes all of them; dropbear (ESXi 4.x) never took `from=`, took
`no-port-forwarding` and `no-pty` from 0.52, and `no-agent-forwarding` and `no-X11-forwarding`
everywhere only from 2020.80 (before, a build without those features refused the line);
dropbear before 0.52 skips any line with options.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from dataclasses import dataclass

NO_PORT_FORWARDING = "no-port-forwarding"
NO_AGENT_FORWARDING = "no-agent-forwarding"
NO_X11_FORWARDING = "no-X11-forwarding"
NO_PTY = "no-pty"
# In the order enroll writes them, after from=.
RESTRICTIONS = (NO_PORT_FORWARDING, NO_AGENT_FORWARDING, NO_X11_FORWARDING, NO_PTY)

_OPENSSH_RE = re.compile(r"^SSH-[\d.]+-OpenSSH_(\S+)")
_DROPBEAR_RE = re.compile(r"^SSH-[\d.]+-dropbear_(\d+)\.(\d+)")
DROPBEAR_OPTIONS_SINCE = (0, 52)  # CHANGES 0.52: "Allow restrictions on authorized_keys logins"
DROPBEAR_ALL_FOUR_SINCE = (2020, 80)  # CHANGES 2020.80: agent/X11 options no longer refused

# The host's view of our connection: OpenSSH and dropbear set SSH_CONNECTION to
# `client-address client-port server-address server-port` (a constant command).
CLIENT_ADDRESS_COMMAND = 'echo "${SSH_CONNECTION%% *}"'


@dataclass(frozen=True)
class ServerOptions:
    """What the host's SSH server takes on a key line: `from=`, and which no-* options."""

    server: str  # the banner's software part, e.g. `OpenSSH_9.2p1`, `dropbear_2022.83`
    takes_from: bool
    restrictions: tuple[str, ...]
    why: str  # one line: the evidence for this choice

    @property
    def takes_any(self) -> bool:
        return self.takes_from or bool(self.restrictions)


def server_options(banner: str) -> ServerOptions:
    """The options the SSH server that sent `banner` (`SSH-2.0-...`) honours, by evidence."""
    software = banner.split("-", 2)[-1].split(" ", 1)[0] if banner.startswith("SSH-") else banner
    software = software or "an unknown SSH server"
    if _OPENSSH_RE.match(banner):
        return ServerOptions(software, True, RESTRICTIONS, "OpenSSH takes from= and every no-*")
    match = _DROPBEAR_RE.match(banner)
    if match is None:
        why = "not OpenSSH or dropbear: no option is known to work, the key stays unrestricted"
        return ServerOptions(software, False, (), why)
    version = (int(match.group(1)), int(match.group(2)))
    if version >= DROPBEAR_ALL_FOUR_SINCE:
        why = "dropbear takes every no-* from 2020.80; no dropbear takes from="
        return ServerOptions(software, False, RESTRICTIONS, why)
    if version >= DROPBEAR_OPTIONS_SINCE:
        why = (
            "dropbear before 2020.80 takes no-port-forwarding and no-pty (no-agent-forwarding "
            "and no-X11-forwarding make a build without those features skip the line); no "
            "dropbear takes from="
        )
        return ServerOptions(software, False, (NO_PORT_FORWARDING, NO_PTY), why)
    why = "dropbear before 0.52 skips a key line with options: the key stays unrestricted"
    return ServerOptions(software, False, (), why)


def client_address(output: str) -> str | None:
    """The address CLIENT_ADDRESS_COMMAND printed, if it is one (IPv4-mapped made plain)."""
    text = output.strip().splitlines()[0].strip() if output.strip() else ""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def options_text(from_addresses: tuple[str, ...], restrictions: tuple[str, ...]) -> str:
    """The options field: `from="a,b",no-port-forwarding,...`, or '' for none."""
    parts = [f'from="{",".join(from_addresses)}"'] if from_addresses else []
    return ",".join([*parts, *restrictions])


def key_line(options: str, key_type: str, base64: str, comment: str = "") -> str:
    """One authorized_keys line; the comment loses anything but plain printable words."""
    words = ("".join(ch for ch in word if ch.isprintable()) for word in comment.split())
    safe = " ".join(word for word in words if word)
    fields = [f for f in (options, key_type, base64, safe) if f]
    return " ".join(fields)


def split_options(options: str) -> list[str]:
    """`from="a,b",no-pty` -> [`from="a,b"`, `no-pty`]: commas inside quotes kept."""
    found, current, quoted = [], "", False
    for ch in options:
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            found.append(current)
            current = ""
        else:
            current += ch
    if current:
        found.append(current)
    return [item for item in found if item]


def line_options(line: str, base64: str) -> list[str] | None:
    """The options of `line` if it holds the key `base64` (the field before the key type),
    [] if it has none; None if the line does not hold that key."""
    fields = line.split()
    if base64 not in fields:
        return None
    at = fields.index(base64)
    if at < 2:
        return []
    # The options are everything before the key type; a quoted value may hold spaces.
    head = line.strip()[: line.strip().index(f" {fields[at - 1]} {base64}")]
    return split_options(head)


@dataclass(frozen=True)
class Restrictions:
    """Our key's line on the host as `check` reports it."""

    where: str  # the file it was read from, or '' when none was found
    options: tuple[str, ...] | None  # None: no line holds our key there
    lines: int = 0

    @property
    def from_value(self) -> str | None:
        for option in self.options or ():
            if option.lower().startswith("from="):
                return option[5:].strip('"')
        return None

    def missing(self, wanted: ServerOptions) -> list[str]:
        """What the server would take that the line lacks."""
        have = {option.lower() for option in self.options or ()}
        gone = [] if not wanted.takes_from or self.from_value is not None else ["from="]
        gone += [name for name in wanted.restrictions if name.lower() not in have]
        if "restrict" in have:  # OpenSSH and dropbear: every no-* at once
            gone = [name for name in gone if name == "from="]
        return gone


def read_command(user: str, base64: str) -> str:
    """`check`'s read-only look at our key's line: a constant command of the validated user
    name and our own key's base64, whose output is at most a few lines.

    ESXi 5.x and later: /etc/ssh/keys-USER/authorized_keys; 4.x (dropbear): ~/.ssh/."""
    if not re.fullmatch(r"[A-Za-z0-9+/=]+", base64):
        raise ValueError("a key's base64 holds only A-Z, a-z, 0-9, +, / and =")
    keys_5 = shlex.quote(f"/etc/ssh/keys-{user}/authorized_keys")
    return (
        f'for f in {keys_5} "$HOME/.ssh/authorized_keys"; do '
        f'if [ -f "$f" ]; then echo "file $f"; grep -F -e {base64} "$f" | tail -n 4; exit 0; '
        'fi; done; echo "file none"'
    )


def parse_read(output: str, base64: str) -> Restrictions:
    """What read_command printed, as Restrictions (the first line holding the key counts, as
    for the SSH server)."""
    lines = output.splitlines()
    where = ""
    if lines and lines[0].startswith("file "):
        where = lines[0][5:].strip()
        lines = lines[1:]
    if where in ("", "none"):
        return Restrictions("", None)
    held = [options for line in lines if (options := line_options(line, base64)) is not None]
    if not held:
        return Restrictions(where, None)
    return Restrictions(where, tuple(held[0]), len(held))
