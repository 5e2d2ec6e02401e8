"""Output shapes seen on real ESXi hosts (../shared/esxi/README.md), as whole outputs.

Each getallvms fixture is a full listing with padded columns and a header whose labels are
centred over their columns, not aligned with them: a parser that sliced rows at header
positions would cut names and paths. Every fixture is read with LF and with CRLF line ends.
"""

from __future__ import annotations

import pytest
from test_esxi import DEFAULTS as DEFAULTS_TEXT
from test_esxi import SEQUENCE as SEQUENCE_TEXT
from test_shutdown import SETTINGS

from esxi_suspend.host import esxi
from esxi_suspend.host.autostart import (
    AutostartDefaults,
    effective_stop,
    parse_autostartseq,
    parse_defaults,
)
from esxi_suspend.host.inventory import Inventory, VmInfo, parse_inventory
from esxi_suspend.host.plan import make_plan
from esxi_suspend.host.report import render_check
from esxi_suspend.host.vmlist import Vm, parse_getallvms
from esxi_suspend.host.vmstate import PowerState, VmSummary, parse_power_state, parse_summary

Row = tuple[int, str, str, str, str]  # id, name, datastore, vmx path, annotation

SKIPPED_BEFORE_HEADER = """\
Skipping invalid VM '3'
Skipping invalid VM '17'
Vmid       Name                     File                               Guest OS          Version   Annotation
1      nut-client   [datastore1] nut-client/nut-client.vmx   centos7_64Guest    vmx-13
2      pfsense      [datastore1] pfsense/pfsense.vmx         freebsd12_64Guest  vmx-14    edge firewall
"""  # noqa: E501

SKIPPED_ONLY = """\
Skipping invalid VM '1'
Skipping invalid VM '2'
"""

SORTED_AS_TEXT = """\
Vmid        Name                         File                           Guest OS          Version   Annotation
10     db-01        [nvme1] db-01/db-01.vmx           rhel8_64Guest       vmx-19    postgres primary
11     db-02        [nvme1] db-02/db-02.vmx           rhel8_64Guest       vmx-19    postgres replica
20     backup       [hdd-raid] backup/backup.vmx      debian11_64Guest    vmx-19
6      dc01         [nvme1] dc01/dc01.vmx             windows2019srv_64Guest   vmx-15
8      web          [nvme1] web/web.vmx               ubuntu64Guest       vmx-17
9      monitoring   [hdd-raid] monitoring/monitoring.vmx   ubuntu64Guest   vmx-17
"""  # noqa: E501

VCLS_EMPTY_DATASTORE = """\
Vmid              Name                                  File                                  Guest OS                Version                  Annotation
1      vCLS-1           [] /var/run/crx/infra/vCLS-1/vCLS-1.vmx   other4xLinux64Guest   vmx-15    vSphere Cluster Service VM is deployed from an OVA with a minimal installed profile of PhotonOS. vSphere Cluster Service manages the resources, power state and availability of these VMs.
2      vCLS-2           [] /var/run/crx/infra/vCLS-2/vCLS-2.vmx   other4xLinux64Guest   vmx-15    vSphere Cluster Service VM is deployed from an OVA with a minimal installed profile of PhotonOS. vSphere Cluster Service manages the resources, power state and availability of these VMs.
4      app01            [vsanDatastore] 0d5c4f66-aa12-3c1e-9f0e-0025b5a1000e/app01.vmx   rhel9_64Guest   vmx-21
"""  # noqa: E501

DATASTORE_NAMES = """\
Vmid         Name                                File                                   Guest OS          Version   Annotation
3      files           [datastore1:2] files/files.vmx                   windows2019srv_64Guest   vmx-15
5      mail            [datastore1 (4)] mail/mail.vmx                   centos8_64Guest     vmx-18    relocated after the rescan
7      lab (old)       [datastore1 (4)] lab (old)/lab (old).vmx         otherGuest64        vmx-10
"""  # noqa: E501

VMX_AT_ROOT = """\
Vmid    Name           File                Guest OS       Version   Annotation
21     web      [ssd] web.vmx             ubuntu64Guest   vmx-17
22     proxy    [ssd 2] proxy.vmx         debian10_64Guest   vmx-14    reverse proxy
"""

MULTILINE_ANNOTATIONS = """\
Vmid        Name                    File                           Guest OS       Version   Annotation
31     build-agent   [nvme] build-agent/build-agent.vmx   debian11_64Guest   vmx-19    CI build agent

Owner: platform team
42 jobs in the nightly queue depend on it

Do not suspend during a release.
32     registry      [nvme] registry/registry.vmx         debian11_64Guest   vmx-19    container registry
   (cache only)

33     scratch       [nvme] scratch/scratch.vmx           otherLinux64Guest   vmx-19
"""  # noqa: E501

NON_ASCII_AS_QUESTION_MARKS = """\
Vmid         Name                          File                                    Guest OS          Version   Annotation
40     ??????              [datastore1] ??????/??????.vmx                 windows9_64Guest   vmx-19    ????? ??
41     M??nchen-db         [datastore1] M??nchen-db/M??nchen-db.vmx       debian12_64Guest   vmx-21
42     caf?? ??? (test)    [datastore1] caf?? ??? (test)/caf?? ??? (test).vmx   otherGuest64   vmx-13
"""  # noqa: E501

CENTRED_HEADER = """\
  Vmid                    Name                                           File                                     Guest OS          Version   Annotation
1      a                                                  [datastore1] a/a.vmx                                                   otherGuest          vmx-13
123    a-much-longer-name-that-runs-past-the-header-label [datastore1] a-much-longer-name/a-much-longer-name.vmx   ubuntu64Guest   vmx-13    runs past
7      Web Server [prod] (v2)    [datastore1] Web Server [prod] (v2)/Web Server [prod] (v2).vmx   ubuntu64Guest   vmx-13
"""  # noqa: E501

GETALLVMS_CASES = [
    pytest.param(
        SKIPPED_BEFORE_HEADER,
        [
            (1, "nut-client", "datastore1", "nut-client/nut-client.vmx", ""),
            (2, "pfsense", "datastore1", "pfsense/pfsense.vmx", "edge firewall"),
        ],
        id="skipped-before-header",
    ),
    pytest.param(SKIPPED_ONLY, [], id="skipped-only"),
    pytest.param(
        SORTED_AS_TEXT,
        [
            (10, "db-01", "nvme1", "db-01/db-01.vmx", "postgres primary"),
            (11, "db-02", "nvme1", "db-02/db-02.vmx", "postgres replica"),
            (20, "backup", "hdd-raid", "backup/backup.vmx", ""),
            (6, "dc01", "nvme1", "dc01/dc01.vmx", ""),
            (8, "web", "nvme1", "web/web.vmx", ""),
            (9, "monitoring", "hdd-raid", "monitoring/monitoring.vmx", ""),
        ],
        id="sorted-as-text",
    ),
    pytest.param(
        VCLS_EMPTY_DATASTORE,
        [
            (
                1,
                "vCLS-1",
                "",
                "/var/run/crx/infra/vCLS-1/vCLS-1.vmx",
                "vSphere Cluster Service VM is deployed from an OVA with a minimal installed "
                "profile of PhotonOS. vSphere Cluster Service manages the resources, power "
                "state and availability of these VMs.",
            ),
            (
                2,
                "vCLS-2",
                "",
                "/var/run/crx/infra/vCLS-2/vCLS-2.vmx",
                "vSphere Cluster Service VM is deployed from an OVA with a minimal installed "
                "profile of PhotonOS. vSphere Cluster Service manages the resources, power "
                "state and availability of these VMs.",
            ),
            (
                4,
                "app01",
                "vsanDatastore",
                "0d5c4f66-aa12-3c1e-9f0e-0025b5a1000e/app01.vmx",
                "",
            ),
        ],
        id="vcls-empty-datastore",
    ),
    pytest.param(
        DATASTORE_NAMES,
        [
            (3, "files", "datastore1:2", "files/files.vmx", ""),
            (5, "mail", "datastore1 (4)", "mail/mail.vmx", "relocated after the rescan"),
            (7, "lab (old)", "datastore1 (4)", "lab (old)/lab (old).vmx", ""),
        ],
        id="datastore-names",
    ),
    pytest.param(
        VMX_AT_ROOT,
        [
            (21, "web", "ssd", "web.vmx", ""),
            (22, "proxy", "ssd 2", "proxy.vmx", "reverse proxy"),
        ],
        id="vmx-at-datastore-root",
    ),
    pytest.param(
        MULTILINE_ANNOTATIONS,
        [
            (
                31,
                "build-agent",
                "nvme",
                "build-agent/build-agent.vmx",
                "CI build agent\n\nOwner: platform team\n42 jobs in the nightly queue depend on "
                "it\n\nDo not suspend during a release.",
            ),
            (32, "registry", "nvme", "registry/registry.vmx", "container registry\n(cache only)"),
            (33, "scratch", "nvme", "scratch/scratch.vmx", ""),
        ],
        id="multi-line-annotations",
    ),
    pytest.param(
        NON_ASCII_AS_QUESTION_MARKS,
        [
            (40, "??????", "datastore1", "??????/??????.vmx", "????? ??"),
            (41, "M??nchen-db", "datastore1", "M??nchen-db/M??nchen-db.vmx", ""),
            (
                42,
                "caf?? ??? (test)",
                "datastore1",
                "caf?? ??? (test)/caf?? ??? (test).vmx",
                "",
            ),
        ],
        id="non-ascii-as-question-marks",
    ),
    pytest.param(
        CENTRED_HEADER,
        [
            (1, "a", "datastore1", "a/a.vmx", ""),
            (
                123,
                "a-much-longer-name-that-runs-past-the-header-label",
                "datastore1",
                "a-much-longer-name/a-much-longer-name.vmx",
                "runs past",
            ),
            (
                7,
                "Web Server [prod] (v2)",
                "datastore1",
                "Web Server [prod] (v2)/Web Server [prod] (v2).vmx",
                "",
            ),
        ],
        id="centred-header",
    ),
]


def rows(vms: list[Vm]) -> list[Row]:
    return [(vm.vmid, vm.name, vm.datastore, vm.vmx_path, vm.annotation) for vm in vms]


@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=["lf", "crlf"])
@pytest.mark.parametrize(("text", "expected"), GETALLVMS_CASES)
def test_getallvms_real_shapes(text: str, expected: list[Row], newline: str) -> None:
    assert rows(parse_getallvms(text.replace("\n", newline))) == expected


def test_getallvms_guest_and_version_columns() -> None:
    vms = parse_getallvms(SORTED_AS_TEXT + VCLS_EMPTY_DATASTORE.split("\n", 1)[1])
    assert [(vm.guest, vm.version) for vm in vms if vm.vmid in (6, 1, 4)] == [
        ("windows2019srv_64Guest", "vmx-15"),
        ("other4xLinux64Guest", "vmx-15"),
        ("rhel9_64Guest", "vmx-21"),
    ]


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("Skipping invalid VM '4'\nsh: vim-cmd: not found\n", id="skip-then-garbage"),
        pytest.param("\r\nvim-cmd: connection refused\r\n", id="crlf-garbage"),
    ],
)
def test_getallvms_stays_strict(text: str) -> None:
    with pytest.raises(esxi.ParseError, match="no header line and no VM line"):
        parse_getallvms(text)


def test_getallvms_duplicate_id_after_skipped_lines_is_refused() -> None:
    text = SKIPPED_BEFORE_HEADER + "1      again   [datastore1] a/a.vmx   otherGuest   vmx-13\n"
    with pytest.raises(esxi.ParseError, match="listed twice"):
        parse_getallvms(text.replace("\n", "\r\n"))


def test_getallvms_header_after_a_blank_line() -> None:
    text = "\r\n" + SORTED_AS_TEXT.replace("\n", "\r\n")
    assert [vm.vmid for vm in parse_getallvms(text)] == [10, 11, 20, 6, 8, 9]


# vim-cmd vmsvc/get.summary, as a 7.0 host prints it for a running VM (trimmed lists).
SUMMARY_ON = """\
Listsummary:

(vim.vm.Summary) {
   vm = 'vim.VirtualMachine:12',
   runtime = (vim.vm.RuntimeInfo) {
      device = (vim.vm.DeviceRuntimeInfo) [
         (vim.vm.DeviceRuntimeInfo) {
            runtimeState = (vim.vm.DeviceRuntimeInfo.VirtualEthernetCardRuntimeState) {
               vmDirectPathGen2Active = false,
               vmDirectPathGen2InactiveReasonVm = (string) [],
               vmDirectPathGen2InactiveReasonOther = (string) [
                  "vmNptIncompatibleNetwork"
               ],
               vmDirectPathGen2InactiveReasonExtended = <unset>,
               reservationStatus = <unset>,
               attachmentStatus = <unset>,
               featureRequirement = (vim.vm.FeatureRequirement) []
            },
            key = 4000
         }
      ],
      host = 'vim.HostSystem:ha-host',
      connectionState = "connected",
      powerState = "poweredOn",
      vmFailoverInProgress = <unset>,
      faultToleranceState = "notConfigured",
      dasVmProtection = (vim.vm.RuntimeInfo.DasProtectionState) null,
      toolsInstallerMounted = false,
      suspendTime = <unset>,
      bootTime = "2024-03-02T07:41:12.513302Z",
      suspendInterval = 0,
      question = (vim.vm.QuestionInfo) null,
      memoryOverhead = <unset>,
      maxCpuUsage = 4788,
      maxMemoryUsage = 8192,
      numMksConnections = 0,
      recordReplayState = "inactive",
      cleanPowerOff = <unset>,
      needSecondaryReason = <unset>,
      onlineStandby = false,
      minRequiredEVCModeKey = <unset>,
      consolidationNeeded = false,
      offlineFeatureRequirement = (vim.vm.FeatureRequirement) [
         (vim.vm.FeatureRequirement) {
            key = "cpuid.lm",
            featureName = "cpuid.lm",
            value = "Bool:Min:1"
         }
      ],
      featureRequirement = (vim.vm.FeatureRequirement) [
         (vim.vm.FeatureRequirement) {
            key = "cpuid.SSE3",
            featureName = "cpuid.SSE3",
            value = "Bool:Min:1"
         }
      ],
      featureMask = (vim.host.FeatureMask) [],
      vFlashCacheAllocation = 0,
      paused = false,
      snapshotInBackground = false,
      quiescedForkParent = <unset>,
      instantCloneFrozen = false,
      cryptoState = <unset>,
      suspendedToMemory = false,
      opNotificationTimeout = <unset>,
      iommuActive = false
   },
   guest = (vim.vm.Summary.GuestSummary) {
      guestId = "ubuntu64Guest",
      guestFullName = "Ubuntu Linux (64-bit)",
      toolsStatus = "toolsOk",
      toolsVersionStatus = "guestToolsUnmanaged",
      toolsVersionStatus2 = "guestToolsUnmanaged",
      toolsRunningStatus = "guestToolsRunning",
      hostName = "web01",
      ipAddress = "192.0.2.31",
      hwVersion = "vmx-13"
   },
   config = (vim.vm.Summary.ConfigSummary) {
      name = "Web Server (prod)",
      template = false,
      vmPathName = "[datastore1] Web Server (prod)/Web Server (prod).vmx",
      memorySizeMB = 8192,
      cpuReservation = 0,
      memoryReservation = 0,
      numCpu = 2,
      numEthernetCards = 1,
      numVirtualDisks = 1,
      uuid = "564d5b2a-83c1-9f3e-0d4b-6a1e2f7c9b10",
      instanceUuid = "52a1f0c3-7d24-e5b8-19a6-3c0f4e8d2b71",
      guestId = "ubuntu64Guest",
      guestFullName = "Ubuntu Linux (64-bit)",
      annotation = "front end",
      product = (vim.vApp.ProductInfo) null,
      installBootRequired = false,
      ftInfo = (vim.vm.FaultToleranceConfigInfo) null,
      managedBy = (vim.ext.ManagedByInfo) null,
      tpmPresent = false,
      numVmiopBackings = 0,
      hwVersion = "vmx-13"
   },
   storage = (vim.vm.Summary.StorageSummary) {
      committed = 21474836480,
      uncommitted = 0,
      unshared = 21474836480,
      timestamp = "2024-03-02T07:45:00.123Z"
   },
   quickStats = (vim.vm.Summary.QuickStats) {
      overallCpuUsage = 47,
      overallCpuDemand = 47,
      guestMemoryUsage = 245,
      hostMemoryUsage = 8240,
      guestHeartbeatStatus = "green",
      uptimeSeconds = 864000
   },
   overallStatus = "green",
   customValue = (vim.CustomFieldsValue) []
}
"""
ON_UUID = "564d5b2a83c19f3e0d4b6a1e2f7c9b10"

# An older (5.x/6.x) host: `dynamicType` lines, a comma after every field and every block.
SUMMARY_OLD_SUSPENDED = """\
Listsummary:
(vim.vm.Summary) {
   dynamicType = <unset>,
   vm = 'vim.VirtualMachine:496',
   runtime = (vim.vm.RuntimeInfo) {
      dynamicType = <unset>,
      host = 'vim.HostSystem:ha-host',
      connectionState = "connected",
      powerState = "suspended",
      faultToleranceState = "notConfigured",
      toolsInstallerMounted = false,
      suspendTime = "2013-03-17T18:10:44.318253Z",
      bootTime = <unset>,
      suspendInterval = 0,
      question = (vim.vm.QuestionInfo) null,
   },
   guest = (vim.vm.Summary.GuestSummary) {
      dynamicType = <unset>,
      guestId = "winXPProGuest",
      toolsStatus = "toolsNotRunning",
      toolsVersionStatus = "guestToolsNeedUpgrade",
      toolsRunningStatus = "guestToolsNotRunning",
      hostName = <unset>,
      ipAddress = <unset>,
   },
   config = (vim.vm.Summary.ConfigSummary) {
      dynamicType = <unset>,
      name = "vm-ark-9 (nonpersistent: base-v12)",
      template = false,
      vmPathName = "[nfs-datastore] vm-ark-9/vm-ark-9.vmx",
      uuid = "564D36CF-6988-C91D-0F5F-A62628D46553",
      instanceUuid = "",
      annotation = "",
      product = (vim.vApp.ProductInfo) null,
   },
   overallStatus = "green",
}
"""

SUMMARY_OFF_NO_TOOLS = """\
Listsummary:

(vim.vm.Summary) {
   vm = 'vim.VirtualMachine:15',
   runtime = (vim.vm.RuntimeInfo) {
      device = (vim.vm.DeviceRuntimeInfo) [],
      host = 'vim.HostSystem:ha-host',
      connectionState = "connected",
      powerState = "poweredOff",
      toolsInstallerMounted = false
   },
   guest = (vim.vm.Summary.GuestSummary) {
      guestId = <unset>,
      guestFullName = <unset>,
      toolsStatus = "toolsNotInstalled",
      toolsVersionStatus = "guestToolsNotInstalled",
      toolsVersionStatus2 = "guestToolsNotInstalled",
      toolsRunningStatus = "guestToolsNotRunning",
      hostName = <unset>,
      ipAddress = <unset>
   },
   config = (vim.vm.Summary.ConfigSummary) {
      name = "win2019",
      template = false,
      vmPathName = "[ssd 2] win2019/win2019.vmx",
      instanceUuid = "52dd1e0b-1c0e-94a1-7c33-0c1f9e2a6b44",
      uuid = "420c6ef6-eef0-03ff-20f2-5d2479b2afdc",
      annotation = ""
   }
}
"""

# Tools status missing altogether (a VM whose guest block vim-cmd left out) and an unset uuid.
SUMMARY_NO_GUEST_BLOCK = """\
Listsummary:

(vim.vm.Summary) {
   runtime = (vim.vm.RuntimeInfo) {
      powerState = "poweredOn"
   },
   config = (vim.vm.Summary.ConfigSummary) {
      name = "appliance",
      uuid = <unset>,
      instanceUuid = "52dd1e0b-1c0e-94a1-7c33-0c1f9e2a6b44"
   }
}
"""

# A name and a multi-line annotation that imitate fields and blocks (the names are free text).
SUMMARY_HOSTILE = """\
Listsummary:

(vim.vm.Summary) {
   runtime = (vim.vm.RuntimeInfo) {
      powerState = "poweredOn",
   },
   guest = (vim.vm.Summary.GuestSummary) {
      toolsRunningStatus = "guestToolsNotRunning",
      hostName = "x",   toolsRunningStatus = "guestToolsRunning",
   },
   config = (vim.vm.Summary.ConfigSummary) {
      name = "powerState = "poweredOff", }",
      uuid = "564d5b2a-83c1-9f3e-0d4b-6a1e2f7c9b10",
      annotation = "line one
   },
   runtime = (vim.vm.RuntimeInfo) {
      powerState = "poweredOff",
   }
last line",
   }
}
"""

SUMMARY_FAULT = """\
(vmodl.fault.ManagedObjectNotFound) {
   faultCause = (vmodl.MethodFault) null,
   faultMessage = (vmodl.LocalizableMessage) [],
   obj = 'vim.VirtualMachine:99',
   msg = "Received SOAP response fault from [<cs p:00000099d0e8c1a0, TCP:localhost:8307>]: getSummary
The object 'vim.VirtualMachine:99' has already been deleted or has not been completely created"
}
"""  # noqa: E501


@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=["lf", "crlf"])
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(SUMMARY_ON, VmSummary(PowerState.ON, True, ON_UUID), id="running-7.0"),
        pytest.param(
            SUMMARY_OLD_SUSPENDED,
            VmSummary(PowerState.SUSPENDED, False, "564d36cf6988c91d0f5fa62628d46553"),
            id="suspended-6.x",
        ),
        pytest.param(
            SUMMARY_OFF_NO_TOOLS,
            VmSummary(PowerState.OFF, False, "420c6ef6eef003ff20f25d2479b2afdc"),
            id="off-no-tools",
        ),
        pytest.param(
            SUMMARY_NO_GUEST_BLOCK,
            VmSummary(PowerState.ON, None, None),
            id="no-guest-block-unset-uuid",
        ),
        pytest.param(
            SUMMARY_HOSTILE,
            # the second powerState makes the state unknown; the tools line is the real one
            VmSummary(None, False, ON_UUID),
            id="hostile-name-and-annotation",
        ),
        pytest.param(SUMMARY_FAULT, VmSummary(None, None, None), id="fault"),
        pytest.param("", VmSummary(None, None, None), id="empty"),
        pytest.param("sh: vim-cmd: not found\n", VmSummary(None, None, None), id="not-found"),
    ],
)
def test_summary_real_shapes(text: str, expected: VmSummary, newline: str) -> None:
    assert parse_summary(text.replace("\n", newline)) == expected


@pytest.mark.parametrize(
    ("status", "running"),
    [
        ("guestToolsRunning", True),
        ("guestToolsNotRunning", False),
        ("guestToolsExecutingScripts", False),
    ],
)
def test_summary_tools_status(status: str, running: bool) -> None:
    text = SUMMARY_ON.replace('"guestToolsRunning"', f'"{status}"')
    assert parse_summary(text).tools_running is running


@pytest.mark.parametrize(
    ("change", "field", "expected"),
    [
        pytest.param(('"poweredOn"', '"poweredSideways"'), "state", None, id="unknown-state"),
        pytest.param(('"poweredOn"', '"PoweredOn"'), "state", None, id="state-case"),
        pytest.param(('   uuid = "', '   biosUuid = "'), "bios_uuid", None, id="only-instance"),
        pytest.param(('"564d5b2a-83c1', '"zz4d5b2a-83c1'), "bios_uuid", None, id="not-hex"),
        pytest.param(
            ("   runtime = (vim.vm.RuntimeInfo) {", "   other = (vim.vm.RuntimeInfo) {"),
            "state",
            None,
            id="state-outside-runtime",
        ),
    ],
)
def test_summary_unknown_fields_are_none(
    change: tuple[str, str], field: str, expected: object
) -> None:
    text = SUMMARY_ON.replace(*change)
    assert change[1] in text
    assert getattr(parse_summary(text), field) == expected


def test_summary_command_line() -> None:
    assert esxi.get_summary(12) == "vim-cmd vmsvc/get.summary 12"
    for bad in (-1, True, "12", "1; poweroff"):
        with pytest.raises(ValueError):
            esxi.get_summary(bad)  # type: ignore[arg-type]


DEFAULTS_CRLF = (
    "(vim.host.AutoStartManager.SystemDefaults) {\r\n"
    "   startDelay = 120,\r\n"
    "   stopDelay = 90,\r\n"
    "   waitForHeartbeat = false,\r\n"
    '   stopAction = "GuestShutdown",\r\n'
    "   enabled = true\r\n"
    "}\r\n"
)
SEQUENCE_CRLF = (
    "(vim.host.AutoStartManager.AutoPowerInfo) [\r\n"
    "   (vim.host.AutoStartManager.AutoPowerInfo) {\r\n"
    "      key = 'vim.VirtualMachine:10',\r\n"
    "      startOrder = 1,\r\n"
    "      startDelay = -1,\r\n"
    '      waitForHeartbeat = "systemDefault",\r\n'
    '      startAction = "powerOn",\r\n'
    "      stopDelay = -1,\r\n"
    '      stopAction = "systemDefault"\r\n'
    "   },\r\n"
    "   (vim.host.AutoStartManager.AutoPowerInfo) {\r\n"
    "      key = 'vim.VirtualMachine:6',\r\n"
    "      startOrder = 2,\r\n"
    "      startDelay = 30,\r\n"
    '      waitForHeartbeat = "yes",\r\n'
    '      startAction = "powerOn",\r\n'
    "      stopDelay = 300,\r\n"
    '      stopAction = "suspend"\r\n'
    "   }\r\n"
    "]\r\n"
)


def test_autostart_outputs_with_crlf() -> None:
    defaults = parse_defaults(DEFAULTS_CRLF)
    assert defaults == AutostartDefaults(90, "GuestShutdown", True)
    entries = parse_autostartseq(SEQUENCE_CRLF)
    assert [(e.vmid, e.start_order, e.stop_delay, e.stop_action) for e in entries] == [
        (10, 1, -1, "systemDefault"),
        (6, 2, 300, "suspend"),
    ]
    assert effective_stop(entries[0], defaults) == ("GuestShutdown", 90)
    empty = "(vim.host.AutoStartManager.AutoPowerInfo) []\r\n"
    assert parse_autostartseq(empty) == []


@pytest.mark.parametrize(
    ("text", "state"),
    [
        ("Retrieved runtime info\r\nPowered on\r\n", PowerState.ON),
        ("Retrieved runtime info\r\nSuspended\r\n", PowerState.SUSPENDED),
    ],
)
def test_power_getstate_with_crlf(text: str, state: PowerState) -> None:
    assert parse_power_state(text) is state


def inventory_output(newline: str) -> str:
    """What the issue 9 inventory command prints: our echo lines end in LF, vim-cmd's may not."""
    vms = SKIPPED_BEFORE_HEADER.replace("\n", newline)
    summary = SUMMARY_ON.replace("\n", newline)
    return (
        "@@status 0\n"
        f"@@vms\n{vms}"
        f"@@defaults\n{DEFAULTS_CRLF}"
        f"@@sequence\n{SEQUENCE_CRLF}"
        f"@@summary 1\n{summary}"
        f"@@summary 2\n{summary.replace('poweredOn', 'poweredOff')}"
        "@@poweroff\n/bin/poweroff\n"
    )


@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=["lf", "crlf"])
def test_marked_sections_with_crlf(newline: str) -> None:
    sections = esxi.split_marked(inventory_output(newline))
    assert list(sections) == [
        "status 0",
        "vms",
        "defaults",
        "sequence",
        "summary 1",
        "summary 2",
        "poweroff",
    ]
    assert all("\r" not in section for section in sections.values())
    assert [vm.vmid for vm in parse_getallvms(sections["vms"])] == [1, 2]
    assert parse_defaults(sections["defaults"]).stop_delay == 90
    assert [e.vmid for e in parse_autostartseq(sections["sequence"])] == [10, 6]
    assert parse_summary(sections["summary 1"]).state is PowerState.ON
    assert parse_summary(sections["summary 2"]).state is PowerState.OFF
    assert sections["poweroff"] == "/bin/poweroff"


def test_marked_sections_keep_names_whole() -> None:
    """A name holding \\x85 or \\u2028 (line breaks to str.splitlines) stays on its line."""
    listing = "Vmid   Name   File   Guest OS   Version   Annotation\n"
    listing += "5      a\x85b\u2028c   [ds1] v/v.vmx   otherGuest   vmx-13\n"
    sections = esxi.split_marked(f"@@vms\n{listing}@@poweroff\n/bin/poweroff\n")
    assert [vm.name for vm in parse_getallvms(sections["vms"])] == ["a\x85b\u2028c"]
    assert sections["poweroff"] == "/bin/poweroff"


def test_check_lists_every_name_whole() -> None:
    """`check` shows each VM's id and its full name, last on its line, never cut."""
    listing = CENTRED_HEADER + NON_ASCII_AS_QUESTION_MARKS.split("\n", 1)[1]
    listing += (
        "50     x" + " very long name" * 12 + "\x1b[2J   [ds1] v/v.vmx   otherGuest   vmx-13\n"
    )
    vms = parse_getallvms(listing)
    infos = tuple(VmInfo(vm, PowerState.ON, True) for vm in vms)
    defaults = AutostartDefaults(stop_delay=120, stop_action="PowerOff", enabled=True)
    inventory = Inventory(infos, defaults, "/bin/poweroff")
    plan = make_plan(inventory, SETTINGS, self_vm=None)
    report = render_check(inventory, plan, SETTINGS, "", 0.3).splitlines()
    header = next(line for line in report if line.split()[:1] == ["id"])
    assert header.split()[-2:] == ["plan", "name"]
    for vm in vms:
        shown = vm.name.replace("\x1b", "?")
        assert any(
            line.split()[:1] == [str(vm.vmid)] and line.endswith(f"  {shown}") for line in report
        ), (vm.name, report)


@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=["lf", "crlf"])
@pytest.mark.parametrize(("text", "expected"), GETALLVMS_CASES)
def test_a_listing_without_its_final_newline_keeps_the_sections_after_it(
    text: str, expected: list[Row], newline: str
) -> None:
    """Real captures can end without a final newline: the inventory's `mark` puts the next
    marker on a line of its own anyway, and every section after the listing is still read."""
    listing = text.replace("\n", newline).removesuffix(newline)
    out = (
        f"@@7 status 0\n@@7 vms\n{listing}\n@@7 defaults\n{DEFAULTS_TEXT}\n"
        f"@@7 sequence\n{SEQUENCE_TEXT}\n@@7 running 1\nsh: esxcli: not found\n\n"
        "@@7 poweroff\n/sbin/poweroff\n"
    )
    inventory = parse_inventory("esxi1", out, 7, 0, "")
    assert rows([info.vm for info in inventory.vms]) == expected
    assert inventory.defaults.stop_delay == 120
    assert inventory.poweroff_path == "/sbin/poweroff"
