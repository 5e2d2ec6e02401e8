"""One shutdown per outage: leave alone the hosts already powered off, wait for power, wake.

upsmon ends after its SHUTDOWNCMD, and a monitor restarted while the UPS is still on battery
calls us again at once. So a shutdown run, before its host steps, leaves out the hosts the
outage record (outage_record.py) says this machine already powered off while the UPS is on
battery; after them, while the UPS is on battery, it writes the record and waits for power
(ups.py; bounded, SIGTERM ends it) before the NUT monitor is restarted. When power is back,
during the wait or already during the host steps, the monitor is re-armed at once, and the
hosts powered off in this outage are woken later, by a detached process, once mains is steady
and the battery recharged (powerback.py); the record stays meanwhile, so that a second outage
leaves those hosts alone and cancels that wake.

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
from pathlib import Path

from esxi_suspend import clock
from esxi_suspend.errors import EsxiSuspendError, one_line
from esxi_suspend.host.shutdown import HostResult
from esxi_suspend.nut import powerback, service, ups
from esxi_suspend.nut import record as outage_record
from esxi_suspend.settings.model import RestartSettings, Settings, env_file_path

log = logging.getLogger("esxi_suspend")

START_LOOK_BOUND = 10.0  # seconds the end of the run waits at most for the look at the start


class Outage:
    """The outage as one shutdown run sees it: the record, the UPS at the start, the wait."""

    def __init__(self, restart: RestartSettings, env_file: Path | None = None) -> None:
        self.restart = restart
        self.env_file = env_file  # what the detached wake after power back reads
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
                    "ups: %s: on line; outage record %s (%s) is from a past outage: removed%s",
                    status.describe(),
                    path,
                    record.describe(),
                    ": the pending wake is cancelled" if record.wake else "",
                )
            else:
                log.info(
                    "ups: status unreadable (%s): outage record %s not used",
                    status.describe(),
                    path,
                )
            return settings
        if record.wake:  # power was back, the wake waited: a second outage cancels it
            record = replace(record, wake="", pid=os.getpid())
            try:
                outage_record.write_record(record)
            except OSError as exc:
                log.warning("outage record %s cannot be taken over (%s)", path, exc)
            log.warning(
                "outage: the UPS is on battery again (%s) while the wake after power back "
                "waited for steady mains: the wake is cancelled, no host is powered on; this "
                "run follows the outage now (record %s)",
                status.describe(),
                path,
            )
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
            measured = self._measured(contacted, results)
            self._wait(everything, self._powered_off(contacted, results), measured, stopped)
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

    def _measured(self, contacted: Settings | None, results: list[HostResult]) -> float:
        """Seconds the hosts' shutdown took, from upsmon's call to the last host off (this
        run's, or the record's when this run powered none off): what a wake must leave."""
        earlier = self.record.shutdown_seconds if self.record is not None else 0.0
        if contacted is None or not any(_powered_off(result) for result in results):
            return earlier
        return max(earlier, clock.now() - contacted.called_at)

    def _wait(
        self,
        everything: Settings | None,
        hosts: list[outage_record.PoweredOff],
        measured: float,
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
                "finish; restarting the NUT monitor; the hosts powered off in this outage are "
                "woken once mains is steady and the battery recharged",
                status.describe(),
            )
            self.outcome = "power back during the host steps"
            self._hand_over(hosts, measured)
            return
        at = self.record.at if self.record is not None else time.time()
        try:
            path = outage_record.write_record(
                outage_record.OutageRecord(tuple(hosts), at, os.getpid(), measured)
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
            record = outage_record.read_record()
            if record is None or record.wake:  # a second waiting run of this outage handed
                return  # the wake over already
            self._hand_over(_union(list(record.hosts), hosts), measured)
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

    def _hand_over(self, hosts: list[outage_record.PoweredOff], measured: float) -> None:
        """Power is back: the monitor is re-armed now; the wake of `hosts` waits, detached,
        for steady mains and a recharged battery (powerback.py). Never raises OSError."""
        if not hosts:
            outage_record.remove_record()
            return
        names = ", ".join(h.host for h in hosts)
        token = powerback.new_token()
        at = self.record.at if self.record is not None else time.time()
        record = outage_record.OutageRecord(
            tuple(hosts), at, os.getpid(), measured, token, time.time()
        )
        try:
            outage_record.write_record(record)
            where = powerback.start(self.env_file or env_file_path(None), token)
        except OSError as exc:
            outage_record.remove_record()
            log.error(
                "power back: the wake cannot wait for steady mains (%s): %s not woken; once "
                "mains is steady and the battery recharged, run: esxi-suspend wake",
                exc.strerror or exc,
                names,
            )
            return
        log.info(
            "power back: %s stay off until mains is steady and the battery recharged: that "
            "wait runs detached from the NUT monitor (%s); outage record %s kept meanwhile",
            names,
            where,
            outage_record.record_path(),
        )
        self.outcome += "; the wake waits for steady mains and battery"

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


def _union(
    first: list[outage_record.PoweredOff], second: list[outage_record.PoweredOff]
) -> list[outage_record.PoweredOff]:
    return first + [h for h in second if not any(h == k for k in first)]
