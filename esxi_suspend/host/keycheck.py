"""`check`'s look at our key's line on the host: the restrictions it has there, and what is
missing of those the host's SSH server would take (ssh/keyline.py).

Read-only and of a constant size: one `grep -F` of our own key's base64 in the file the
release keeps authorized keys in, a command made of constants, the validated user name and
our key. It never fails a check: a working key with its restrictions missing is still a
working path, but the report says so with the one command that fixes it.
"""

from __future__ import annotations

from esxi_suspend.errors import RemoteCommandFailed, one_line
from esxi_suspend.host.inventory import Remote
from esxi_suspend.host.report import printable
from esxi_suspend.settings.model import Settings
from esxi_suspend.ssh import keyline
from esxi_suspend.ssh.remote import enroll_command

STEP = "key restrictions"


def describe_key(remote: Remote, settings: Settings, banner: str, base64: str) -> str:
    """One line for the check report (and the log): our key's restrictions on the host."""
    server = keyline.server_options(banner)
    fix = enroll_command(settings)
    try:
        command = keyline.read_command(settings.user, base64)
        result = remote.run(command, settings.command_timeout)
    except (RemoteCommandFailed, ValueError) as exc:
        return f"unknown: our key's line could not be read ({one_line(exc)})"
    if not result.ok:
        return f"unknown: our key's line could not be read ({printable(result.error_tail())})"
    found = keyline.parse_read(result.stdout, base64)
    if found.options is None:
        where = printable(found.where) or (
            f"/etc/ssh/keys-{settings.user}/authorized_keys or ~{settings.user}/.ssh/"
            "authorized_keys"
        )
        return f"unknown: no line in {where} holds our key (the host's sshd reads another file?)"
    where = printable(found.where)
    shown = ", ".join(printable(option) for option in found.options) or "none"
    text = f"our line in {where}: {shown}"
    if found.lines > 1:
        text += f" ({found.lines} lines hold our key; the first counts)"
    missing = found.missing(server)
    if not server.takes_any:
        return f"{text}; {server.server} takes none ({server.why})"
    if len(missing) == len(server.restrictions) + int(server.takes_from):
        return (
            f"{text}; WARNING: our key is unrestricted: a copy of {settings.key_file} logs in "
            f"as {settings.user} from anywhere, with a terminal and port forwarding; fix: {fix}"
        )
    if missing:
        return f"{text}; WARNING: {server.server} would also take {', '.join(missing)}; fix: {fix}"
    return text
