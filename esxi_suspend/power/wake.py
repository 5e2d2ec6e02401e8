"""Hosts back on when power returns: Wake-on-LAN magic packets over UDP.

`wake_targets` is what the outage run calls once the UPS is back online, for the hosts it
powered off; `run` is `esxi-suspend wake [HOST]` by hand. A network error is logged with the
host and the fix, never raised: one host that cannot be woken never stops the others, nor the
NUT monitor restart that follows. Every send is bounded (SEND_TIMEOUT); no name is looked up
(the destination is an IPv4 address, validated by config).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from esxi_suspend import __version__, clock
from esxi_suspend.errors import ExitCode
from esxi_suspend.power import bmc
from esxi_suspend.settings.envfile import validate
from esxi_suspend.settings.model import Bmc, Settings, Target, WakeOnLan, env_file_path
from esxi_suspend.settings.values import match_target
from esxi_suspend.ssh.remote import port_answers

log = logging.getLogger("esxi_suspend")

MAGIC_HEADER = b"\xff" * 6
MAC_REPEATS = 16  # the MAC's copies in one packet
PACKET_COPIES = 3  # packets sent per host: UDP may drop one; a NIC wakes on the first
SEND_TIMEOUT = 2.0  # seconds any one send may block
NIC_HINT = "its NIC's MAC; on the host: esxcli network nic list"
# A NIC listens for its magic packet only once its host is off. A host our run has just told
# to power off (power came back during its sequence) is first waited for: until its SSH port
# stops answering (a look every PROBE_EVERY s, for DOWN_LIMIT s at most), then the packets go
# DOWN_SETTLE s later and once more RESEND_AFTER s after that, for a host still shutting down.
DOWN_LIMIT = 300.0
PROBE_EVERY = 2.0
DOWN_SETTLE = 10.0
RESEND_AFTER = 30.0


def magic_packet(mac: str) -> bytes:
    """6 x 0xFF, then the MAC 16 times: 102 bytes. `mac` as values.parse_mac gives it."""
    octets = bytes.fromhex(mac.replace(":", "").replace("-", ""))
    if len(octets) != 6:
        raise ValueError(f"{mac!r}: a MAC address has 6 octets")
    return MAGIC_HEADER + octets * MAC_REPEATS


def send_magic_packet(wol: WakeOnLan) -> None:
    """Send PACKET_COPIES magic packets for `wol` (SO_BROADCAST); raises OSError."""
    packet = magic_packet(wol.mac)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.settimeout(SEND_TIMEOUT)
        for _ in range(PACKET_COPIES):
            sock.sendto(packet, (wol.broadcast, wol.udp_port))


def _describe(wol: WakeOnLan) -> str:
    return f"magic packet for {wol.mac} to {wol.broadcast} port {wol.udp_port}"


def wake_one(wol: WakeOnLan, dry_run: bool = False) -> tuple[ExitCode, str]:
    """Wake one host; never raises. The code and a one-line outcome (also logged)."""
    host = wol.target.host
    if dry_run:
        text = f"would send {_describe(wol)} (dry run; not sent)"
        log.info("wake: host %s: %s", host, text)
        return ExitCode.OK, text
    try:
        send_magic_packet(wol)
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        text = (
            f"{_describe(wol)} NOT sent: {reason}; check that this machine is on the host's "
            f"network and that ESXI_WOL_BROADCAST is that network's broadcast address "
            f"(e.g. 192.168.1.255), then run: esxi-suspend wake {host}"
        )
        log.error("wake: host %s: %s", host, text)
        return ExitCode.CONNECTION, text
    text = (
        f"{_describe(wol)} sent ({PACKET_COPIES} copies); it powers on if Wake-on-LAN is "
        "enabled in its firmware and NIC"
    )
    log.info("wake: host %s: %s", host, text)
    return ExitCode.OK, text


def wake_targets(
    settings: Settings, targets: tuple[Target, ...] | list[Target], dry_run: bool = False
) -> ExitCode:
    """Wake each of `targets` that has an ESXI_WOL_MAC; never raises.

    A host without one is skipped with one INFO line. The worst code: OK, or CONNECTION when a
    packet could not be sent (the other hosts still get theirs), INTERNAL for a bug.
    """
    return max((o.code for o in _wake(settings, targets, dry_run)), default=ExitCode.OK)


def answers(target: Target) -> bool:
    """Does the host still accept a TCP connection on its SSH port?"""
    return port_answers(target.host, target.port)


def wait_until_down(
    targets: list[Target],
    stopped: Callable[[], bool],
    limit: float = DOWN_LIMIT,
    probe: Callable[[Target], bool] = answers,
) -> tuple[list[Target], list[Target]]:
    """Wait until each of `targets` stops answering on its SSH port (bounded by `limit`, cut
    short by `stopped`). Returns (those seen going down now, those still up at the end)."""
    started = time.monotonic()
    up = [t for t in targets if probe(t)]
    if up:
        log.info(
            "wake: %s still answer(s) on the SSH port (going down): the magic packets go once "
            "each is off (at most %.0f s of waiting)",
            ", ".join(t.host for t in up),
            limit,
        )
    going = list(up)
    while up and not stopped() and time.monotonic() - started < limit:
        clock.pause(PROBE_EVERY, stopped)
        for target in list(up):
            if not probe(target):
                up.remove(target)
                log.info(
                    "wake: host %s: no longer answers on port %d after %.0f s: it is off",
                    target.host,
                    target.port,
                    time.monotonic() - started,
                )
    return [t for t in going if t not in up], up


def wake_powered_off(
    settings: Settings, targets: list[Target], stopped: Callable[[], bool] = lambda: False
) -> ExitCode:
    """Wake the hosts a shutdown run powered off, once power is back; never raises.

    A host seen still going down is waited for (wait_until_down), then sent its packets
    DOWN_SETTLE s after it went quiet and again RESEND_AFTER s later. One still answering at
    DOWN_LIMIT gets its packets all the same, with a line saying how to wake it by hand.

    A host with a BMC (ESXI_IPMI_HOST) is powered on by it instead (bmc.power_back_all, at
    the same time): its power state read, powered on once off, its SSH port waited for."""
    by_bmc = [t for t in targets if settings.bmc_for(t) is not None]
    targets = [t for t in targets if t not in by_bmc]
    powering: threading.Thread | None = None
    codes: list[ExitCode] = []
    if by_bmc:
        powering = threading.Thread(
            target=lambda: codes.append(bmc.power_back_all(settings, by_bmc, stopped)),
            daemon=True,
        )
        powering.start()
    worst = _wake_by_lan(settings, targets, stopped)
    if powering is not None:
        powering.join()  # power_back_all bounds itself
    return max([worst, *codes])


def _wake_by_lan(
    settings: Settings, targets: list[Target], stopped: Callable[[], bool]
) -> ExitCode:
    if not targets:
        return ExitCode.OK
    wakeable = [t for t in targets if settings.wake_on_lan_for(t) is not None]
    worst = wake_targets(settings, [t for t in targets if t not in wakeable])  # each says why
    if not wakeable:
        return worst
    going, still_up = wait_until_down(wakeable, stopped)
    for target in still_up:
        log.warning(
            "wake: host %s still answers on port %d after %.0f s: sending its magic packets "
            "anyway; if it stays off, run: esxi-suspend wake %s",
            target.host,
            target.port,
            DOWN_LIMIT,
            target.host,
        )
    if going:
        clock.pause(DOWN_SETTLE, stopped)
    worst = max(worst, wake_targets(settings, wakeable))
    if going and not stopped():
        clock.pause(RESEND_AFTER, stopped)
        if not stopped():
            log.info("wake: sending again, for a host that was still shutting down")
            worst = max(worst, wake_targets(settings, going))
    return worst


@dataclass(frozen=True)
class _Outcome:
    host: str
    code: ExitCode
    text: str
    skipped: bool = False
    by_ipmi: bool = False


def _wake(
    settings: Settings, targets: tuple[Target, ...] | list[Target], dry_run: bool
) -> list[_Outcome]:
    """Each host's outcome, in `targets`' order; the hosts with a BMC all at once."""
    by_bmc: dict[Target, _Outcome] = {}
    threads = [
        threading.Thread(target=_by_bmc, args=(settings, b, dry_run, by_bmc), daemon=True)
        for b in map(settings.bmc_for, targets)
        if b is not None
    ]
    for thread in threads:
        thread.start()
    outcomes = _wake_by_packets(
        settings, [t for t in targets if settings.bmc_for(t) is None], dry_run
    )
    for thread in threads:
        thread.join()  # power_back bounds itself
    by_host = {o.host: o for o in outcomes}
    return [
        by_bmc[t] if t in by_bmc else by_host[t.host]
        for t in targets
        if t in by_bmc or t.host in by_host
    ]


def _by_bmc(settings: Settings, b: Bmc, dry_run: bool, into: dict[Target, _Outcome]) -> None:
    """One host powered back on by its BMC (or, in a dry run, its state read)."""
    host = b.target.host
    try:
        if dry_run:
            code, text = bmc.describe(b, settings)
            if code == ExitCode.OK:
                text += "; would power it on if off (dry run; not sent)"
            log.info("wake: host %s: %s", host, text)
        else:
            code, text = bmc.power_back(settings, b, going_down=False)
    except Exception as exc:  # a bug: the other hosts still go on
        log.critical("wake: host %s: internal error: %s", host, exc, exc_info=True)
        code, text = ExitCode.INTERNAL, f"internal error: {exc}"
    into[b.target] = _Outcome(host, code, text, by_ipmi=True)


def _wake_by_packets(
    settings: Settings, targets: tuple[Target, ...] | list[Target], dry_run: bool
) -> list[_Outcome]:
    outcomes: list[_Outcome] = []
    for target in targets:
        try:
            wol = settings.wake_on_lan_for(target)
            if wol is None:
                text = (
                    f"not woken: no usable ESXI_WOL_MAC entry (to wake it, add "
                    f"{target.host}=MAC, {NIC_HINT})"
                )
                log.info("wake: host %s: %s", target.host, text)
                outcomes.append(_Outcome(target.host, ExitCode.OK, text, skipped=True))
                continue
            code, text = wake_one(wol, dry_run)
        except Exception as exc:  # a bug: the other hosts and the NUT restart still go on
            log.critical("wake: host %s: internal error: %s", target.host, exc, exc_info=True)
            code, text = ExitCode.INTERNAL, f"internal error: {exc}"
        outcomes.append(_Outcome(target.host, code, text))
    return outcomes


def run(env_file: str | None, host: str | None, dry_run: bool = False) -> ExitCode:
    """`esxi-suspend wake [HOST]`: every host with an ESXI_WOL_MAC or a BMC (powered on by
    IPMI, then its SSH port waited for), or the one named."""
    path = env_file_path(env_file)
    mode = "wake (dry run: nothing will be sent)" if dry_run else "wake"
    log.info("esxi-suspend %s: %s, settings from %s", __version__, mode, path)
    validation = validate(path)
    worst = ExitCode.OK
    if validation.problems:
        for line in validation.report("wake goes on with what is usable", "no host can be woken"):
            log.error("%s", line)
        worst = ExitCode.CONFIG
    settings = validation.settings
    if settings is None:
        return _finish([], ExitCode.CONFIG, "no host can be woken (configuration)")
    targets = settings.all_targets
    if host is not None:
        try:
            targets = (match_target(host, settings.all_targets),)
        except ValueError as exc:
            log.error("wake: %s; nothing sent", exc)
            return _finish([], ExitCode.USAGE, "nothing sent")
        no_bmc = settings.bmc_for(targets[0]) is None
        if settings.wake_on_lan_for(targets[0]) is None and no_bmc:
            name = targets[0].host
            log.error(
                "wake: host %s has no usable ESXI_WOL_MAC entry; nothing sent; add %s=MAC "
                "(%s) to ESXI_WOL_MAC in %s, or %s=BMC to ESXI_IPMI_HOST",
                name,
                name,
                NIC_HINT,
                path,
                name,
            )
            return _finish([], ExitCode.CONFIG, "nothing sent")
    elif not settings.wake_on_lan and not settings.bmcs:
        log.error(
            "wake: no host has a usable ESXI_WOL_MAC entry; nothing sent; set "
            "ESXI_WOL_MAC=host=MAC in %s (%s), or ESXI_IPMI_HOST=host=BMC",
            path,
            NIC_HINT,
        )
        return _finish([], ExitCode.CONFIG, "nothing sent")
    outcomes = _wake(settings, targets, dry_run)
    return _finish(outcomes, max([worst, *(o.code for o in outcomes)]), dry_run=dry_run)


def _finish(
    outcomes: list[_Outcome], worst: ExitCode, note: str = "", dry_run: bool = False
) -> ExitCode:
    """The outcome on stdout (a person ran it) and one summary line in the log."""
    for outcome in outcomes:
        print(f"{outcome.host}: {outcome.text}")
    if outcomes:
        failed = sum(o.code != ExitCode.OK for o in outcomes)
        skipped = sum(o.skipped for o in outcomes)
        by_ipmi = sum(o.by_ipmi and o.code == ExitCode.OK for o in outcomes)
        sent = len(outcomes) - failed - skipped - by_ipmi
        verb = "would be sent (dry run)" if dry_run else "sent"
        ipmi_verb = "read by IPMI (dry run)" if dry_run else "powered on by IPMI"
        ipmi_note = f", {by_ipmi} {ipmi_verb}" if any(o.by_ipmi for o in outcomes) else ""
        note = f"{sent} {verb}{ipmi_note}, {skipped} without ESXI_WOL_MAC, {failed} failed"
    log.info("wake: summary: %s; exit %d (%s)", note, worst, worst.name)
    print(f"result: {note} (exit {int(worst)} {worst.name})")
    return worst
