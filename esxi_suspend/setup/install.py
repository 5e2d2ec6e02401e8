"""What install.sh does once the venv holds the package: the command's symlink, the man page,
upssched's timer script, /etc/esxi-suspend (mode, env template, SSH key), NUT's upsmon.conf and
upssched.conf; and --uninstall.

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
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from esxi_suspend import machine
from esxi_suspend.errors import EsxiSuspendError, ExitCode
from esxi_suspend.settings.catalog import env_template
from esxi_suspend.setup import nutconf

EARLY_SETTING = "UPS_EARLY_SHUTDOWN"
EARLY_DEFAULT = 300
EARLY_MAX = 86400
DEFAULT_UPSSCHED = "/usr/sbin/upssched"  # what the printed lines name when none is found
PROGRAM_TIMEOUT = 120.0  # ssh-keygen, mandb
UNCHANGED = ("kept", "absent", "left")  # the verbs that change nothing

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
                    script, and what --configure-upsmon wrote: its
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


class InstallError(EsxiSuspendError):
    """Something install cannot do; its message names the file and the fix."""

    exit_code = ExitCode.CONFIG


@dataclass(frozen=True)
class Layout:
    """Every path install writes, under `root` ('' for the machine itself), and the source
    tree it installs from."""

    source: Path
    root: str = ""

    def _at(self, path: str) -> Path:
        return Path(self.root + path)

    @property
    def venv(self) -> Path:
        return self._at("/opt/esxi-suspend")

    @property
    def command_target(self) -> Path:
        return self.venv / "bin/esxi-suspend"

    @property
    def command_link(self) -> Path:
        return self._at("/usr/local/sbin/esxi-suspend")

    @property
    def man_dir(self) -> Path:
        return self._at("/usr/local/share/man")

    @property
    def man_page(self) -> Path:
        return self.man_dir / "man8/esxi-suspend.8"

    @property
    def sched_script(self) -> Path:
        return self._at("/usr/local/lib/esxi-suspend/upssched-cmd")

    @property
    def etc(self) -> Path:
        return self._at("/etc/esxi-suspend")

    @property
    def env_file(self) -> Path:
        return self.etc / "esxi-suspend.env"

    @property
    def key(self) -> Path:
        return self.etc / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.etc / "known_hosts"

    @property
    def nut_dirs(self) -> tuple[Path, Path]:
        return self._at("/etc/nut"), self._at("/etc/ups")

    @property
    def sbin_dirs(self) -> tuple[Path, Path]:
        return self._at("/usr/sbin"), self._at("/sbin")

    @property
    def shutdowncmd(self) -> str:
        """Our SHUTDOWNCMD: under --root it names the tree's env file, or the tree would read
        the machine's /etc/esxi-suspend."""
        env_file = str(self.env_file) if self.root else None
        return nutconf.shutdowncmd(str(self.command_link), env_file)


@dataclass
class Report:
    """What install says: one aligned line per thing looked at; whether anything changed."""

    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)
    changed: bool = False

    def say(self, verb: str, path: Path | str, detail: str = "") -> None:
        self.changed = self.changed or verb not in UNCHANGED
        self.line(f"  {verb:<9} {path}{f' ({detail})' if detail else ''}")

    def line(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def warn(self, text: str) -> None:
        print(f"WARNING: {text}", file=self.err, flush=True)


def read_text(path: Path) -> str:
    """A file's text, every byte kept (surrogateescape), line endings as they are."""
    return path.read_bytes().decode("utf-8", "surrogateescape")


def write_text(path: Path, text: str) -> None:
    """Overwrite a file's content in place: its owner, group and mode stay."""
    path.write_bytes(text.encode("utf-8", "surrogateescape"))


def _copy_owner(source: Path, target: Path) -> None:
    if os.geteuid() == 0:
        status = source.stat()
        os.chown(target, status.st_uid, status.st_gid)


def new_backup_name(path: Path) -> Path:
    """PATH.esxi-suspend-YYYYmmdd-HHMMSS, never an earlier backup's name."""
    stem = f"{path}.esxi-suspend-{time.strftime('%Y%m%d-%H%M%S')}"
    backup, n = Path(stem), 1
    while backup.exists() or backup.is_symlink():
        backup, n = Path(f"{stem}.{n}"), n + 1
    return backup


def back_up(path: Path, report: Report) -> Path:
    backup = new_backup_name(path)
    shutil.copy2(path, backup)
    _copy_owner(path, backup)
    report.say("backup", backup, f"copy of {path} before the change")
    return backup


def rewrite_keeping_owner(path: Path, text: str, report: Report) -> None:
    """Back PATH up, then overwrite its content in place (upsmon.conf is often 0640 root:nut)."""
    back_up(path, report)
    write_text(path, text)


def mode_of(path: Path) -> int:
    return path.lstat().st_mode & 0o7777


def ensure_mode(path: Path, want: int, report: Report) -> None:
    have = mode_of(path)
    if have != want:
        path.chmod(want)
        report.say("fixed", path, f"mode {have:o} -> {want:o}")


def read_early_shutdown(env_file: Path) -> int:
    """UPS_EARLY_SHUTDOWN from the env file (missing or empty: the default)."""
    if not env_file.is_file():
        return EARLY_DEFAULT
    # python-dotenv is here only in the venv; --help and --uninstall never come this way.
    from esxi_suspend.settings.envfile import read_env_values

    try:
        value = read_env_values(env_file).get(EARLY_SETTING)
    except EsxiSuspendError as exc:
        raise InstallError(f"{exc}\nfix it, then rerun") from None
    if value is None:
        return EARLY_DEFAULT
    if not re.fullmatch(r"[0-9]{1,6}", value) or int(value) > EARLY_MAX:
        raise InstallError(
            f"{EARLY_SETTING}={value} in {env_file}: not a number of seconds from 0 to "
            f"{EARLY_MAX} (0: the shutdown starts only at low battery, OB LB); fix it, then rerun"
        )
    return int(value)


def find_upssched(layout: Layout, which: Callable[[str], str | None] = machine.which) -> str | None:
    """upssched in the tree's (or the machine's) /usr/sbin or /sbin, else the system's: a
    --root tree without NUT still runs the machine's upssched."""
    for directory in layout.sbin_dirs:
        path = directory / "upssched"
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    return which("upssched")


def no_upssched_warning(layout: Layout, seconds: int) -> str:
    dirs = " and ".join(str(d) for d in layout.sbin_dirs)
    return (
        f"no upssched in {dirs} nor on the PATH ({machine.search_path()}): the early shutdown "
        f"after {seconds} s on battery ({EARLY_SETTING}) cannot start without it; install "
        "NUT's client (Debian/Ubuntu: apt-get install nut-client; RHEL/Fedora: dnf install "
        f"nut-client), then rerun, or set {EARLY_SETTING}=0"
    )


def find_upsmon_conf(layout: Layout) -> Path | None:
    return next((d / "upsmon.conf" for d in layout.nut_dirs if (d / "upsmon.conf").is_file()), None)


@dataclass
class Installer:
    """One install or uninstall run over a layout."""

    layout: Layout
    report: Report
    configure_upsmon: bool = False
    which: Callable[[str], str | None] = machine.which
    early_shutdown: int = EARLY_DEFAULT

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

    # -- NUT ---------------------------------------------------------------------------------

    def _sched_text(self, note: str = "") -> str:
        sample = read_text(self.layout.source / "upssched.conf.sample")
        return nutconf.render_upssched_conf(
            sample, str(self.layout.sched_script), self.early_shutdown, note
        )

    def _print_early_lines(self, upssched: str | None, sched_conf: Path | str) -> None:
        lines = nutconf.manual_lines(
            upssched or DEFAULT_UPSSCHED,
            str(sched_conf),
            self._sched_text(),
            str(self.layout.sched_script),
        )
        for line in lines:
            self.report.line(f"    {line}")

    def _upssched(self) -> str | None:
        found = find_upssched(self.layout, self.which)
        if found is None:
            self.report.warn(no_upssched_warning(self.layout, self.early_shutdown))
        return found

    def remove_our_upssched_conf(self, path: Path) -> None:
        """Ours goes, or the file it replaced comes back."""
        if not path.is_file():
            return
        text = read_text(path)
        if not nutconf.is_ours(text):
            return
        replaced = nutconf.replaced_copy(text)
        if replaced and Path(replaced).is_file():
            write_text(path, read_text(Path(replaced)))
            self.report.say("restored", path, f"from {replaced}, the one install.sh replaced")
        else:
            path.unlink()
            self.report.say("removed", path, "written by install.sh")

    def write_upssched_conf(self, path: Path, upsmon_conf: Path) -> bool:
        """Ours: created, rewritten or kept. False if it is the admin's own (AT lines)."""
        after = f"early shutdown after {self.early_shutdown} s on battery"
        if path.is_file() and nutconf.is_ours(text := read_text(path)):
            new = self._sched_text(nutconf.replaced_note(text))
            if new == text:
                self.report.say("kept", path, after)
            else:
                have = nutconf.timer_seconds(text)
                write_text(path, new)
                self.report.say(
                    "changed", path, after + (f", was {have} s" if have is not None else "")
                )
            return True
        if path.exists():
            if nutconf.schedules(read_text(path)):
                return False
            # no AT line: it schedules nothing (NUT's packaged sample); --uninstall restores it
            backup = back_up(path, self.report)
            write_text(path, self._sched_text(f"{nutconf.SCHED_REPLACED}{backup}"))
            self.report.say("replaced", path, f"it had no AT line; {after}")
            return True
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(self._sched_text().encode("utf-8", "surrogateescape"))
        _copy_owner(upsmon_conf, path)
        path.chmod(mode_of(upsmon_conf))
        self.report.say("created", path, f"{after}; owner and mode as {upsmon_conf}")
        return True

    def early(self, conf: Path, text: str) -> str:
        """The early shutdown: upsmon.conf's new text (written once, by upsmon())."""
        sched_conf = conf.with_name("upssched.conf")
        seconds = self.early_shutdown
        if seconds == 0:
            self.report.line(
                f"    early shutdown off ({EARLY_SETTING}=0): only OB LB starts the shutdown"
            )
            if not self.configure_upsmon:
                return text
            self.remove_our_upssched_conf(sched_conf)
            if nutconf.has_marker(text, nutconf.NOTIFY_KEYWORDS):
                text = nutconf.take_out(text, nutconf.NOTIFY_KEYWORDS)
                self.report.say(
                    "changed",
                    conf,
                    "took out the NOTIFYCMD and NOTIFYFLAG lines install.sh set; restored the "
                    "ones they replaced, if any",
                )
            return text
        upssched = self._upssched()
        if not self.configure_upsmon:
            sched = read_text(sched_conf) if sched_conf.is_file() else ""
            if (
                nutconf.is_ours(sched)
                and nutconf.timer_seconds(sched) == seconds
                and nutconf.has_marker(text, ["NOTIFYCMD"])
            ):
                self.report.say("kept", sched_conf, f"early shutdown after {seconds} s on battery")
                return text
            self.report.say(
                "left",
                conf,
                f"early shutdown after {seconds} s on battery: rerun with --configure-upsmon, "
                "or set it yourself",
            )
            self._print_early_lines(upssched, sched_conf)
            return text
        why = ""
        own = nutconf.notify_conflict(text)
        if upssched is None:
            why = "no upssched found (see the WARNING; Debian: apt-get install nut-client)"
        elif own is not None:
            why = (
                f"it has a NOTIFYCMD of its own ({own}): upsmon runs one only; make it run "
                "upssched too"
            )
        if why:
            self.report.say("left", conf, f"early shutdown not set: {why}")
            self._print_early_lines(upssched, sched_conf)
            return text
        if not self.write_upssched_conf(sched_conf, conf):
            self.report.say(
                "left",
                sched_conf,
                "not install.sh's, it has AT lines: early shutdown not set; add it yourself",
            )
            self._print_early_lines(upssched, sched_conf)
            return text
        assert upssched is not None
        text, said = nutconf.set_notify(text, upssched)
        for verb, detail in said:
            self.report.say(verb, conf, detail)
        return text

    def upsmon(self) -> None:
        """SHUTDOWNCMD and the early shutdown in upsmon.conf: printed, or with
        --configure-upsmon written (upsmon.conf once, after a backup)."""
        self.early_shutdown = read_early_shutdown(self.layout.env_file)
        ours = self.layout.shutdowncmd
        conf = find_upsmon_conf(self.layout)
        if conf is None:
            where = " or ".join(str(d) for d in self.layout.nut_dirs)
            self.report.line(f"  no upsmon.conf in {where}: when NUT is installed, add")
            self.report.line(f"    {ours}")
            if self.early_shutdown == 0:
                self.report.line(
                    f"    early shutdown off ({EARLY_SETTING}=0): only OB LB starts the shutdown"
                )
            else:
                self.report.line(
                    f"  and, for the early shutdown after {self.early_shutdown} s on battery "
                    f"({EARLY_SETTING}):"
                )
                self._print_early_lines(self._upssched(), "/etc/nut/upssched.conf")
            return
        text = read_text(conf)
        lines = nutconf.active(text, "SHUTDOWNCMD")
        new = text
        if lines == [ours]:
            self.report.say("kept", conf, "SHUTDOWNCMD is already esxi-suspend's")
        elif len(lines) > 1:
            self.report.say("left", conf, f"{len(lines)} SHUTDOWNCMD lines: keep one, {ours}")
        elif not self.configure_upsmon:
            self.report.say("left", conf, "rerun with --configure-upsmon, or set it yourself")
            if lines:
                self.report.line(f"    replace: {lines[0]}")
            self.report.line(f"    with:    {ours}")
        else:
            new = nutconf.set_directive(new, "SHUTDOWNCMD", ours)
            self.report.say("changed", conf, ours + (f", was: {lines[0]}" if lines else ""))
        if not nutconf.monitors(text):
            self.report.warn(
                f"{conf} has no MONITOR line: upsmon watches no UPS and never runs SHUTDOWNCMD; "
                "add one (MONITOR ups@host 1 user password primary), see man upsmon.conf"
            )
        new = self.early(conf, new)
        if new != text:
            rewrite_keeping_owner(conf, new, self.report)
            self.report.line("    restart upsmon to use it (Debian: systemctl restart nut-monitor)")
        delay = nutconf.finaldelay(text)
        if delay is not None:
            self.report.line(f"    FINALDELAY {delay} in {conf}: left alone (keep it small)")
        else:
            self.report.line("    FINALDELAY not set (NUT's default, 5 s): left alone")

    def unconfigure_upsmon(self) -> None:
        conf = find_upsmon_conf(self.layout)
        if conf is None:
            return
        self.remove_our_upssched_conf(conf.with_name("upssched.conf"))
        text = read_text(conf)
        runs_us = f"{self.layout.command_link} shutdown" in text
        not_ours = "its SHUTDOWNCMD runs esxi-suspend and was not set by install.sh: change it now"
        if not nutconf.has_marker(text, nutconf.OUR_KEYWORDS):
            if runs_us:
                self.report.say("left", conf, not_ours)
            return
        if runs_us and not nutconf.has_marker(text, ["SHUTDOWNCMD"]):
            self.report.say("left", conf, not_ours)
        rewrite_keeping_owner(conf, nutconf.take_out(text, nutconf.OUR_KEYWORDS), self.report)
        self.report.say(
            "changed",
            conf,
            "took out the lines install.sh set (SHUTDOWNCMD, NOTIFYCMD, NOTIFYFLAG); restored "
            "the ones they replaced, if any",
        )

    # -- the runs ----------------------------------------------------------------------------

    def install(self) -> None:
        self.command_link()
        self.man_page()
        self.sched_script()
        self.etc()
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
