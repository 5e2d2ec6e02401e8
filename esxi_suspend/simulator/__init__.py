"""A simulated VMware ESXi host, served over real SSH: for `esxi-suspend demo`, tests and
benchmarks only. The shutdown path never imports it.

    fleet.py           the host's description (VMs, autostart settings), JSON/TOML, defaults
    host.py            the state: simulated clock, VM power states, autostop, poweroff, events
    vimcmd.py          ESXi's commands (vim-cmd, vmware, poweroff) and their output shapes
    shell.py           the `sh` our command lines need, busybox ash's semantics: runs a script
    shell_lexer.py     its tokens: words (quotes, `$` expansions), operators, redirections
    shell_syntax.py    its grammar: the script parsed into a tree of commands
    shell_expand.py    its expansions: parameters, $(...), $(( )), splitting, patterns
    shell_state.py     what a running shell holds: variables, fds, `&` children, signals
    shell_commands.py  its builtins, busybox applets and ESXi's programs (via vimcmd.py)
    server.py          the SSH server (paramiko) and `SimulatedHost`, the API tests use
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
