"""A real BMC for the tests: OpenIPMI's `ipmi_sim` on 127.0.0.1, a UDP port of its own, its
config, state and chassis script in a test directory; `ipmitool` talks to it over RMCP+ as to
an iDRAC or an iLO.

The chassis script plays the host's power: `get power` reads a file, `set power 0|1` writes it
(a hard off, a power on), `set shutdown 1` (the ACPI power button) turns it off SOFT_SECONDS
later unless the host ignores the button (`ignore_soft_off`). A thread of ours plays the rest
of the host: it goes off when its fake ESXi host's SSH server ends (`follow`), and once powered
on it answers on its SSH port again after `boot` seconds (`boots_on`).

This module knows nothing of pytest; conftest.py turns BmcUnavailable into skip/fail.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from sshservers import HOST, SshServer, stop_process

USER = "admin"
PASSWORD = "bmcPw#42-secret"  # lan.conf takes no spaces in it; IPMI takes 20 bytes at most
SOFT_SECONDS = 3
READY_TIMEOUT = 10.0

CHASSIS = """\
#!/bin/sh
# ipmi_sim's chassis_control: $1 the MC, then get power | set power 0|1 | set shutdown 1 | ...
dir={dir}
echo "$2 $3 $4" >>"$dir/calls.log"
now=$(date +%s)
case "$2 $3" in
"get power")
    if [ -f "$dir/soft_at" ] && [ ! -f "$dir/ignore_soft" ] &&
        [ $((now - $(cat "$dir/soft_at"))) -ge {soft} ]; then
        echo 0 >"$dir/power"
        rm -f "$dir/soft_at"
    fi
    echo "power:$(cat "$dir/power")"
    ;;
"set power")
    echo "$4" >"$dir/power"
    rm -f "$dir/soft_at"
    ;;
"set shutdown")
    [ "$(cat "$dir/power")" = 1 ] && [ ! -f "$dir/soft_at" ] && echo "$now" >"$dir/soft_at"
    ;;
esac
exit 0
"""

LAN_CONF = """\
name "esxisuspendtest"
set_working_mc 0x20
  startlan 1
    addr {host} {port}
    priv_limit admin
    allowed_auths_callback none md2 md5 straight
    allowed_auths_user none md2 md5 straight
    allowed_auths_operator none md2 md5 straight
    allowed_auths_admin none md2 md5 straight
    guid a123456789abcdefa123456789abcdef
  endlan
  chassis_control "{chassis} 0x20"
  user 2 true "{user}" "{password}" admin 10 none md2 md5 straight
"""

EMU = """\
mc_setbmc 0x20
mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr
mc_enable 0x20
"""


class BmcUnavailable(Exception):
    """ipmi_sim or ipmitool is missing (apt-get install openipmi ipmitool)."""


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class SimulatedBmc:
    """A running ipmi_sim and the host power it plays."""

    def __init__(self, root: Path, port: int, process: subprocess.Popen[bytes]) -> None:
        self.root = root
        self.port = port
        self.process = process
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._listener: socket.socket | None = None
        self.server: SshServer | None = None
        self.boot_port: int | None = None
        self.boot_address = HOST
        self.boot_seconds = 1.0

    # -- the power ------------------------------------------------------------------------
    @property
    def on(self) -> bool:
        return (self.root / "power").read_text().strip() == "1"

    def set_power(self, on: bool) -> None:
        (self.root / "power").write_text("1\n" if on else "0\n")

    def ignore_soft_off(self) -> None:
        """The host ignores the ACPI power button (hung, or set to do nothing)."""
        (self.root / "ignore_soft").touch()

    def calls(self) -> list[str]:
        """What ipmi_sim asked the chassis script: `get power`, `set power 1`, …"""
        path = self.root / "calls.log"
        return [line.strip() for line in path.read_text().splitlines()] if path.exists() else []

    def settings(self, host: str) -> dict[str, str]:
        """The env file's lines that give ESXI_HOST entry `host` this BMC."""
        return {
            "ESXI_IPMI_HOST": f"{host}={HOST}:{self.port}",
            "ESXI_IPMI_USER": USER,
            "ESXI_IPMI_PASSWORD": PASSWORD,
        }

    def ipmitool(self, *words: str, password: str = PASSWORD) -> subprocess.CompletedProcess[str]:
        argv = ["ipmitool", "-I", "lanplus", "-H", HOST, "-p", str(self.port), "-U", USER, "-E"]
        return subprocess.run(
            [*argv, "-C", "3", "-N", "1", "-R", "1", *words],
            capture_output=True,
            text=True,
            timeout=20,
            env={"PATH": "/usr/bin:/bin", "IPMI_PASSWORD": password},
            check=False,
        )

    # -- the host around it ---------------------------------------------------------------
    def follow(self, server: SshServer) -> None:
        """The host is off once its fake ESXi host's SSH server has ended."""
        self.server = server
        self._start()

    def boots_on(self, port: int, seconds: float = 1.0, address: str = HOST) -> None:
        """Powered on, the host answers on `address`:`port` (its SSH port) `seconds` later."""
        self.boot_port, self.boot_seconds, self.boot_address = port, seconds, address
        self._start()

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._play, daemon=True)
            self._thread.start()

    def _play(self) -> None:
        was_on = self.on
        booting_at: float | None = None
        while not self._stop.wait(0.1):
            server = self.server
            if server is not None and server.process.poll() is not None and self.on:
                self.set_power(False)
                self.server = None
            on = self.on
            if on and not was_on and self.boot_port is not None:
                booting_at = time.monotonic() + self.boot_seconds
            if booting_at is not None and time.monotonic() >= booting_at and self.boot_port:
                booting_at = None
                listener = socket.socket()
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                listener.bind((self.boot_address, self.boot_port))
                listener.listen(8)
                self._listener = listener
            was_on = on

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._listener is not None:
            self._listener.close()
        stop_process(self.process)


def _ready(bmc: SimulatedBmc) -> bool:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if bmc.process.poll() is not None:
            return False
        if bmc.ipmitool("chassis", "power", "status").returncode == 0:
            return True
        time.sleep(0.1)
    return False


@contextlib.contextmanager
def running_bmc(root: Path, on: bool = True) -> Iterator[SimulatedBmc]:
    """ipmi_sim on 127.0.0.1 under `root`, the host's power `on`; stopped on exit."""
    sim = shutil.which("ipmi_sim") or shutil.which("ipmi_sim", path="/usr/sbin:/usr/bin")
    if sim is None or shutil.which("ipmitool") is None:
        raise BmcUnavailable("ipmi_sim or ipmitool not found (apt-get install openipmi ipmitool)")
    root.mkdir(parents=True, exist_ok=True)
    (root / "state").mkdir(exist_ok=True)
    chassis = root / "chassis"
    chassis.write_text(CHASSIS.format(dir=root, soft=SOFT_SECONDS))
    chassis.chmod(0o755)
    (root / "sim.emu").write_text(EMU)
    for _attempt in range(3):  # the free port can be taken between probe and bind
        port = free_udp_port()
        (root / "power").write_text("1\n" if on else "0\n")
        (root / "lan.conf").write_text(
            LAN_CONF.format(host=HOST, port=port, chassis=chassis, user=USER, password=PASSWORD)
        )
        argv = [sim, "-c", str(root / "lan.conf"), "-f", str(root / "sim.emu")]
        argv += ["-s", str(root / "state"), "-n", "-p"]
        with (root / "ipmi_sim.log").open("ab") as log:
            process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, cwd=root,
            )  # fmt: skip
        bmc = SimulatedBmc(root, port, process)
        if not _ready(bmc):
            bmc.stop()
            continue
        (root / "calls.log").unlink(missing_ok=True)  # the readiness looks are not the test's
        try:
            yield bmc
        finally:
            bmc.stop()
        return
    log_text = (root / "ipmi_sim.log").read_text(errors="replace")
    raise RuntimeError(
        f"ipmi_sim did not answer on 127.0.0.1 within {READY_TIMEOUT} s:\n{log_text}"
    )
