"""ESXi's own commands on the simulated host: `vim-cmd`, `vmware`, `poweroff`, `shutdown.sh`.

What each does: pays its round trip to hostd, then reads or changes the host. What the reads
print is in `vimcmd_output.py`; autostop's sequence is in `autostop.py`.
"""

from __future__ import annotations

from typing import Callable

from esxi_suspend.simulator.autostop import autostop
from esxi_suspend.simulator.host import HostDown, HostModel, Job
from esxi_suspend.simulator.hostd import RESET, Write, shaped_call
from esxi_suspend.simulator.vimcmd_output import (
    get_autostartseq,
    get_config,
    get_defaults,
    get_guest,
    get_summary,
    getallvms,
    getstate,
)
from esxi_suspend.simulator.vm import VmOperationError

_USAGE = "Usage: vim-cmd [options] [command]\n"


def vim_cmd(host: HostModel, job: Job, args: list[str], write: Write) -> int:
    """`vim-cmd SUBCOMMAND [ID]`; an unknown subcommand or VM id fails like ESXi's. Every call
    first pays its round trip to hostd (`HostModel.hostd_call`), failing ones too; a busy
    hostd may turn it away. The fleet's `fault_exit0` and `no_final_newline` apply here."""
    return shaped_call(
        host.fleet, lambda out: _vim_cmd(host, job, args, out), lambda t: "fault." in t, write
    )


def _vim_cmd(host: HostModel, job: Job, args: list[str], write: Write) -> int:
    if not host.hostd_call(job, " ".join(["vim-cmd", *args])):
        write(1, f"{RESET}\n")
        return 1
    if not args:
        write(2, _USAGE)
        return 1
    command, rest = args[0], args[1:]
    host_commands: dict[str, Callable[[], str]] = {
        "vmsvc/getallvms": lambda: getallvms(host),
        "hostsvc/autostartmanager/get_defaults": lambda: get_defaults(host),
        "hostsvc/autostartmanager/get_autostartseq": lambda: get_autostartseq(host),
    }
    if command in host_commands:
        write(1, host_commands[command]())
        return 0
    if command == "hostsvc/autostartmanager/autostop":
        autostop(host, job)
        return 0
    vm_commands = {
        "vmsvc/power.getstate", "vmsvc/get.guest", "vmsvc/get.config", "vmsvc/get.summary",
        "vmsvc/power.shutdown", "vmsvc/power.suspend", "vmsvc/power.off", "vmsvc/power.on",
    }  # fmt: skip
    if command not in vm_commands:
        write(2, f"Unknown command: '{command}'\n")
        return 1
    vm = host.vm(int(rest[0])) if rest and rest[0].isdigit() else None
    if vm is None:
        write(2, f'Unable to find a VM corresponding to "{rest[0] if rest else ""}"\n')
        return 1
    try:
        if command == "vmsvc/power.getstate":
            write(1, getstate(vm))
        elif command == "vmsvc/get.guest":
            write(1, get_guest(vm))
        elif command == "vmsvc/get.config":
            write(1, get_config(vm))
        elif command == "vmsvc/get.summary":
            write(1, get_summary(vm))
        elif command == "vmsvc/power.shutdown":
            host.guest_shutdown(vm, job.session)
        elif command == "vmsvc/power.suspend":
            write(1, "Suspending VM:\n")
            host.suspend(vm, job)
        elif command == "vmsvc/power.off":
            write(1, "Powering off VM:\n")
            host.power_off_vm(vm, job)
        else:
            write(1, "Powering on VM:\n")
            host.power_on(vm, job)
    except VmOperationError as exc:
        write(1, str(exc))
        return 1
    return 0


def vmware(host: HostModel, args: list[str], write: Write, job: Job | None = None) -> int:
    """`vmware -v`/`-l`: also a hostd call, so it pays `command_latency` too. Without `job`
    the wait still ends when the host powers off, but not when the session drops."""
    host.hostd_call(job, may_reset=False)
    if args in (["-v"], ["--version"]):
        write(1, f"{host.fleet.version}\n")
    elif args in (["-l"], ["--level"]):
        write(1, f"{host.fleet.version.rsplit(' build', 1)[0]} GA\n")
    elif args == ["-vl"]:
        write(1, f"{host.fleet.version}\n{host.fleet.version.rsplit(' build', 1)[0]} GA\n")
    else:
        write(2, "Usage: vmware [-v|--version] [-l|--level]\n")
        return 1
    return 0


def poweroff(host: HostModel, job: Job) -> int:
    """The host goes down, `host_poweroff_seconds` after the call (its services stop first;
    sessions still answer meanwhile): this command never returns an exit status."""
    host.record("host", "poweroff: the host is going down", job.session)
    host.sleep(host.fleet.host_poweroff_seconds, None)
    host.power_off_host(job.session, "poweroff")
    raise HostDown


def shutdown_sh(host: HostModel, job: Job) -> int:
    """`/sbin/shutdown.sh`: stops host services and saves the configuration; VMs untouched."""
    host.record("host", "shutdown.sh: stopping services, saving configuration", job.session)
    host.sleep(host.fleet.host_shutdown_seconds, job)
    host.record("host", "shutdown.sh: done", job.session)
    return 0
