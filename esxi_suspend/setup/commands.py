"""The setting-up commands `trust`, `enroll` and `install`: their parsers, help texts and runner.

Kept out of cli.py's shutdown path on purpose: none is ever run by upsmon; `trust` and `enroll`
talk to a person (a yes/no question, a password prompt) where `shutdown` never may, and
`install` is install.sh's second half (install.py).
`cli.main` calls `add_parsers` and `run`; errors become exit codes in `run` the same way.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from esxi_suspend.errors import EsxiSuspendError, ExitCode
from esxi_suspend.settings.model import DEFAULT_ENV_FILE, DEFAULT_KNOWN_HOSTS, env_file_path
from esxi_suspend.setup import enroll, install, target, trust

log = logging.getLogger("esxi_suspend")
COMMANDS = ("trust", "enroll", "install")

_SETTINGS = f"""\
settings:
  Read from the env file (--env-file, else $ESXI_SUSPEND_ENV, else {DEFAULT_ENV_FILE}),
  which may still be the bare install.sh template. HOST is `[user@]host[:port]` as in
  ESXI_HOST (an IPv6 address in brackets: [fe80::1]:22); without it, ESXI_HOST (one host).
  HOST's user and port, then --port, win over ESXI_USER (default root) and ESXI_PORT
  (default 22); ESXI_KNOWN_HOSTS (default {DEFAULT_KNOWN_HOSTS}) and ESXI_CONNECT_TIMEOUT
  are used as `shutdown` uses them."""

TRUST_DESCRIPTION = f"""\
Connect to HOST's SSH server, show the host key it presents (type, bits and SHA256
fingerprint, exactly as `ssh-keygen -lf` prints them, to compare with the ESXi console),
and pin it in ESXI_KNOWN_HOSTS once you confirm: by typing yes (or the SHA256 fingerprint
itself) on the terminal, or with --yes. No, or an empty line, refuses; any other answer is
asked again ("Please type 'yes', 'no' or the fingerprint", as OpenSSH does). It never logs
in and sends nothing but the SSH handshake. Without a terminal and without --yes it
refuses. If HOST already has a different pinned key it shows both fingerprints and
refuses, unless --replace.

changes:
  ESXI_KNOWN_HOSTS   adds one line `HOST TYPE KEY` (`[HOST]:PORT` when PORT is not 22);
                     with --replace, first removes HOST's old lines. Nothing when the key is
                     already pinned.
  the env file       when it has no ESXI_HOST yet and you confirmed (or gave --yes):
                     appends ESXI_HOST=[user@]HOST (and ESXI_PORT=PORT when not 22).
                     Otherwise it prints the line(s) to add.

{_SETTINGS}"""

ENROLL_DESCRIPTION = f"""\
Authorize our public key (ESXI_KEY_FILE.pub) for the user we log in as (HOST's user@,
else ESXI_USER, else root), restricted. First it logs in with the key: if the host takes
it, that session does the work and no password is asked. Otherwise it logs in once with
that user's password, asked on the terminal (no echo; never stored, logged, or put in an
argument, the environment or a file), finds the ESXi version (`vmware -v`) and checks
that it accepts our key's type. Our key's line gets from= (ESXI_KEY_FROM; auto: the
address the host sees us connect from, read on the host) and no-pty, no-port-forwarding,
no-agent-forwarding, no-X11-forwarding, as far as the host's SSH server takes them
(OpenSSH: all; dropbear 2020.80 and later: the no-* ones; dropbear 0.52 to 2020.79:
no-port-forwarding, no-pty; older dropbear: none). It replaces any line holding our key
(never another key's line), reads the file back, then logs in again with the key alone to
prove it works; a new line the host refuses is put back as it was. HOST's key must be
pinned first (`esxi-suspend trust HOST`): the password is never sent to an unknown host.

changes, on the host:
  ESXi 5.x and later  /etc/ssh/keys-USER/authorized_keys: our one line, added or replaced
                      (root's, /etc/ssh/keys-root/authorized_keys, persists across reboots)
  ESXi 4.x            root only: /.ssh/authorized_keys: our one line, added or replaced;
                      lost at reboot unless it is in /bootbank/oem.tgz
changes, here:
  ESXi 4.x only       oem.tgz next to the env file, holding .ssh/authorized_keys as the host
                      has it now, with the steps to put it in /bootbank printed
Nothing is changed when the host refuses our key type (4.x and 5.x: RSA only; DSA never),
or, on ESXi 4.x, for a user other than root.

{_SETTINGS} ESXI_KEY_FILE (and ESXI_KEY_PASSPHRASE) and ESXI_KEY_FROM as well; the whole
  env file is checked as `check` checks it, before any password is asked."""

SETUP_EXIT_CODES = f"""\
exit codes:
  {ExitCode.OK:>3}  done (or nothing to do: it was already done)
  {ExitCode.USAGE:>3}  usage error (HOST, --port), no terminal to ask on, or not confirmed:
       nothing changed
  {ExitCode.REMOTE_COMMAND:>3}  a command on the host failed (enroll)
  {ExitCode.CONNECTION:>3}  cannot connect; host key changed or not pinned; password or key refused
  {ExitCode.CONFIG:>3}  env file, key file or known_hosts wrong; key type the host refuses;
       ESXi 4.x and a user other than root (enroll)
  {ExitCode.INTERNAL:>3}  internal error (a bug: please report it)"""

FILES = f"""\
files:
  {DEFAULT_ENV_FILE}   settings (or --env-file, or $ESXI_SUSPEND_ENV)
  {DEFAULT_KNOWN_HOSTS}        pinned host keys (ESXI_KNOWN_HOSTS)
  /etc/esxi-suspend/id_ed25519.pub     our public key (ESXI_KEY_FILE + .pub)"""


def add_parsers(commands: Any, env_help: str) -> None:
    """Add `trust`, `enroll` and `install` to cli's subparsers."""
    formatter = argparse.RawDescriptionHelpFormatter
    epilog = f"{FILES}\n\n{SETUP_EXIT_CODES}\n"
    for name, summary, description in (
        ("trust", "show HOST's SSH host key and pin it once you confirm", TRUST_DESCRIPTION),
        (
            "enroll",
            "add our public key for the SSH user on HOST (asks the password once)",
            ENROLL_DESCRIPTION,
        ),
    ):
        parser = commands.add_parser(
            name, help=summary, description=description, epilog=epilog, formatter_class=formatter
        )
        parser.add_argument(
            "host",
            metavar="HOST",
            nargs="?",
            help="ESXi host as [user@]host[:port], as in ESXI_HOST (default: ESXI_HOST)",
        )
        parser.add_argument(
            "--port", type=int, metavar="PORT", help="SSH port (default: ESXI_PORT, else 22)"
        )
        parser.add_argument("--env-file", metavar="PATH", help=env_help)
        if name == "trust":
            parser.add_argument(
                "--yes",
                action="store_true",
                help="pin without asking (compare the fingerprint first)",
            )
            parser.add_argument(
                "--replace", action="store_true", help="replace a different pinned key for HOST"
            )
        parser.add_argument(
            "-v", "--verbose", action="count", default=0, help="more on stderr (-vv: debug)"
        )
    parser = commands.add_parser(
        "install",
        help="run by install.sh: everything it does once the venv holds the package",
        description=install.DESCRIPTION,
        formatter_class=formatter,
    )
    install.add_arguments(parser)
    parser.set_defaults(verbose=0)


def run(args: argparse.Namespace) -> int:
    """Run `trust`, `enroll` or `install`; every expected failure is one error line and its
    exit code (`install`: install.sh's, 1)."""
    if args.command == "install":
        return install.run(args)
    path = env_file_path(args.env_file)
    try:
        if args.command == "trust":
            setup = target.resolve_target(path, args.host, args.port)
            return trust.trust(
                setup, yes=args.yes, replace=args.replace, ask=trust.ask_on_terminal, say=print
            )
        return enroll.enroll(path, args.host, args.port, ask=enroll.ask_password, say=print)
    except EsxiSuspendError as exc:
        for line in str(exc).splitlines():
            log.error("%s: %s", args.command, line.rstrip())
        return exc.exit_code
    except KeyboardInterrupt:
        log.error("%s: interrupted", args.command)
        return ExitCode.USAGE
