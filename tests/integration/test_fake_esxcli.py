"""The fake SSH hosts' `esxcli` (tests/fakehost/esxcli), run directly: no SSH server, a
temporary FAKE_ESXI_DIR, under busybox ash (as the hosts' command lines run) and dash (the
`#!/bin/sh` of a Debian machine).

It must answer `esxcli vm process list` as a real 5.x-8.x host does, and as the simulator's
esxcli does for the same VMs (the same volume UUID per datastore name).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from conftest import unavailable
from sshservers import FAKEHOST_DIR

from esxi_suspend.simulator.esxcli import volume_uuid

ESXCLI = FAKEHOST_DIR / "esxcli"
LIST = ["vm", "process", "list"]
DS1 = volume_uuid("datastore1")
VCLS_ROWS = (
    "Vmid   Name   File   Guest OS   Version   Annotation\n"
    "1      vCLS-1           [] /var/run/crx/infra/vCLS-1/vCLS-1.vmx   other4xLinux64Guest"
    "   vmx-15    vSphere Cluster Service VM\n"
    "15     win2019                    [ssd 2] win2019/win2019.vmx     windows2019srv_64Guest"
    "   vmx-15\n"
)


@pytest.fixture(params=["busybox", "dash"])
def shell(request: pytest.FixtureRequest) -> list[str]:
    name: str = request.param
    path = shutil.which(name)
    if path is None:
        unavailable(f"{name} not found (apt-get install {name})")
    return [path, "sh"] if name == "busybox" else [path]


@pytest.fixture
def fake_dir(tmp_path: Path) -> Path:
    return tmp_path


def esxcli(shell: list[str], fake_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*shell, str(ESXCLI), *args],
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "FAKE_ESXI_DIR": str(fake_dir)},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def write(fake_dir: Path, name: str, text: str = "") -> None:
    path = fake_dir / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def record(vmid: int, name: str, uuid: str, config: str) -> str:
    world = 527600 + 36 * vmid
    return (
        f"{name}\n   World ID: {world}\n   Process ID: 0\n   VMX Cartel ID: {world - 1}\n"
        f"   UUID: {uuid}\n   Display Name: {name}\n   Config File: {config}\n"
    )


WEB = "Web Server [prod] (v2)"
DEFAULT = {
    1: record(
        1,
        "nut-client",
        "56 4d 00 00 00 00 00 00-00 00 00 00 00 00 00 01",
        f"/vmfs/volumes/{DS1}/nut-client/nut-client.vmx",
    ),
    12: record(
        12,
        WEB,
        "56 4d 00 00 00 00 00 00-00 00 00 00 00 00 00 12",
        f"/vmfs/volumes/{DS1}/{WEB}/{WEB}.vmx",
    ),
    15: record(
        15,
        "win2019",
        "56 4d 00 00 00 00 00 00-00 00 00 00 00 00 00 15",
        f"/vmfs/volumes/{volume_uuid('ssd 2')}/win2019/win2019.vmx",
    ),
}


def test_the_file_is_executable() -> None:
    assert ESXCLI.stat().st_mode & 0o111 == 0o111
    assert ESXCLI.read_text().startswith("#!/bin/sh\n")


def test_default_listing_and_log(shell: list[str], fake_dir: Path) -> None:
    result = esxcli(shell, fake_dir, *LIST)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == "\n".join(DEFAULT.values())
    assert re.fullmatch(
        r"\d+\.\d+\tesxcli vm process list\n", (fake_dir / "commands.log").read_text()
    )


def test_vms_not_powered_on_are_not_listed(shell: list[str], fake_dir: Path) -> None:
    write(fake_dir, "state/12", "Powered off\n")
    write(fake_dir, "state/15", "Suspended\n")
    assert esxcli(shell, fake_dir, *LIST).stdout == DEFAULT[1]
    write(fake_dir, "state/1", "Powered off\n")
    result = esxcli(shell, fake_dir, *LIST)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_uuid_override_and_a_vm_on_no_datastore(shell: list[str], fake_dir: Path) -> None:
    write(fake_dir, "getallvms.txt", VCLS_ROWS)
    write(fake_dir, "uuid/1", "420F8A7C-1B2D-3E4F-5061-728394A5B6C7\n")
    write(fake_dir, "state/15", "Suspended\n")
    assert esxcli(shell, fake_dir, *LIST).stdout == record(
        1,
        "vCLS-1",
        "42 0f 8a 7c 1b 2d 3e 4f-50 61 72 83 94 a5 b6 c7",
        "/var/run/crx/infra/vCLS-1/vCLS-1.vmx",
    )


def test_esxcli_missing(shell: list[str], fake_dir: Path) -> None:
    write(fake_dir, "esxcli_missing")
    result = esxcli(shell, fake_dir, *LIST)
    assert (result.returncode, result.stdout, result.stderr) == (127, "", "sh: esxcli: not found\n")


@pytest.mark.parametrize(("exit_file", "status"), [(None, 0), ("3\n", 3)])
def test_esxcli_output_and_exit(
    shell: list[str], fake_dir: Path, exit_file: str | None, status: int
) -> None:
    write(fake_dir, "esxcli_output", "\nweird\n   World ID: x\n")
    if exit_file is not None:
        write(fake_dir, "esxcli_exit", exit_file)
    result = esxcli(shell, fake_dir, *LIST)
    assert (result.returncode, result.stdout) == (status, "\nweird\n   World ID: x\n")


def test_esxcli_namespace_missing(shell: list[str], fake_dir: Path) -> None:
    write(fake_dir, "esxcli_namespace_missing")
    result = esxcli(shell, fake_dir, *LIST)
    assert (result.returncode, result.stdout) == (
        1,
        "Error: Unknown command or namespace vm process list\n",
    )


@pytest.mark.parametrize(
    ("args", "status", "start"),
    [
        ([], 1, "Usage: esxcli "),
        (["vm", "process"], 1, "Error: Unknown command or namespace vm process\n"),
        (["vms", "vm", "list"], 1, "Error: Unknown command or namespace vms vm list\n"),
    ],
)
def test_other_arguments_fail(
    shell: list[str], fake_dir: Path, args: list[str], status: int, start: str
) -> None:
    result = esxcli(shell, fake_dir, *args)
    assert result.returncode == status and result.stdout.startswith(start), result


def test_latency_delays_the_call_and_it_is_logged(shell: list[str], fake_dir: Path) -> None:
    write(fake_dir, "latency", "0.4\n")
    start = time.monotonic()
    result = esxcli(shell, fake_dir, *LIST)
    assert time.monotonic() - start >= 0.4
    assert result.stdout == "\n".join(DEFAULT.values())
    assert (fake_dir / "commands.log").read_text().endswith("\tesxcli vm process list\n")


def test_hostd_slots_are_shared_with_vim_cmd(shell: list[str], fake_dir: Path) -> None:
    write(fake_dir, "hostd_slots", "1\n")
    (fake_dir / "hostd" / "1").mkdir(parents=True)  # a vim-cmd holds the one slot
    result = esxcli(shell, fake_dir, *LIST)
    assert (result.returncode, result.stdout) == (1, "Failed to login: Connection reset by peer\n")
    assert (fake_dir / "resets.log").read_text().endswith("\treset: esxcli vm process list\n")
    (fake_dir / "hostd" / "1").rmdir()
    assert esxcli(shell, fake_dir, *LIST).returncode == 0
    assert list((fake_dir / "hostd").iterdir()) == []  # its slot given back


def test_no_final_newline(shell: list[str], fake_dir: Path) -> None:
    write(fake_dir, "no_final_newline")
    result = esxcli(shell, fake_dir, *LIST)
    assert (result.returncode, result.stdout) == (0, "\n".join(DEFAULT.values()).rstrip("\n"))
    error = esxcli(shell, fake_dir, "nosuch")
    assert (error.returncode, error.stdout) == (1, "Error: Unknown command or namespace nosuch")
