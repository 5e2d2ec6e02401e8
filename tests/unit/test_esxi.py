"""Parsers of host output, on the shapes real ESXi hosts print (../shared/esxi/README.md)."""

from __future__ import annotations

import pytest

from esxi_suspend.host import esxi
from esxi_suspend.host.autostart import (
    AutostartDefaults,
    effective_stop,
    parse_autostartseq,
    parse_defaults,
)
from esxi_suspend.host.vmlist import parse_getallvms
from esxi_suspend.host.vmstate import PowerState, parse_power_state

HEADER = (
    "Vmid         Name                                File                                  "
    "Guest OS          Version   Annotation"
)
GETALLVMS = "\n".join(
    [
        HEADER,
        "1      nut-client                 [datastore1] nut-client/nut-client.vmx               "
        "centos64Guest       vmx-08",
        "12     Web Server (prod)          [datastore1] Web Server (prod)/Web Server (prod).vmx  "
        "ubuntu64Guest       vmx-13    front end",
        "15     win2019                    [ssd 2] win2019/win2019.vmx                          "
        "windows2019srv_64Guest   vmx-15",
    ]
)


def test_getallvms_real_shape() -> None:
    vms = parse_getallvms(GETALLVMS)
    assert [(vm.vmid, vm.name) for vm in vms] == [
        (1, "nut-client"),
        (12, "Web Server (prod)"),
        (15, "win2019"),
    ]
    web = vms[1]
    assert web.datastore == "datastore1"
    assert web.vmx_path == "Web Server (prod)/Web Server (prod).vmx"
    assert (web.guest, web.version, web.annotation) == ("ubuntu64Guest", "vmx-13", "front end")
    assert vms[2].datastore == "ssd 2"


@pytest.mark.parametrize(
    ("line", "vmid", "name"),
    [
        ("7   a [b] c   [ds1] a [b] c/a [b] c.vmx   otherGuest  vmx-07", 7, "a [b] c"),
        ("8   x; poweroff   [ds1] x/x.vmx   otherGuest  vmx-07", 8, "x; poweroff"),
        ("9   $(reboot)   [ds1] r/r.vmx   otherGuest  vmx-07", 9, "$(reboot)"),
        ("10   'quoted\" name   [ds1] q/q.vmx   otherGuest  vmx-07", 10, "'quoted\" name"),
        ("11   Zürich ☃ 東京   [ds1] z/z.vmx   otherGuest  vmx-07", 11, "Zürich ☃ 東京"),
        ("   13   indented   [ds1] i/i.vmx   otherGuest  vmx-07", 13, "indented"),
        ("14   no version   [ds1] n/n.vmx", 14, "no version"),
    ],
)
def test_getallvms_names_are_data(line: str, vmid: int, name: str) -> None:
    vms = parse_getallvms(f"{HEADER}\n{line}\n")
    assert [(vm.vmid, vm.name) for vm in vms] == [(vmid, name)]


def test_annotation_lines_never_become_vms() -> None:
    text = (
        f"{HEADER}\n"
        "3   db   [ds1] db/db.vmx   otherGuest  vmx-09    first line\n"
        "42 servers depend on this one\n"
        "   and a third line\n"
        "Skipping invalid VM '24'\n"
        "4   app   [ds1] app/app.vmx   otherGuest  vmx-09\n"
    )
    vms = parse_getallvms(text)
    assert [vm.vmid for vm in vms] == [3, 4]
    assert vms[0].annotation == "first line\n42 servers depend on this one\nand a third line"


def test_getallvms_empty_host_and_garbage() -> None:
    assert parse_getallvms(HEADER + "\n") == []
    assert parse_getallvms("") == []
    with pytest.raises(esxi.ParseError):
        parse_getallvms("sh: vim-cmd: not found\n")


def test_getallvms_duplicate_id_is_refused() -> None:
    line = "5   a   [ds1] a/a.vmx   otherGuest  vmx-09"
    with pytest.raises(esxi.ParseError, match="listed twice"):
        parse_getallvms(f"{HEADER}\n{line}\n{line}\n")


@pytest.mark.parametrize(
    ("text", "state"),
    [
        ("Retrieved runtime info\nPowered on\n", PowerState.ON),
        ("Retrieved runtime info\r\nPowered off\r\n", PowerState.OFF),
        ("Retrieved runtime info\n  Suspended  \n\n", PowerState.SUSPENDED),
    ],
)
def test_power_state(text: str, state: PowerState) -> None:
    assert parse_power_state(text) is state


@pytest.mark.parametrize("text", ["", "Retrieved runtime info\n", "Powered sideways\n"])
def test_power_state_unknown(text: str) -> None:
    with pytest.raises(esxi.ParseError):
        parse_power_state(text)


DEFAULTS = """(vim.host.AutoStartManager.SystemDefaults) {
   startDelay = 120,
   stopDelay = 120,
   waitForHeartbeat = false,
   stopAction = "PowerOff",
   enabled = true
}
"""

SEQUENCE = """(vim.host.AutoStartManager.AutoPowerInfo) [
   (vim.host.AutoStartManager.AutoPowerInfo) {
      key = 'vim.VirtualMachine:12',
      startOrder = 1,
      startDelay = -1,
      waitForHeartbeat = "systemDefault",
      startAction = "powerOn",
      stopDelay = -1,
      stopAction = "systemDefault"
   },
   (vim.host.AutoStartManager.AutoPowerInfo) {
      key = 'vim.VirtualMachine:3',
      startOrder = 2,
      startDelay = 10,
      waitForHeartbeat = "systemDefault",
      startAction = "powerOn",
      stopDelay = 300,
      stopAction = "GuestShutdown"
   }
]
"""


def test_defaults_and_sequence() -> None:
    defaults = parse_defaults(DEFAULTS)
    assert defaults == AutostartDefaults(stop_delay=120, stop_action="PowerOff", enabled=True)
    entries = parse_autostartseq(SEQUENCE)
    assert [(e.vmid, e.start_order) for e in entries] == [(12, 1), (3, 2)]
    assert effective_stop(entries[0], defaults) == ("PowerOff", 120)
    assert effective_stop(entries[1], defaults) == ("GuestShutdown", 300)


def test_empty_sequence_and_garbage() -> None:
    assert parse_autostartseq("(vim.host.AutoStartManager.AutoPowerInfo) []\n") == []
    with pytest.raises(esxi.ParseError):
        parse_autostartseq("sh: vim-cmd: not found")
    with pytest.raises(esxi.ParseError):
        parse_defaults("(vim.host.AutoStartManager.SystemDefaults) {\n}\n")


@pytest.mark.parametrize("bad", [-1, True, "3", 2.0, "1; poweroff"])
def test_only_integers_enter_command_lines(bad: object) -> None:
    with pytest.raises(ValueError):
        esxi.vm_id(bad)
    with pytest.raises(ValueError):
        esxi.power_getstate(bad)  # type: ignore[arg-type]


def test_command_lines_are_constants() -> None:
    assert esxi.AUTOSTOP == "vim-cmd hostsvc/autostartmanager/autostop"
    assert esxi.POWEROFF == "poweroff"
    assert esxi.power_getstate(12) == "vim-cmd vmsvc/power.getstate 12"
