"""Every setting, written once: its key, default, aliases and meaning.

The model's known keys and defaults, the env template install writes, the man page's SETTINGS
and docs/settings.md are all made from this table (tests/unit/test_settings_catalog.py fails
when a generated file is stale). Texts use `backticks` for literal values; each renderer turns
them into its own markup.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass

DEFAULT_KNOWN_HOSTS_TEXT = "/etc/esxi-suspend/known_hosts"


@dataclass(frozen=True)
class Setting:
    key: str
    default: str | None  # None: required, or optional without a default value
    text: str
    required: bool = False
    aliases: tuple[str, ...] = ()
    shown: str | None = None  # how a default of None reads when it is not "none"
    example: str | None = None  # the template's commented-out value when there is no default

    @property
    def default_text(self) -> str:
        """The default as a person reads it: a value, `required`, `none` or a word."""
        if self.default is not None:
            return self.default
        return "required" if self.required else (self.shown or "none")

    @property
    def meaning(self) -> str:
        """The text, with its aliases said."""
        if not self.aliases:
            return self.text
        names = ", ".join(f"`{alias}`" for alias in self.aliases)
        return f"{self.text} ({names} is accepted too)"


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "ESXI_HOST",
        None,
        "the ESXi host(s) to shut down: `[user@]host[:port]`, several separated by commas "
        "(shut down in parallel), e.g. `esxi1,root@esxi2:2222`; `esxi-suspend trust HOST` "
        "sets it when you confirm the host key",
        required=True,
        aliases=("ESXIHOST",),
        example="esxi.example.lan",
    ),
    Setting("ESXI_USER", "root", "login on the host", aliases=("ESXIUSER",)),
    Setting("ESXI_PORT", "22", "SSH port on the host"),
    Setting(
        "ESXI_KEY_FILE",
        None,
        "absolute path of the private key the host accepts for ESXI_USER (ed25519, ecdsa or "
        "rsa; install.sh makes one)",
        required=True,
    ),
    Setting(
        "ESXI_KEY_PASSPHRASE",
        None,
        "the key's passphrase, if it has one; never logged",
        example="",
    ),
    Setting(
        "ESXI_KNOWN_HOSTS",
        DEFAULT_KNOWN_HOSTS_TEXT,
        "the pinned host key, OpenSSH format (`[host]:port` when the port is not 22): an "
        "unknown or changed host key is refused, never learnt; `esxi-suspend trust HOST` "
        "writes it after you compare the fingerprint with the host's console",
    ),
    Setting(
        "ESXI_CONNECT_TIMEOUT",
        "10",
        "seconds for name lookup, TCP connect, SSH handshake and login, each",
    ),
    Setting("ESXI_COMMAND_TIMEOUT", "300", "seconds any one remote command of ours may take"),
    Setting(
        "ESXI_STRATEGY",
        "autostop",
        "`autostop`: ESXi's autostop, after our own clean stop of every VM it would hard power "
        "off; `parallel`: every VM at once",
    ),
    Setting(
        "ESXI_DEADLINE",
        "240",
        "seconds from upsmon's call (our start-up and the inventory included) to the host "
        "poweroff: the host sequence gets what is left, budgets are cut to fit, what still "
        "runs near the end is suspended, and a watchdog on the host powers it off at the "
        "deadline; `auto`: the UPS's `battery.runtime` when we are called, minus "
        "UPS_RUNTIME_MARGIN (the smallest of several UPSes; the fallback 240 when none "
        "reports it, said in the log; `check` shows the value)",
    ),
    Setting(
        "ESXI_VM_ORDER",
        None,
        "`parallel` only: groups stopped one after another, e.g. `web1,web2; db1; nas` "
        "(names or ids; unlisted VMs stop with the first group)",
        example="web1,web2; db1; nas",
    ),
    Setting(
        "ESXI_STOP_ACTIONS",
        "shutdown,suspend,poweroff",
        "order of preference for a VM's own stop: guest shutdown (only with VMware Tools "
        "running), suspend; `poweroff` only when neither is allowed",
    ),
    Setting(
        "ESXI_STRAGGLER_ACTION",
        "suspend",
        "what VMs still running at the end get: `suspend`, or `poweroff` (left to the host's "
        "poweroff)",
    ),
    Setting(
        "ESXI_SELF_VM",
        None,
        "this machine's VM on the host (name or id), stopped last, by suspend; `auto` finds "
        "it by its SMBIOS UUID when this is a VMware VM",
        shown="auto",
        example="nut-client",
    ),
    Setting(
        "ESXI_POLL_INTERVAL",
        "2",
        "seconds before we read the host's log again when its reader ended on its own (the "
        "log streams while the session lasts)",
    ),
    Setting(
        "ESXI_WOL_MAC",
        None,
        "Wake-on-LAN, to power hosts back on when mains returns (or by `esxi-suspend wake`): "
        "`host=MAC` for each host to wake, the host as in ESXI_HOST, the MAC its NIC's, e.g. "
        "`esxi1=aa:bb:cc:dd:ee:ff, esxi2=AA-BB-CC-DD-EE-01`; a host left out is not woken",
        example="esxi1=aa:bb:cc:dd:ee:ff",
    ),
    Setting(
        "ESXI_WOL_BROADCAST",
        "255.255.255.255",
        "where the magic packets go: an IPv4 address, the broadcast address of the hosts' "
        "network (e.g. `192.168.1.255`); `host=address` entries set one host's, e.g. "
        "`192.168.1.255, esxi3=10.0.3.255`",
    ),
    Setting(
        "ESXI_WOL_PORT", "9", "UDP port of the magic packets (usually 9, the discard port, or 7)"
    ),
    Setting(
        "UPS_SERVICE",
        "auto",
        "local NUT monitor restarted when we are done, so that upsmon (which runs SHUTDOWNCMD "
        "once) watches the UPS again: `auto` (with systemd, nut-monitor.service else "
        "nut-client.service, restarted with `systemctl --no-block`; without systemd, "
        "`service nut-client restart` or `service ups restart`), a service name, or `none`",
    ),
    Setting(
        "UPS_RESTART_COMMAND",
        None,
        "a full command line run instead of the service restart (split into words, no shell)",
        example="",
    ),
    Setting(
        "UPS_NAME",
        "auto",
        "the UPS(es) whose status says when to restart the NUT monitor after a shutdown: "
        "`auto` (the MONITOR lines of upsmon.conf, in `$NUT_CONFPATH`, /etc/nut or /etc/ups), "
        "`ups@host[:port]`, several separated by commas (on battery if any is), or `none` "
        "(restart at once)",
    ),
    Setting(
        "UPS_POLL_INTERVAL",
        "5",
        "seconds between two looks at the UPS status (`upsc`) while a shutdown run waits for "
        "power to come back before it restarts the NUT monitor",
    ),
    Setting(
        "UPS_WAIT_LIMIT",
        "86400",
        "seconds a shutdown run waits at most for power to come back; then it restarts the "
        "NUT monitor anyway",
    ),
    Setting(
        "UPS_RUNTIME_MARGIN",
        "30",
        "`ESXI_DEADLINE=auto` only: seconds of battery kept back from the UPS's estimate "
        "(estimates drift as the battery ages)",
    ),
    Setting(
        "UPS_EARLY_SHUTDOWN",
        "300",
        "seconds on battery before the shutdown starts, by NUT's upssched (`install.sh "
        "--configure-upsmon` writes it into upssched.conf; `check` compares the two); `0`: "
        "only at low battery (`OB LB`)",
    ),
    Setting(
        "UPS_CLEAR_FSD",
        "auto",
        "when power is back but this machine's upsd keeps the FSD flag a primary upsmon set "
        "(a monitor restarted then would shut down again): `auto` restarts NUT's server "
        "(nut-server.service, or `service nut-server restart`), `none` waits for you to, or a "
        "command line that restarts upsd",
    ),
    Setting(
        "UPS_WAKE_STEADY",
        "120",
        "power back: seconds of steady mains (the UPS `OL`, no `OB` in between) before the "
        "hosts powered off in the outage are woken; power often flickers and fails again "
        "within minutes (the NUT monitor is re-armed at once all the same)",
    ),
    Setting(
        "UPS_WAKE_CHARGE",
        "50",
        "power back: the `battery.charge` (percent) the UPS must hold again before the hosts "
        "are woken, so that a second outage finds battery for another clean shutdown; where "
        "the UPS reports `battery.runtime`, it must also cover the hosts' last measured "
        "shutdown plus UPS_RUNTIME_MARGIN; a UPS that reports neither: the steady mains "
        "wait alone; `0`: no charge needed",
    ),
    Setting(
        "UPS_WAKE_LIMIT",
        "14400",
        "power back: seconds the wake waits at most for steady mains and a recharged battery; "
        "then UPS_WAKE_AT_LIMIT says what happens",
    ),
    Setting(
        "UPS_WAKE_AT_LIMIT",
        "wake",
        "power back, UPS_WAKE_LIMIT reached: `wake` wakes the hosts anyway (with a WARNING; "
        "never while the UPS is on battery), `stay-off` leaves them off (`esxi-suspend wake` "
        "wakes them by hand)",
    ),
    Setting(
        "ESXI_IPMI_HOST",
        None,
        "IPMI, for hosts with a BMC (iDRAC, iLO, Supermicro IPMI...): `host=BMC[:port]` for "
        "each, the host as in ESXI_HOST, the BMC's address and UDP port (623), e.g. "
        "`esxi1=192.168.1.21, esxi2=bmc2.lan:623`. Such a host is powered back on by its BMC "
        "when mains returns (instead of Wake-on-LAN; `esxi-suspend wake` too), its power button "
        "is pressed (ACPI soft-off) when SSH cannot reach it at shutdown, and it is confirmed "
        "off by its power state. Needs `ipmitool` on this machine and IPMI over LAN enabled in "
        "the BMC; `check` reads each BMC's power state",
        example="esxi1=192.168.1.21",
    ),
    Setting(
        "ESXI_IPMI_USER",
        None,
        "the BMC user (operator or admin privilege): one for every BMC, and/or `host=user` "
        "entries, e.g. `ADMIN, esxi2=root`; required with ESXI_IPMI_HOST",
        example="ADMIN",
    ),
    Setting(
        "ESXI_IPMI_PASSWORD",
        None,
        "the BMC password (the same for every BMC; up to 20 characters); never logged nor put "
        "on a command line: ipmitool reads it from its environment (`-E`)",
        example="",
    ),
    Setting(
        "ESXI_IPMI_INTERFACE",
        "lanplus",
        "ipmitool's interface: `lanplus` (IPMI 2.0, RMCP+, every BMC of the last 15 years) or "
        "`lan` (IPMI 1.5, older BMCs)",
    ),
    Setting(
        "ESXI_IPMI_CIPHER",
        "3",
        "`lanplus` only: the RMCP+ cipher suite (ipmitool `-C`): `3` (HMAC-SHA1, AES-128) every "
        "IPMI 2.0 BMC offers, `17` (HMAC-SHA256) newer ones; a fixed suite spares ipmitool's "
        "query of the BMC's suites, which costs 10 s on each call with a BMC that ignores it",
    ),
    Setting(
        "ESXI_IPMI_HARD_OFF",
        "no",
        "`yes`: a host that SSH could not reach at shutdown and that is still on at "
        "ESXI_DEADLINE after its BMC pressed the power button is powered off hard by its BMC "
        "(what still runs on it is cut, as by the power cut); `no`: it is left on",
    ),
    Setting(
        "ESXI_BOOT_WAIT",
        "600",
        "seconds we wait, after a BMC powered a host on, for its SSH port to answer: the log "
        "says `host back after N s`, or a WARNING",
    ),
    Setting(
        "ESXI_KEY_FROM",
        "auto",
        "where `esxi-suspend enroll` lets our key log in from, written as `from=` on its line "
        "in the host's authorized keys (OpenSSH hosts; dropbear takes none): `auto`, the "
        "address the host sees us connect from; addresses and networks (`192.168.1.5, "
        "10.0.0.0/24`) for NAT or an address that changes; `none`, from anywhere",
    ),
)

BY_KEY = {setting.key: setting for setting in SETTINGS}

TEMPLATE_HEAD = """\
# Settings for esxi-suspend, read by every run ("esxi-suspend check", "esxi-suspend shutdown").
# KEY=value, one per line; a line starting with # is a comment. Quote a value with single
# quotes if it holds spaces, '#' or quotes. A required setting that is missing or empty is an
# error; an optional one left commented out takes the default shown. Each setting is
# described in `man esxi-suspend` too."""


def plain(text: str) -> str:
    """The text without its `backticks`: for the env file's comments."""
    return re.sub(r"`([^`]*)`", r"\1", text)


def env_template(key_file: str, known_hosts: str | None = None) -> str:
    """The env file install writes: every setting described, commented out at its default,
    but ESXI_KEY_FILE (the key install made) and, when given, ESXI_KNOWN_HOSTS (a --root
    tree's own, since the default is outside it)."""
    blocks = [TEMPLATE_HEAD]
    for setting in SETTINGS:
        said = "Required" if setting.required else f"Default: {setting.default_text}"
        comment = textwrap.wrap(
            f"{setting.key}: {plain(setting.meaning)}. {said}.",
            96,
            break_on_hyphens=False,
            break_long_words=False,
        )
        if setting.key == "ESXI_KEY_FILE":
            line = f"ESXI_KEY_FILE={key_file}"
        elif setting.key == "ESXI_KNOWN_HOSTS" and known_hosts is not None:
            line = f"ESXI_KNOWN_HOSTS={known_hosts}"
        else:
            value = setting.default if setting.default is not None else setting.example
            line = f"#{setting.key}={value or ''}"
        blocks.append("\n".join([*(f"# {row}" for row in comment), line]))
    return "\n\n".join(blocks) + "\n"


def markdown_table() -> str:
    """docs/settings.md's table: key, default, meaning."""
    rows = ["| key | default | meaning |", "| --- | --- | --- |"]
    for setting in SETTINGS:
        default = setting.default_text
        shown = default if default in ("required", "none", "auto") else f"`{default}`"
        rows.append(f"| `{setting.key}` | {shown} | {setting.meaning} |")
    return "\n".join(rows)
