"""Issue 4 on the simulator, over real SSH: strategies, deadline, groups, self VM, survival.

Times here are simulated seconds (the simulator's clock); the tests never assert wall-clock
figures, only the order of events and the host's own timeline.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from simhelpers import SimKeys, make_sim_keys, sequence_started, sim_settings
from test_shutdown import marker_token

from esxi_suspend.demo.command import prepare_env
from esxi_suspend.errors import ExitCode
from esxi_suspend.host.script import shutdown_command
from esxi_suspend.host.sequence import FOLLOW_GRACE
from esxi_suspend.runner import run_hosts
from esxi_suspend.settings.model import Settings, Target
from esxi_suspend.simulator import Fate, SimulatedHost, fleet_from_dict

SCALE = 0.005  # 1 simulated second = 5 ms


def vm(vmid: int, name: str, shutdown: float, **extra: Any) -> dict[str, Any]:
    return {"id": vmid, "name": name, "tools": True, "shutdown_seconds": shutdown, **extra}


FLEET = {
    "name": "esxi-test",
    "stop_action": "PowerOff",
    "stop_delay": 120,
    "suspend_seconds": 5,
    # ESXi takes half a minute to stop its services; at this time scale that is what leaves
    # our poll (every ~20 simulated s, Fabric's round trip included) time to see the end.
    "host_poweroff_seconds": 30,
    "vms": [
        vm(1, "nut-client", 10),
        vm(2, "app-1", 40, autostart=1, stop_action="guestShutdown"),
        vm(3, "app-2", 60, autostart=2, stop_action="guestShutdown"),
        vm(4, "db", 90, autostart=3, stop_action="guestShutdown"),
        vm(5, "nas", 30, autostart=4, stop_action="guestShutdown"),
        vm(6, "no-tools", 30, tools=False),
        vm(7, "outside", 20),
    ],
}


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> SimKeys:
    return make_sim_keys(tmp_path_factory.mktemp("sim-keys"))


def simulated(keys: SimKeys, fleet: dict[str, Any] = FLEET) -> SimulatedHost:
    return SimulatedHost(fleet_from_dict(fleet), authorized_key=keys.public, time_scale=SCALE)


def shut_down(host: SimulatedHost, keys: SimKeys, tmp_path: Path, **settings: Any) -> ExitCode:
    """The real shutdown path (all hosts of the settings) against the simulated host."""
    config = sim_settings(host, keys, tmp_path, **settings)
    (result,) = run_hosts(config, dry_run=False)
    assert host.wait_powered_off(10), result.summary()
    return result.exit_code


def started(host: SimulatedHost, vmid: int) -> float:
    """When the host first started stopping this VM (simulated seconds)."""
    words = ("guest shutdown started", "suspending", "powering off")
    return min(e.at for e in host.events if e.vmid == vmid and any(w in e.text for w in words))


def stopped(host: SimulatedHost, vmid: int) -> float:
    return min(e.at for e in host.events if e.vmid == vmid and e.fate is not None)


def test_autostop_quirk_fixed_nothing_hard_killed(keys: SimKeys, tmp_path: Path) -> None:
    with simulated(keys) as host:
        code = shut_down(host, keys, tmp_path, deadline=900)
        fates = host.fates()
    assert code == ExitCode.OK
    assert host.hard_killed() == []
    assert fates[7] is Fate.CLEAN_SHUTDOWN  # outside the autostart list: autostop skips it
    assert fates[6] is Fate.SUSPENDED  # no tools: suspend, not a hard power-off


@pytest.mark.parametrize("strategy", ["autostop", "parallel"])
def test_our_side_only_starts_the_sequence_and_reads_its_log(
    keys: SimKeys, tmp_path: Path, strategy: str
) -> None:
    with simulated(keys) as host:
        code = shut_down(host, keys, tmp_path, strategy=strategy, deadline=900)
        commands = host.commands()
        texts = [e.text for e in host.events]
        logs = [text for path, text in host.files.items() if "esxi-suspend-" in path]
    assert code == ExitCode.OK
    # one SSH command: the inventory, the script on its input, the host's log as it grows
    (command,) = commands
    token = marker_token(command)
    assert token is not None
    log = re.findall(r'tail -n 100000 -f "([^"]+)"', command)[0]
    bound = int(re.findall(r"\( sleep (\d+); kill \$k \)", command)[0])
    assert command == shutdown_command(token, log, bound) and bound == 900 + FOLLOW_GRACE
    # each host command once: one autostop at most, no stop action twice, no fault for a VM
    # already down
    assert sum("autostop: started" in t for t in texts) == (1 if strategy == "autostop" else 0)
    for vmid in range(1, 8):
        for what in ("guest shutdown started", "suspending"):
            assert sum(f"VM {vmid} " in t and what in t for t in texts) <= 1, (vmid, what)
    assert logs and not any("InvalidPowerState" in text for text in logs)


def test_parallel_takes_the_slowest_vm_not_the_sum(keys: SimKeys, tmp_path: Path) -> None:
    with simulated(keys) as host:
        shut_down(host, keys, tmp_path, strategy="parallel", deadline=900)
        first = min(e.at for e in host.events if e.kind == "vm")
        parallel = (host.powered_off_at or 0) - first
        assert host.hard_killed() == []
    with simulated(keys) as host:
        shut_down(host, keys, tmp_path / "autostop", deadline=900)
        first = min(e.at for e in host.events if e.kind == "vm")
        sequential = (host.powered_off_at or 0) - first
    slowest = 90
    assert parallel < sequential
    assert parallel < slowest * 1.6, f"parallel took {parallel:.0f} s for a slowest VM of 90 s"


def test_deadline_is_honoured_and_stragglers_suspended(keys: SimKeys, tmp_path: Path) -> None:
    slow = {**FLEET, "vms": [vm(4, "db", 900, autostart=1, stop_action="guestShutdown")]}
    with simulated(keys, slow) as host:
        code = shut_down(host, keys, tmp_path, strategy="parallel", deadline=120)
        sequence_start = min(e.at for e in host.events if e.kind == "vm")
        # The log streams in host time: its last lines reach us before the power goes.
        assert code == ExitCode.OK
        # ESXI_DEADLINE is to the host's `poweroff`; the power goes host_poweroff_seconds later
        poweroff = min(e.at for e in host.events if "the host is going down" in e.text)
        assert poweroff - sequence_start <= 120 + 10  # a round trip's slack
        assert (host.powered_off_at or 0) - poweroff >= 29  # the fleet's 30 s, give or take
        assert host.fates()[4] is Fate.SUSPENDED  # straggler: suspended, not hard-killed


def test_ordered_groups_stop_one_after_another(keys: SimKeys, tmp_path: Path) -> None:
    with simulated(keys) as host:
        shut_down(
            host,
            keys,
            tmp_path,
            strategy="parallel",
            deadline=900,
            vm_order=(("app-1", "app-2"), ("db",), ("5",)),
        )
        assert stopped(host, 2) <= started(host, 4) and stopped(host, 3) <= started(host, 4)
        assert stopped(host, 4) <= started(host, 5)
        # VMs named in no group stop with the first one
        assert started(host, 7) < stopped(host, 2)
        assert host.hard_killed() == []


def test_hostile_vm_names_are_only_data(keys: SimKeys, tmp_path: Path) -> None:
    hostile = {
        **FLEET,
        "vms": [
            vm(1, "x; poweroff", 10),
            vm(2, "$(reboot)", 10, autostart=1, stop_action="guestShutdown"),
            vm(3, 'it\'s "quoted" `id`', 10, annotation="line one\nline two; reboot"),
            vm(4, "Zürich ☃ 東京", 10),
        ],
    }
    with simulated(keys, hostile) as host:
        code = shut_down(host, keys, tmp_path, strategy="parallel", deadline=600)
        commands = " ".join(host.commands())
        assert code == ExitCode.OK
        assert "reboot" not in commands and "quoted" not in commands and "Zürich" not in commands
        assert all(fate is not Fate.HARD_KILLED for fate in host.fates().values())


def test_self_vm_goes_last_by_suspend(keys: SimKeys, tmp_path: Path) -> None:
    with simulated(keys) as host:
        shut_down(host, keys, tmp_path, strategy="parallel", deadline=900, self_vm="nut-client")
        assert host.fates()[1] is Fate.SUSPENDED
        others = [stopped(host, vmid) for vmid in (2, 3, 4, 5, 6, 7)]
        assert started(host, 1) >= max(others)


def test_many_hosts_in_parallel_one_unreachable(keys: SimKeys, tmp_path: Path) -> None:
    with simulated(keys) as one, simulated(keys) as two:
        config = sim_settings(one, keys, tmp_path, strategy="parallel", deadline=900)
        known = config.known_hosts
        known.write_text(one.known_hosts_line() + two.known_hosts_line())
        dead = Target("127.0.0.1", "root", _free_port())
        targets = (
            Target(one.address, "root", one.port),
            dead,
            Target(two.address, "root", two.port),
        )
        results = run_hosts(_with_targets(config, targets), dry_run=False)
        assert one.wait_powered_off(10) and two.wait_powered_off(10)
    codes = [result.exit_code for result in results]
    assert codes == [ExitCode.OK, ExitCode.CONNECTION, ExitCode.OK]


def _with_targets(settings: Settings, targets: tuple[Target, ...]) -> Settings:
    return replace(settings, targets=targets)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the host side survives us ----------------------------------------------------------------


@pytest.fixture
def command() -> Iterator[Path]:
    path = Path(sys.executable).parent / "esxi-suspend"
    if not path.exists():
        pytest.fail(f"{path} is not installed (pip install -e .)", pytrace=False)
    yield path


def test_host_finishes_after_we_are_killed_mid_sequence(
    keys: SimKeys, tmp_path: Path, command: Path
) -> None:
    with simulated(keys) as host:
        env = prepare_env(tmp_path, host, keys.private.read_text(), SCALE, "parallel")
        ours = subprocess.Popen(
            [str(command), "shutdown", "--env-file", str(env)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        )
        try:
            deadline = time.monotonic() + 15
            while not sequence_started(host):
                assert time.monotonic() < deadline, "the host sequence never started"
                time.sleep(0.01)
            os.killpg(ours.pid, signal.SIGKILL)  # our process dies mid-sequence ...
            host.drop_sessions()  # ... and its connection with it
        finally:
            ours.wait(10)
        assert host.wait_powered_off(15), "the host did not finish the sequence on its own"
        assert host.hard_killed() == []


POKE = """
import signal, sys, threading, time
from esxi_suspend import cli

def poke():  # SIGTERM to a host thread, not to the main one: the kernel may do the same
    time.sleep(float(sys.argv[2]))
    host = next(t for t in threading.enumerate() if t.name.startswith("host-"))
    signal.pthread_kill(host.ident, signal.SIGTERM)

threading.Thread(target=poke, daemon=True).start()
sys.exit(cli.main(["shutdown", "--env-file", sys.argv[1]]))
"""


def test_sigterm_caught_by_another_thread_still_stops_us_at_once(
    keys: SimKeys, tmp_path: Path
) -> None:
    slow = {**FLEET, "vms": [vm(4, "db", 900, autostart=1, stop_action="guestShutdown")]}
    scale = 0.05  # the host sequence lasts ~10 real s: the signal comes in the middle
    fleet = fleet_from_dict(slow)
    with SimulatedHost(fleet, authorized_key=keys.public, time_scale=scale) as host:
        env = prepare_env(tmp_path, host, keys.private.read_text(), scale, "parallel")
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-c", POKE, str(env), "1.5"],
            capture_output=True,
            text=True,
            timeout=60,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        )
        took = time.monotonic() - started
        assert sequence_started(host), done.stderr
    assert done.returncode == 143, done.stderr
    assert "SIGTERM received: stopped" in done.stderr
    # the host sequence lasts ~10 s: without a prompt stop we would wait for its end
    assert took < 5, f"SIGTERM in a host thread took {took:.1f} s to stop us"
