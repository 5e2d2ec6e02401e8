"""Helpers for tests against the built-in ESXi simulator (esxi_suspend.simulator)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from esxi_suspend.settings.model import RestartSettings, Settings
from esxi_suspend.simulator import SimulatedHost, generate_ed25519
from esxi_suspend.simulator.host import HostModel

# The `make_host` fixture's maker (conftest.py): make(fleet=None, time_scale=..., **knobs).
MakeHost = Callable[..., HostModel]


@dataclass(frozen=True)
class SimKeys:
    private: Path
    public: str


def make_sim_keys(directory: Path) -> SimKeys:
    directory.mkdir(parents=True, exist_ok=True)
    private, public = generate_ed25519()
    path = directory / "id_ed25519"
    path.write_text(private)
    path.chmod(0o600)
    return SimKeys(path, public)


def sim_settings(
    host: SimulatedHost,
    keys: SimKeys,
    directory: Path,
    timeout: int = 20,
    **overrides: Any,
) -> Settings:
    """Settings for the real RemoteHost/shutdown path pointing at the simulated host."""
    directory.mkdir(parents=True, exist_ok=True)
    known_hosts = directory / "known_hosts"
    known_hosts.write_text(host.known_hosts_line())
    settings = Settings(
        source=directory / "esxi-suspend.env",
        host=host.address,
        user="root",
        port=host.port,
        key_file=keys.private,
        known_hosts=known_hosts,
        connect_timeout=5,
        command_timeout=timeout,
        restart=RestartSettings(service="none"),
        poll_interval=0.02,  # real seconds: a few simulated seconds at the tests' time scale
    )
    return replace(settings, **overrides)


def sequence_started(host: SimulatedHost) -> bool:
    """The host sequence runs: its log on the host says so (it is the one command we send
    that the host's own events do not name). The log, not the script's own file, which holds
    those words before it runs."""
    return any(
        "host sequence started" in text
        for path, text in host.files.items()
        if path.endswith(".log")
    )
