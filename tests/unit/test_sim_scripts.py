"""The simulator's shell runs the two command lines of a shutdown (the inventory and the host
sequence), as literal text, on a small simulated host: no SSH, a recording terminal."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest

from esxi_suspend.simulator import Fate, fleet_from_dict
from esxi_suspend.simulator.host import HostDown, HostModel
from esxi_suspend.simulator.shell import Shell

INVENTORY = """t=${TMPDIR:-/tmp}/esxi-suspend-inv-$$
vim-cmd vmsvc/getallvms > $t.vms 2>&1 &
a=$!
vim-cmd hostsvc/autostartmanager/get_defaults > $t.def 2>&1 &
vim-cmd hostsvc/autostartmanager/get_autostartseq > $t.seq 2>&1 &
wait $a
s=$?
wait
ids=
while read -r id rest; do
  case $id in
    *[!0-9]*|"") ;;
    *) ids="$ids $id" ;;
  esac
done < $t.vms
n=0
for id in $ids; do
  vim-cmd vmsvc/get.summary $id > $t.$id 2>&1 &
  n=$((n + 1))
  if [ $n -ge 16 ]; then wait; n=0; fi
done
wait
echo "@@status $s"
echo @@vms
cat $t.vms
echo @@defaults
cat $t.def
echo @@sequence
cat $t.seq
for id in $ids; do echo "@@summary $id"; cat $t.$id; rm -f $t.$id; done
rm -f $t.vms $t.def $t.seq
echo @@poweroff
command -v poweroff
echo @@nohup
command -v nohup"""

SEQUENCE = """trap "" HUP
P=esxi-suspend:
down() { vim-cmd vmsvc/power.getstate $1 2>/dev/null | grep -q -e "Powered off" -e Suspended; }
settle() {
  e=$(( $(date +%s) + $2 ))
  while ! down $1; do
    if [ $(date +%s) -ge $e ]; then echo "$P VM $1 still running after $2 s"; return 1; fi
    sleep 2
  done
  echo "$P VM $1 down"
}
echo "$P host sequence started: strategy autostop, host poweroff within 236 s"
( sleep 236; echo "$P deadline reached: host poweroff"; poweroff ) &
echo "$P phase 1/2 before autostop: 2 VM(s)"
p=
{ vim-cmd vmsvc/power.shutdown 12 || vim-cmd vmsvc/power.suspend 12; settle 12 120; } &
p="$p $!"
{ vim-cmd vmsvc/power.suspend 20; settle 20 120; } &
p="$p $!"
wait $p
echo "$P phase 2/2 autostop: the autostart sequence"
vim-cmd hostsvc/autostartmanager/autostop &
a=$!
e=$(( $(date +%s) + 90 ))
while kill -0 $a 2>/dev/null; do
  if [ $(date +%s) -ge $e ]; then echo "$P autostop still running after 90 s"; break; fi
  sleep 1
done
echo "$P final: suspending the VMs still running"
p=
{ down 12 || { echo "$P VM 12 still running: suspending it"; vim-cmd vmsvc/power.suspend 12; }; } &
p="$p $!"
{ down 20 || { echo "$P VM 20 still running: suspending it"; vim-cmd vmsvc/power.suspend 20; }; } &
p="$p $!"
wait $p
down 1 || { echo "$P suspending our own VM 1"; vim-cmd vmsvc/power.suspend 1; }
echo "$P host poweroff"
poweroff"""

LOG = "/tmp/esxi-suspend-1-2.log"
DETACHED = f"nohup sh -c '{SEQUENCE}' >> {LOG} 2>&1 < /dev/null &"

# 12 shuts down (tools), 20 has no tools (suspended in phase 1), 1 is our own VM (suspended
# last), 13 and 15 are stopped by autostop, 31 is off from the start.
FLEET = {
    "vms": [
        {"id": 1, "name": "nut-client", "shutdown_seconds": 20},
        {"id": 12, "name": "Web Server (prod)", "shutdown_seconds": 25, "autostart": 1,
         "stop_action": "guestShutdown"},
        {"id": 13, "name": "db-01 [primary]", "shutdown_seconds": 30, "autostart": 2,
         "stop_action": "guestShutdown", "stop_delay": 60},
        {"id": 15, "name": "build", "autostart": 3, "stop_action": "suspend"},
        {"id": 20, "name": "legacy", "tools": False},
        {"id": 31, "name": "spare", "power": "Powered off"},
    ]
}  # fmt: skip


class Recorder:
    def __init__(self) -> None:
        self.out = ""
        self.err = ""
        self.holders = 0

    def write(self, fd: int, text: str) -> None:
        if fd == 2:
            self.err += text
        else:
            self.out += text

    def hold(self) -> None:
        self.holders += 1

    def release(self) -> None:
        self.holders -= 1


@pytest.fixture
def host() -> Iterator[HostModel]:
    model = HostModel(fleet_from_dict(FLEET), time_scale=0.002)
    yield model
    model.stop()


def test_inventory_prints_every_section(host: HostModel) -> None:
    term = Recorder()
    assert Shell(host, None).run(INVENTORY, term) == 0
    out = term.out
    markers = [line for line in out.splitlines() if line.startswith("@@")]
    ids = [spec.vmid for spec in host.fleet.vms]
    assert markers == [
        "@@status 0",
        "@@vms",
        "@@defaults",
        "@@sequence",
        *(f"@@summary {vmid}" for vmid in ids),
        "@@poweroff",
        "@@nohup",
    ]
    assert "Web Server (prod)" in out.split("@@defaults")[0]
    assert "stopAction" in out.split("@@sequence")[0].split("@@defaults")[1]
    assert "vim.VirtualMachine:12" in out.split("@@summary")[0].split("@@sequence")[1]
    assert out.endswith("@@poweroff\n/sbin/poweroff\n@@nohup\n/bin/nohup\n")
    for vmid in ids:
        summary = out.split(f"@@summary {vmid}\n")[1].split("@@")[0]
        assert summary.strip(), f"no summary for VM {vmid}"
        assert "Unknown command" not in summary
    assert term.err == "" and term.holders == 0
    assert [e for e in host.events if e.kind == "exec"] == []  # the server's, one per request
    assert not [path for path in host.files if "esxi-suspend-inv-" in path]  # cleaned up
    assert host.background_jobs() == []
    assert not host.powered_off and set(host.fates().values()) <= {Fate.RUNNING, Fate.WAS_OFF}


def test_inventory_runs_its_calls_concurrently() -> None:
    model = HostModel(fleet_from_dict(FLEET), time_scale=0.05)  # room for our own overhead
    try:
        start = model.now()
        Shell(model, None).run(INVENTORY, Recorder())
        took = model.now() - start
    finally:
        model.stop()
    # three listings at once, then every get.summary at once: two round trips to hostd, where
    # one call after the other would take nine
    latency = model.fleet.command_latency
    assert 2 * latency <= took < 7 * latency, took


def test_detached_sequence_powers_the_host_off(host: HostModel) -> None:
    term = Recorder()
    assert Shell(host, 7).run(DETACHED, term) == 0
    assert term.holders == 0 and term.out == term.err == ""  # all of it went to the log
    host.cancel_session_jobs(7)  # our session drops: the detached job is no foreground
    assert host.wait_powered_off(30)
    fates = host.fates()
    assert host.read_file(LOG) is not None
    log = host.read_file(LOG) or ""
    assert fates[12] is Fate.CLEAN_SHUTDOWN
    assert fates[20] is fates[15] is fates[1] is Fate.SUSPENDED
    assert fates[13] is Fate.CLEAN_SHUTDOWN
    assert fates[31] is Fate.WAS_OFF
    assert not [vmid for vmid, fate in fates.items() if fate is Fate.HARD_KILLED]
    lines = log.splitlines()
    assert all(line.startswith("esxi-suspend: ") or line == "Suspending VM:" for line in lines)
    said = [line.split(": ", 1)[1] for line in lines if line.startswith("esxi-suspend: ")]
    assert said[0] == "host sequence started: strategy autostop, host poweroff within 236 s"
    assert said[1] == "phase 1/2 before autostop: 2 VM(s)"
    assert {"VM 12 down", "VM 20 down"} <= set(said[2:4])
    assert said[4:] == [
        "phase 2/2 autostop: the autostart sequence",
        "final: suspending the VMs still running",
        "suspending our own VM 1",
        "host poweroff",
    ]
    deadline = time.monotonic() + 5
    while host.background_jobs() and time.monotonic() < deadline:  # they end with the host
        time.sleep(0.01)
    assert host.background_jobs() == []


def test_the_watchdog_powers_off_at_the_deadline(host: HostModel) -> None:
    # autostop never ends within the script's bounds: VM 13's guest takes 500 s, and its
    # stop delay is longer than the deadline
    script = SEQUENCE.replace("236", "40").replace("+ 90", "+ 300")
    slow = dict(FLEET)
    slow["vms"] = [dict(vm, shutdown_seconds=500, stop_delay=600) if vm["id"] == 13 else vm
                   for vm in FLEET["vms"]]  # fmt: skip
    model = HostModel(fleet_from_dict(slow), time_scale=0.002)
    try:
        Shell(model, 7).run(f"nohup sh -c '{script}' >> {LOG} 2>&1 < /dev/null &", Recorder())
        assert model.wait_powered_off(30)
        log = model.read_file(LOG) or ""
        assert "esxi-suspend: deadline reached: host poweroff" in log
        assert "esxi-suspend: host poweroff" not in log.splitlines()
        assert 40 <= (model.powered_off_at or 0) < 100  # autostop's bound: 28 + 300 s
        assert model.fates()[13] is Fate.HARD_KILLED
    finally:
        model.stop()


def test_the_sequence_in_the_foreground_ends_with_host_down(host: HostModel) -> None:
    term = Recorder()
    with pytest.raises(HostDown):
        Shell(host, 7).run(SEQUENCE, term)
    assert re.search(r"^esxi-suspend: host poweroff$", term.out, re.MULTILINE)
    assert not [vmid for vmid, fate in host.fates().items() if fate is Fate.HARD_KILLED]
