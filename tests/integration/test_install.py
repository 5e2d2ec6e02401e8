"""install.sh into a temporary root: the tree it makes, reruns, edits kept, --uninstall.

Each install builds a real venv with `sys.executable` and pip-installs this source tree and its
dependencies into it (about 10 s from a local wheel cache, longer from PyPI; pip's own PIP_*
variables, e.g. PIP_FIND_LINKS, reach it unchanged). Nothing outside the temporary root is
touched.
"""

from __future__ import annotations

import os
import shlex
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from esxi_suspend import machine
from esxi_suspend.settings.envfile import read_env_values
from esxi_suspend.settings.model import KNOWN_KEYS

SOURCE = Path(__file__).resolve().parents[2]
INSTALL_SH = SOURCE / "install.sh"
MAN_SOURCE = SOURCE / "esxi-suspend.8"
SCHED_SCRIPT_SOURCE = SOURCE / "upssched-cmd"
INSTALL_TIMEOUT = 600  # pip may fetch fabric and its dependencies from PyPI
QUICK_TIMEOUT = 60


@dataclass(frozen=True)
class Tree:
    """The paths install.sh writes under one root."""

    root: Path

    @property
    def venv(self) -> Path:
        return self.root / "opt/esxi-suspend"

    @property
    def venv_command(self) -> Path:
        return self.venv / "bin/esxi-suspend"

    @property
    def command(self) -> Path:
        return self.root / "usr/local/sbin/esxi-suspend"

    @property
    def man_dir(self) -> Path:
        return self.root / "usr/local/share/man"

    @property
    def man_page(self) -> Path:
        return self.man_dir / "man8/esxi-suspend.8"

    @property
    def sched_script(self) -> Path:
        return self.root / "usr/local/lib/esxi-suspend/upssched-cmd"

    @property
    def upssched(self) -> Path:
        return self.root / "usr/sbin/upssched"

    @property
    def etc(self) -> Path:
        return self.root / "etc/esxi-suspend"

    @property
    def env_file(self) -> Path:
        return self.etc / "esxi-suspend.env"

    @property
    def key(self) -> Path:
        return self.etc / "id_ed25519"

    @property
    def public_key(self) -> Path:
        return self.etc / "id_ed25519.pub"

    @property
    def cron_daily(self) -> Path:
        return self.root / "etc/cron.daily/esxi-suspend"

    @property
    def units(self) -> tuple[Path, Path]:
        directory = self.root / "etc/systemd/system"
        return directory / "esxi-suspend-check.service", directory / "esxi-suspend-check.timer"

    @property
    def daily_command(self) -> str:
        return f"{self.command} check --daily --env-file {self.env_file}"

    @property
    def shutdowncmd(self) -> str:
        """Our SHUTDOWNCMD in this tree: it names the tree's env file, so it works here."""
        return f'SHUTDOWNCMD "{self.command} shutdown --env-file {self.env_file}"'


def run_install(
    *args: str, timeout: int = INSTALL_TIMEOUT, path: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("DESTDIR", None)
    if path is not None:
        env["PATH"] = path
    return subprocess.run(
        ["bash", str(INSTALL_SH), *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env=env,
        timeout=timeout,
        check=False,
    )


def install(root: Path) -> subprocess.CompletedProcess[str]:
    result = run_install("--root", str(root), "--python", sys.executable)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def snapshot(tree: Tree) -> dict[str, bytes]:
    return {
        str(path): path.read_bytes()
        for path in (
            tree.env_file,
            tree.key,
            tree.public_key,
            tree.venv / "pyvenv.cfg",
            tree.man_page,
        )
    }


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Tree, str]:
    """One install shared by the tests that only look at it; returns the tree and stdout."""
    tree = Tree(tmp_path_factory.mktemp("root"))
    return tree, install(tree.root).stdout


def test_help_exits_zero_and_names_what_it_changes() -> None:
    result = run_install("--help", timeout=QUICK_TIMEOUT)
    assert result.returncode == 0, result.stderr
    for text in (
        "/opt/esxi-suspend",
        "/usr/local/sbin/esxi-suspend",
        "/usr/local/share/man/man8/esxi-suspend.8",
        "/usr/local/lib/esxi-suspend/upssched-cmd",
        "upssched.conf",
        "UPS_EARLY_SHUTDOWN",
        "--root",
        "--uninstall",
    ):
        assert text in result.stdout
    assert [line for line in result.stdout.splitlines() if len(line) > 80] == []


def test_unknown_option_fails_with_usage() -> None:
    result = run_install("--no-such-option", timeout=QUICK_TIMEOUT)
    assert result.returncode == 1
    assert "unknown argument: --no-such-option" in result.stderr
    assert "Usage:" in result.stderr


def test_tree_has_venv_command_and_private_etc(installed: tuple[Tree, str]) -> None:
    tree, _ = installed
    assert (tree.venv / "bin/python").is_file()
    assert os.access(tree.venv_command, os.X_OK)
    assert tree.command.is_symlink()
    assert Path(os.readlink(tree.command)) == tree.venv_command
    assert mode(tree.etc) == 0o700
    assert mode(tree.env_file) == 0o600
    assert mode(tree.key) == 0o600
    assert tree.sched_script.read_bytes() == SCHED_SCRIPT_SOURCE.read_bytes()
    assert mode(tree.sched_script) == 0o755
    assert tree.public_key.read_text().startswith("ssh-ed25519 ")
    assert " esxi-suspend@" in tree.public_key.read_text()


def render_man_page(tree: Tree) -> str | None:
    """The installed page as man shows it (found by name, as `man esxi-suspend` finds it), or
    groff's or mandoc's rendering of the file; None when none of them is installed."""
    env = {**os.environ, "MANWIDTH": "80", "MANPAGER": "cat", "PAGER": "cat", "LC_ALL": "C.UTF-8"}
    env.pop("MAN_KEEP_FORMATTING", None)
    page = str(tree.man_page)
    for command in (
        ["man", "-M", str(tree.man_dir), "8", "esxi-suspend"],
        ["groff", "-man", "-Tutf8", "-P-cbou", "-rLL=80n", page],
        ["mandoc", "-Tutf8", "-Owidth=80", page],
    ):
        if shutil.which(command[0]):
            done = subprocess.run(
                command,
                capture_output=True,
                text=True,
                stdin=subprocess.DEVNULL,
                env=env,
                timeout=QUICK_TIMEOUT,
                check=False,
            )
            assert done.returncode == 0, f"{command}: {done.stderr}"
            return done.stdout
    return None


def test_man_page_is_installed_and_renders(installed: tuple[Tree, str]) -> None:
    tree, output = installed
    assert tree.man_page.read_bytes() == MAN_SOURCE.read_bytes()
    assert mode(tree.man_page) == 0o644
    assert f"created   {tree.man_page} (man esxi-suspend)" in output
    shown = render_man_page(tree)
    if shown is None:  # no man, groff or mandoc here: the file at least is a man page
        assert tree.man_page.read_text().startswith(".TH ESXI-SUSPEND 8 ")
        return
    lines = shown.splitlines()
    assert lines[0].startswith("ESXI-SUSPEND(8)"), lines[:3]
    for heading in ("SYNOPSIS", "DESCRIPTION", "COMMANDS", "SETTINGS", "EXAMPLES"):
        assert heading in lines, heading
    assert "ESXI_DEADLINE (default: 240)" in shown
    assert "--env-file" in shown  # a plain minus: options can be pasted from the page
    assert [line for line in lines if len(line) > 80] == []


def test_key_is_ed25519_without_passphrase(installed: tuple[Tree, str]) -> None:
    tree, _ = installed
    # -P '' fails instead of prompting if the key had a passphrase.
    derived = subprocess.run(
        ["ssh-keygen", "-y", "-P", "", "-f", str(tree.key)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=QUICK_TIMEOUT,
        check=True,
    )
    assert derived.stdout.split()[:2] == tree.public_key.read_text().split()[:2]


def test_env_template_loads_with_the_key_and_the_trees_known_hosts(
    installed: tuple[Tree, str],
) -> None:
    """The template's words are settings/catalog.py's; here: it loads, and sets the generated
    key and, under --root only, known_hosts inside the root (trust writes there); ESXI_HOST is
    left for trust (or by hand)."""
    tree, _ = installed
    assert read_env_values(tree.env_file) == {
        "ESXI_KEY_FILE": str(tree.key),
        "ESXI_KNOWN_HOSTS": str(tree.etc / "known_hosts"),
    }
    text = tree.env_file.read_text()
    assert [key for key in KNOWN_KEYS if key not in text] == []  # every setting is described


def test_output_gives_next_steps(installed: tuple[Tree, str]) -> None:
    tree, output = installed
    for command in ("trust HOST", "enroll HOST", "check"):
        assert f"{tree.command} {command} --env-file {tree.env_file}" in output
    assert tree.shutdowncmd in output
    assert f"no upsmon.conf in {tree.root}/etc/nut or {tree.root}/etc/ups" in output


def test_installed_command_without_arguments_exits_with_usage(
    installed: tuple[Tree, str],
) -> None:
    tree, _ = installed
    result = subprocess.run(
        [str(tree.command)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=QUICK_TIMEOUT,
        check=False,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_installed_check_reads_the_template_and_asks_only_for_the_host(
    installed: tuple[Tree, str],
) -> None:
    tree, _ = installed
    result = subprocess.run(
        [str(tree.command), "check", "--env-file", str(tree.env_file)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=QUICK_TIMEOUT,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 6, output  # ExitCode.CONFIG: ESXI_HOST is not set yet
    assert "ESXI_HOST" in result.stderr
    assert "ESXI_KEY_FILE" not in result.stderr  # the generated key is accepted
    assert "Traceback" not in output


def test_rerun_changes_nothing_and_says_so(installed: tuple[Tree, str]) -> None:
    tree, _ = installed
    before = snapshot(tree)
    result = install(tree.root)
    assert snapshot(tree) == before
    assert Path(os.readlink(tree.command)) == tree.venv_command
    assert f"kept      {tree.env_file} (never overwritten)" in result.stdout
    assert f"kept      {tree.key}\n" in result.stdout
    assert f"kept      {tree.man_page}\n" in result.stdout
    assert "pip install" not in result.stdout  # source unchanged: no reinstall
    assert "Nothing changed: everything was already in place." in result.stdout


def test_edits_survive_rerun_and_uninstall_keeps_etc(tmp_path: Path) -> None:
    tree = Tree(tmp_path)
    install(tree.root)
    edited = tree.env_file.read_text() + "ESXI_HOST=esxi.example.test\n"
    tree.env_file.write_text(edited)
    tree.env_file.chmod(0o644)
    key = tree.key.read_bytes()
    tree.man_page.write_text('.TH ESXI-SUSPEND 8 "" "esxi-suspend 0.0.1"\n')  # an older page

    rerun = install(tree.root)
    assert tree.man_page.read_bytes() == MAN_SOURCE.read_bytes()
    assert f"replaced  {tree.man_page} (man esxi-suspend)" in rerun.stdout
    assert tree.env_file.read_text() == edited
    assert mode(tree.env_file) == 0o600
    assert f"fixed     {tree.env_file} (mode 644 -> 600)" in rerun.stdout
    assert tree.key.read_bytes() == key

    removed = run_install("--root", str(tree.root), "--uninstall", timeout=QUICK_TIMEOUT)
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert not tree.venv.exists()
    assert not tree.command.is_symlink()
    assert not tree.man_page.exists()
    assert f"removed   {tree.man_page}" in removed.stdout
    assert not tree.cron_daily.exists()
    assert f"removed   {tree.cron_daily}" in removed.stdout
    assert tree.env_file.read_text() == edited
    assert tree.key.read_bytes() == key
    assert f"kept      {tree.etc}" in removed.stdout

    again = run_install("--root", str(tree.root), "--uninstall", timeout=QUICK_TIMEOUT)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"absent    {tree.venv}" in again.stdout
    assert f"absent    {tree.man_page}" in again.stdout


def test_daily_check_without_systemd_is_a_cron_job(installed: tuple[Tree, str]) -> None:
    """The tree has no /run/systemd/system: /etc/cron.daily/esxi-suspend runs the check."""
    tree, stdout = installed
    assert f"created   {tree.cron_daily} (the daily check" in stdout
    assert mode(tree.cron_daily) == 0o755
    assert f"\nexec {tree.daily_command}\n" in tree.cron_daily.read_text()
    assert not any(unit.exists() for unit in tree.units)
    done = subprocess.run(  # cron runs it as sh: it parses, and the command exists
        ["sh", "-n", str(tree.cron_daily)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert os.access(tree.command, os.X_OK)


def test_daily_check_with_systemd_is_a_timer(tmp_path: Path) -> None:
    """A tree with /run/systemd/system gets the service and timer (never enabled under
    --root: systemctl would act on this machine); uninstall removes them, and only ours."""
    tree = Tree(tmp_path)
    (tree.root / "run/systemd/system").mkdir(parents=True)
    result = install(tree.root)
    service, timer = tree.units
    assert f"created   {service} (the daily check" in result.stdout
    assert f"ExecStart={tree.daily_command}\n" in service.read_text()
    assert "OnCalendar=daily" in timer.read_text() and "Persistent=true" in timer.read_text()
    assert mode(service) == mode(timer) == 0o644
    assert not tree.cron_daily.exists()
    assert "systemctl" not in result.stdout + result.stderr

    foreign = tree.cron_daily
    foreign.parent.mkdir(parents=True)
    foreign.write_text("#!/bin/sh\necho an admin's job of the same name\n")
    removed = run_install("--root", str(tree.root), "--uninstall", timeout=QUICK_TIMEOUT)
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert not service.exists() and not timer.exists()
    assert f"removed   {timer}" in removed.stdout and f"removed   {service}" in removed.stdout
    assert f"left      {foreign} (not esxi-suspend's" in removed.stdout
    assert foreign.read_text().endswith("same name\n")


def test_uninstall_leaves_a_man_page_that_is_not_ours(tmp_path: Path) -> None:
    tree = Tree(tmp_path)
    tree.man_page.parent.mkdir(parents=True)
    tree.man_page.write_text(".TH OTHER 8\n")
    result = run_install("--root", str(tree.root), "--uninstall", timeout=QUICK_TIMEOUT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert tree.man_page.read_text() == ".TH OTHER 8\n"
    assert f"left      {tree.man_page} (not esxi-suspend's man page" in result.stdout


UPSMON_CONF = """\
MONITOR myups@localhost 1 upsmon secret primary
SHUTDOWNCMD "/sbin/shutdown -h +0"
FINALDELAY 12
"""


def upsmon_conf(tree: Tree, where: str = "etc/nut") -> Path:
    conf = tree.root / where / "upsmon.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text(UPSMON_CONF)
    conf.chmod(0o640)
    return conf


def backups(conf: Path) -> list[Path]:
    return sorted(conf.parent.glob("upsmon.conf.esxi-suspend-*"))


def active_shutdowncmds(conf: Path) -> list[str]:
    return [line for line in conf.read_text().splitlines() if line.startswith("SHUTDOWNCMD")]


def test_upsmon_conf_found_gets_the_exact_line_printed_and_is_not_changed(tmp_path: Path) -> None:
    tree = Tree(tmp_path)
    conf = upsmon_conf(tree, "etc/ups")
    result = install(tree.root)
    assert conf.read_text() == UPSMON_CONF
    assert backups(conf) == []
    assert f"left      {conf} (rerun with --configure-upsmon, or set it yourself)" in result.stdout
    assert 'replace: SHUTDOWNCMD "/sbin/shutdown -h +0"' in result.stdout
    assert f"with:    {tree.shutdowncmd}" in result.stdout
    assert f"FINALDELAY 12 in {conf}: left alone" in result.stdout
    # the early shutdown: the lines to add, with the default delay
    assert "early shutdown after 300 s on battery: rerun with --configure-upsmon" in result.stdout
    upssched = machine.which("upssched") or "/usr/sbin/upssched"  # none in the tree: the system's
    assert f"      NOTIFYCMD {upssched}\n" in result.stdout
    assert "      NOTIFYFLAG ONBATT SYSLOG+EXEC\n" in result.stdout
    assert f"      CMDSCRIPT {tree.sched_script}\n" in result.stdout
    assert "      AT ONBATT * START-TIMER early-shutdown 300\n" in result.stdout
    assert not (conf.parent / "upssched.conf").exists()


def test_configure_upsmon_rerun_uninstall_purge(tmp_path: Path) -> None:
    tree = Tree(tmp_path)
    conf = upsmon_conf(tree)
    ours = tree.shutdowncmd

    first = run_install("--root", str(tree.root), "--python", sys.executable, "--configure-upsmon")
    assert first.returncode == 0, first.stdout + first.stderr
    assert active_shutdowncmds(conf) == [ours]  # never a second SHUTDOWNCMD
    text = conf.read_text()
    assert '#esxi-suspend-was: SHUTDOWNCMD "/sbin/shutdown -h +0"' in text
    assert "FINALDELAY 12\n" in text and text.count("FINALDELAY") == 1
    assert mode(conf) == 0o640
    [backup] = backups(conf)
    assert backup.read_text() == UPSMON_CONF
    assert f"changed   {conf} ({ours}, was: SHUTDOWNCMD" in first.stdout

    again = run_install("--root", str(tree.root), "--python", sys.executable, "--configure-upsmon")
    assert again.returncode == 0, again.stdout + again.stderr
    assert conf.read_text() == text
    assert len(backups(conf)) == 1
    assert f"kept      {conf} (SHUTDOWNCMD is already esxi-suspend's)" in again.stdout
    assert "Nothing changed: everything was already in place." in again.stdout

    removed = run_install("--root", str(tree.root), "--uninstall", "--purge")
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert conf.read_text() == UPSMON_CONF  # the line it replaced is back
    assert len(backups(conf)) == 2  # the first backup is never overwritten
    assert not tree.etc.exists() and not tree.venv.exists() and not tree.command.is_symlink()
    assert not tree.sched_script.exists()
    left = sorted(str(p.relative_to(tree.root)) for p in tree.root.rglob("*") if not p.is_dir())
    assert left == sorted(["etc/nut/upsmon.conf", *(f"etc/nut/{b.name}" for b in backups(conf))])


def test_configure_upsmon_appends_when_there_is_no_shutdowncmd(tmp_path: Path) -> None:
    tree = Tree(tmp_path)
    conf = upsmon_conf(tree)
    conf.write_text("MONITOR myups@localhost 1 upsmon secret primary\n")
    result = run_install("--root", str(tree.root), "--python", sys.executable, "--configure-upsmon")
    assert result.returncode == 0, result.stdout + result.stderr
    assert active_shutdowncmds(conf) == [tree.shutdowncmd]
    assert "FINALDELAY not set (NUT's default, 5 s): left alone" in result.stdout
    removed = run_install("--root", str(tree.root), "--uninstall")
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert active_shutdowncmds(conf) == []
    assert tree.etc.exists()  # kept without --purge


def test_purge_without_uninstall_is_refused() -> None:
    result = run_install("--purge", timeout=QUICK_TIMEOUT)
    assert result.returncode == 1
    assert "--purge goes with --uninstall" in result.stderr


# The early shutdown: upsmon -> NOTIFYCMD upssched -> timer -> upssched-cmd -> upsmon -c fsd.
EARLY_UPSMON_CONF = """\
MONITOR myups@localhost 1 upsmon secret primary
SHUTDOWNCMD "/sbin/shutdown -h +0"
NOTIFYFLAG ONLINE SYSLOG+WALL
FINALDELAY 12
"""


def early_tree(tmp_path: Path, upsmon_text: str = EARLY_UPSMON_CONF) -> tuple[Tree, Path]:
    """A root with an upsmon.conf (0640) and a stand-in upssched where install.sh looks."""
    tree = Tree(tmp_path)
    conf = upsmon_conf(tree)
    conf.write_text(upsmon_text)
    tree.upssched.parent.mkdir(parents=True)
    tree.upssched.write_text("#!/bin/sh\n")
    tree.upssched.chmod(0o755)
    return tree, conf


def configure(tree: Tree, *args: str) -> subprocess.CompletedProcess[str]:
    result = run_install(
        "--root", str(tree.root), "--python", sys.executable, "--configure-upsmon", *args
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def set_early_shutdown(tree: Tree, value: str) -> None:
    """Appends the setting: the last line wins, as in python-dotenv."""
    with tree.env_file.open("a") as env:
        env.write(f"UPS_EARLY_SHUTDOWN={value}\n")


def active(path: Path, *directives: str) -> list[str]:
    return [
        line
        for line in path.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#") and line.startswith(directives)
    ]


def sched_lines(tree: Tree, seconds: int) -> list[str]:
    return [
        f"CMDSCRIPT {tree.sched_script}",
        "PIPEFN /run/nut/upssched.pipe",
        "LOCKFN /run/nut/upssched.lock",
        f"AT ONBATT * START-TIMER early-shutdown {seconds}",
        "AT ONLINE * CANCEL-TIMER early-shutdown",
    ]


def test_configure_upsmon_sets_the_early_shutdown_and_reruns_follow_the_setting(
    tmp_path: Path,
) -> None:
    """First run: NOTIFYCMD upssched, NOTIFYFLAG ONBATT/ONLINE with EXEC (an existing line
    keeps its flags), upssched.conf with the default delay, one backup. A rerun changes
    nothing; a new delay changes the timer only; 0 takes it all out; --uninstall restores."""
    tree, conf = early_tree(tmp_path)
    sched = conf.with_name("upssched.conf")
    first = configure(tree)
    assert active(conf, "NOTIFY") == [
        "NOTIFYFLAG ONLINE SYSLOG+WALL+EXEC",
        f"NOTIFYCMD {tree.upssched}",
        "NOTIFYFLAG ONBATT SYSLOG+EXEC",
    ]
    text = conf.read_text()
    assert "#esxi-suspend-was: NOTIFYFLAG ONLINE SYSLOG+WALL\n" in text
    [backup] = backups(conf)
    assert backup.read_text() == EARLY_UPSMON_CONF
    assert mode(conf) == 0o640
    assert f"changed   {conf} (NOTIFYCMD {tree.upssched})" in first.stdout
    assert f"changed   {conf} (NOTIFYFLAG ONLINE SYSLOG+WALL+EXEC, was: NOTIFYFLAG" in first.stdout

    assert active(sched, "CMDSCRIPT", "PIPEFN", "LOCKFN", "AT") == sched_lines(tree, 300)
    assert sched.read_text().startswith("# upssched.conf written by esxi-suspend install.sh")
    assert (mode(sched), sched.stat().st_uid, sched.stat().st_gid) == (
        0o640,
        conf.stat().st_uid,
        conf.stat().st_gid,
    )
    assert f"created   {sched} (early shutdown after 300 s on battery" in first.stdout
    assert tree.sched_script.read_bytes() == SCHED_SCRIPT_SOURCE.read_bytes()
    assert mode(tree.sched_script) == 0o755
    assert tree.sched_script.stat().st_uid == os.geteuid()  # root, as install.sh runs

    sched_text = sched.read_text()
    again = configure(tree)
    assert (conf.read_text(), sched.read_text()) == (text, sched_text)
    assert len(backups(conf)) == 1
    assert f"kept      {sched} (early shutdown after 300 s on battery)" in again.stdout
    assert f"kept      {conf} (NOTIFYCMD runs upssched on ONBATT and ONLINE)" in again.stdout
    assert "Nothing changed: everything was already in place." in again.stdout

    set_early_shutdown(tree, '"45"  # quoted, with a comment')
    changed = configure(tree)
    assert active(sched, "AT") == sched_lines(tree, 45)[3:]
    assert conf.read_text() == text and len(backups(conf)) == 1
    assert f"changed   {sched} (early shutdown after 45 s on battery, was 300 s)" in changed.stdout
    plain = install(tree.root)  # without --configure-upsmon: reported, not changed
    assert f"kept      {sched} (early shutdown after 45 s on battery)" in plain.stdout

    set_early_shutdown(tree, "0")
    off = configure(tree)
    assert "early shutdown off (UPS_EARLY_SHUTDOWN=0): only OB LB starts the shutdown" in off.stdout
    assert not sched.exists()
    assert f"removed   {sched}" in off.stdout
    assert active(conf, "NOTIFY") == ["NOTIFYFLAG ONLINE SYSLOG+WALL"]
    assert "NOTIFYCMD" not in conf.read_text()
    assert "# NOTIFYFLAG set by esxi-suspend" not in conf.read_text()
    assert active_shutdowncmds(conf) == [tree.shutdowncmd]
    off_again = configure(tree)
    assert "Nothing changed: everything was already in place." in off_again.stdout

    set_early_shutdown(tree, "45")
    configure(tree)
    assert active(sched, "AT") == sched_lines(tree, 45)[3:]
    removed = run_install("--root", str(tree.root), "--uninstall", timeout=QUICK_TIMEOUT)
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert conf.read_text() == EARLY_UPSMON_CONF
    assert not sched.exists() and not tree.sched_script.exists()
    assert not tree.sched_script.parent.exists()


def test_an_admins_notifycmd_is_left_and_the_lines_are_printed(tmp_path: Path) -> None:
    tree, conf = early_tree(tmp_path)
    text = (
        "MONITOR myups@localhost 1 upsmon secret primary\n"
        f"{tree.shutdowncmd}\n"
        "NOTIFYCMD /usr/local/bin/page-me\n"
    )
    conf.write_text(text)
    result = configure(tree)
    assert conf.read_text() == text
    assert backups(conf) == []
    assert (
        f"left      {conf} (early shutdown not set: it has a NOTIFYCMD of its own "
        "(NOTIFYCMD /usr/local/bin/page-me): upsmon runs one only; make it run upssched too)"
    ) in result.stdout
    assert f"      NOTIFYCMD {tree.upssched}\n" in result.stdout
    assert "      NOTIFYFLAG ONLINE SYSLOG+EXEC\n" in result.stdout
    assert "      AT ONBATT * START-TIMER early-shutdown 300\n" in result.stdout
    assert not conf.with_name("upssched.conf").exists()


def test_an_admins_upssched_conf_is_left_and_the_lines_are_printed(tmp_path: Path) -> None:
    tree, conf = early_tree(tmp_path)
    sched = conf.with_name("upssched.conf")
    own = (
        "CMDSCRIPT /usr/local/bin/my-timers\n"
        "PIPEFN /run/nut/upssched/upssched.pipe\n"
        "LOCKFN /run/nut/upssched/upssched.lock\n"
        "AT COMMBAD * START-TIMER upsgone 10\n"
    )
    sched.write_text(own)
    result = configure(tree)
    assert sched.read_text() == own
    assert active(conf, "NOTIFY") == ["NOTIFYFLAG ONLINE SYSLOG+WALL"]  # nothing half-done
    assert f"left      {sched} (not install.sh's, it has AT lines" in result.stdout
    assert f"      CMDSCRIPT {tree.sched_script}\n" in result.stdout
    assert "      AT ONLINE * CANCEL-TIMER early-shutdown\n" in result.stdout
    assert list(sched.parent.glob("upssched.conf.*")) == []


def test_nuts_packaged_upssched_conf_is_replaced_and_put_back(tmp_path: Path) -> None:
    """NUT's sample (Debian installs it as /etc/nut/upssched.conf) schedules nothing: it is
    replaced, kept as a copy, and back after --uninstall."""
    tree, conf = early_tree(tmp_path)
    sched = conf.with_name("upssched.conf")
    packaged = "# Network UPS Tools - upssched.conf sample file\nCMDSCRIPT /bin/upssched-cmd\n"
    sched.write_text(packaged)
    sched.chmod(0o640)
    result = configure(tree)
    [copy] = sorted(sched.parent.glob("upssched.conf.esxi-suspend-*"))
    assert copy.read_text() == packaged
    assert active(sched, "CMDSCRIPT", "PIPEFN", "LOCKFN", "AT") == sched_lines(tree, 300)
    assert f"replaced  {sched} (it had no AT line" in result.stdout
    assert f"NOTIFYCMD {tree.upssched}" in active(conf, "NOTIFYCMD")
    set_early_shutdown(tree, "60")  # a rewrite still knows what it replaced
    configure(tree)
    removed = run_install("--root", str(tree.root), "--uninstall", timeout=QUICK_TIMEOUT)
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert sched.read_text() == packaged
    assert f"restored  {sched} (from {copy}" in removed.stdout
    assert conf.read_text() == EARLY_UPSMON_CONF


BAD_EARLY_SHUTDOWN = ["abc", "-5", "86401", "1.5", "'5 minutes'", "0x10"]


def test_a_bad_early_shutdown_is_a_clear_error(tmp_path: Path) -> None:
    """Each bad value (one tree: a rerun after the first install is quick) stops the run
    before NUT's files are touched."""
    tree, conf = early_tree(tmp_path)
    install(tree.root)
    template = tree.env_file.read_text()
    for value in BAD_EARLY_SHUTDOWN:
        tree.env_file.write_text(template)
        set_early_shutdown(tree, value)
        result = run_install(
            "--root", str(tree.root), "--python", sys.executable, "--configure-upsmon"
        )
        assert result.returncode == 1, (value, result.stdout)
        assert (
            f"install.sh: error: UPS_EARLY_SHUTDOWN={value.strip(chr(39))} in {tree.env_file}:"
            " not a number of seconds from 0 to 86400"
        ) in result.stderr, value
        assert conf.read_text() == EARLY_UPSMON_CONF
        assert not conf.with_name("upssched.conf").exists()


def test_timer_script_logs_an_unknown_timer_and_fails(tmp_path: Path) -> None:
    """upssched-cmd knows one timer: any other name is logged (logger -t esxi-suspend) and
    exits non-zero, running nothing."""
    logged = tmp_path / "logger.log"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    logger = bin_dir / "logger"
    logger.write_text(f'#!/bin/sh\necho "$*" >>"{logged}"\n')
    logger.chmod(0o755)
    result = subprocess.run(
        ["sh", str(SCHED_SCRIPT_SOURCE), "onbattwarn"],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "UPSNAME": "myups@localhost"},
        timeout=QUICK_TIMEOUT,
        check=False,
    )
    assert result.returncode == 2, result
    assert logged.read_text() == (
        "-t esxi-suspend -- unknown timer 'onbattwarn' (esxi-suspend's upssched.conf has only"
        " early-shutdown): nothing done\n"
    )
    assert "unknown timer 'onbattwarn'" in result.stderr


def test_the_trees_shutdowncmd_reads_the_trees_env_file(tmp_path: Path) -> None:
    """--root: SHUTDOWNCMD names the tree's env file (--env-file), so the line upsmon would
    run uses the tree's settings, not /etc/esxi-suspend's. Proven with `check` in its place:
    it reads the tree's template and asks only for ESXI_HOST."""
    tree = Tree(tmp_path)
    conf = upsmon_conf(tree)
    configure(tree)
    [line] = active_shutdowncmds(conf)
    assert line == tree.shutdowncmd
    argv = shlex.split(shlex.split(line)[1])
    assert argv[:2] == [str(tree.command), "shutdown"]
    result = subprocess.run(
        [argv[0], "check", *argv[2:]],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=QUICK_TIMEOUT,
        check=False,
    )
    assert result.returncode == 6, result.stdout + result.stderr  # CONFIG: no ESXI_HOST yet
    assert str(tree.env_file) in result.stderr and "ESXI_HOST" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_a_tree_without_upssched_uses_the_systems(tmp_path: Path) -> None:
    """--root, no usr/sbin/upssched in the tree: the early shutdown is set with the upssched
    found on the PATH (here a stand-in), not left silently unset."""
    tree = Tree(tmp_path / "root")
    conf = upsmon_conf(tree)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    upssched = bin_dir / "upssched"
    upssched.write_text("#!/bin/sh\n")
    upssched.chmod(0o755)
    path = f"{bin_dir}:{os.environ.get('PATH', '')}"
    result = run_install(
        "--root", str(tree.root), "--python", sys.executable, "--configure-upsmon", path=path
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert active(conf, "NOTIFYCMD") == [f"NOTIFYCMD {upssched}"]
    assert active(conf.with_name("upssched.conf"), "AT") == sched_lines(tree, 300)[3:]
    assert "WARNING: no upssched" not in result.stderr
