"""One shutdown per outage: leave alone the hosts already powered off, wait for power, wake.

upsmon ends after its SHUTDOWNCMD, and a monitor restarted while the UPS is still on battery
calls us again at once. So a shutdown run, before its host steps, leaves out the hosts the
outage record (outage_record.py) says this machine already powered off while the UPS is on
battery; after them, while the UPS is on battery, it writes the record and waits for power
(ups.py; bounded, SIGTERM ends it) before the NUT monitor is restarted. When power is back,
during the wait or already during the host steps, the hosts powered off in this outage are
woken (power/wake.py) and the record removed.

The UPS status at the start is read in the background (a first run loses no time to it): it
tells a run upsmon started on battery from a shutdown run by hand while on line, whose hosts
are never woken.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import replace

from esxi_suspend.errors import EsxiSuspendError, one_line
from esxi_suspend.host.shutdown import HostResult
from esxi_suspend.nut import record as outage_record
from esxi_suspend.nut import service, ups
from esxi_suspend.power import wake
from esxi_suspend.settings.model import RestartSettings, Settings, Target

log = logging.getLogger("esxi_suspend")

START_LOOK_BOUND = 10.0  # seconds the end of the run waits at most for the look at the start


class Outage:
    """The outage as one shutdown run sees it: the record, the UPS at the start, the wait."""

    def __init__(self, restart: RestartSettings) -> None:
        self.restart = restart
        self.record: outage_record.OutageRecord | None = None
        self.left_out: list[str] = []
        self.outcome = ""
        self._at_start: list[ups.UpsStatus] = []
        self._look: threading.Thread | None = None

    def leave_out_done_hosts(self, settings: Settings | None) -> Settings | None:
        """`settings` without the hosts already powered off in this outage (None: none left).

        Without a record, the UPS is only read in the background."""
        try:
            record = outage_record.read_record()
        except OSError as exc:  # e.g. not root: no record can exist either
            log.debug("outage record cannot be read: %s", exc)
            record = None
        if record is None:
            self._look = threading.Thread(target=self._look_at_start, daemon=True)
            self._look.start()
            return settings
        status = ups.read_status(self.restart.ups_names)
        self._at_start.append(status)
        path = outage_record.record_path()
        if not status.on_battery:
            if status.online:
                outage_record.remove_record()
                log.info(
                    "ups: %s: on line; outage record %s (%s) is from a past outage: removed",
                    status.describe(),
                    path,
                    record.describe(),
                )
            else:
                log.info(
                    "ups: status unreadable (%s): outage record %s not used",
                    status.describe(),
                    path,
                )
            return settings
        self.record = record
        if settings is None:
            return None
        kept = tuple(t for t in settings.all_targets if not record.covers(t.host, t.port))
        self.left_out = [t.host for t in settings.all_targets if record.covers(t.host, t.port)]
        if self.left_out:
            log.info(
                "outage: this machine already shut down %s in this outage (%s; record %s) and "
                "the UPS is still on battery (%s): not contacting them; waiting for power "
                "before restarting the NUT monitor",
                ", ".join(self.left_out),
                record.describe(),
                path,
                status.describe(),
            )
        if not kept:
            return None
        return replace(
            settings, host=kept[0].host, user=kept[0].user, port=kept[0].port, targets=kept
        )

    def _look_at_start(self) -> None:
        self._at_start.append(ups.read_status(self.restart.ups_names))

    def _on_battery_at_start(self) -> bool:
        if self._look is not None:
            self._look.join(START_LOOK_BOUND)
        return bool(self._at_start) and self._at_start[0].on_battery

    def summary(self) -> list[str]:
        lines = [
            f"host {host}: not contacted (shut down earlier in this outage)"
            for host in self.left_out
        ]
        if self.outcome:
            lines.append(f"ups: {self.outcome}")
        return lines

    def wait_before_restart(
        self,
        everything: Settings | None,
        contacted: Settings | None,
        results: list[HostResult],
        stopped: Callable[[], bool],
    ) -> None:
        """While the UPS is on battery: write the record, wait for power (then wake the
        hosts); never raises. Unreadable status: the restart goes on at once, as before."""
        try:
            self._wait(everything, self._powered_off(contacted, results), stopped)
        except Exception as exc:  # a bug: the monitor restart must still run
            log.critical("ups: internal error while waiting for power: %s", exc, exc_info=True)

    def _powered_off(
        self, contacted: Settings | None, results: list[HostResult]
    ) -> list[outage_record.PoweredOff]:
        """The hosts of this outage: the record's, and those this run powered off."""
        hosts = list(self.record.hosts) if self.record is not None else []
        if contacted is not None:
            for target, result in zip(contacted.all_targets, results):
                if _powered_off(result) and not any(
                    h.host == target.host and h.port == target.port for h in hosts
                ):
                    hosts.append(outage_record.PoweredOff(target.host, target.user, target.port))
        return hosts

    def _wait(
        self,
        everything: Settings | None,
        hosts: list[outage_record.PoweredOff],
        stopped: Callable[[], bool],
    ) -> None:
        restart = self.restart
        status = ups.read_status(restart.ups_names)
        if not status.on_battery:
            if not status.online:
                log.warning(
                    "ups: status cannot be read (%s): restarting the NUT monitor at once, "
                    "without waiting for power (if the UPS is still on battery, upsmon may "
                    "call this command again)",
                    status.describe(),
                )
                return
            if self.record is None and not self._on_battery_at_start():
                log.info("ups: %s: on line: restarting the NUT monitor now", status.describe())
                return  # a shutdown by hand while on line: the hosts stay off
            log.info(
                "ups: %s: power came back during the host steps: the host sequences were let "
                "finish; waking the hosts powered off in this outage, then restarting the NUT "
                "monitor",
                status.describe(),
            )
            self.outcome = "power back during the host steps"
            if self.record is not None and outage_record.claim_record() is None:
                # another run of this outage claimed the record: it wakes the record's hosts
                record = self.record
                hosts = [h for h in hosts if not record.covers(h.host, h.port)]
            _wake(everything, hosts, stopped)
            return
        at = self.record.at if self.record is not None else time.time()
        try:
            path = outage_record.write_record(
                outage_record.OutageRecord(tuple(hosts), at, os.getpid())
            )
            where = f"outage record {path}"
        except OSError as exc:
            where = f"outage record not written ({exc.strerror or exc})"
        log.info(
            "ups: %s: on battery: the NUT monitor is restarted once power is back, not now "
            "(upsmon would call this command again at once); a look every %d s, for at most "
            "%d s; %s",
            status.describe(),
            restart.ups_poll_interval,
            restart.ups_wait_limit,
            where,
        )
        waited = ups.wait_for_power(
            restart.ups_names,
            restart.ups_poll_interval,
            restart.ups_wait_limit,
            stopped=stopped,
            on_look=outage_record.touch_record,
            on_forced=self._clear_forced,
        )
        if waited.outcome == "online":
            log.info(
                "ups: power is back (%s) after %.0f s: restarting the NUT monitor",
                waited.detail,
                waited.seconds,
            )
            self.outcome = f"power back after {waited.seconds:.0f} s"
            claimed = outage_record.claim_record()
            if claimed is not None:  # a second waiting run of this outage gets none
                _wake(everything, list(claimed.hosts), stopped)
            return
        self.outcome = f"waited {waited.seconds:.0f} s, UPS still on battery"
        if waited.outcome == "stopped":
            log.info(
                "ups: SIGTERM received while waiting for power: restarting the NUT monitor now; "
                "the outage record stays, so a run during this outage leaves the hosts alone"
            )
        elif waited.outcome == "limit":
            log.warning(
                "ups: %s (UPS_WAIT_LIMIT=%d): restarting the NUT monitor anyway",
                waited.detail,
                restart.ups_wait_limit,
            )
        else:
            log.warning(
                "ups: status cannot be read any more (%s): restarting the NUT monitor now",
                waited.detail,
            )

    def _clear_forced(self, status: ups.UpsStatus) -> None:
        """Power is back, but upsd keeps the FSD flag a primary upsmon set before it called us:
        a monitor restarted now would shut everything down again. upsd on this machine:
        restart it (UPS_CLEAR_FSD); elsewhere: say where, and wait."""
        forced = [name for name, words in status.statuses if "FSD" in words.split()]
        elsewhere = sorted({host for host in map(upsd_host, forced) if host})
        where = ", ".join(elsewhere) or "this machine"
        intro = (
            f"ups: {status.describe()}: power is back, but upsd on {where} keeps the FSD "
            "(forced shutdown) flag a primary upsmon set: a NUT monitor restarted now would "
            "shut down again"
        )
        fix = "restart NUT's server there (systemctl restart nut-server)"
        if elsewhere:
            log.warning("%s; waiting until it is cleared: %s", intro, fix)
            return
        try:
            plan = service.plan_clear_fsd(self.restart)
            if plan.argv is None:
                log.warning("%s; waiting until it is cleared (%s): %s", intro, plan.why, fix)
                return
            log.info("%s; clearing it: %s", intro, plan.describe())
            service.run_restart(plan, f"{fix}, or set UPS_CLEAR_FSD")
        except EsxiSuspendError as exc:
            log.error("ups: FSD not cleared: %s; waiting until it is", one_line(exc))
            return
        log.info("ups: NUT's server restarted: FSD cleared; the next look says if power is back")


def upsd_host(ups_name: str) -> str:
    """'' when the upsd serving `ups[@host[:port]]` runs on this machine, else its host."""
    if "@" not in ups_name:
        return ""
    host = ups_name.split("@", 1)[1]
    if host.startswith("["):
        host = host[1 : host.index("]")]
    elif host.count(":") == 1:
        host = host.split(":")[0]
    return "" if host in ("localhost", "::1") or host.startswith("127.") else host


def _powered_off(result: HostResult) -> bool:
    return any(step.name == "poweroff" and step.ok for step in result.steps)


def _wake(
    settings: Settings | None, hosts: list[outage_record.PoweredOff], stopped: Callable[[], bool]
) -> None:
    """Power back on the hosts powered off in this outage (power/wake.py); never raises."""
    if settings is None or not hosts:
        return
    targets = [ups_target(settings, host) for host in hosts]
    try:
        wake.wake_powered_off(settings, targets, stopped)
    except Exception as exc:  # a bug there must not stop the monitor restart
        log.critical("wake: internal error: %s", exc, exc_info=True)


def ups_target(settings: Settings, host: outage_record.PoweredOff) -> Target:
    """The ESXI_HOST entry a recorded host is (its own user and port when no longer listed)."""
    for target in settings.all_targets:
        if target.host == host.host and target.port == host.port:
            return target
    return Target(host.host, host.user, host.port)
