"""The IPMI client: `ipmitool` against one host's BMC, over the LAN, each call bounded.

ipmitool rather than a Python library: admins already have it and can rerun by hand any
command we log; a call takes ~0.05 s once the cipher suite is fixed (`-C`, ESXI_IPMI_CIPHER:
without it ipmitool first asks the BMC for its suites, and a BMC that ignores the question
costs 4 retries, 10 s); every call is a process we bound and kill (machine.run_program) with
ipmitool's own retries (`-N 1 -R 2`, ~6 s for a BMC that never answers) inside that bound.
The password goes in ipmitool's environment (`-E`, IPMI_PASSWORD), never on its command line:
/proc/PID/environ is readable by root alone, nothing is written to disk, and nothing is left
behind if we are killed mid-call.

Every failure is an IpmiError whose text names the BMC and the fix; the password is never
part of one.
"""

from __future__ import annotations

import logging
import re
import subprocess
from dataclasses import dataclass

from esxi_suspend import machine
from esxi_suspend.errors import ExitCode
from esxi_suspend.settings.model import Bmc

log = logging.getLogger("esxi_suspend")

PROGRAM = "ipmitool"
RETRY_EVERY = 1  # ipmitool -N: seconds between its retransmissions
RETRIES = 2  # ipmitool -R
ENABLE_HINT = (
    "IPMI over LAN is enabled in the BMC (iDRAC: iDRAC Settings > Connectivity > IPMI "
    "Settings; iLO: Security > Access Settings > IPMI/DCMI over LAN; Supermicro: "
    "Configuration > Port, IPMI 623)"
)
_STATE_RE = re.compile(r"Chassis Power is (on|off)", re.IGNORECASE)
# What ipmitool -v says when the BMC answered but refused the user or its password.
_REFUSED = (
    "RAKP 2 HMAC is invalid",
    "unauthorized name",
    "Activate Session command failed",
    "invalid user name",
    "password invalid",
    "Get Session Challenge command failed",
)
_NO_CIPHER = ("invalid authentication algorithm", "invalid integrity algorithm", "cipher suite")


class IpmiError(Exception):
    """A BMC call failed: `kind` is `missing`, `no answer`, `refused`, `cipher` or `failed`."""

    def __init__(self, kind: str, text: str) -> None:
        self.kind = kind
        super().__init__(text)

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.CONFIG if self.kind == "missing" else ExitCode.CONNECTION


@dataclass(frozen=True)
class Call:
    """One ipmitool command line: what we log (it holds no secret) and run."""

    bmc: Bmc
    words: tuple[str, ...]

    @property
    def argv(self) -> list[str]:
        bmc = self.bmc
        argv = [PROGRAM, "-I", bmc.interface, "-H", bmc.address, "-p", str(bmc.port)]
        argv += ["-U", bmc.user, "-E"]
        if bmc.interface == "lanplus":
            argv += ["-C", str(bmc.cipher)]
        argv += ["-N", str(RETRY_EVERY), "-R", str(RETRIES), "-v", *self.words]
        return argv

    @property
    def shown(self) -> str:
        """The command line as an admin reruns it (`-v` left out; IPMI_PASSWORD set first)."""
        return " ".join(word for word in self.argv if word != "-v")


def run(bmc: Bmc, words: tuple[str, ...], timeout: float) -> str:
    """Run `ipmitool … WORDS` against `bmc` within `timeout` s; its output, or IpmiError."""
    call = Call(bmc, words)
    host = bmc.target.host
    log.debug("ipmi: host %s: running %s (bound %.0f s)", host, call.shown, timeout)
    try:
        done = machine.run_program(
            call.argv,
            timeout,
            env={"IPMI_PASSWORD": bmc.password, "IPMITOOL_PASSWORD": None},
        )
    except FileNotFoundError:
        raise IpmiError(
            "missing",
            f"{PROGRAM} not found on this machine: install it (Debian/Ubuntu: apt-get install "
            f"ipmitool; RHEL: dnf install ipmitool)",
        ) from None
    except subprocess.TimeoutExpired:
        raise IpmiError("no answer", _no_answer(bmc, f"within {timeout:.0f} s")) from None
    except OSError as exc:
        raise IpmiError("failed", f"{PROGRAM} cannot start: {exc.strerror or exc}") from None
    if done.returncode == 0:
        return done.stdout
    raise _failure(bmc, call, done.stdout + done.stderr)


def _no_answer(bmc: Bmc, when: str) -> str:
    return (
        f"no answer from the BMC at {bmc.where} {when}: check ESXI_IPMI_HOST, that this "
        f"machine reaches the BMC's network, and that {ENABLE_HINT}"
    )


def _failure(bmc: Bmc, call: Call, output: str) -> IpmiError:
    lowered = output.lower()
    if any(text.lower() in lowered for text in _REFUSED):
        return IpmiError(
            "refused",
            f"the BMC at {bmc.where} refused user {bmc.user} or its password: check "
            "ESXI_IPMI_USER and ESXI_IPMI_PASSWORD (the user needs the operator or admin "
            "privilege and IPMI over LAN access)",
        )
    if any(text in lowered for text in _NO_CIPHER):
        return IpmiError(
            "cipher",
            f"the BMC at {bmc.where} does not offer cipher suite {bmc.cipher}: set "
            "ESXI_IPMI_CIPHER to one it offers (3, or 17 on newer BMCs)",
        )
    if "unable to establish" in lowered or "get auth capabilities" in lowered:
        return IpmiError("no answer", _no_answer(bmc, "(no IPMI session)"))
    last = [line.strip() for line in output.splitlines() if line.strip()][-1:] or ["no output"]
    return IpmiError("failed", f"`{call.shown}` failed: {last[0]}")


def power_is_on(bmc: Bmc, timeout: float) -> bool:
    """The chassis power state the BMC reports (read-only)."""
    output = run(bmc, ("chassis", "power", "status"), timeout)
    match = _STATE_RE.search(output)
    if match is None:
        raise IpmiError("failed", f"the BMC at {bmc.where} gave no power state ({output!r})")
    return match.group(1).lower() == "on"


def power_on(bmc: Bmc, timeout: float) -> None:
    run(bmc, ("chassis", "power", "on"), timeout)


def power_soft(bmc: Bmc, timeout: float) -> None:
    """The power button, pressed once: ACPI soft-off (the OS shuts itself down)."""
    run(bmc, ("chassis", "power", "soft"), timeout)


def power_off(bmc: Bmc, timeout: float) -> None:
    """Power cut at the chassis: whatever runs on the host dies."""
    run(bmc, ("chassis", "power", "off"), timeout)
