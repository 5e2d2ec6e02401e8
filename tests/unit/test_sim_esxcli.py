"""The simulator's `esxcli vm process list` (ESXi 5.0+, VMware KB 1014165): the VMs whose VMX
process runs, in one hostd call, and the fleet knobs that bend it.

Driven through HostModel and the simulated shell directly (no SSH), as test_sim_faults.py;
simulated times as test_sim_latency.py (about one latency of slack above the floor).
"""

from __future__ import annotations

import re

import pytest
from simhelpers import MakeHost
from test_sim_shell import sh

from esxi_suspend.simulator import FleetError, VmSpec, fleet_from_dict
from esxi_suspend.simulator.esxcli import config_file, esxcli_uuid, volume_uuid
from esxi_suspend.simulator.fleet import Fleet
from esxi_suspend.simulator.host import HostModel

LIST = "esxcli vm process list"
LATENCY = 40.0  # simulated seconds
RESET = "Failed to login: Connection reset by peer"
# A record as public pastes of 5.x-8.x hosts show it.
RECORD = re.compile(
    r"(?P<name>\S.*)\n"
    r"   World ID: (?P<world>\d+)\n"
    r"   Process ID: 0\n"
    r"   VMX Cartel ID: (?P<cartel>\d+)\n"
    r"   UUID: (?P<uuid>(?:[0-9a-f]{2} ){7}[0-9a-f]{2}-(?:[0-9a-f]{2} ){7}[0-9a-f]{2})\n"
    r"   Display Name: (?P<display>.*)\n"
    r"   Config File: (?P<config>/vmfs/volumes/[0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{12}/"
    r".*\.vmx)\n"
)


def records(out: str) -> list[dict[str, str]]:
    """Each record's fields; the whole output must be records separated by blank lines."""
    chunks = out.split("\n\n") if out else []
    found = []
    for i, chunk in enumerate(chunks):
        text = chunk if i == len(chunks) - 1 else chunk + "\n"
        match = RECORD.fullmatch(text)
        assert match is not None, repr(text)
        found.append(match.groupdict())
    return found


def summary_uuid(host: HostModel, vmid: int) -> str:
    out = sh(host, f"vim-cmd vmsvc/get.summary {vmid}")[1]
    found = re.search(r'^      uuid = "([^"]+)",$', out, re.MULTILINE)
    assert found is not None, out
    return found.group(1)


# -- what it prints ---------------------------------------------------------------------------
def test_lists_the_running_vms_in_the_shape_of_a_real_host(make_host: MakeHost) -> None:
    host = make_host()
    status, out, err = sh(host, LIST)
    assert (status, err) == (0, "")
    assert out.endswith(".vmx\n") and "\n\n\n" not in out
    listed = records(out)
    on = sorted(vmid for vmid, power in host.power_states().items() if power == "Powered on")
    specs = [host.vms[vmid].spec for vmid in on]
    assert [r["name"] for r in listed] == [spec.name for spec in specs]
    for record, spec in zip(listed, specs):
        assert record["display"] == record["name"]
        assert int(record["cartel"]) == int(record["world"]) - 1
        assert record["config"].endswith(f"/{spec.name}/{spec.name}.vmx")
        assert record["config"] == f"/vmfs/volumes/{volume_uuid(spec.datastore)}/{spec.vmx_path}"
        hexed = record["uuid"].replace(" ", "").replace("-", "")
        assert hexed == summary_uuid(host, spec.vmid).replace("-", "")  # get.summary's uuid
    assert len({r["world"] for r in listed}) == len(listed)  # one world per VM


def test_world_ids_and_volume_uuids_are_stable(make_host: MakeHost) -> None:
    first, second = make_host(), make_host()
    assert sh(first, LIST)[1] == sh(second, LIST)[1] == sh(first, LIST)[1]
    win, web = (
        records(sh(first, LIST)[1])[i]["config"].split("/")[3] for i in (3, 1)
    )  # win2019 is on "ssd 2", the others on datastore1
    assert win == volume_uuid("ssd 2") != web == volume_uuid("datastore1")


def test_only_powered_on_vms_are_listed(make_host: MakeHost) -> None:
    host = make_host()
    names = [r["name"] for r in records(sh(host, LIST)[1])]
    assert "Café test VM" not in names  # powered off in the fleet
    assert "build-runner" in names
    assert sh(host, "vim-cmd vmsvc/power.suspend 21")[0] == 0
    assert sh(host, "vim-cmd vmsvc/power.off 15")[0] == 0
    after = [r["name"] for r in records(sh(host, LIST)[1])]
    assert after == [n for n in names if n not in ("build-runner", "win2019")]


def test_nothing_at_all_when_no_vm_runs(make_host: MakeHost) -> None:
    host = make_host(
        Fleet(vms=(VmSpec(1, "off", power="Powered off"), VmSpec(2, "s", power="Suspended")))
    )
    assert sh(host, LIST) == (0, "", "")
    assert sh(host, f"{LIST}; echo :$?")[1] == ":0\n"
    assert sh(make_host(Fleet(vms=())), LIST) == (0, "", "")


def test_a_vm_on_no_datastore_has_its_path_as_it_is(make_host: MakeHost) -> None:
    vcls = VmSpec(1, "vCLS-1", datastore="")
    host = make_host(Fleet(vms=(vcls,)))
    assert config_file(vcls) == "/var/run/crx/infra/vCLS-1/vCLS-1.vmx"
    assert "[] /var/run/crx/infra/vCLS-1/vCLS-1.vmx" in sh(host, "vim-cmd vmsvc/getallvms")[1]
    assert "   Config File: /var/run/crx/infra/vCLS-1/vCLS-1.vmx\n" in sh(host, LIST)[1]


@pytest.mark.parametrize(
    ("bios", "shown"),
    [
        ("564d890e-6865-d486-2278-80af6016e0e0", "56 4d 89 0e 68 65 d4 86-22 78 80 af 60 16 e0 e0"),
        ("420F8A7C-1B2D-3E4F-5061-728394A5B6C7", "42 0f 8a 7c 1b 2d 3e 4f-50 61 72 83 94 a5 b6 c7"),
        ("56 4d 89 0e 68 65 d4 86-22 78 80 af 60 16 e0 e0", "56 4d 89 0e 68 65 d4 86-22 78 80 af "
         "60 16 e0 e0"),  # already in that form
        ("not-a-uuid", "not-a-uuid"),
    ],
)  # fmt: skip
def test_the_uuid_in_the_vmx_form(bios: str, shown: str) -> None:
    assert esxcli_uuid(bios) == shown


def test_a_fleet_uuid_is_shown(make_host: MakeHost) -> None:
    spec = VmSpec(7, "u", uuid="564d890e-6865-d486-2278-80af6016e0e0")
    out = sh(make_host(Fleet(vms=(spec,))), LIST)[1]
    assert "   UUID: 56 4d 89 0e 68 65 d4 86-22 78 80 af 60 16 e0 e0\n" in out


@pytest.mark.parametrize(
    ("args", "out"),
    [
        ("vm process", "Error: Unknown command or namespace vm process\n"),
        ("vms vm list", "Error: Unknown command or namespace vms vm list\n"),
        ("vm process list --foo", "Error: Unknown command or namespace vm process list --foo\n"),
    ],
)
def test_other_arguments_are_an_unknown_namespace(make_host: MakeHost, args: str, out: str) -> None:
    assert sh(make_host(), f"esxcli {args}") == (1, out, "")


def test_no_arguments_print_the_usage(make_host: MakeHost) -> None:
    status, out, _err = sh(make_host(), "esxcli")
    assert status == 1
    assert out.startswith("Usage: esxcli [options] {namespace}+ {cmd} [cmd options]\n")
    assert "\n  vm  " in out


def test_it_is_a_program_at_bin_esxcli(make_host: MakeHost) -> None:
    host = make_host()
    assert sh(host, "command -v esxcli") == (0, "/bin/esxcli\n", "")
    assert sh(host, "[ -x /bin/esxcli ] && echo yes")[1] == "yes\n"
    assert sh(host, "/bin/esxcli vm process list")[1] == sh(host, LIST)[1]


# -- hostd's cost -----------------------------------------------------------------------------
@pytest.mark.parametrize("args", ["vm process list", "", "storage nosuch"])
def test_each_call_costs_one_latency(make_host: MakeHost, args: str) -> None:
    host = make_host(time_scale=0.005, command_latency=LATENCY)
    start = host.now()
    sh(host, f"esxcli {args}")
    assert LATENCY <= host.now() - start < 2 * LATENCY
    calls = [e.text for e in host.events if e.kind == "hostd"]
    assert calls == [f"call: esxcli {args}".rstrip()], calls


def test_a_busy_hostd_resets_it(make_host: MakeHost) -> None:
    host = make_host(hostd_concurrency=1, hostd_overflow="reset", command_latency=20.0)
    holder = "vim-cmd vmsvc/getallvms > /dev/null & sleep 1"  # it holds the one slot 20 s
    _status, out, _err = sh(host, f"{holder}; {LIST}; echo :$?; wait")
    assert out == f"{RESET}\n:1\n", out
    hostd = [e.text for e in host.events if e.kind == "hostd"]
    assert f"reset: {LIST}" in hostd and "call: vim-cmd vmsvc/getallvms" in hostd
    assert sh(host, f"{LIST}; echo :$?")[1].endswith(".vmx\n:0\n")  # alone, it is served


# -- the fleet's knobs ------------------------------------------------------------------------
def test_a_host_without_esxcli(make_host: MakeHost) -> None:
    host = make_host(missing_commands=("esxcli",))
    assert sh(host, LIST) == (127, "", "sh: esxcli: not found\n")
    assert sh(host, "command -v esxcli")[0] == 127
    assert sh(host, "[ -x /bin/esxcli ] || echo no")[1] == "no\n"
    assert [e for e in host.events if e.kind == "hostd"] == []  # hostd never asked
    assert fleet_from_dict({"vms": [], "missing_commands": ["esxcli"]}).missing_commands == (
        "esxcli",
    )


def test_a_4x_esxcli_has_no_vm_namespace(make_host: MakeHost) -> None:
    host = make_host(esxcli_namespace_missing=True)
    assert sh(host, LIST) == (1, "Error: Unknown command or namespace vm process list\n", "")
    assert sh(host, "command -v esxcli")[0] == 0  # the program is there
    exit0 = make_host(esxcli_namespace_missing=True, fault_exit0=True)
    assert sh(exit0, f"{LIST}; echo :$?")[1] == (
        "Error: Unknown command or namespace vm process list\n:0\n"
    )


def test_the_namespace_knob_is_checked() -> None:
    assert Fleet(vms=()).esxcli_namespace_missing is False
    fleet = fleet_from_dict({"vms": [], "esxcli_namespace_missing": True})
    assert fleet.esxcli_namespace_missing is True
    with pytest.raises(FleetError) as caught:
        fleet_from_dict({"vms": [], "esxcli_namespace_missing": "yes"}, "f.json")
    assert "esxcli_namespace_missing: must be true or false" in str(caught.value)


def test_fault_exit0_makes_its_errors_exit_0(make_host: MakeHost) -> None:
    host = make_host(fault_exit0=True)
    assert sh(host, "esxcli nosuch; echo :$?")[1] == (
        "Error: Unknown command or namespace nosuch\n:0\n"
    )
    assert sh(host, "esxcli > /dev/null; echo :$?")[1] == ":1\n"  # the usage is no error
    assert sh(host, f"{LIST} > /dev/null; echo :$?")[1] == ":0\n"


def test_no_final_newline(make_host: MakeHost) -> None:
    host = make_host(no_final_newline=True)
    status, out, _err = sh(host, LIST)
    assert status == 0 and out.endswith(".vmx") and not out.endswith("\n")
    assert out + "\n" == sh(make_host(), LIST)[1]
    assert sh(host, "esxcli nosuch; echo :$?")[1] == (
        "Error: Unknown command or namespace nosuch:1\n"
    )
