"""What `vim-cmd` prints about the simulated host: its tables and vim.* blocks.

Output is in the shapes of ESXi 6.x/7.x (see /work/shared/esxi/README.md): padded columns,
names with spaces and brackets, `<unset>` values, trailing commas. Apart from `vimcmd.py`
because these are pure functions of the host's state, long templates a reader compares with a
real host's output, while `vimcmd.py` is what the commands do (hostd's cost, power operations).
"""

from __future__ import annotations

from esxi_suspend.simulator.host import HostModel
from esxi_suspend.simulator.vm import ON, SUSPENDED, Vm


def getallvms(host: HostModel) -> str:
    vms = [vm.spec for vm in host.vms.values()]
    rows = [
        (
            str(vm.vmid),
            vm.name,
            f"[{vm.datastore}] {vm.vmx_path}",
            vm.guest_os,
            vm.version,
            vm.annotation,
        )
        for vm in vms
    ]
    header = ("Vmid", "Name", "File", "Guest OS", "Version", "Annotation")
    widths = [max([len(header[i])] + [len(row[i]) for row in rows]) + 3 for i in range(5)]
    widths[0] = max(widths[0], 6)

    def line(cells: tuple[str, ...]) -> str:
        return "".join(c.ljust(w) for c, w in zip(cells[:5], widths)) + cells[5]

    return "\n".join([line(header).rstrip(), *(line(row) for row in rows)]) + "\n"


def getstate(vm: Vm) -> str:
    return f"Retrieved runtime info\n{vm.power}\n"


def get_guest(vm: Vm) -> str:
    running = vm.power == ON and vm.tools
    tools = "guestToolsRunning" if running else "guestToolsNotRunning"
    status = "toolsOk" if running else "toolsNotRunning" if vm.spec.tools else "toolsNotInstalled"
    state = "running" if vm.power == ON else "notRunning"
    return (
        "Guest information:\n\n(vim.vm.GuestInfo) {\n"
        f'   toolsStatus = "{status}",\n'
        '   toolsVersionStatus = "guestToolsCurrent",\n'
        '   toolsVersionStatus2 = "guestToolsCurrent",\n'
        f'   toolsRunningStatus = "{tools}",\n'
        '   toolsVersion = "11269",\n'
        f'   guestId = "{vm.spec.guest_os}",\n'
        f'   hostName = "{vm.spec.name if running else ""}",\n'
        f'   guestState = "{state}",\n'
        "}\n"
    )


def get_config(vm: Vm) -> str:
    spec = vm.spec
    return (
        "Configuration:\n\n(vim.vm.ConfigInfo) {\n"
        '   changeVersion = "2024-01-15T09:12:44.123456Z",\n'
        '   modified = "1970-01-01T00:00:00Z",\n'
        f'   name = "{spec.name}",\n'
        f'   guestFullName = "{spec.guest_os}",\n'
        f'   version = "{spec.version}",\n'
        f'   uuid = "{spec.bios_uuid}",\n'
        f'   instanceUuid = "52{spec.bios_uuid[2:]}",\n'
        "   template = false,\n"
        f'   guestId = "{spec.guest_os}",\n'
        f'   annotation = "{spec.annotation}",\n'
        "   files = (vim.vm.FileInfo) {\n"
        f'      vmPathName = "[{spec.datastore}] {spec.vmx_path}",\n'
        "   },\n"
        "}\n"
    )


_POWER_STATE = {ON: "poweredOn", SUSPENDED: "suspended"}


def _unset_or(value: str, present: bool) -> str:
    return f'"{value}"' if present else "<unset>"


def get_summary(vm: Vm) -> str:
    """`vmsvc/get.summary ID`: power state, tools and config of one VM in one call, the
    shape of ESXi 6.x (nested blocks, a device list, `<unset>` values, trailing commas)."""
    spec = vm.spec
    on = vm.power == ON
    running = on and vm.tools
    power = _POWER_STATE.get(vm.power, "poweredOff")
    status = "toolsOk" if running else "toolsNotRunning" if spec.tools else "toolsNotInstalled"
    version = "guestToolsCurrent" if spec.tools else "guestToolsNotInstalled"
    tools = "guestToolsRunning" if running else "guestToolsNotRunning"
    off = "" if on else "<unset>"  # quickStats are unset for a VM not running
    return (
        "Listsummary:\n\n(vim.vm.Summary) {\n"
        "   dynamicType = <unset>,\n"
        f"   vm = 'vim.VirtualMachine:{spec.vmid}',\n"
        "   runtime = (vim.vm.RuntimeInfo) {\n"
        "      dynamicType = <unset>,\n"
        "      device = (vim.vm.DeviceRuntimeInfo) [\n"
        "         (vim.vm.DeviceRuntimeInfo) {\n"
        "            dynamicType = <unset>,\n"
        "            runtimeState = (vim.vm.DeviceRuntimeInfo.VirtualEthernetCardRuntimeState) {\n"
        "               dynamicType = <unset>,\n"
        "               vmDirectPathGen2Active = false,\n"
        "               vmDirectPathGen2InactiveReasonOther = (string) [\n"
        '                  "vmNptIncompatibleNetwork"\n'
        "               ],\n"
        "            },\n"
        "            key = 4000,\n"
        "         }\n"
        "      ],\n"
        "      host = 'vim.HostSystem:ha-host',\n"
        '      connectionState = "connected",\n'
        f'      powerState = "{power}",\n'
        '      faultToleranceState = "notConfigured",\n'
        "      toolsInstallerMounted = false,\n"
        "      suspendTime = "
        f"{_unset_or('2024-01-15T09:20:03.513219Z', vm.power == SUSPENDED)},\n"
        f"      bootTime = {_unset_or('2024-01-15T09:13:10.271535Z', on)},\n"
        "      suspendInterval = 0,\n"
        "      question = (vim.vm.QuestionInfo) null,\n"
        "      maxCpuUsage = 4400,\n"
        "      maxMemoryUsage = 2048,\n"
        "      numMksConnections = 0,\n"
        '      recordReplayState = "inactive",\n'
        "      consolidationNeeded = false,\n"
        "   },\n"
        "   guest = (vim.vm.Summary.GuestSummary) {\n"
        "      dynamicType = <unset>,\n"
        f'      guestId = "{spec.guest_os}",\n'
        f'      guestFullName = "{spec.guest_os}",\n'
        f'      toolsStatus = "{status}",\n'
        f'      toolsVersionStatus = "{version}",\n'
        f'      toolsVersionStatus2 = "{version}",\n'
        f'      toolsRunningStatus = "{tools}",\n'
        f"      hostName = {_unset_or(spec.name, running)},\n"
        f"      ipAddress = {_unset_or(f'192.0.2.{spec.vmid % 250 + 1}', running)},\n"
        "   },\n"
        "   config = (vim.vm.Summary.ConfigSummary) {\n"
        "      dynamicType = <unset>,\n"
        f'      name = "{spec.name}",\n'
        "      template = false,\n"
        f'      vmPathName = "[{spec.datastore}] {spec.vmx_path}",\n'
        "      memorySizeMB = 2048,\n"
        "      cpuReservation = 0,\n"
        "      memoryReservation = 0,\n"
        "      numCpu = 2,\n"
        "      numEthernetCards = 1,\n"
        "      numVirtualDisks = 1,\n"
        f'      uuid = "{spec.bios_uuid}",\n'
        f'      instanceUuid = "52{spec.bios_uuid[2:]}",\n'
        f'      guestId = "{spec.guest_os}",\n'
        f'      guestFullName = "{spec.guest_os}",\n'
        f'      annotation = "{spec.annotation}",\n'
        "      product = (vim.vApp.ProductInfo) null,\n"
        "      installBootRequired = false,\n"
        "      ftInfo = (vim.vm.FaultToleranceConfigInfo) null,\n"
        "      managedBy = (vim.ext.ManagedByInfo) null,\n"
        "   },\n"
        "   storage = (vim.vm.Summary.StorageSummary) {\n"
        "      dynamicType = <unset>,\n"
        "      committed = 17179869184,\n"
        "      uncommitted = 0,\n"
        "      unshared = 17179869184,\n"
        '      timestamp = "2024-01-15T09:12:44.123456Z",\n'
        "   },\n"
        "   quickStats = (vim.vm.Summary.QuickStats) {\n"
        "      dynamicType = <unset>,\n"
        f"      overallCpuUsage = {off or 42},\n"
        f"      guestMemoryUsage = {off or 204},\n"
        f"      hostMemoryUsage = {off or 2070},\n"
        f'      guestHeartbeatStatus = "{"green" if running else "gray"}",\n'
        f"      uptimeSeconds = {off or 86400},\n"
        "   },\n"
        '   overallStatus = "green",\n'
        "}\n"
    )


def get_defaults(host: HostModel) -> str:
    fleet = host.fleet
    return (
        "(vim.host.AutoStartManager.SystemDefaults) {\n"
        f"   startDelay = {fleet.start_delay},\n"
        f"   stopDelay = {fleet.stop_delay},\n"
        "   waitForHeartbeat = false,\n"
        f'   stopAction = "{fleet.stop_action}",\n'
        f"   enabled = {'true' if fleet.autostart_enabled else 'false'}\n"
        "}\n"
    )


def get_autostartseq(host: HostModel) -> str:
    listed = sorted(
        (vm.spec for vm in host.vms.values() if vm.spec.start_order is not None),
        key=lambda spec: (spec.start_order or 0, spec.vmid),
    )
    if not listed:
        return "(vim.host.AutoStartManager.AutoPowerInfo) []\n"
    blocks = [
        "   (vim.host.AutoStartManager.AutoPowerInfo) {\n"
        f"      key = 'vim.VirtualMachine:{spec.vmid}',\n"
        f"      startOrder = {spec.start_order},\n"
        "      startDelay = -1,\n"
        '      waitForHeartbeat = "systemDefault",\n'
        '      startAction = "powerOn",\n'
        f"      stopDelay = {spec.stop_delay},\n"
        f'      stopAction = "{spec.stop_action}"\n'
        "   }"
        for spec in listed
    ]
    return "(vim.host.AutoStartManager.AutoPowerInfo) [\n" + ",\n".join(blocks) + "\n]\n"
