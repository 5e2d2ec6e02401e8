"""The installer's NUT steps: our SHUTDOWNCMD in upsmon.conf, and the early shutdown (upsmon's
NOTIFYCMD to upssched, our upssched.conf and its timer); printed for the admin, or with
--configure-upsmon written after a backup; and taken out again by --uninstall.

The text editing itself is nutconf.py's (pure); this module decides and reports.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from esxi_suspend import machine
from esxi_suspend.errors import EsxiSuspendError
from esxi_suspend.setup import nutconf
from esxi_suspend.setup.files import (
    InstallError,
    Layout,
    Report,
    back_up,
    copy_owner,
    mode_of,
    read_text,
    rewrite_keeping_owner,
    write_text,
)

EARLY_SETTING = "UPS_EARLY_SHUTDOWN"
EARLY_DEFAULT = 300
EARLY_MAX = 86400
DEFAULT_UPSSCHED = "/usr/sbin/upssched"  # what the printed lines name when none is found


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
class NutSetup:
    """The NUT steps of one install or uninstall run over a layout."""

    layout: Layout
    report: Report
    configure_upsmon: bool = False
    which: Callable[[str], str | None] = machine.which
    early_shutdown: int = EARLY_DEFAULT

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
        copy_owner(upsmon_conf, path)
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
                self._print_early_lines(self._upssched(), self.layout.nut_dirs[0] / "upssched.conf")
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
