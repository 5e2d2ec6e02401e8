"""ESXi's `esxcli` on the simulated host: `esxcli vm process list` only (ESXi 5.0+, VMware KB
1014165), the VMs whose VMX process runs, in one hostd call.

Apart from `vimcmd.py` because it is another program with its own error texts, usage and
4.x gap (`esxcli_namespace_missing`: 4.1 named it `esxcli vms vm list`), though it pays the
same round trip to hostd. Output, as public pastes of 5.x-8.x hosts show it: one record per
powered-on VM (suspended and off VMs are not listed), records separated by a blank line, the
display name first and unindented; nothing at all when no VM runs.

    ubuntuc1
       World ID: 527611
       Process ID: 0
       VMX Cartel ID: 527610
       UUID: 56 4d 89 0e 68 65 d4 86-22 78 80 af 60 16 e0 e0
       Display Name: ubuntuc1
       Config File: /vmfs/volumes/661ab9c9-ea3e9a38-f0ba-d89ef3ff34e7/ubuntuc1/ubuntuX.vmx
"""

from __future__ import annotations

import hashlib

from esxi_suspend.simulator.fleet import VmSpec
from esxi_suspend.simulator.host import HostModel, Job
from esxi_suspend.simulator.hostd import RESET, Write, shaped_call
from esxi_suspend.simulator.vm import ON

VM_PROCESS_LIST = ["vm", "process", "list"]
USAGE = (
    "Usage: esxcli [options] {namespace}+ {cmd} [cmd options]\n"
    "\n"
    "Options:\n"
    "  --formatter=FORMATTER\n"
    "                        Override the formatter to use for a given command. Available "
    "formatter: xml, csv, keyvalue\n"
    "  --debug               Enable debug or internal use options\n"
    "  --version             Display version information for the script\n"
    "  -?, --help            Display usage information for the script\n"
    "\n"
    "Available Namespaces:\n"
    "  esxcli                Commands that operate on the esxcli system itself allowing users "
    "to get additional information.\n"
    "  hardware              VMKernel hardware properties and commands for configuring "
    "hardware.\n"
    "  network               Operations that pertain to the maintenance of networking on an "
    "ESX host.\n"
    "  storage               VMware storage commands.\n"
    "  system                VMKernel system properties and commands for configuring "
    "properties of the kernel core system and related system services.\n"
    "  vm                    A small number of operations that allow a user to Control Virtual "
    "Machine operations.\n"
)


def unknown(args: list[str]) -> str:
    """What esxcli answers a namespace or command it does not have."""
    return f"Error: Unknown command or namespace {' '.join(args)}\n"


def esxcli(host: HostModel, job: Job, args: list[str], write: Write) -> int:
    """`esxcli vm process list`; no arguments print the usage (exit 1), any others an unknown
    namespace (exit 1). Every call first pays its round trip to hostd, as a vim-cmd does
    (`HostModel.hostd_call`); a busy hostd may turn it away. The fleet's `fault_exit0`,
    `no_final_newline` and `esxcli_namespace_missing` apply here."""
    return shaped_call(
        host.fleet,
        lambda out: _esxcli(host, job, args, out),
        lambda text: text.startswith("Error:"),
        write,
    )


def _esxcli(host: HostModel, job: Job, args: list[str], write: Write) -> int:
    if not host.hostd_call(job, " ".join(["esxcli", *args])):
        write(1, f"{RESET}\n")
        return 1
    if not args:
        write(1, USAGE)
        return 1
    if args != VM_PROCESS_LIST or host.fleet.esxcli_namespace_missing:
        write(1, unknown(args))
        return 1
    write(1, vm_process_list(host))
    return 0


def vm_process_list(host: HostModel) -> str:
    """The records of the powered-on VMs, in vmid order; "" when none runs."""
    with host.cond:
        host.settle()
        running = sorted((vm.spec for vm in host.vms.values() if vm.power == ON), key=_vmid)
    return "\n".join(_record(spec) for spec in running)


def _vmid(spec: VmSpec) -> int:
    return spec.vmid


def _record(spec: VmSpec) -> str:
    world = 527_600 + 36 * spec.vmid  # stable: ids of the size a 7.x host gives
    return (
        f"{spec.name}\n"
        f"   World ID: {world}\n"
        "   Process ID: 0\n"
        f"   VMX Cartel ID: {world - 1}\n"
        f"   UUID: {esxcli_uuid(spec.bios_uuid)}\n"
        f"   Display Name: {spec.name}\n"
        f"   Config File: {config_file(spec)}\n"
    )


def esxcli_uuid(bios_uuid: str) -> str:
    """get.summary's `564d890e-6865-d486-2278-80af6016e0e0` in the vmx's `uuid.bios` form,
    `56 4d 89 0e 68 65 d4 86-22 78 80 af 60 16 e0 e0`; anything not 16 bytes of hex as it is."""
    digits = bios_uuid.replace("-", "").replace(" ", "").lower()
    if len(digits) != 32 or any(c not in "0123456789abcdef" for c in digits):
        return bios_uuid
    pairs = [digits[i : i + 2] for i in range(0, 32, 2)]
    return f"{' '.join(pairs[:8])}-{' '.join(pairs[8:])}"


def volume_uuid(datastore: str) -> str:
    """A stable fake VMFS volume UUID for a datastore's name, shaped as a real one
    (`661ab9c9-ea3e9a38-f0ba-d89ef3ff34e7`); the fake SSH hosts derive theirs alike."""
    h = hashlib.md5(datastore.encode(), usedforsecurity=False).hexdigest()
    return f"{h[:8]}-{h[8:16]}-{h[16:20]}-{h[20:]}"


def config_file(spec: VmSpec) -> str:
    """`/vmfs/volumes/<volume UUID>/<path>`; a VM on no datastore (`[] /var/run/crx/...`)
    has its path as it is."""
    if not spec.datastore:
        return spec.vmx_path
    return f"/vmfs/volumes/{volume_uuid(spec.datastore)}/{spec.vmx_path}"
