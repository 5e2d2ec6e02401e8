"""What install.sh does once the venv holds the package: the command's symlink, the man page,
upssched's timer script, /etc/esxi-suspend (mode, env template, SSH key), then NUT's
upsmon.conf and upssched.conf (nutsteps.py); and --uninstall.

install.sh is only a bootstrap (find Python, make the venv, pip install), because this part is
the one worth testing: it edits the admin's NUT files. It runs as `esxi-suspend install`, and
for --help and --uninstall also from the source tree with a bare python3 (`python -m
esxi_suspend.setup.install`), since the venv may be gone: so this module imports only the
standard library and pure modules of ours at the top, and python-dotenv (settings.envfile)
only where an install reads the env file. Every line it prints is one thing looked at
(`  VERB      PATH (detail)`); what it cannot do stops it with one line naming the file and
the fix. Re-running changes nothing that is right already.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from esxi_suspend import machine
from esxi_suspend.settings.catalog import env_template
from esxi_suspend.setup.files import (
    InstallError,
    Layout,
    Report,
    ensure_mode,
    mode_of,
    read_text,
    write_text,
)
from esxi_suspend.setup.nutsteps import NutSetup

PROGRAM_TIMEOUT = 120.0  # ssh-keygen, mandb

INSTALL_SH_HELP = """\
Usage: install.sh [--root DIR] [--python PATH] [--pip-args ARGS] [--reinstall]
                  [--configure-upsmon]
       install.sh --uninstall [--purge] [--root DIR]
       install.sh --help

Installs esxi-suspend, the SHUTDOWNCMD for NUT's upsmon, from the directory
holding this script. Run it as root. Rerunning it is safe: what is already
right is kept and reported.

What it changes:
  /opt/esxi-suspend/
      a Python venv with esxi-suspend and its dependencies (created once; the
      package is upgraded in place when this source tree has changed since the
      last install)
  /usr/local/sbin/esxi-suspend
      symlink to /opt/esxi-suspend/bin/esxi-suspend
  /usr/local/share/man/man8/esxi-suspend.8
      the man page (man esxi-suspend), replaced when this source tree's page
      differs; then mandb, if there is one, refreshes man's index
  /usr/local/lib/esxi-suspend/upssched-cmd
      the timer script upssched runs for the early shutdown (mode 0755)
  /etc/esxi-suspend/
      mode 0700
  /etc/esxi-suspend/esxi-suspend.env
      settings template, mode 0600; never overwritten
  /etc/esxi-suspend/id_ed25519{,.pub}
      SSH key for the ESXi host, made with ssh-keygen if there is none; never
      overwritten
  /etc/systemd/system/esxi-suspend-check.{service,timer}
      where systemd runs: the daily check (esxi-suspend check --daily; silent
      when ready, else one WARNING to syslog and the reasons printed), timer
      enabled; without systemd: /etc/cron.daily/esxi-suspend (cron mails what
      it prints). Under --root the tree's /run/systemd/system decides, and
      nothing is enabled
  upsmon.conf, upssched.conf (/etc/nut or /etc/ups)
      only with --configure-upsmon: see below
It then prints the next steps: esxi-suspend trust HOST, esxi-suspend enroll
HOST, esxi-suspend check.

NUT: when an upsmon.conf is found in /etc/nut or /etc/ups, the exact
SHUTDOWNCMD line to use is printed. With --configure-upsmon it is written
there: a copy of the file is kept first
(upsmon.conf.esxi-suspend-YYYYmmdd-HHMMSS), an existing SHUTDOWNCMD is
commented out (marked "#esxi-suspend-was: ") so there is never a second one,
and FINALDELAY is left alone.

Early shutdown: OB LB often comes with 1-3 minutes of battery left. With
UPS_EARLY_SHUTDOWN (in the settings file; default 300) seconds, the shutdown
starts after that long on battery: --configure-upsmon then sets, in
upsmon.conf, NOTIFYCMD upssched and NOTIFYFLAG ONBATT and ONLINE with +EXEC
(an existing NOTIFYFLAG keeps its flags), and writes upssched.conf beside it
(owner and mode as upsmon.conf's): a timer early-shutdown started on ONBATT,
cancelled on ONLINE, that runs upssched-cmd, which runs "upsmon -c fsd". A
NOTIFYCMD of the admin's own, or an upssched.conf of the admin's own (one
with AT lines), is left alone: the lines to add are printed instead. An
upssched.conf without AT lines (NUT's sample) is replaced, kept as a copy and
put back by --uninstall. UPS_EARLY_SHUTDOWN=0: no timer (only OB LB starts
the shutdown); the lines an earlier run set are taken out. Without
--configure-upsmon the lines are printed. upssched is looked for in
/usr/sbin and /sbin (under --root: the tree's first), then on the PATH; when
there is none, a WARNING says what to install.

Options:
  --root DIR        prefix every path above with DIR (default: $DESTDIR, else
                    none), e.g. to install into a temporary tree for a test.
                    The venv, the symlink and the paths written into the env
                    file and into SHUTDOWNCMD (--env-file) all point inside
                    DIR, so the tree works where it was made and cannot be
                    moved. Root is not required with --root; mandb is not run.
  --python PATH     interpreter that builds the venv (default: python3; needs
                    3.9 or later)
  --pip-args ARGS   extra arguments for pip install, split on spaces
                    (e.g. --pip-args "--no-index --find-links /srv/wheels");
                    pip's own PIP_* environment variables work as well
  --reinstall       run pip install even if the source tree has not changed
  --configure-upsmon
                    set SHUTDOWNCMD and the early shutdown in the upsmon.conf
                    found, and write upssched.conf (see NUT above); restart
                    upsmon yourself afterwards (Debian: systemctl restart
                    nut-monitor)
  --uninstall       remove the venv, the symlink, the man page, the timer
                    script, the daily check (its timer disabled first), and
                    what --configure-upsmon wrote: its
                    upssched.conf, and its SHUTDOWNCMD, NOTIFYCMD and
                    NOTIFYFLAG lines (restoring the lines they replaced; a copy
                    of the file is kept); keeps /etc/esxi-suspend (key,
                    settings, known_hosts)
  --purge           with --uninstall: remove /etc/esxi-suspend too
  -h, --help        show this help and exit

Needs: python3 with venv and ensurepip (Debian/Ubuntu: apt-get install
python3-venv), ssh-keygen (apt-get install openssh-client), and pip access to
PyPI or a wheel directory.
"""


# The daily check's files: the first line says whose they are (uninstall removes only ours).
OURS = "# esxi-suspend: the daily check"
DAILY_TIMER_NAME = "esxi-suspend-check.timer"
DAILY_TIMER = f"""{OURS} (install.sh wrote it; install.sh --uninstall removes it)
[Unit]
Description=esxi-suspend daily check of the UPS shutdown path

[Timer]
OnCalendar=daily
RandomizedDelaySec=1h
Persistent=true

[Install]
WantedBy=timers.target
"""


def daily_service(command: str) -> str:
    return f"""{OURS} (install.sh wrote it; install.sh --uninstall removes it)
[Unit]
Description=esxi-suspend daily check: can the UPS shutdown reach the ESXi hosts?
Documentation=man:esxi-suspend(8)

[Service]
Type=oneshot
ExecStart={command}
"""


def daily_cron(command: str) -> str:
    return f"""#!/bin/sh
{OURS} (install.sh wrote it; install.sh --uninstall removes it).
# Silent when the shutdown path is ready; otherwise it prints why, and cron mails that.
exec {command}
"""


def _is_ours(path: Path) -> bool:
    try:
        with path.open("rb") as file:
            head = file.read(200)
    except OSError:
        return False
    return OURS.encode() in head


@dataclass
class Installer(NutSetup):
    """One install or uninstall run over a layout: the installed files, and NUT's steps
    (nutsteps.py)."""

    # -- the pieces -------------------------------------------------------------------------

    def command_link(self) -> None:
        link, target = self.layout.command_link, self.layout.command_target
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink():
            current = os.readlink(link)
            if current == str(target):
                self.report.say("kept", link, f"-> {target}")
                return
            link.unlink()
            link.symlink_to(target)
            self.report.say("replaced", link, f"-> {target}, was -> {current}")
        elif link.exists():
            raise InstallError(f"{link} exists and is not a symlink: move it away, then rerun")
        else:
            link.symlink_to(target)
            self.report.say("created", link, f"-> {target}")

    def _is_our_man_page(self) -> bool:
        page = self.layout.man_page
        if not page.is_file() or page.is_symlink():
            return False
        with page.open("rb") as file:
            return file.readline().startswith(b".TH ESXI-SUSPEND 8 ")

    def _update_man_index(self) -> None:
        """Optional: man finds the page without it. Never in a --root tree, never fatal."""
        mandb = self.which("mandb")
        if self.layout.root or mandb is None:
            return
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            machine.run_program([mandb, "-q", "--", str(self.layout.man_dir)], PROGRAM_TIMEOUT)

    def man_page(self) -> None:
        source, page = self.layout.source / "esxi-suspend.8", self.layout.man_page
        if not source.is_file():
            self.report.say("left", page, f"not installed: no esxi-suspend.8 in {source.parent}")
            return
        ours = self._is_our_man_page()
        if ours and page.read_bytes() == source.read_bytes():
            self.report.say("kept", page)
            return
        if (page.exists() or page.is_symlink()) and not ours:
            self.report.say("left", page, "not esxi-suspend's man page: move it away, then rerun")
            return
        verb = "replaced" if page.exists() else "created"
        page.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, page)
        page.chmod(0o644)
        self.report.say(verb, page, "man esxi-suspend")
        self._update_man_index()

    def sched_script(self) -> None:
        source, script = self.layout.source / "upssched-cmd", self.layout.sched_script
        if (
            script.is_file()
            and script.read_bytes() == source.read_bytes()
            and mode_of(script) == 0o755
        ):
            self.report.say("kept", script)
            return
        verb = "replaced" if script.exists() else "installed"
        script.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, script)
        script.chmod(0o755)
        self.report.say(verb, script, "upssched's CMDSCRIPT for the early shutdown")

    def etc(self) -> None:
        etc, env_file = self.layout.etc, self.layout.env_file
        if etc.is_dir():
            self.report.say("kept", etc)
        else:
            etc.parent.mkdir(parents=True, exist_ok=True)
            etc.mkdir(mode=0o700)
            self.report.say("created", etc, "mode 0700")
        ensure_mode(etc, 0o700, self.report)

        if env_file.exists() or env_file.is_symlink():
            self.report.say("kept", env_file, "never overwritten")
        else:
            known_hosts = str(self.layout.known_hosts) if self.layout.root else None
            text = env_template(str(self.layout.key), known_hosts)
            descriptor = os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w", encoding="utf-8") as file:
                file.write(text)
            self.report.say("created", env_file, "mode 0600, template: set ESXI_HOST")
        ensure_mode(env_file, 0o600, self.report)
        self.key()

    def _ssh_keygen(self, argv: Sequence[str], fix: str) -> str:
        program = self.which("ssh-keygen")
        if program is None:
            raise InstallError(
                "ssh-keygen not found: on Debian/Ubuntu run 'apt-get install openssh-client', "
                "then rerun"
            )
        try:
            done = machine.run_program([program, *argv], PROGRAM_TIMEOUT)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise InstallError(f"{program}: {exc}; {fix}") from None
        if done.returncode != 0:
            raise InstallError(f"{program} {' '.join(argv)}: {done.stderr.strip()}; {fix}")
        return done.stdout

    def key(self) -> None:
        key = self.layout.key
        public = Path(f"{key}.pub")
        if key.exists():
            self.report.say("kept", key)
            if public.exists():
                self.report.say("kept", public)
            else:
                fix = f"could not derive {public} from {key} (passphrase?): make it yourself"
                write_text(public, self._ssh_keygen(["-y", "-P", "", "-f", str(key)], fix))
                self.report.say("created", public, f"from {key}")
        else:
            if public.exists():
                raise InstallError(f"{public} exists without {key}: move it away, then rerun")
            host = socket.gethostname() or os.uname().nodename
            argv = ["-q", "-t", "ed25519", "-N", "", "-C", f"esxi-suspend@{host}", "-f", str(key)]
            self._ssh_keygen(argv, f"could not make {key}")
            self.report.say("created", key, "ed25519, no passphrase")
            self.report.say("created", public)
        ensure_mode(key, 0o600, self.report)

    # -- the daily check ---------------------------------------------------------------------

    def _daily_files(self) -> dict[Path, str]:
        """The daily job's files and their text: systemd's service and timer, or cron's."""
        command = self.layout.daily_command
        if not self.layout.systemd_running:
            return {self.layout.cron_daily: daily_cron(command)}
        service, timer = self.layout.systemd_units
        return {service: daily_service(command), timer: DAILY_TIMER}

    def daily_check(self) -> None:
        """Install the daily `check --daily`; enable the timer when systemd runs this machine
        (never under --root: systemctl would act on the machine, not the tree)."""
        changed = False
        for path, text in self._daily_files().items():
            if path.is_file() and read_text(path) == text:
                self.report.say("kept", path)
                continue
            if (path.exists() or path.is_symlink()) and not _is_ours(path):
                self.report.say("left", path, "not esxi-suspend's: move it away, then rerun")
                continue
            verb = "replaced" if path.exists() else "created"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            path.chmod(0o755 if path == self.layout.cron_daily else 0o644)
            self.report.say(verb, path, "the daily check: esxi-suspend check --daily")
            changed = True
        # Only when the files changed: a timer the admin disabled stays disabled on a rerun.
        if changed and self.layout.systemd_running and not self.layout.root:
            self._systemctl(["daemon-reload"])
            self._systemctl(["enable", "--now", DAILY_TIMER_NAME])

    def _systemctl(self, argv: list[str]) -> None:
        """Run systemctl; a failure is a WARNING (the files are in place), never fatal."""
        program = self.which("systemctl")
        if program is None:
            self.report.warn(f"no systemctl: run `systemctl {' '.join(argv)}` yourself")
            return
        try:
            done = machine.run_program([program, *argv], PROGRAM_TIMEOUT)
        except (OSError, subprocess.TimeoutExpired) as exc:
            self.report.warn(f"systemctl {' '.join(argv)}: {exc}; run it yourself")
            return
        if done.returncode != 0:
            self.report.warn(
                f"systemctl {' '.join(argv)} exited {done.returncode} "
                f"({done.stderr.strip()}); run it yourself"
            )
        elif argv[0] != "daemon-reload":
            self.report.say("ran", f"systemctl {' '.join(argv)}")

    def remove_daily_check(self) -> None:
        layout, say = self.layout, self.report.say
        service, timer = layout.systemd_units
        if timer.is_file() and _is_ours(timer) and not layout.root and layout.systemd_running:
            self._systemctl(["disable", "--now", DAILY_TIMER_NAME])
        for path in (timer, service, layout.cron_daily):
            if path.is_file() and _is_ours(path):
                path.unlink()
                say("removed", path)
            elif path.exists() or path.is_symlink():
                say("left", path, "not esxi-suspend's: remove it yourself")
            else:
                say("absent", path)
        if not layout.root and layout.systemd_running:
            self._systemctl(["daemon-reload"])

    # -- the runs ----------------------------------------------------------------------------

    def install(self) -> None:
        self.command_link()
        self.man_page()
        self.sched_script()
        self.etc()
        self.daily_check()
        self.report.line("NUT upsmon.conf:")
        self.upsmon()
        if not self.report.changed:
            self.report.line("Nothing changed: everything was already in place.")
        self.next_steps()

    def next_steps(self) -> None:
        layout = self.layout
        opt = f" --env-file {layout.env_file}" if layout.root else ""
        command = layout.command_link
        self.report.line(f"""
Next steps (HOST is your ESXi host, with SSH enabled on it); each is safe to rerun:
 1. Pin the host's SSH key: it shows the fingerprint; compare it with the host's console,
    then answer yes (it also sets ESXI_HOST in {layout.env_file} if unset):
      {command} trust HOST{opt}
 2. Authorize our key on the host (asks the password of ESXI_USER, root by default, once;
    stores nothing):
      {command} enroll HOST{opt}
 3. Prove the shutdown path without shutting anything down:
      {command} check{opt}
 4. NUT: upsmon.conf needs (see above; --configure-upsmon writes it), then restart upsmon:
      {layout.shutdowncmd}
    and, for the early shutdown after UPS_EARLY_SHUTDOWN seconds on battery, NOTIFYCMD
    upssched and upssched.conf (see above; --configure-upsmon writes them).""")

    def uninstall(self, purge: bool) -> None:
        layout, say = self.layout, self.report.say
        self.report.line("Uninstalling esxi-suspend:")
        self.unconfigure_upsmon()
        link = layout.command_link
        if link.is_symlink() and os.readlink(link) == str(layout.command_target):
            link.unlink()
            say("removed", link)
        elif link.exists() or link.is_symlink():
            say("left", link, "not our symlink: remove it yourself")
        else:
            say("absent", link)
        page = layout.man_page
        if self._is_our_man_page():
            page.unlink()
            say("removed", page)
            self._update_man_index()
        elif page.exists() or page.is_symlink():
            say("left", page, "not esxi-suspend's man page: remove it yourself")
        else:
            say("absent", page)
        self.remove_daily_check()
        script = layout.sched_script
        if script.exists() or script.is_symlink():
            script.unlink()
            with contextlib.suppress(OSError):  # not empty: something of the admin's is there
                script.parent.rmdir()
            say("removed", script)
        else:
            say("absent", script)
        venv = layout.venv
        if (venv / "pyvenv.cfg").is_file():
            shutil.rmtree(venv)  # this may be the interpreter running us: all is loaded
            say("removed", venv)
        elif venv.exists():
            say("left", venv, "not a venv, not ours: remove it yourself")
        else:
            say("absent", venv)
        if layout.etc.exists() and purge:
            shutil.rmtree(layout.etc)
            say("removed", layout.etc, "--purge: key, settings, known_hosts")
        elif layout.etc.exists():
            say("kept", layout.etc, "key, settings, known_hosts: --purge removes it")
        self.report.line(f"""
If upsmon.conf still has SHUTDOWNCMD "{link} shutdown", change it
now: upsmon would otherwise run a missing command and the ESXi hosts would lose power
without being shut down.""")


# -- the command line: `esxi-suspend install`, and `python -m` from the source tree ------------

DESCRIPTION = """\
Everything install.sh does once it has made the venv and installed the package into it: the
command's symlink, the man page, upssched's timer script, /etc/esxi-suspend (its mode, the env
template, the SSH key), and NUT's upsmon.conf and upssched.conf (printed; written with
--configure-upsmon); with --uninstall, all that taken out again, and the venv removed.
install.sh runs it and passes --source; run install.sh rather than this (install.sh --help
says what each change is)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `esxi-suspend install` (install.sh passes them on)."""
    parser.add_argument(
        "--source", metavar="DIR", required=True, help="the source tree install.sh is in"
    )
    parser.add_argument(
        "--root", metavar="DIR", default="", help="prefix every path with DIR (default: none)"
    )
    parser.add_argument(
        "--configure-upsmon",
        action="store_true",
        help="write SHUTDOWNCMD and the early shutdown into upsmon.conf and upssched.conf",
    )
    parser.add_argument("--uninstall", action="store_true", help="take it all out again")
    parser.add_argument(
        "--purge", action="store_true", help="with --uninstall: remove /etc/esxi-suspend too"
    )
    parser.add_argument(
        "--venv-changed",
        action="store_true",
        help="install.sh changed the venv in this run (so something changed)",
    )


def _root(value: str) -> str:
    if not value:
        return ""
    resolved = str(Path(value).resolve())
    return "" if resolved == "/" else resolved


def run(args: argparse.Namespace, report: Report | None = None) -> int:
    """Install or uninstall; an expected failure is one `install.sh: error:` line, exit 1."""
    report = report or Report()
    try:
        if args.purge and not args.uninstall:
            raise InstallError("--purge goes with --uninstall")
        if args.configure_upsmon and args.uninstall:
            raise InstallError("--configure-upsmon goes with an install, not --uninstall")
        layout = Layout(Path(args.source).resolve(), _root(args.root))
        if not layout.root and os.geteuid() != 0:
            raise InstallError("run as root (or use --root DIR to install into a test tree)")
        installer = Installer(layout, report, configure_upsmon=args.configure_upsmon)
        report.changed = bool(args.venv_changed)
        if args.uninstall:
            installer.uninstall(args.purge)
        else:
            installer.install()
    except InstallError as exc:
        print(f"install.sh: error: {exc}", file=report.err)
        return 1
    except OSError as exc:
        print(f"install.sh: error: {exc}; fix it, then rerun", file=report.err)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="install.sh", description=DESCRIPTION)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
