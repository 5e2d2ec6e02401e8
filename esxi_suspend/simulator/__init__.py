"""A simulated VMware ESXi host, served over real SSH: for `esxi-suspend demo`, tests and
benchmarks only. The shutdown path never imports it.

    fleet.py   the host's description (VMs, autostart settings), JSON/TOML, the default fleet
    host.py    the state: simulated clock, VM power states, autostop, poweroff, event log
    vimcmd.py  ESXi's commands (vim-cmd, vmware, poweroff) and their output shapes
    shell.py   the `sh` subset: ; && || & quotes redirections, builtins
    server.py  the SSH server (paramiko) and `SimulatedHost`, the API tests use
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
from esxi_suspend.simulator.host import Event, Fate
from esxi_suspend.simulator.server import SimulatedHost, generate_ed25519

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
