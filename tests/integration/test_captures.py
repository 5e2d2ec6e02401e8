"""Every capture kept in tests/data/captures (`esxi-suspend check --capture`) goes through our
parsers and, as a fleet, through a whole simulated shutdown (`demo --fleet FILE`)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import outputs
import pytest
from sshservers import SshServer

from esxi_suspend.demo import command as demo
from esxi_suspend.host import esxi
from esxi_suspend.host.capture import anonymized
from esxi_suspend.host.inventory import parse_inventory
from esxi_suspend.host.script import LOG_PREFIX, REHEARSAL_OVER, STAND_IN
from esxi_suspend.simulator import load_fleet

COMMAND = Path(sys.executable).parent / "esxi-suspend"
CAPTURES = sorted((Path(__file__).resolve().parents[1] / "data" / "captures").glob("*.json"))


def esxi_suspend(*args: str) -> subprocess.CompletedProcess[str]:
    """The installed command as upsmon runs it: no terminal, stdin closed, PATH only."""
    done = subprocess.run(
        [str(COMMAND), *args],
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        cwd="/",
        timeout=90,
        check=False,
    )
    outputs.record(f"esxi-suspend {' '.join(args)}", done.stdout + done.stderr)
    return done


def hosts(path: Path) -> list[dict[str, Any]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["format"] == "esxi-suspend capture" and data["format_version"] == 1
    return [host for host in data["hosts"] if "fleet" in host]


def test_we_keep_captures_of_both_kinds() -> None:
    assert {p.name for p in CAPTURES} >= {"fake-openssh.json", "simulator-default.json"}


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.stem)
def test_a_capture_reads_back_through_our_parsers(path: Path) -> None:
    for host in hosts(path):
        raw = host["raw"]
        inventory = parse_inventory(host["host"], raw["inventory"], host["token"], 0, "")
        fleet = host["fleet"]
        assert [(i.vmid, i.vm.name) for i in inventory.vms] == [
            (vm["id"], vm["name"]) for vm in fleet["vms"]
        ]
        for info, vm in zip(inventory.vms, fleet["vms"]):
            assert (info.state.value if info.state else "Powered on") == vm["power"]
            assert bool(info.tools_running) == vm["tools"]
            order = info.autostart.start_order if info.autostart else None
            assert order == vm.get("autostart")
        probes = esxi.split_marked(raw["probes"] + "\n", host["probes_token"])
        assert probes["busybox"].startswith("BusyBox v")
        assert [key for key in probes if key.startswith("call")] == ["call 0"]  # one per key
        assert raw["probes"].count(f"@@{host['probes_token']} call 0") == 3
        log = raw["rehearsal"].splitlines()
        assert all(line.startswith(LOG_PREFIX) for line in log) and log[-1].endswith(REHEARSAL_OVER)
        assert any(STAND_IN in line for line in log)
        assert "outlived" in raw["detached"]
        assert all(step["ok"] for step in host["steps"] if step["name"] != "key restrictions")
        assert host["timings"]["vim_cmd_seconds"] and fleet["command_latency"] >= 0


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.stem)
def test_an_anonymized_capture_names_no_vm_and_still_parses(path: Path) -> None:
    for host in hosts(path):
        names = [vm["name"] for vm in host["fleet"]["vms"]]
        out = anonymized(host)
        text = json.dumps(out, ensure_ascii=False)
        assert not [name for name in names if name in text and len(name) >= 4]
        bare = re.sub(r"[-\s]", "", text.lower())  # a UUID in any of the host's spellings
        assert not [vm["id"] for vm in host["fleet"]["vms"] if vm.get("uuid", "-") in bare]
        inventory = parse_inventory("x", out["raw"]["inventory"], out["token"], 0, "")
        assert [i.vm.name for i in inventory.vms] == [
            f"vm-{vm['id']}" for vm in host["fleet"]["vms"]
        ]


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.stem)
def test_a_capture_replays_as_a_whole_simulated_shutdown(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet = load_fleet(path)
    assert [vm.name for vm in fleet.vms] == [vm["name"] for vm in hosts(path)[0]["fleet"]["vms"]]
    assert fleet.command_latency == hosts(path)[0]["fleet"]["command_latency"]
    code = demo.run(str(path), dry_run=False, time_scale=0.005)
    out = capsys.readouterr().out
    assert code == 0, out
    assert "(capture, host 1 of 1)" in out
    assert "total: host powered off" in out, out
    assert "Traceback" not in out


def test_check_capture_anonymized_against_a_fake_host(fake_esxi: SshServer) -> None:
    """`check --capture FILE --anonymize` as a user runs it: the file (0600) holds the host's
    raw text, the probes and the timings, no VM name, and replays as a fleet."""
    path = fake_esxi.root / "capture.json"
    env = str(fake_esxi.write_env())
    outcome = esxi_suspend("check", "--env-file", env, "--capture", str(path), "--anonymize")
    assert outcome.returncode == 0, outcome.stdout + outcome.stderr
    assert f"capture: written to {path} (1 host(s), VM names anonymized)" in outcome.stdout
    assert path.stat().st_mode & 0o777 == 0o600
    text = path.read_text(encoding="utf-8")
    for name in ("nut-client", "Web Server", "win2019", "second annotation line"):
        assert name not in text
    assert "56 4d 00 00" not in text and "564d0000-" not in text  # esxcli's and get.summary's
    assert "Config File: /vmfs/volumes/" in text  # esxcli's listing is there, anonymized
    (host,) = hosts(path)
    assert host["host"] == "esxi-host" and set(host["raw"]) == {
        "inventory",
        "probes",
        "rehearsal",
        "detached",
    }
    assert [vm["name"] for vm in host["fleet"]["vms"]] == ["vm-1", "vm-12", "vm-15"]
    assert load_fleet(path).vms[1].name == "vm-12"


def test_anonymize_needs_capture(fake_esxi: SshServer) -> None:
    outcome = esxi_suspend("check", "--env-file", str(fake_esxi.write_env()), "--anonymize")
    assert outcome.returncode == 2 and "--anonymize needs --capture FILE" in outcome.stderr
