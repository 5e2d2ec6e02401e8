"""The simulated host's description: its VMs and autostart settings, from JSON or TOML.

A fleet file (JSON; TOML too on Python 3.11+; or a capture of `esxi-suspend check --capture`,
whose first host's `fleet` is one) looks like:

    {"name": "esxi-sim", "stop_action": "PowerOff", "stop_delay": 120,
     "vms": [{"id": 12, "name": "Web Server (prod)", "tools": true,
              "shutdown_seconds": 25, "autostart": 1,
              "stop_action": "guestShutdown", "stop_delay": 120}]}

Every VM key but `id` and `name` has a default (see `VmSpec`). `autostart` is the VM's start
order in the autostart sequence, or absent/null/false when it is not in the sequence.
`tools_hung` (VMware Tools reported running, yet a guest shutdown fails with
vim.fault.ToolsUnavailable) makes a fault.

Host keys, all optional (see `Fleet`): `name`, `version`, `stop_action`, `stop_delay`,
`start_delay`, `autostart_enabled`, the durations `suspend_seconds`, `power_off_seconds`,
`host_shutdown_seconds`, `host_poweroff_seconds` (from `poweroff` to the power gone: the
host's services stop, sessions still answer), and the cost of talking to hostd, which
dominates a real shutdown's timing: `command_latency` (simulated seconds each `vim-cmd`,
`esxcli` or `vmware -v` call takes before it acts; default 0.5, as ~0.5-0.67 s is observed) and
`hostd_concurrency` (how many such calls hostd serves at once; default 16; further calls
wait for a free slot).

Knobs that make the host fail as real ESXi hosts are reported to (each a row of
docs/fault-matrix.md), all off by default:

    hostd_overflow     "queue" (the default: calls beyond hostd_concurrency wait for a slot)
                       or "reset" (each answers at once `Failed to login: Connection reset by
                       peer`, exit 1, as a busy hostd does)
    command_jitter     up to this many simulated seconds more per call, at random (seeded
                       by the host's name: the same fleet draws the same delays)
    arg_limit          the longest argument the host's `sh` takes, in bytes (an exec request's
                       command line, a `sh -c STRING`): longer, `/bin/sh: File too large`
    fault_exit0        a vim-cmd that fails prints its fault and exits 0 (as 6.x+ may); so
                       does an esxcli that prints an `Error: ...`
    no_final_newline   what vim-cmd and esxcli print ends without a newline
    missing_commands   applets, builtins and programs the host lacks: any of "nohup",
                       "setsid", "command" (a 4.x-like busybox: ["nohup", "command"]),
                       "esxcli"
    esxcli_namespace_missing  esxcli is there but has no `vm` namespace, as on 4.x (4.1 has
                       `esxcli vms vm list`): `esxcli vm process list` prints `Error: Unknown
                       command or namespace vm process list`, exit 1 (not yet a row of
                       the fault matrix)
    script_dies_after  `sh FILE` is killed this many simulated seconds in, with every job
                       it started (out of memory, a full /tmp)
"""

from __future__ import annotations

import json
import math
import re
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

HOSTD_OVERFLOW = ("queue", "reset")
MISSABLE_COMMANDS = ("nohup", "setsid", "command", "esxcli")
STOP_ACTIONS = ("systemDefault", "powerOff", "suspend", "guestShutdown", "none")
POWER_STATES = ("Powered on", "Powered off", "Suspended")
DEFAULT_FLEET_RESOURCE = "default_fleet.json"


class FleetError(ValueError):
    """A fleet file that cannot describe a host; names the file and every problem."""


@dataclass(frozen=True)
class VmSpec:
    """One VM as the fleet file describes it (its state when the simulation starts)."""

    vmid: int
    name: str
    guest_os: str = "otherLinux64Guest"
    version: str = "vmx-13"
    datastore: str = "datastore1"
    annotation: str = ""
    power: str = "Powered on"
    tools: bool = True  # VMware Tools running in the guest: needed for a guest shutdown
    shutdown_seconds: float = 30.0  # how long the guest OS takes to shut down
    start_order: int | None = None  # position in the autostart sequence; None: not in it
    stop_action: str = "systemDefault"
    stop_delay: int = -1  # -1: the host default
    uuid: str = ""  # BIOS UUID (vim-cmd vmsvc/get.config: uuid = "...")
    tools_hung: bool = False  # Tools reported running, yet a guest shutdown fails (a fault)

    @property
    def in_autostart(self) -> bool:
        return self.start_order is not None

    @property
    def vmx_path(self) -> str:
        """The path getallvms shows after `[datastore] `: on no datastore (`[] ...`), an
        absolute one, as a vCLS VM's `[] /var/run/crx/infra/vCLS-1/vCLS-1.vmx`."""
        if not self.datastore:
            return f"/var/run/crx/infra/{self.name}/{self.name}.vmx"
        return f"{self.name}/{self.name}.vmx"

    @property
    def bios_uuid(self) -> str:
        if self.uuid:
            return self.uuid
        tail = f"{self.vmid:012x}"
        return f"564d{self.vmid % 0xFFFF:04x}-0000-4000-8000-{tail}"


@dataclass(frozen=True)
class Fleet:
    """A host: its name, version, autostart defaults, timings and VMs."""

    vms: tuple[VmSpec, ...]
    name: str = "esxi-sim"
    version: str = "VMware ESXi 6.7.0 build-17700523"
    stop_action: str = "PowerOff"  # get_defaults stopAction (what systemDefault means)
    stop_delay: int = 120  # get_defaults stopDelay, seconds
    start_delay: int = 120
    autostart_enabled: bool = True
    suspend_seconds: float = 8.0  # how long power.suspend takes
    power_off_seconds: float = 1.0  # how long power.off takes
    host_shutdown_seconds: float = 10.0  # /sbin/shutdown.sh
    host_poweroff_seconds: float = 10.0  # `poweroff` to power gone: sessions live until then
    command_latency: float = 0.5  # each vim-cmd / vmware call: a round trip to hostd
    hostd_concurrency: int = 16  # calls hostd serves at once; more wait for a slot
    hostd_overflow: str = "queue"  # or "reset": a call beyond the slots is turned away
    command_jitter: float = 0.0  # up to this much more per call, at random
    arg_limit: int = 0  # the longest argument `sh` takes (bytes); 0: no limit
    fault_exit0: bool = False  # a failing vim-cmd exits 0
    no_final_newline: bool = False  # vim-cmd's and esxcli's output ends without a newline
    missing_commands: tuple[str, ...] = ()  # busybox applets/builtins, programs the host lacks
    esxcli_namespace_missing: bool = False  # esxcli without `vm process list` (4.x)
    script_dies_after: float | None = None  # `sh FILE` killed, with its jobs, this far in
    source: str = field(default="<built in>", compare=False)

    def vm(self, vmid: int) -> VmSpec | None:
        return next((vm for vm in self.vms if vm.vmid == vmid), None)


_VM_KEYS = {
    "id": "vmid",
    "name": "name",
    "guest_os": "guest_os",
    "version": "version",
    "datastore": "datastore",
    "annotation": "annotation",
    "power": "power",
    "tools": "tools",
    "shutdown_seconds": "shutdown_seconds",
    "autostart": "start_order",
    "stop_action": "stop_action",
    "stop_delay": "stop_delay",
    "uuid": "uuid",
    "tools_hung": "tools_hung",
}
_HOST_KEYS = {
    "name",
    "version",
    "stop_action",
    "stop_delay",
    "start_delay",
    "autostart_enabled",
    "suspend_seconds",
    "power_off_seconds",
    "host_shutdown_seconds",
    "host_poweroff_seconds",
    "command_latency",
    "hostd_concurrency",
    "hostd_overflow",
    "command_jitter",
    "arg_limit",
    "fault_exit0",
    "no_final_newline",
    "missing_commands",
    "esxcli_namespace_missing",
    "script_dies_after",
    "vms",
}
_NUMBER = (int, float)


def _vm_from(raw: object, where: str, problems: list[str]) -> VmSpec | None:
    if not isinstance(raw, dict):
        problems.append(f"{where}: not a table/object")
        return None
    unknown = sorted(set(raw) - set(_VM_KEYS))
    if unknown:
        problems.append(f"{where}: unknown key(s) {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for key, attr in _VM_KEYS.items():
        if key in raw:
            values[attr] = raw[key]
    before = len(problems)
    vmid = values.get("vmid")
    if isinstance(vmid, bool) or not isinstance(vmid, int) or vmid < 1:
        problems.append(f"{where}: id must be a positive integer, not {vmid!r}")
    if not isinstance(values.get("name"), str) or not values["name"].strip():
        problems.append(f"{where}: name must be a non-empty string")
    for key in ("guest_os", "version", "datastore", "annotation", "uuid", "stop_action"):
        if key in values and not isinstance(values[key], str):
            problems.append(f"{where}: {key} must be a string")
    if "power" in values and values["power"] not in POWER_STATES:
        problems.append(f"{where}: power must be one of {', '.join(POWER_STATES)}")
    for key in ("tools", "tools_hung"):
        if key in values and not isinstance(values[key], bool):
            problems.append(f"{where}: {key} must be true or false")
    seconds = values.get("shutdown_seconds", 0)
    if isinstance(seconds, bool) or not isinstance(seconds, _NUMBER) or seconds < 0:
        problems.append(f"{where}: shutdown_seconds must be a number >= 0")
    order = values.get("start_order")
    if order is False:
        values["start_order"] = None
    elif order is not None and (isinstance(order, bool) or not isinstance(order, int)):
        problems.append(f"{where}: autostart must be a start order (integer >= 1) or false")
    action = values.get("stop_action", "systemDefault")
    if isinstance(action, str) and action.lower() not in {a.lower() for a in STOP_ACTIONS}:
        problems.append(f"{where}: stop_action must be one of {', '.join(STOP_ACTIONS)}")
    delay = values.get("stop_delay", -1)
    if isinstance(delay, bool) or not isinstance(delay, int) or delay < -1:
        problems.append(f"{where}: stop_delay must be an integer >= -1")
    if len(problems) > before:
        return None
    if "shutdown_seconds" in values:
        values["shutdown_seconds"] = float(values["shutdown_seconds"])
    return VmSpec(**values)


def fleet_from_dict(data: object, source: str = "<dict>") -> Fleet:
    """Build a Fleet from parsed JSON/TOML; raise FleetError listing every problem."""
    problems: list[str] = []
    if not isinstance(data, dict):
        raise FleetError(f"{source}: the fleet must be a table/object with a `vms` list")
    unknown = sorted(set(data) - _HOST_KEYS)
    if unknown:
        problems.append(f"unknown key(s) {', '.join(unknown)}")
    raw_vms = data.get("vms")
    if not isinstance(raw_vms, list):
        problems.append("vms: must be a list of VMs")
        raw_vms = []
    vms = [_vm_from(raw, f"vms[{i}]", problems) for i, raw in enumerate(raw_vms)]
    ids = [vm.vmid for vm in vms if vm is not None]
    for dup in sorted({i for i in ids if ids.count(i) > 1}):
        problems.append(f"VM id {dup} used twice")
    host: dict[str, Any] = {k: v for k, v in data.items() if k in _HOST_KEYS and k != "vms"}
    for key in ("name", "version", "stop_action"):
        if key in host and not isinstance(host[key], str):
            problems.append(f"{key}: must be a string")
    for key in ("stop_delay", "start_delay"):
        if key in host and (isinstance(host[key], bool) or not isinstance(host[key], int)):
            problems.append(f"{key}: must be an integer")
    durations = (
        "suspend_seconds",
        "power_off_seconds",
        "host_shutdown_seconds",
        "host_poweroff_seconds",
        "command_latency",
        "command_jitter",
    )
    for key in durations:
        value = host.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, _NUMBER) or not 0 <= value < math.inf:
            problems.append(f"{key}: must be a number >= 0")
        elif key in host:
            host[key] = float(value)
    concurrency = host.get("hostd_concurrency", 1)
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        problems.append("hostd_concurrency: must be an integer >= 1")
    for key in ("autostart_enabled", "fault_exit0", "no_final_newline", "esxcli_namespace_missing"):
        if key in host and not isinstance(host[key], bool):
            problems.append(f"{key}: must be true or false")
    _fault_knobs(host, problems)
    if "name" in host and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.-]{0,62}", host["name"]):
        problems.append("name: must be a host name")
    if problems:
        listed = "\n".join(f"  - {problem}" for problem in problems)
        raise FleetError(f"fleet {source} has {len(problems)} problem(s):\n{listed}")
    return Fleet(vms=tuple(vm for vm in vms if vm is not None), source=source, **host)


def _fault_knobs(host: dict[str, Any], problems: list[str]) -> None:
    """Check (and normalise in `host`) the knobs that make the host fail like ESXi."""
    if host.get("hostd_overflow", "queue") not in HOSTD_OVERFLOW:
        problems.append(f"hostd_overflow: must be one of {', '.join(HOSTD_OVERFLOW)}")
    limit = host.get("arg_limit", 0)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        problems.append("arg_limit: must be an integer >= 0 (bytes; 0: no limit)")
    missing = host.get("missing_commands", [])
    if not isinstance(missing, list) or not all(m in MISSABLE_COMMANDS for m in missing):
        problems.append(f"missing_commands: must be a list of {', '.join(MISSABLE_COMMANDS)}")
    elif "missing_commands" in host:
        host["missing_commands"] = tuple(missing)
    dies = host.get("script_dies_after")
    if dies is not None:
        if isinstance(dies, bool) or not isinstance(dies, _NUMBER) or not 0 < dies < math.inf:
            problems.append("script_dies_after: must be a number > 0 (simulated seconds)")
        else:
            host["script_dies_after"] = float(dies)


# `esxi-suspend check --capture FILE` (host/capture.py) writes this `format`; each of its
# hosts holds a `fleet` in this file's own keys (its VMs, tools, autostart, the measured
# vim-cmd latency). The simulator reads the first host's.
CAPTURE_FORMAT = "esxi-suspend capture"


def fleet_from_capture(data: dict[str, Any], source: str) -> Fleet:
    """The first host of a capture, as a fleet; FleetError when it holds none."""
    hosts = data.get("hosts")
    fleets = (
        [h["fleet"] for h in hosts if isinstance(h, dict) and "fleet" in h]
        if isinstance(hosts, list)
        else []
    )
    if not fleets:
        raise FleetError(
            f"fleet {source}: a capture with no host read (its check failed before the "
            "inventory): nothing to simulate"
        )
    return fleet_from_dict(fleets[0], f"{source} (capture, host 1 of {len(fleets)})")


def load_fleet(path: str | Path) -> Fleet:
    """Read a fleet file: `.toml` with tomllib (Python 3.11+), anything else as JSON (a
    capture of `check --capture` too)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FleetError(f"fleet {path}: cannot be read ({exc.strerror or exc})") from None
    try:
        if path.suffix == ".toml":
            if sys.version_info < (3, 11):
                raise FleetError(f"fleet {path}: TOML needs Python 3.11+; use a JSON file")
            import tomllib

            data: object = tomllib.loads(text)
        else:
            data = json.loads(text)
    except ValueError as exc:
        if isinstance(exc, FleetError):
            raise
        raise FleetError(f"fleet {path}: not valid {path.suffix or 'JSON'}: {exc}") from None
    if isinstance(data, dict) and data.get("format") == CAPTURE_FORMAT:
        return fleet_from_capture(data, str(path))
    return fleet_from_dict(data, str(path))


def default_fleet() -> Fleet:
    """The built-in fleet: 9 VMs, mixed tools, some outside the autostart sequence."""
    text = resources.files(__package__).joinpath(DEFAULT_FLEET_RESOURCE).read_text("utf-8")
    return fleet_from_dict(json.loads(text), f"<built in: {DEFAULT_FLEET_RESOURCE}>")


def generated_fleet(
    count: int,
    *,
    stop_delay: int = 120,
    command_latency: float = 0.5,
    hostd_concurrency: int = 16,
) -> Fleet:
    """A deterministic fleet of `count` running VMs for benchmarks.

    One in four has no VMware Tools; one in five is outside the autostart sequence; guest
    shutdowns take 15 to 105 s; the rest stop with guestShutdown (a tools-less one with
    powerOff, as an admin who knew would set it). `command_latency` and `hostd_concurrency`
    as in a fleet file.
    """
    if not 0 <= command_latency < math.inf:
        raise FleetError(f"command_latency: must be a number >= 0, not {command_latency!r}")
    whole = isinstance(hostd_concurrency, int) and not isinstance(hostd_concurrency, bool)
    if not whole or hostd_concurrency < 1:
        raise FleetError(f"hostd_concurrency: must be an integer >= 1, not {hostd_concurrency!r}")
    vms = []
    order = 0
    for i in range(1, count + 1):
        tools = i % 4 != 0
        in_sequence = i % 5 != 0
        if in_sequence:
            order += 1
        vms.append(
            VmSpec(
                vmid=i,
                name=f"vm-{i:03d}",
                guest_os="ubuntu64Guest" if tools else "otherGuest64",
                tools=tools,
                shutdown_seconds=float(15 + (i * 37) % 91),
                start_order=order if in_sequence else None,
                stop_action="guestShutdown" if tools else "powerOff",
                stop_delay=stop_delay,
            )
        )
    return Fleet(
        vms=tuple(vms),
        name=f"fleet-{count}",
        command_latency=float(command_latency),
        hostd_concurrency=hostd_concurrency,
        source=f"<generated: {count} VMs>",
    )
