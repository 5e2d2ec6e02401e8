"""`esxi-suspend demo`: the real shutdown path against a simulated ESXi host, with a timeline.

Starts the built-in simulator (default fleet, or `--fleet FILE`) on 127.0.0.1, writes a
throwaway key, a pinned known_hosts and an env file in a temporary directory, and runs
`runner.run`, the same code upsmon's SHUTDOWNCMD runs, with a harmless local restart command.
The timeline is printed as it happens, in simulated seconds; each VM's fate at the end, then
what a real outage does next, which the demo does not play (power back; a host's BMC).
Nothing leaves this machine and nothing is logged to syslog.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
import tempfile
from contextlib import ExitStack, redirect_stdout
from pathlib import Path

from esxi_suspend import clock, lock, runner
from esxi_suspend.demo.timeline import Capture, ThroughTimeline, Timeline, own_logging
from esxi_suspend.errors import ExitCode
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
DEFAULT_STRATEGY = "autostop"
TMP_PREFIX = "esxi-suspend-demo-"


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
                "UPS_NAME": "none",  # this machine's UPS is none of the demo's business
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


def same_demo(
    fleet_file: str | None, dry_run: bool, time_scale: float, strategy: str, verbose: bool
) -> str:
    """The command line that runs this demo again, to paste."""
    words = ["esxi-suspend", "demo"]
    if fleet_file:
        words += ["--fleet", str(Path(fleet_file).resolve())]
    if dry_run:
        words.append("--dry-run")
    words += ["--strategy", strategy]
    if time_scale != DEFAULT_TIME_SCALE:
        words += ["--time-scale", f"{time_scale:g}"]
    if verbose:
        words.append("--verbose")
    return shlex.join(words)


def run(
    fleet_file: str | None,
    dry_run: bool,
    time_scale: float = DEFAULT_TIME_SCALE,
    strategy: str = DEFAULT_STRATEGY,
    verbose: bool = False,
) -> int:
    """Run the demo; `verbose`: the timeline also shows each command line sent to the host."""
    try:
        fleet = load_fleet(fleet_file) if fleet_file else default_fleet()
    except FleetError as exc:
        print(f"esxi-suspend demo: {exc}")
        return int(ExitCode.CONFIG)
    private_key, public_key = generate_ed25519()
    again = same_demo(fleet_file, dry_run, time_scale, strategy, verbose)
    out = sys.stdout
    with ExitStack() as stack:
        logger = stack.enter_context(own_logging())
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=TMP_PREFIX)))
        host = stack.enter_context(
            SimulatedHost(fleet, authorized_key=public_key, time_scale=time_scale)
        )
        env = prepare_env(directory, host, private_key, time_scale, strategy)
        what = "`esxi-suspend shutdown --dry-run`" if dry_run else "`esxi-suspend shutdown`"
        print(f"esxi-suspend demo: simulated ESXi host {fleet.name} ({fleet.version})")
        print(f"  listening on {host.address}:{host.port}, host key pinned; fleet {fleet.source}")
        print(f"  1 simulated second = {time_scale:g} real seconds; times below are simulated")
        print(f"  defaults: stop action {fleet.stop_action}, stop delay {fleet.stop_delay} s")
        print("\n".join(_fleet_table(fleet, host)))
        print(f"\nrunning: {again}")
        print(f"  that is {what}, the code upsmon runs, against the simulated host;")
        print("  its settings are in a temporary env file, removed at the end")
        print("\ntimeline (simulated seconds):", flush=True)
        timeline = Timeline(host, out, verbose)
        capture = Capture(host, timeline)
        logger.addHandler(capture)
        timeline.start()
        try:
            # ESXI_DEADLINE (and `check`'s inventory time) on the simulated clock, like the
            # rest of the timeline: the host sequence gets what a real host would.
            with redirect_stdout(ThroughTimeline(timeline)), clock.counting_on(host.simulated_now):
                code = runner.run(str(env), dry_run=dry_run)
            if not dry_run:
                host.wait_powered_off(5)
        finally:
            logger.removeHandler(capture)
            timeline.stop()
            _remove_our_lock(host)
        restarted = (directory / "nut-monitor-restarted").exists()
        print()
        print("\n".join(_outcome(host, dry_run, restarted, code)), flush=True)
    return int(code)


def _remove_our_lock(host: SimulatedHost) -> None:
    """The host lock file `shutdown` left for the simulated host, which is gone with it."""
    path = lock.lock_path(host.address, host.port)
    with contextlib.suppress(OSError):
        if path.read_text().strip() == str(os.getpid()):
            path.unlink()


def _outcome(host: SimulatedHost, dry_run: bool, restarted: bool, code: ExitCode) -> list[str]:
    """Each VM's fate, the totals, the exit code: what the timeline adds up to."""
    fates = host.fates()
    lines = ["each VM's fate:"]
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
    if not dry_run and host.powered_off_at is not None:
        lines += AFTER_POWER_OFF
    lines.append(f"esxi-suspend exit {int(code)} ({code.name})")
    return lines


# The rest of a real outage, which the demo (no UPS, no BMC) does not play: said once, at the end.
AFTER_POWER_OFF = [
    "",
    "in a real outage, what follows (not simulated here; docs/outage.md shows a real run):",
    "  a host with a BMC (ESXI_IPMI_HOST) is confirmed off by its power state;",
    "  the run waits for power back, then re-arms the NUT monitor; once mains is steady and",
    "  the battery recharged, each host is powered on by its BMC, else by Wake-on-LAN",
    "  (ESXI_WOL_MAC); a host with a BMC is then waited for until its SSH port answers",
    "",
]
