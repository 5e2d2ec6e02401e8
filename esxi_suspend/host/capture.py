"""`check --capture FILE`: what a check saw on each host, in one JSON file for a bug report.

Per host: everything the host printed (raw, with the marker token that cuts it), every step's
result (the probes included), the timings, and the host as the simulator's fleet file
describes one (`fleet`: its VMs, tools, autostart, the vim-cmd latency measured), so that
`esxi-suspend demo --fleet FILE` replays the shutdown of that very fleet. `anonymized`
replaces VM names, annotations, BIOS UUIDs and the host's name throughout. Pure: no I/O.
"""

from __future__ import annotations

import re
from typing import Any

from esxi_suspend import __version__
from esxi_suspend.errors import RemoteCommandFailed
from esxi_suspend.host.inventory import Inventory, parse_inventory
from esxi_suspend.host.rehearsal import Rehearsal
from esxi_suspend.settings.model import Settings

FORMAT = "esxi-suspend capture"
FORMAT_VERSION = 1
# The stop actions a fleet file knows (simulator/fleet.py STOP_ACTIONS); another is the default.
STOP_ACTIONS = ("systemDefault", "powerOff", "suspend", "guestShutdown", "none")
DEFAULT_LATENCY = 0.5  # seconds a vim-cmd, when none was measured
ANONYMOUS_HOST = "esxi-host"


def document(hosts: list[dict[str, Any]], anonymize: bool) -> dict[str, Any]:
    """The whole file: one entry per host, anonymized if asked."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "esxi_suspend": __version__,
        "anonymized": anonymize,
        "hosts": [anonymized(h) if anonymize else h for h in hosts],
    }


def host_capture(
    settings: Settings,
    inventory: Inventory,
    raw_inventory: str,
    token: int,
    took: float,
    done: Rehearsal,
    steps: list[tuple[str, bool, str]],
) -> dict[str, Any]:
    return {
        "host": settings.host,
        "token": token,
        "raw": {"inventory": raw_inventory, **done.raw},
        "probes_token": done.token,
        "steps": [{"name": n, "ok": ok, "detail": d} for n, ok, d in steps],
        "busybox": done.busybox,
        "timings": {
            "inventory_seconds": round(took, 3),
            "vim_cmd_seconds": [round(s, 3) for s in done.latencies],
            "rehearsal_seconds": round(done.seconds, 3),
        },
        "fleet": fleet_of(settings.host, inventory, done.latency),
    }


def failed_host(host: str, steps: list[tuple[str, bool, str]]) -> dict[str, Any]:
    """A host check could not read: its steps only."""
    return {"host": host, "steps": [{"name": n, "ok": ok, "detail": d} for n, ok, d in steps]}


def _stop_action(value: str) -> str:
    return next((a for a in STOP_ACTIONS if a.lower() == value.lower()), "systemDefault")


def fleet_name(host: str) -> str:
    name = re.sub(r"[^A-Za-z0-9.-]+", "-", host).strip(".-")[:63]
    return name if name and name[0].isalnum() else ANONYMOUS_HOST


def fleet_of(host: str, inventory: Inventory, latency: float | None) -> dict[str, Any]:
    """The host as a fleet file (simulator/fleet.py) says it."""
    defaults = inventory.defaults
    vms = []
    for info in inventory.vms:
        vm: dict[str, Any] = {
            "id": info.vmid,
            "name": info.vm.name,
            "guest_os": info.vm.guest,
            "version": info.vm.version,
            "datastore": info.vm.datastore,
            "annotation": info.vm.annotation,
            "power": info.state.value if info.state else "Powered on",
            "tools": bool(info.tools_running),
        }
        entry = info.autostart
        if entry is not None and entry.start_order >= 1:
            vm["autostart"] = entry.start_order
            vm["stop_action"] = _stop_action(entry.stop_action)
            vm["stop_delay"] = max(-1, entry.stop_delay)
        if info.bios_uuid:
            vm["uuid"] = info.bios_uuid
        vms.append(vm)
    return {
        "name": fleet_name(host),
        "stop_action": defaults.stop_action or "PowerOff",
        "stop_delay": max(0, defaults.stop_delay),
        "autostart_enabled": defaults.enabled,
        "command_latency": round(latency if latency is not None else DEFAULT_LATENCY, 3),
        "vms": vms,
    }


def _words(text: str) -> str:
    return r"(?<![A-Za-z0-9])" + re.escape(text) + r"(?![A-Za-z0-9])"


# Any other UUID of the host's text (a VM's instanceUuid): one shape, no digit of it kept.
_ANY_UUID = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
_NO_UUID = "00000000-0000-0000-0000-000000000000"


def anonymized(host: dict[str, Any]) -> dict[str, Any]:
    """The same capture with VM names `vm-ID`, no annotations or BIOS UUIDs, the host's name
    ANONYMOUS_HOST: in the fleet, the steps and the raw texts alike. A raw inventory the
    replacements made unreadable is dropped (said so in its place)."""
    fleet = host.get("fleet")
    swaps: list[tuple[str, str]] = []
    if host.get("host"):
        swaps.append((str(host["host"]), ANONYMOUS_HOST))
    if isinstance(fleet, dict):
        for vm in fleet.get("vms", []):
            swaps.append((vm["name"], f"vm-{vm['id']}"))
            for line in str(vm.get("annotation", "")).splitlines():
                if len(line.strip()) >= 3:
                    swaps.append((line.strip(), ""))
    # Longest first, through placeholders: a name inside another, or inside `vm-N`, stays.
    swaps.sort(key=lambda swap: -len(swap[0]))
    holders = [(re.compile(_words(old)), f"\0{i}\0", new) for i, (old, new) in enumerate(swaps)]
    # A BIOS UUID as the host writes it: get.summary's `564d890e-6865-...`, esxcli's
    # `56 4d 89 0e ... -...`; the fleet's own is its 32 digits.
    for i, vm in enumerate(fleet.get("vms", []) if isinstance(fleet, dict) else []):
        digits = str(vm.get("uuid") or "")
        if re.fullmatch(r"[0-9a-f]{32}", digits):
            pattern = r"[-\s]?".join(digits[n : n + 2] for n in range(0, 32, 2))
            holders.append((re.compile(pattern, re.IGNORECASE), f"\0u{i}\0", f"uuid-{vm['id']}"))

    def clean(text: str) -> str:
        for pattern, holder, _new in holders:
            text = pattern.sub(holder, text)
        for _pattern, holder, new in holders:
            text = text.replace(holder, new)
        return _ANY_UUID.sub(_NO_UUID, text)

    out: dict[str, Any] = dict(host)
    out["host"] = ANONYMOUS_HOST
    out["steps"] = [{**s, "detail": clean(str(s["detail"]))} for s in host.get("steps", [])]
    raw = {k: clean(str(v)) for k, v in host.get("raw", {}).items()}
    if isinstance(fleet, dict):
        vms = [
            {
                **{k: v for k, v in vm.items() if k not in ("uuid", "annotation")},
                "name": f"vm-{vm['id']}",
            }
            for vm in fleet.get("vms", [])
        ]
        out["fleet"] = {**fleet, "name": ANONYMOUS_HOST, "vms": vms}
        if "inventory" in raw and not _reads_back(raw["inventory"], host, out["fleet"]):
            raw["inventory"] = "(dropped: replacing the VM names made it unreadable)"
    out["raw"] = raw
    return out


def _reads_back(text: str, host: dict[str, Any], fleet: dict[str, Any]) -> bool:
    """The anonymized raw inventory still parses to the anonymized fleet's VMs."""
    try:
        inventory = parse_inventory(ANONYMOUS_HOST, text, int(host["token"]), 0, "")
    except (RemoteCommandFailed, KeyError, ValueError):
        return False
    got = [(info.vmid, info.vm.name) for info in inventory.vms]
    return got == [(vm["id"], vm["name"]) for vm in fleet["vms"]]
