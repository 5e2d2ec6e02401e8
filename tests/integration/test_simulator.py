"""The built-in ESXi simulator over real SSH, driven by our own RemoteHost and shutdown path."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from simhelpers import SimKeys, make_sim_keys, sim_settings

from esxi_suspend.errors import (
    ConnectionFailed,
    ExitCode,
    HostKeyRejected,
    SessionDropped,
)
from esxi_suspend.host.shutdown import HostResult, check_host, shutdown_host
from esxi_suspend.simulator import Fate, SimulatedHost, default_fleet, generate_ed25519
from esxi_suspend.ssh.remote import RemoteHost

DETACHED = (
    'nohup sh -c "vim-cmd hostsvc/autostartmanager/autostop; /sbin/shutdown.sh && '
    '/sbin/poweroff" >/dev/null 2>&1 </dev/null &'
)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> SimKeys:
    return make_sim_keys(tmp_path_factory.mktemp("sim-keys"))


@pytest.fixture
def host(keys: SimKeys) -> Iterator[SimulatedHost]:
    with SimulatedHost(authorized_key=keys.public, time_scale=0.005) as simulated:
        yield simulated


def connect(host: SimulatedHost, keys: SimKeys, tmp_path: Path, timeout: int = 20) -> RemoteHost:
    remote = RemoteHost(sim_settings(host, keys, tmp_path, timeout))
    remote.open()
    return remote


def test_dry_run_plan_reads_the_simulator(
    host: SimulatedHost, keys: SimKeys, tmp_path: Path
) -> None:
    settings = sim_settings(host, keys, tmp_path)
    result = HostResult(settings.host)
    with RemoteHost(settings) as remote:
        check_host(remote, settings, result)
    assert result.exit_code == ExitCode.OK, result.summary()
    assert "found /sbin/poweroff" in [step.detail for step in result.steps]
    for name in ("nut-client", "Web Server (prod)", "db-01 [primary]", "Café test VM"):
        assert name in result.report
    assert "running VM(s) ESXi's autostop alone would leave running" in result.report
    assert not host.powered_off and all(f is not Fate.HARD_KILLED for f in host.fates().values())
    changing = [c for c in host.commands() if "power." in c and "getstate" not in c]
    assert changing == [] and "autostop" not in " ".join(host.commands())


def test_check_rehearses_on_the_simulator_and_changes_nothing(
    host: SimulatedHost, keys: SimKeys, tmp_path: Path
) -> None:
    settings = sim_settings(host, keys, tmp_path)
    result = HostResult(settings.host)

    def reconnect() -> RemoteHost:
        return connect(host, keys, tmp_path)

    with RemoteHost(settings) as remote:
        check_host(remote, settings, result, None, reconnect)
    assert result.exit_code == ExitCode.OK, result.summary()
    names = [step.name for step in result.steps]
    assert names[-4:] == ["busybox", "vim-cmd latency", "rehearsal", "detached job"], names
    assert "    rehearsal: ok: the host script ran detached" in result.report
    assert result.capture is not None and result.capture["fleet"]["vms"]  # type: ignore[index]
    assert not host.powered_off
    assert all(f in (Fate.RUNNING, Fate.WAS_OFF) for f in host.fates().values())
    changing = [c for c in host.commands() if "power." in c and "getstate" not in c]
    assert changing == [] and "autostop" not in " ".join(host.commands())


def test_shutdown_path_against_the_simulator(keys: SimKeys, tmp_path: Path) -> None:
    # The power goes host_poweroff_seconds after `poweroff`, and the session with it. At this
    # time scale the default 10 s is 50 ms: a loaded machine could miss the host's last log
    # lines (as no real host, whose shutdown takes a minute, ever lets us): 60 s is 0.3 s.
    fleet = replace(default_fleet(), host_poweroff_seconds=60.0)
    with SimulatedHost(fleet, authorized_key=keys.public, time_scale=0.005) as host:
        _shut_down(host, keys, tmp_path)


def _shut_down(host: SimulatedHost, keys: SimKeys, tmp_path: Path) -> None:
    settings = sim_settings(host, keys, tmp_path, deadline=900)  # room for sequential autostop
    result = HostResult(settings.host)
    with RemoteHost(settings) as remote:
        shutdown_host(remote, settings, result, lambda: None)
    assert result.exit_code == ExitCode.OK, result.summary()
    assert host.wait_powered_off(5)
    # the quirk fixed: VMs outside the autostart list got their own stop first
    assert host.hard_killed() == []
    assert host.fates()[12] is Fate.CLEAN_SHUTDOWN
    assert host.fates()[1] is Fate.CLEAN_SHUTDOWN and host.fates()[40] is Fate.CLEAN_SHUTDOWN


def test_poweroff_drops_the_session_and_the_listener(
    host: SimulatedHost, keys: SimKeys, tmp_path: Path
) -> None:
    remote = connect(host, keys, tmp_path)
    with pytest.raises(SessionDropped):
        remote.run("poweroff", 10)
    remote.close()
    with pytest.raises(ConnectionFailed):
        connect(host, keys, tmp_path)


def test_drop_sessions_kills_the_foreground_autostop(
    host: SimulatedHost, keys: SimKeys, tmp_path: Path
) -> None:
    remote = connect(host, keys, tmp_path)
    failure: list[BaseException] = []

    def autostop() -> None:
        try:
            remote.run("vim-cmd hostsvc/autostartmanager/autostop", 20)
        except Exception as exc:
            failure.append(exc)

    worker = threading.Thread(target=autostop)
    worker.start()
    time.sleep(0.3)  # 60 simulated s: inside win2019's 95 s guest shutdown
    assert host.drop_sessions() == 1
    worker.join(10)
    assert failure and isinstance(failure[0], SessionDropped)
    time.sleep(0.6)
    fates = host.fates()
    assert fates[15] is Fate.CLEAN_SHUTDOWN  # a started guest shutdown still completes
    assert fates[12] is Fate.RUNNING and fates[13] is Fate.RUNNING  # autostop died with us
    assert not host.powered_off


def test_detached_sequence_survives_our_session(
    host: SimulatedHost, keys: SimKeys, tmp_path: Path
) -> None:
    remote = connect(host, keys, tmp_path)
    assert remote.run(DETACHED, 10).exit_status == 0
    assert host.drop_sessions() == 1
    assert host.wait_powered_off(15)
    fates = host.fates()
    assert fates[12] is fates[13] is fates[15] is Fate.CLEAN_SHUTDOWN
    assert sorted(host.hard_killed()) == [1, 20, 40]
    deadline = time.monotonic() + 5
    while host.background_jobs() and time.monotonic() < deadline:  # the job ends after poweroff
        time.sleep(0.01)
    assert host.background_jobs() == []


def test_each_vim_cmd_pays_its_hostd_round_trip(
    host: SimulatedHost, keys: SimKeys, tmp_path: Path
) -> None:
    with RemoteHost(sim_settings(host, keys, tmp_path)) as remote:
        result = remote.run("vim-cmd vmsvc/get.summary 12", 10)
    assert result.exit_status == 0
    assert 'powerState = "poweredOn"' in result.stdout
    assert 'toolsRunningStatus = "guestToolsRunning"' in result.stdout
    exec_at = next(e.at for e in host.events if e.kind == "exec")
    exit_at = next(e.at for e in host.events if e.kind == "exit")
    assert exit_at - exec_at >= host.fleet.command_latency == 0.5


def test_wrong_client_key_and_changed_host_key(
    host: SimulatedHost, keys: SimKeys, tmp_path: Path
) -> None:
    stranger = make_sim_keys(tmp_path / "stranger")
    with pytest.raises(ConnectionFailed, match="refused our key"):
        connect(host, stranger, tmp_path / "a")
    settings = sim_settings(host, keys, tmp_path)
    settings.known_hosts.write_text(f"[127.0.0.1]:{host.port} {generate_ed25519()[1]}\n")
    with pytest.raises(HostKeyRejected, match="HOST KEY CHANGED"):
        RemoteHost(settings).open()
    assert host.commands() == []
