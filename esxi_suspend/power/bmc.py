"""What a host's BMC does for an outage: power it back on, press its power button when SSH is
gone, confirm it off, and `check`'s look at it (read-only).

Each step logs as it goes and never raises: an IpmiError becomes a line naming the BMC and the
fix. Every wait is bounded and cut short by `stopped` (SIGTERM). The runner records the steps
of a shutdown (`record`, as host/ does); power/wake.py calls `power_back_all`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from esxi_suspend import clock
from esxi_suspend.errors import ExitCode
from esxi_suspend.power import ipmi
from esxi_suspend.power.ipmi import IpmiError
from esxi_suspend.settings.model import Bmc, Settings, Target
from esxi_suspend.ssh.remote import port_answers

log = logging.getLogger("esxi_suspend")

Record = Callable[[str, ExitCode, str], None]
Stopped = Callable[[], bool]

LOOK_EVERY = 2.0  # seconds between two looks at a power state or an SSH port
DOWN_LIMIT = 300.0  # power back: how long a host still on (going down) is waited for
CONFIRM_LIMIT = 90.0  # after a host sequence's poweroff: how long the BMC may still say on
MIN_WATCH = 30.0  # soft-off past the deadline: how long we still watch, to say what happened


def _never() -> bool:
    return False


def bmc_target(settings: Settings) -> Bmc | None:
    """The BMC of the host `settings` is for (Settings.for_target), if it has one."""
    return settings.bmc_for(Target(settings.host, settings.user, settings.port))


def wait_power(
    bmc: Bmc, on: bool, seconds: float, timeout: float, stopped: Stopped = _never
) -> tuple[bool, float, IpmiError | None]:
    """Look at the power state every LOOK_EVERY s until it is `on` (or off), for `seconds`
    at most. (reached, seconds waited, the last error when the last look failed)."""
    started = time.monotonic()
    while True:
        error: IpmiError | None = None
        try:
            if ipmi.power_is_on(bmc, timeout) == on:
                return True, time.monotonic() - started, None
        except IpmiError as exc:
            error = exc
        if stopped() or time.monotonic() - started + LOOK_EVERY > seconds:
            return False, time.monotonic() - started, error
        clock.pause(LOOK_EVERY, stopped)


def wait_ssh(target: Target, seconds: float, stopped: Stopped = _never) -> float | None:
    """Seconds until the host's SSH port answers; None if it did not within `seconds`."""
    started = time.monotonic()
    while not stopped() and time.monotonic() - started < seconds:
        if port_answers(target.host, target.port):
            return time.monotonic() - started
        clock.pause(LOOK_EVERY, stopped)
    return None


# -- power back ---------------------------------------------------------------------------


def power_back(
    settings: Settings, bmc: Bmc, stopped: Stopped = _never, going_down: bool = True
) -> tuple[ExitCode, str]:
    """A host this outage powered off, power back: its state read; once off, powered on;
    then its SSH port waited for (ESXI_BOOT_WAIT). The code and one line (also logged).

    `going_down`: a host on may still be going down (the outage's wake): wait until it is
    off. Else (`esxi-suspend wake`) a host on is left alone."""
    host, timeout = bmc.target.host, settings.connect_timeout
    try:
        if ipmi.power_is_on(bmc, timeout):
            if not going_down:
                text = "its BMC says power on already: nothing sent"
                log.info("wake: host %s: %s", host, text)
                return ExitCode.OK, text
            log.info(
                "wake: host %s: its BMC says power on: waiting until it is off (going down), "
                "%.0f s at most",
                host,
                DOWN_LIMIT,
            )
            off, waited, error = wait_power(bmc, False, DOWN_LIMIT, timeout, stopped)
            if error is not None:
                raise error
            if not off:
                text = (
                    f"its BMC still says power on after {waited:.0f} s: left as it is (it "
                    "was powered on, or is still going down: see its console)"
                )
                log.warning("wake: host %s: %s", host, text)
                return ExitCode.OK, text
        log.info("wake: host %s: power off; powering it on: %s", host, _shown(bmc, "on"))
        ipmi.power_on(bmc, timeout)
    except IpmiError as exc:
        text = f"NOT powered on: {exc}; then run: esxi-suspend wake {host}"
        log.error("wake: host %s: %s", host, text)
        return exc.exit_code, text
    return ExitCode.OK, _wait_back(settings, bmc, stopped)


def _wait_back(settings: Settings, bmc: Bmc, stopped: Stopped) -> str:
    target = bmc.target
    back = wait_ssh(target, settings.boot_wait, stopped)
    if back is not None:
        text = f"powered on by its BMC; host back after {back:.0f} s (SSH port {target.port})"
        log.info("wake: host %s: %s", target.host, text)
        return text
    text = (
        f"powered on by its BMC, but its SSH port {target.port} did not answer within "
        f"ESXI_BOOT_WAIT={settings.boot_wait} s: see its console"
    )
    if not stopped():
        log.warning("wake: host %s: %s", target.host, text)
    return text


def power_back_all(settings: Settings, targets: list[Target], stopped: Stopped) -> ExitCode:
    """power_back for each of `targets` (each has a BMC), all at once; the worst code."""
    codes: list[ExitCode] = []

    def one(bmc: Bmc) -> None:
        try:
            codes.append(power_back(settings, bmc, stopped)[0])
        except Exception as exc:  # a bug: the other hosts and the NUT restart still go on
            log.critical("wake: host %s: internal error: %s", bmc.target.host, exc, exc_info=True)
            codes.append(ExitCode.INTERNAL)

    bmcs = [bmc for bmc in map(settings.bmc_for, targets) if bmc is not None]
    threads = [threading.Thread(target=one, args=(b,), daemon=True) for b in bmcs]
    for thread in threads:
        thread.start()
    bound = time.monotonic() + DOWN_LIMIT + settings.boot_wait + 6 * settings.connect_timeout
    for thread in threads:
        while thread.is_alive() and time.monotonic() < bound:
            thread.join(0.1)
    return max(codes, default=ExitCode.OK)


def _shown(bmc: Bmc, word: str) -> str:
    return ipmi.Call(bmc, ("chassis", "power", word)).shown


# -- at shutdown --------------------------------------------------------------------------


def press_power_button(
    settings: Settings, bmc: Bmc, record: Record, stopped: Stopped = _never
) -> None:
    """SSH could not reach the host: its BMC presses the power button (ACPI soft-off: ESXi
    shuts its VMs down by their autostart settings and powers off), then its power state is
    watched until ESXI_DEADLINE; a host still on then is cut only with ESXI_IPMI_HARD_OFF."""
    host, timeout = bmc.target.host, settings.connect_timeout
    try:
        if not ipmi.power_is_on(bmc, timeout):
            record(
                "off",
                ExitCode.OK,
                "its BMC says power off already (before this run): nothing sent; not powered "
                "on when mains returns",
            )
            return
        ipmi.power_soft(bmc, timeout)
    except IpmiError as exc:
        record("ipmi soft-off", exc.exit_code, f"not sent: {exc}")
        return
    left = settings.called_at + settings.deadline - clock.now()
    watch = max(left, 0.0) if settings.ipmi_hard_off else max(left, MIN_WATCH)
    record(
        "ipmi soft-off",
        ExitCode.OK,
        f"SSH is gone: its BMC pressed the power button (ACPI soft-off: ESXi stops its VMs "
        f"by their autostart settings, then powers off); watching its power state for "
        f"{watch:.0f} s (ESXI_DEADLINE)",
    )
    off, waited, error = wait_power(bmc, False, watch, timeout, stopped)
    if off:
        record("poweroff", ExitCode.OK, f"its BMC says power off {waited:.0f} s after soft-off")
        return
    if stopped():
        return
    if not settings.ipmi_hard_off:
        state = f"cannot be read ({error})" if error else "on"
        record(
            "poweroff",
            ExitCode.REMOTE_COMMAND,
            f"its power state is still {state} {waited:.0f} s after soft-off, at ESXI_DEADLINE: "
            "left on (ESXI_IPMI_HARD_OFF=no); it loses power with the battery; set "
            "ESXI_IPMI_HARD_OFF=yes to have its BMC cut it at the deadline",
        )
        return
    log.warning(
        "host %s: still on at ESXI_DEADLINE %.0f s after soft-off: its BMC powers it off hard "
        "(ESXI_IPMI_HARD_OFF=yes): %s",
        host,
        waited,
        _shown(bmc, "off"),
    )
    try:
        ipmi.power_off(bmc, timeout)
        off, _, error = wait_power(bmc, False, 3 * LOOK_EVERY, timeout, stopped)
    except IpmiError as exc:
        off, error = False, exc
    if off:
        record(
            "poweroff",
            ExitCode.OK,
            "powered off hard by its BMC at ESXI_DEADLINE (ESXI_IPMI_HARD_OFF=yes): what "
            "still ran on it was cut",
        )
    else:
        record("poweroff", ExitCode.CONNECTION, f"hard power-off by its BMC failed: {error}")


def confirm_off(settings: Settings, bmc: Bmc, record: Record, stopped: Stopped = _never) -> None:
    """After the host sequence's poweroff: the BMC's power state says the host is off."""
    off, waited, error = wait_power(bmc, False, CONFIRM_LIMIT, settings.connect_timeout, stopped)
    if off:
        record("off", ExitCode.OK, f"confirmed by its BMC: power off {waited:.0f} s later")
    elif error is not None:
        record("off", ExitCode.CONNECTION, f"not confirmed: {error}")
    elif not stopped():
        record(
            "off",
            ExitCode.REMOTE_COMMAND,
            f"its BMC still says power on {waited:.0f} s after poweroff: see its console",
        )


def describe(bmc: Bmc, settings: Settings) -> tuple[ExitCode, str]:
    """`check`: the BMC's power state, read only; does IPMI work, and the fix if not."""
    try:
        on = ipmi.power_is_on(bmc, settings.connect_timeout)
    except IpmiError as exc:
        return exc.exit_code, f"IPMI does NOT work: {exc}"
    return ExitCode.OK, (
        f"IPMI works: its BMC at {bmc.where} says power {'on' if on else 'off'} (read only; "
        f"{_shown(bmc, 'status')}, IPMI_PASSWORD in the environment)"
    )
