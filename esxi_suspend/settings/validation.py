"""What each setting must be, and what a shutdown does when it is not.

Only what makes a host unreachable is fatal (its address, its key, its pinned host key); a bad
optional value gets its documented default, a bad ESXI_HOST entry is left out and the others
go on. `check` lists the same problems and refuses them all (envfile.py).
"""

from __future__ import annotations

from esxi_suspend.settings.model import (
    IPMI_INTERFACES,
    KNOWN_KEYS,
    STRAGGLER_ACTIONS,
    STRATEGIES,
    Bmc,
    RestartSettings,
    Settings,
    Target,
    WakeOnLan,
)
from esxi_suspend.settings.problems import NO_HOST, ValueReader, not_contacted
from esxi_suspend.settings.values import (
    MAC_RE,
    action_list,
    command_line,
    deadline_value,
    existing_file,
    integer_in,
    key_from,
    keyword_or_command,
    match_target,
    one_of,
    parse_bmc_address,
    parse_host_entry,
    parse_ipmi_user,
    parse_ipv4,
    parse_mac,
    parse_ups_names,
    parse_user_name,
    seconds_in,
    service_name,
    vm_groups,
    yes_no,
)


class Reader(ValueReader):
    """The env file's settings, each checked: a typed value or a classified Problem."""

    _margin: int | None = None  # UPS_RUNTIME_MARGIN once read

    def restart_settings(self) -> RestartSettings:
        service = self._optional("UPS_SERVICE", service_name)
        value = self._raw("UPS_RESTART_COMMAND")
        command = None
        if value is not None:
            try:
                command = command_line(value)
            except ValueError as exc:
                instead = f"this run restarts the NUT monitor by UPS_SERVICE={service} instead"
                self._problem(f"UPS_RESTART_COMMAND={value!r}: {exc}", instead)
        return RestartSettings(
            service=service,
            command=command,
            ups_names=self._optional("UPS_NAME", parse_ups_names),
            ups_poll_interval=self._optional("UPS_POLL_INTERVAL", integer_in(1, 300)),
            ups_wait_limit=self._optional("UPS_WAIT_LIMIT", integer_in(60, 604800)),
            early_shutdown=self._optional("UPS_EARLY_SHUTDOWN", integer_in(0, 86400)),
            clear_fsd=self._optional("UPS_CLEAR_FSD", keyword_or_command("auto", "none")),
            wake_steady=self._optional("UPS_WAKE_STEADY", integer_in(0, 86400)),
            wake_charge=self._optional("UPS_WAKE_CHARGE", integer_in(0, 100)),
            wake_limit=self._optional("UPS_WAKE_LIMIT", integer_in(10, 604800)),
            wake_at_limit=self._optional("UPS_WAKE_AT_LIMIT", one_of(("wake", "stay-off"))),
            runtime_margin=self._runtime_margin(),
        )

    def _runtime_margin(self) -> int:
        """UPS_RUNTIME_MARGIN, read once (Settings and RestartSettings both carry it)."""
        if self._margin is None:
            self._margin = self._optional("UPS_RUNTIME_MARGIN", integer_in(0, 3600))
        return self._margin

    def targets(self) -> tuple[Target, ...]:
        """ESXI_HOST's entries; one that is bad, or needs a bad ESXI_USER or ESXI_PORT, is
        left out (it is not guessed), and the others still go on."""
        user, user_problem = self._attempt("ESXI_USER", parse_user_name)
        port, port_problem = self._attempt("ESXI_PORT", integer_in(1, 65535))
        value = self._raw("ESXI_HOST")
        entries = [part.strip() for part in value.split(",")] if value is not None else []
        if entries and not any(entries):  # `ESXI_HOST=,`
            self._problem(f"ESXI_HOST={value!r}: names no host; it is required", NO_HOST, True)
            entries = []
        bad: list[tuple[str, str]] = []
        twice: list[str] = []
        needs_user: list[str] = []
        needs_port: list[str] = []
        targets: list[Target] = []
        for text in entries:
            try:
                entry = parse_host_entry(text)
            except ValueError as exc:
                bad.append((text, str(exc)))
                continue
            entry_user, entry_port = entry.user or user, entry.port or port
            if entry_user is None:
                needs_user.append(text)
            if entry_port is None:
                needs_port.append(text)
            if entry_user is None or entry_port is None:
                continue
            if any(t.host == entry.host and t.port == entry_port for t in targets):
                twice.append(entry.host)
                continue
            targets.append(Target(entry.host, entry_user, entry_port))
        left = len(targets)
        for key, problem, needing in (
            ("ESXI_USER", user_problem, needs_user),
            ("ESXI_PORT", port_problem, needs_port),
        ):
            if problem is None:
                continue
            if needing:
                why = f" (no {key[5:].lower()} is guessed)"
                self._problem(problem, not_contacted(needing, left, why), fatal=True)
            else:
                self._problem(problem, "unused: no ESXI_HOST entry relies on it")
        where = f"ESXI_HOST={value!r}"
        for text, why in bad:
            if not text:
                self._problem(f"{where}: an empty entry; separate hosts with ','", "ignored")
                continue
            entry_text = f", entry {text!r}" if len(entries) > 1 else ""
            self._problem(f"{where}{entry_text}: {why}", not_contacted([text], left), fatal=True)
        for host in twice:
            self._problem(f"{where}: {host} is listed twice", "this shutdown contacts it once")
        self.skipped = tuple(text for text, _ in bad if text) + tuple(
            dict.fromkeys([*needs_user, *needs_port])
        )
        return tuple(targets)

    def settings(self, restart: RestartSettings) -> Settings | None:
        targets = self.targets()
        key_file = self._required("ESXI_KEY_FILE", existing_file("ESXI_KEY_FILE"))
        known_hosts = self._required("ESXI_KNOWN_HOSTS", existing_file("ESXI_KNOWN_HOSTS"))
        connect_timeout = self._optional("ESXI_CONNECT_TIMEOUT", integer_in(1, 600))
        command_timeout = self._optional("ESXI_COMMAND_TIMEOUT", integer_in(1, 86400))
        strategy = self._optional("ESXI_STRATEGY", one_of(STRATEGIES))
        deadline, deadline_auto = self._deadline(restart)
        runtime_margin = self._runtime_margin()
        vm_order = self._vm_order(strategy)
        stop_actions = self._optional("ESXI_STOP_ACTIONS", action_list)
        straggler = self._optional("ESXI_STRAGGLER_ACTION", one_of(STRAGGLER_ACTIONS))
        self_vm = self._raw("ESXI_SELF_VM") or None
        poll = self._optional("ESXI_POLL_INTERVAL", seconds_in(0.01, 60.0))
        wake_on_lan = self.wake_on_lan(targets)
        bmcs = self.bmcs(targets)
        hard_off = self._optional("ESXI_IPMI_HARD_OFF", yes_no)
        boot_wait = self._optional("ESXI_BOOT_WAIT", integer_in(10, 86400))
        passphrase = self.values.get("ESXI_KEY_PASSPHRASE") or None
        key_from_value = self._optional("ESXI_KEY_FROM", key_from)
        if not targets or key_file is None or known_hosts is None:
            return None
        first = targets[0]
        return Settings(
            source=self.path,
            host=first.host,
            user=first.user,
            port=first.port,
            key_file=key_file,
            known_hosts=known_hosts,
            connect_timeout=connect_timeout,
            command_timeout=command_timeout,
            restart=restart,
            key_passphrase=passphrase,
            targets=targets,
            strategy=strategy,
            deadline=deadline,
            deadline_auto=deadline_auto,
            runtime_margin=runtime_margin,
            vm_order=vm_order,
            stop_actions=stop_actions,
            straggler_action=straggler,
            self_vm=self_vm,
            poll_interval=poll,
            wake_on_lan=wake_on_lan,
            bmcs=bmcs,
            ipmi_hard_off=hard_off,
            boot_wait=boot_wait,
            key_from=key_from_value,
        )

    def _deadline(self, restart: RestartSettings) -> tuple[int, bool]:
        """ESXI_DEADLINE: seconds, or `auto` (the battery's runtime; the default is the
        fallback when no UPS tells it). `auto` needs a UPS to ask."""
        value = self._optional("ESXI_DEADLINE", deadline_value)
        fallback = int(KNOWN_KEYS["ESXI_DEADLINE"] or 0)
        if value is not None:
            return value, False
        if restart.ups_names == ("none",):
            self._problem(
                "ESXI_DEADLINE='auto': needs a UPS to read battery.runtime from, but "
                "UPS_NAME=none; set UPS_NAME (or auto), or ESXI_DEADLINE to seconds",
                f"this shutdown uses ESXI_DEADLINE={fallback}",
            )
            return fallback, False
        return fallback, True

    def wake_on_lan(self, targets: tuple[Target, ...]) -> tuple[WakeOnLan, ...]:
        """ESXI_WOL_MAC's `host=MAC` entries with their broadcast address and port; a bad
        entry is left out (that host is not woken) and the others still go on."""
        udp_port = self._optional("ESXI_WOL_PORT", integer_in(1, 65535))
        default, broadcasts = self._wol_broadcasts(targets)
        value = self._raw("ESXI_WOL_MAC")
        found: list[WakeOnLan] = []
        for text, target, mac_text in self._per_host("ESXI_WOL_MAC", value, targets):
            where = f"ESXI_WOL_MAC={value!r}, entry {text!r}"
            if target is None:
                host = targets[0].host if targets else "esxi1"
                mac = mac_text if MAC_RE.fullmatch(mac_text) else "aa:bb:cc:dd:ee:ff"
                why = f"no host; write host=MAC, the host as in ESXI_HOST, e.g. {host}={mac}"
                self._problem(f"{where}: {why}", "ignored: no host is woken by it")
                continue
            not_woken = f"{target.host} is not woken when power returns"
            try:
                mac = parse_mac(mac_text)
            except ValueError as exc:
                self._problem(f"{where}: {exc}", not_woken)
                continue
            found.append(WakeOnLan(target, mac, broadcasts.get(target, default), udp_port))
        return tuple(found)

    def bmcs(self, targets: tuple[Target, ...]) -> tuple[Bmc, ...]:
        """ESXI_IPMI_HOST's `host=BMC[:port]` entries with their user and the password; a bad
        entry is left out (that host has no BMC: Wake-on-LAN, if any) and the others go on."""
        interface = self._optional("ESXI_IPMI_INTERFACE", one_of(IPMI_INTERFACES))
        cipher = self._optional("ESXI_IPMI_CIPHER", integer_in(0, 17))
        value = self._raw("ESXI_IPMI_HOST")
        entries = self._per_host("ESXI_IPMI_HOST", value, targets)
        default_user, users = self._ipmi_users(targets)
        password = self.values.get("ESXI_IPMI_PASSWORD") or ""
        if entries and len(password.encode()) > 20:
            self._problem(
                "ESXI_IPMI_PASSWORD: longer than 20 bytes, more than IPMI allows; use the BMC "
                "user's password as set in the BMC",
                "no host is powered by IPMI",
            )
            return ()
        found: list[Bmc] = []
        for text, target, address in entries:
            where = f"ESXI_IPMI_HOST={value!r}, entry {text!r}"
            if target is None:
                host = targets[0].host if targets else "esxi1"
                why = f"no host; write host=BMC, the host as in ESXI_HOST, e.g. {host}={text}"
                self._problem(f"{where}: {why}", "ignored: no host has this BMC")
                continue
            no_bmc = f"{target.host} has no BMC for this run (Wake-on-LAN, if set)"
            try:
                bmc_host, bmc_port = parse_bmc_address(address)
            except ValueError as exc:
                self._problem(f"{where}: {exc}", no_bmc)
                continue
            user = users.get(target, default_user)
            if user is None:
                self._problem(
                    f"{where}: no BMC user; set ESXI_IPMI_USER (e.g. ADMIN, or "
                    f"{target.host}=USER) and ESXI_IPMI_PASSWORD",
                    no_bmc,
                )
                continue
            found.append(Bmc(target, bmc_host, bmc_port, user, password, interface, cipher))
        return tuple(found)

    def _ipmi_users(self, targets: tuple[Target, ...]) -> tuple[str | None, dict[Target, str]]:
        """ESXI_IPMI_USER: one user for every BMC and/or `host=user` entries."""
        value = self._raw("ESXI_IPMI_USER")
        default: str | None = None
        per_host: dict[Target, str] = {}
        for text, target, user_text in self._per_host("ESXI_IPMI_USER", value, targets):
            where = f"ESXI_IPMI_USER={value!r}, entry {text!r}"
            try:
                user = parse_ipmi_user(user_text)
            except ValueError as exc:
                self._problem(f"{where}: {exc}", "ignored")
                continue
            if target is not None:
                per_host[target] = user
            elif default is not None:
                self._problem(f"{where}: a second user for every BMC; keep one", "ignored")
            else:
                default = user
        return default, per_host

    def _wol_broadcasts(self, targets: tuple[Target, ...]) -> tuple[str, dict[Target, str]]:
        """ESXI_WOL_BROADCAST: one address for every host and/or `host=address` entries."""
        fallback = KNOWN_KEYS["ESXI_WOL_BROADCAST"]
        assert fallback is not None
        value = self._raw("ESXI_WOL_BROADCAST")
        default: str | None = None
        per_host: dict[Target, str] = {}
        for text, target, address in self._per_host("ESXI_WOL_BROADCAST", value, targets):
            where = f"ESXI_WOL_BROADCAST={value!r}, entry {text!r}"
            instead = (
                f"ignored: {target.host}'s packets go to the address for every host"
                if target
                else f"ignored: the packets go to the other address given, else to the "
                f"default {fallback}"
            )
            try:
                parsed = parse_ipv4(address)
            except ValueError as exc:
                self._problem(f"{where}: {exc}", instead)
                continue
            if target is not None:
                per_host[target] = parsed
            elif default is not None:
                self._problem(f"{where}: a second address for every host; keep one", instead)
            else:
                default = parsed
        return default or fallback, per_host

    def _per_host(
        self, key: str, value: str | None, targets: tuple[Target, ...]
    ) -> list[tuple[str, Target | None, str]]:
        """`[host=]value` entries, comma-separated: (entry, its ESXI_HOST target, value).

        An entry without `host=` has no target; one whose host is not exactly one ESXI_HOST
        entry is a problem (left out)."""
        if not value:
            return []
        out: list[tuple[str, Target | None, str]] = []
        seen: set[Target] = set()
        for text in (part.strip() for part in value.split(",")):
            if not text:
                continue
            host_text, equals, rest = text.partition("=")
            if not equals:
                out.append((text, None, text))
                continue
            try:
                target = match_target(host_text.strip(), targets)
            except ValueError as exc:
                self._problem(f"{key}={value!r}, entry {text!r}: {exc}", "ignored")
                continue
            if target in seen:
                self._problem(f"{key}={value!r}: {target.host} is listed twice", "first applies")
                continue
            seen.add(target)
            out.append((text, target, rest.strip()))
        return out

    def _vm_order(self, strategy: str) -> tuple[tuple[str, ...], ...]:
        value = self._raw("ESXI_VM_ORDER")
        if not value:
            return ()
        try:
            groups = vm_groups(value)
        except ValueError as exc:
            self._problem(f"ESXI_VM_ORDER={value!r}: {exc}", "this shutdown uses no order")
            return ()
        if strategy == "autostop":
            self._problem(
                "ESXI_VM_ORDER: groups need ESXI_STRATEGY=parallel (autostop follows the host's "
                "own autostart order)",
                "this shutdown ignores ESXI_VM_ORDER and uses autostop",
            )
            return ()
        return groups
