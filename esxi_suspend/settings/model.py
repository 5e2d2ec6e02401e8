"""What a run knows once the env file is read: the settings model, every key and its default.

Frozen dataclasses, built only by envfile.py after validation; the passphrase never shows in
a repr. Kept apart from the reading so that every module can name a Settings or a Target
without pulling in dotenv.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from esxi_suspend import clock
from esxi_suspend.settings.catalog import DEFAULT_KNOWN_HOSTS_TEXT, SETTINGS

DEFAULT_ENV_FILE = Path("/etc/esxi-suspend/esxi-suspend.env")


ENV_FILE_VARIABLE = "ESXI_SUSPEND_ENV"


DEFAULT_KNOWN_HOSTS = Path(DEFAULT_KNOWN_HOSTS_TEXT)


# Every key the file may hold, with its default (None: required, or optional without default):
# the catalog's, where each setting is written once.
KNOWN_KEYS: dict[str, str | None] = {setting.key: setting.default for setting in SETTINGS}


STRATEGIES = ("autostop", "parallel")


VM_ACTIONS = ("shutdown", "suspend", "poweroff")


STRAGGLER_ACTIONS = ("suspend", "poweroff")


IPMI_INTERFACES = ("lanplus", "lan")


REQUIRED_KEYS = tuple(setting.key for setting in SETTINGS if setting.required)


# The names the original shell script used; accepted so an old env file keeps working.
ALIASES = {alias: setting.key for setting in SETTINGS for alias in setting.aliases}


@dataclass(frozen=True)
class RestartSettings:
    """How to restart the local NUT monitor: known even when the rest of the file is broken."""

    service: str = "auto"
    command: tuple[str, ...] | None = None
    # The UPSes whose status says when to restart (UPS_NAME): () is `auto` (upsmon.conf's
    # MONITOR lines), ("none",) never waits; how often to look, how long to wait at most.
    ups_names: tuple[str, ...] = ()
    ups_poll_interval: int = 5
    ups_wait_limit: int = 86400
    # UPS_EARLY_SHUTDOWN: seconds on battery before upssched starts the shutdown (0: only at
    # low battery); install.sh writes it into upssched.conf, `check` compares the two.
    early_shutdown: int = 300
    # UPS_CLEAR_FSD: how to clear the forced-shutdown flag a primary upsmon left in this
    # machine's upsd once power is back: ("auto",), ("none",), or a command line.
    clear_fsd: tuple[str, ...] = ("auto",)
    # Power back (nut/powerback.py): the hosts are woken after UPS_WAKE_STEADY s of steady
    # mains and once the battery holds UPS_WAKE_CHARGE %; at UPS_WAKE_LIMIT s, wake or stay-off.
    wake_steady: int = 120
    wake_charge: int = 50
    wake_limit: int = 14400
    wake_at_limit: str = "wake"
    runtime_margin: int = 30  # UPS_RUNTIME_MARGIN, also read here: the battery left for a wake


@dataclass(frozen=True)
class Target:
    """One host of `ESXI_HOST`: `[user@]host[:port]`, user and port defaulting to the file's."""

    host: str
    user: str
    port: int


@dataclass(frozen=True)
class WakeOnLan:
    """How to wake one ESXI_HOST entry: ESXI_WOL_MAC, ESXI_WOL_BROADCAST, ESXI_WOL_PORT."""

    target: Target
    mac: str  # aa:bb:cc:dd:ee:ff, lower case (parse_mac)
    broadcast: str  # an IPv4 address
    udp_port: int = 9


@dataclass(frozen=True)
class Bmc:
    """One ESXI_HOST entry's BMC: ESXI_IPMI_HOST, _USER, _PASSWORD, _INTERFACE, _CIPHER.

    The password never shows in a repr, a log line or a command line (power/ipmi.py)."""

    target: Target
    address: str  # a host name or IP address (values.host_name)
    port: int = 623
    user: str = ""
    password: str = field(default="", repr=False)
    interface: str = "lanplus"
    cipher: int = 3

    @property
    def where(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"


@dataclass(frozen=True)
class Settings:
    """Everything one run needs, validated; the passphrase never shows in a repr or a log.

    `host`, `user` and `port` are those of one target; `for_target` gives each host its own.
    """

    source: Path
    host: str
    user: str
    port: int
    key_file: Path
    known_hosts: Path
    connect_timeout: int
    command_timeout: int
    restart: RestartSettings
    key_passphrase: str | None = field(default=None, repr=False)
    targets: tuple[Target, ...] = ()
    strategy: str = "autostop"
    deadline: int = 240
    # ESXI_DEADLINE=auto: the deadline is the UPS's battery.runtime minus UPS_RUNTIME_MARGIN,
    # read when we are called (nut/deadline.py); `deadline` holds the fallback until then.
    deadline_auto: bool = False
    runtime_margin: int = 30
    vm_order: tuple[tuple[str, ...], ...] = ()
    stop_actions: tuple[str, ...] = VM_ACTIONS
    straggler_action: str = "suspend"
    self_vm: str | None = None
    poll_interval: float = 2.0
    wake_on_lan: tuple[WakeOnLan, ...] = ()  # only the hosts with a valid ESXI_WOL_MAC
    bmcs: tuple[Bmc, ...] = ()  # only the hosts with a usable ESXI_IPMI_HOST entry
    ipmi_hard_off: bool = False  # ESXI_IPMI_HARD_OFF
    boot_wait: int = 600  # ESXI_BOOT_WAIT
    # ESXI_KEY_FROM (enroll): ("auto",), ("none",), or addresses and networks for `from=`.
    key_from: tuple[str, ...] = ("auto",)
    # `clock.now()` when upsmon called us: ESXI_DEADLINE counts from there.
    called_at: float = field(default_factory=clock.now)

    def for_target(self, target: Target) -> Settings:
        return replace(self, host=target.host, user=target.user, port=target.port)

    @property
    def all_targets(self) -> tuple[Target, ...]:
        return self.targets or (Target(self.host, self.user, self.port),)

    def wake_on_lan_for(self, target: Target) -> WakeOnLan | None:
        """`target`'s Wake-on-LAN, None when it has no (valid) ESXI_WOL_MAC entry."""
        key = (target.host, target.port)
        return next((w for w in self.wake_on_lan if (w.target.host, w.target.port) == key), None)

    def bmc_for(self, target: Target) -> Bmc | None:
        """`target`'s BMC, None when it has no (usable) ESXI_IPMI_HOST entry."""
        key = (target.host, target.port)
        return next((b for b in self.bmcs if (b.target.host, b.target.port) == key), None)


def env_file_path(cli_value: str | None) -> Path:
    """`--env-file`, else `$ESXI_SUSPEND_ENV`, else the system-wide default."""
    if cli_value:
        return Path(cli_value)
    from_env = os.environ.get(ENV_FILE_VARIABLE)
    return Path(from_env) if from_env else DEFAULT_ENV_FILE
