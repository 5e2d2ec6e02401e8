"""The installer's ground: every path it writes (under --root or not), what it says, and
careful edits of an admin's files (a backup first; owner, group and mode kept).

Standard library only: install.sh runs --help and --uninstall from the source tree with a bare
python3, since the venv may be gone.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from esxi_suspend.errors import EsxiSuspendError, ExitCode
from esxi_suspend.setup import nutconf

UNCHANGED = ("kept", "absent", "left")  # the verbs that change nothing


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
    def systemd_running(self) -> bool:
        """systemd runs the machine (sd_booted's test); under --root, the tree says so by
        having this directory: a test tree makes it to get the timer."""
        return self._at("/run/systemd/system").is_dir()

    @property
    def systemd_units(self) -> tuple[Path, Path]:
        """The daily check's service and timer."""
        directory = self._at("/etc/systemd/system")
        return directory / "esxi-suspend-check.service", directory / "esxi-suspend-check.timer"

    @property
    def cron_daily(self) -> Path:
        """The daily check without systemd (run-parts: no dot in the name)."""
        return self._at("/etc/cron.daily/esxi-suspend")

    @property
    def daily_command(self) -> str:
        """What the daily job runs; under --root it names the tree's env file."""
        extra = f" --env-file {self.env_file}" if self.root else ""
        return f"{self.command_link} check --daily{extra}"

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


def copy_owner(source: Path, target: Path) -> None:
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
    copy_owner(path, backup)
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
