"""The local NUT services: restarting the monitor that re-arms UPS monitoring, and NUT's server
when a forced shutdown flag must be cleared. Programs are run through machine.py."""

from __future__ import annotations

import logging
import subprocess
from dataclasses import dataclass
from pathlib import Path

from esxi_suspend.errors import LocalRestartFailed
from esxi_suspend.machine import run_program, search_path, which
from esxi_suspend.settings.model import RestartSettings

log = logging.getLogger(__name__)

RESTART_TIMEOUT = 60
# systemd units first (Debian/Ubuntu, Fedora/RHEL), then SysV scripts (Debian, old Fedora).
SYSTEMD_UNITS = ("nut-monitor.service", "nut-client.service")
SYSV_SCRIPTS = ("nut-client", "ups")
SERVER_UNIT = "nut-server.service"  # upsd (Debian/Ubuntu, Fedora/RHEL)
SERVER_SCRIPT = "nut-server"  # SysV (Debian)
SYSTEMD_RUNNING = Path("/run/systemd/system")
INIT_D = Path("/etc/init.d")


@dataclass(frozen=True)
class RestartPlan:
    """The command that restarts the monitor, or None when UPS_SERVICE=none."""

    argv: tuple[str, ...] | None
    why: str

    def describe(self) -> str:
        return " ".join(self.argv) if self.argv else f"nothing ({self.why})"


def _systemd_has(systemctl: str, unit: str) -> bool:
    try:
        out = subprocess.run(
            [systemctl, "show", "--property=LoadState", "--value", unit],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.stdout.strip() == "loaded"


def plan_restart(settings: RestartSettings) -> RestartPlan:
    """Pick the restart command; raise LocalRestartFailed when nothing fits (says what to set)."""
    if settings.command:
        return _given_command(settings.command, "UPS_RESTART_COMMAND")
    if settings.service == "none":
        return RestartPlan(None, "UPS_SERVICE=none")
    systemctl = which("systemctl") if SYSTEMD_RUNNING.is_dir() else None
    if settings.service != "auto":
        if systemctl:
            return RestartPlan((systemctl, "--no-block", "restart", settings.service), "systemd")
        return _sysv_plan(settings.service)
    if systemctl:
        for unit in SYSTEMD_UNITS:
            if _systemd_has(systemctl, unit):
                # --no-block: systemd stops upsmon's unit, and with it our own process group.
                return RestartPlan((systemctl, "--no-block", "restart", unit), "systemd")
    for script in SYSV_SCRIPTS:
        if (INIT_D / script).exists():
            return _sysv_plan(script)
    raise LocalRestartFailed(
        "UPS_SERVICE=auto: no NUT monitor service found (systemd "
        f"{', '.join(SYSTEMD_UNITS)}; SysV {', '.join(SYSV_SCRIPTS)}); set UPS_SERVICE to its "
        "name, UPS_RESTART_COMMAND to a command, or UPS_SERVICE=none"
    )


def plan_clear_fsd(settings: RestartSettings) -> RestartPlan:
    """How to clear the FSD flag upsd keeps: restart NUT's server (UPS_CLEAR_FSD); raise
    LocalRestartFailed when nothing fits (says what to set)."""
    if settings.clear_fsd == ("none",):
        return RestartPlan(None, "UPS_CLEAR_FSD=none")
    if settings.clear_fsd != ("auto",):
        return _given_command(settings.clear_fsd, "UPS_CLEAR_FSD")
    systemctl = which("systemctl") if SYSTEMD_RUNNING.is_dir() else None
    if systemctl and _systemd_has(systemctl, SERVER_UNIT):
        return RestartPlan((systemctl, "restart", SERVER_UNIT), "systemd")
    if (INIT_D / SERVER_SCRIPT).exists():
        return _sysv_plan(SERVER_SCRIPT)
    raise LocalRestartFailed(
        f"UPS_CLEAR_FSD=auto: no NUT server service found (systemd {SERVER_UNIT}; SysV "
        f"{SERVER_SCRIPT}); set UPS_CLEAR_FSD to the command that restarts upsd"
    )


def _given_command(argv: tuple[str, ...], setting: str) -> RestartPlan:
    """A command line a setting gives: its program found on our PATH, or the error saying so."""
    program = which(argv[0])
    if program is None:
        raise LocalRestartFailed(
            f"{setting}: program {argv[0]!r} not found or not executable (searched "
            f"{search_path()}); give its full path"
        )
    return RestartPlan((program, *argv[1:]), setting)


def _sysv_plan(script: str) -> RestartPlan:
    service = which("service")
    if service:
        return RestartPlan((service, script, "restart"), "SysV")
    init_script = INIT_D / script
    if init_script.exists():
        return RestartPlan((str(init_script), "restart"), "SysV")
    raise LocalRestartFailed(
        f"UPS_SERVICE={script}: neither systemctl, service nor {init_script} found; set "
        "UPS_RESTART_COMMAND to the command that restarts the NUT monitor"
    )


def run_restart(
    plan: RestartPlan,
    fix: str = "restart the NUT monitor by hand and check UPS_SERVICE / UPS_RESTART_COMMAND",
) -> str:
    """Run the restart; return what it did, or raise LocalRestartFailed with its output and
    `fix`."""
    if plan.argv is None:
        return plan.describe()
    try:
        done = run_program(plan.argv, RESTART_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise LocalRestartFailed(
            f"`{plan.describe()}` did not finish within {RESTART_TIMEOUT} s"
        ) from None
    except OSError as exc:
        raise LocalRestartFailed(
            f"`{plan.describe()}` could not start ({exc.strerror or exc})"
        ) from None
    if done.returncode != 0:
        output = (done.stderr.strip() or done.stdout.strip()).splitlines()
        tail = output[-1][:200] if output else "no output"
        raise LocalRestartFailed(f"`{plan.describe()}` exited {done.returncode} ({tail}); {fix}")
    return plan.describe()
