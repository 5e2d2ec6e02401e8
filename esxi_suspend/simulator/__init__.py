"""A simulated VMware ESXi host, served over real SSH: for `esxi-suspend demo`, tests and
benchmarks only. The shutdown path never imports it, and it imports nothing of ours outside
itself.

    fleet.py           the host's description (VMs, autostart settings), JSON/TOML, defaults
    vm.py              one VM: power states, fate, live state, the vim.fault refusals
    clock.py           simulated time (`time_scale`) and the waits on it; the host's lock
    hostd.py           hostd's cost: each call's latency in one of a few slots
    host.py            the state: VMs, files, jobs, events, host power-off
    autostop.py        the autostart manager's stop sequence (autostop)
    vimcmd.py          ESXi's commands (vim-cmd, vmware, poweroff, shutdown.sh): what they do
    vimcmd_output.py   what vim-cmd prints: tables and vim.* blocks of ESXi 6.x/7.x
    esxcli.py          `esxcli vm process list` (5.0+): the running VMs in one hostd call
    shell/             the `sh` our command lines need, busybox ash's semantics
    session.py         one SSH connection: login, exec channels, their output and exit status
    server.py          the SSH listener (paramiko) and `SimulatedHost`, the API tests use
"""

from esxi_suspend.simulator.fleet import (
    Fleet,
    FleetError,
    VmSpec,
    default_fleet,
    fleet_from_dict,
    generated_fleet,
    load_fleet,
)
from esxi_suspend.simulator.host import Event
from esxi_suspend.simulator.server import SimulatedHost, generate_ed25519
from esxi_suspend.simulator.vm import Fate

__all__ = [
    "Event",
    "Fate",
    "Fleet",
    "FleetError",
    "SimulatedHost",
    "VmSpec",
    "default_fleet",
    "fleet_from_dict",
    "generate_ed25519",
    "generated_fleet",
    "load_fleet",
]
