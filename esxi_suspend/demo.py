"""`esxi-suspend demo`: the real shutdown path against a simulated ESXi host, with a timeline.

Starts the built-in simulator (default fleet, or `--fleet FILE`) on 127.0.0.1, writes a
throwaway key, a pinned known_hosts and an env file in a temporary directory, and runs
`cli.run`, the same code upsmon's SHUTDOWNCMD runs, with a harmless local restart command.
Nothing leaves this machine and nothing is logged to syslog.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

from esxi_suspend import cli
from esxi_suspend.errors import ExitCode
from esxi_suspend.logs import LOGGER_NAME
from esxi_suspend.simulator import (
    Fate,
    Fleet,
    FleetError,
    SimulatedHost,
    default_fleet,
    generate_ed25519,
    load_fleet,
)

DEFAULT_TIME_SCALE = 0.01
# Host events worth a line in the timeline (logins and exits are in our own log lines).
SHOWN_KINDS = {"exec", "vm", "autostop", "poweroff", "background", "dropped", "host"}


@dataclass(frozen=True)
class Line:
    at: float
    who: str
    text: str


class _Capture(logging.Handler):
    """Our log records, stamped with the simulated host's clock."""

    def __init__(self, host: SimulatedHost) -> None:
        super().__init__(logging.INFO)
        self.host = host
        self.lines: list[Line] = []

    def emit(self, record: logging.LogRecord) -> None:
        level = "" if record.levelno == logging.INFO else f"{record.levelname}: "
        self.lines.append(
            Line(self.host.simulated_now(), "esxi-suspend", level + record.getMessage())
        )


def _env_text(settings: dict[str, str]) -> str:
    quoted = {k: v.replace("\\", "\\\\").replace("'", "\\'") for k, v in settings.items()}
    return "".join(f"{key}='{value}'\n" for key, value in quoted.items())


def prepare_env(
    directory: Path,
    host: SimulatedHost,
    private_key: str,
    time_scale: float = DEFAULT_TIME_SCALE,
    strategy: str = "autostop",
) -> Path:
    key = directory / "id_ed25519"
    key.write_text(private_key)
    key.chmod(0o600)
    known_hosts = directory / "known_hosts"
    known_hosts.write_text(host.known_hosts_line())
    marker = directory / "nut-monitor-restarted"
    restart = directory / "restart-nut-monitor"
    restart.write_text(f"#!/bin/sh\necho restarted >> '{marker}'\n")
    restart.chmod(0o700)
    env = directory / "esxi-suspend.env"
    env.write_text(
        _env_text(
            {
                "ESXI_HOST": host.address,
                "ESXI_PORT": str(host.port),
                "ESXI_USER": "root",
                "ESXI_KEY_FILE": str(key),
                "ESXI_KNOWN_HOSTS": str(known_hosts),
                "ESXI_CONNECT_TIMEOUT": "10",
                "ESXI_COMMAND_TIMEOUT": "300",
                "ESXI_STRATEGY": strategy,
                # We follow the host every 5 simulated seconds, as we would a real one.
                "ESXI_POLL_INTERVAL": f"{max(0.01, 5 * time_scale):.3f}",
                "UPS_SERVICE": "none",
                "UPS_RESTART_COMMAND": str(restart),
            }
        )
    )
    env.chmod(0o600)
    return env


def _fleet_table(fleet: Fleet, host: SimulatedHost) -> list[str]:
    width = min(max([len(vm.name) for vm in fleet.vms] + [4]), 30)
    lines = [f"    {'id':>4}  {'name':<{width}}  {'power':<11}  {'tools':<5}  autostop"]
    for vm in fleet.vms:
        if vm.start_order is None:
            stop = "not in the sequence"
        else:
            action, delay = host.model.effective_stop(vm)
            stop = f"#{vm.start_order}: {action}, up to {delay} s"
        tools = "yes" if vm.tools else "no"
        name = vm.name[:width]
        lines.append(f"    {vm.vmid:>4}  {name:<{width}}  {vm.power:<11}  {tools:<5}  {stop}")
    return lines


def run(
    fleet_file: str | None,
    dry_run: bool,
    time_scale: float = DEFAULT_TIME_SCALE,
    strategy: str = "autostop",
) -> int:
    try:
        fleet = load_fleet(fleet_file) if fleet_file else default_fleet()
    except FleetError as exc:
        print(f"esxi-suspend demo: {exc}")
        return int(ExitCode.CONFIG)
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    logging.getLogger("paramiko").setLevel(logging.CRITICAL + 1)
    private_key, public_key = generate_ed25519()
    with (
        tempfile.TemporaryDirectory(prefix="esxi-suspend-demo-") as tmp,
        SimulatedHost(fleet, authorized_key=public_key, time_scale=time_scale) as host,
    ):
        directory = Path(tmp)
        env = prepare_env(directory, host, private_key, time_scale, strategy)
        capture = _Capture(host)
        logger.addHandler(capture)
        mode = "shutdown --dry-run (the plan only)" if dry_run else "shutdown"
        print(f"esxi-suspend demo: simulated ESXi host {fleet.name} ({fleet.version})")
        print(f"  listening on {host.address}:{host.port}, host key pinned; fleet {fleet.source}")
        print(f"  1 simulated second = {time_scale:g} real seconds; times below are simulated")
        print(f"  defaults: stop action {fleet.stop_action}, stop delay {fleet.stop_delay} s")
        print("\n".join(_fleet_table(fleet, host)))
        print(f"\nrunning: esxi-suspend {mode} --env-file {env}\n")
        try:
            code = cli.run(str(env), dry_run=dry_run)
        finally:
            logger.removeHandler(capture)
        if not dry_run:
            host.wait_powered_off(5)
        restarted = (directory / "nut-monitor-restarted").exists()
        print()
        print("\n".join(_report(host, capture.lines, dry_run, restarted, code)))
    return int(code)


def _report(
    host: SimulatedHost, ours: list[Line], dry_run: bool, restarted: bool, code: ExitCode
) -> list[str]:
    events = [Line(e.at, "host", e.text) for e in host.events if e.kind in SHOWN_KINDS]
    lines = ["timeline (simulated seconds):"]
    for line in sorted(ours + events, key=lambda item: item.at):
        lines.append(f"  {line.at:8.1f}  {line.who:<12}  {line.text}")
    fates = host.fates()
    lines.append("")
    lines.append("each VM's fate:")
    for vm in host.fleet.vms:
        fate = fates[vm.vmid]
        mark = "  <-- lost its unsaved state" if fate is Fate.HARD_KILLED else ""
        lines.append(f"  {vm.vmid:>4}  {vm.name:<30}  {fate.value}{mark}")
    lines.append("")
    if dry_run:
        lines.append("dry run: nothing was changed on the host; the plan is above")
    elif host.powered_off_at is not None:
        execs = [e.at for e in host.events if e.kind == "exec"]
        start = execs[0] if execs else 0.0
        killed = [
            f"{vm.vmid} {vm.name}" for vm in host.fleet.vms if fates[vm.vmid] is Fate.HARD_KILLED
        ]
        lines.append(
            f"total: host powered off {host.powered_off_at - start:.1f} simulated s after the "
            "first command"
        )
        lines.append(
            f"hard-killed at host power-off (autostop left them running): {len(killed)}"
            + (f": {', '.join(killed)}" if killed else "")
        )
    else:
        lines.append("the host did NOT power off")
    lines.append(
        f"local NUT monitor restart (stand-in command): {'ran' if restarted else 'not run'}"
    )
    lines.append(f"esxi-suspend exit {int(code)} ({code.name})")
    return lines
