"""Fail safe at shutdown time, strict at check time: one validation pass, each problem classified.

At shutdown a bad optional value costs nothing but its default (and exit 6 at the end); only
what makes a host unreachable leaves that host out, and never another host. `check` (and
`load_settings`) still refuses any problem.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pytest
from test_config import write_env

from esxi_suspend import clock, lock, runner
from esxi_suspend.errors import ExitCode
from esxi_suspend.host.shutdown import HostResult
from esxi_suspend.nut import ups
from esxi_suspend.settings.envfile import RestartAwareConfigError, load_settings, validate
from esxi_suspend.settings.model import (
    KNOWN_KEYS,
    REQUIRED_KEYS,
    VM_ACTIONS,
    RestartSettings,
    Settings,
    Target,
    WakeOnLan,
)

FILES = "ESXI_KEY_FILE=@KEY@\nESXI_KNOWN_HOSTS=@KNOWN@\n"
GOOD = "ESXI_HOST=esxi1.lan\n" + FILES
ESXI1 = Target("esxi1.lan", "root", 22)

# A bad optional value at shutdown: (env file, what it is read as, the problem's text, what the
# shutdown does instead). The problem is never fatal: the host is contacted.
OPTIONAL = [
    (
        GOOD + "ESXI_CONNECT_TIMEOUT=0\n",
        ("connect_timeout", 10),
        "ESXI_CONNECT_TIMEOUT='0': out of range; use an integer from 1 to 600",
        "uses the default ESXI_CONNECT_TIMEOUT=10",
    ),
    (
        GOOD + "ESXI_COMMAND_TIMEOUT=-5\n",
        ("command_timeout", 300),
        "ESXI_COMMAND_TIMEOUT='-5': not a whole number; use an integer from 1 to 86400",
        "uses the default ESXI_COMMAND_TIMEOUT=300",
    ),
    (
        GOOD + "ESXI_STRATEGY=paralel\n",
        ("strategy", "autostop"),
        "ESXI_STRATEGY='paralel': use one of: autostop, parallel",
        "uses the default ESXI_STRATEGY=autostop",
    ),
    (
        GOOD + "ESXI_DEADLINE=4min\n",
        ("deadline", 240),
        "ESXI_DEADLINE='4min': not a whole number; use an integer from 10 to 86400",
        "uses the default ESXI_DEADLINE=240",
    ),
    (
        GOOD + "ESXI_DEADLINE=5\n",
        ("deadline", 240),
        "ESXI_DEADLINE='5': out of range; use an integer from 10 to 86400",
        "uses the default ESXI_DEADLINE=240",
    ),
    (
        GOOD + "ESXI_STOP_ACTIONS=shutdown,reboot\n",
        ("stop_actions", VM_ACTIONS),
        "ESXI_STOP_ACTIONS='shutdown,reboot': a comma-separated order of",
        "uses the default ESXI_STOP_ACTIONS=shutdown,suspend,poweroff",
    ),
    (
        GOOD + "ESXI_STRAGGLER_ACTION=kill\n",
        ("straggler_action", "suspend"),
        "ESXI_STRAGGLER_ACTION='kill': use one of: suspend, poweroff",
        "uses the default ESXI_STRAGGLER_ACTION=suspend",
    ),
    (
        GOOD + "ESXI_POLL_INTERVAL=0\n",
        ("poll_interval", 2.0),
        "ESXI_POLL_INTERVAL='0': out of range; use 0.01 to 60 seconds",
        "uses the default ESXI_POLL_INTERVAL=2",
    ),
    (
        GOOD + "ESXI_STRATEGY=parallel\nESXI_VM_ORDER=web;;db\n",
        ("vm_order", ()),
        "ESXI_VM_ORDER='web;;db': an empty group",
        "uses no order",
    ),
    (
        GOOD + "ESXI_VM_ORDER=web; db\n",  # with the default strategy, autostop
        ("vm_order", ()),
        "ESXI_VM_ORDER: groups need ESXI_STRATEGY=parallel",
        "ignores ESXI_VM_ORDER and uses autostop",
    ),
    (
        GOOD + "UPS_SERVICE=nut monitor\n",
        ("restart.service", "auto"),
        "UPS_SERVICE='nut monitor': not a service name",
        "uses the default UPS_SERVICE=auto",
    ),
    (
        GOOD + 'UPS_SERVICE=nut-client\nUPS_RESTART_COMMAND="a \'b"\n',
        ("restart.command", None),
        'UPS_RESTART_COMMAND="a \'b": cannot be split into words',
        "restarts the NUT monitor by UPS_SERVICE=nut-client instead",
    ),
    (
        GOOD + "UPS_NAME=ups@host:99999\n",
        ("restart.ups_names", ()),
        "UPS_NAME='ups@host:99999': port out of range",
        "uses the default UPS_NAME=auto",
    ),
    (
        GOOD + "UPS_POLL_INTERVAL=0\n",
        ("restart.ups_poll_interval", 5),
        "UPS_POLL_INTERVAL='0': out of range; use an integer from 1 to 300",
        "uses the default UPS_POLL_INTERVAL=5",
    ),
    (
        GOOD + "UPS_WAIT_LIMIT=1h\n",
        ("restart.ups_wait_limit", 86400),
        "UPS_WAIT_LIMIT='1h': not a whole number; use an integer from 60 to 604800",
        "uses the default UPS_WAIT_LIMIT=86400",
    ),
    (
        GOOD + "UPS_RUNTIME_MARGIN=-1\n",
        ("runtime_margin", 30),
        "UPS_RUNTIME_MARGIN='-1': not a whole number; use an integer from 0 to 3600",
        "uses the default UPS_RUNTIME_MARGIN=30",
    ),
    (
        GOOD + "UPS_EARLY_SHUTDOWN=5m\n",
        ("restart.early_shutdown", 300),
        "UPS_EARLY_SHUTDOWN='5m': not a whole number; use an integer from 0 to 86400",
        "uses the default UPS_EARLY_SHUTDOWN=300",
    ),
    (
        GOOD + "UPS_WAKE_STEADY=2m\n",
        ("restart.wake_steady", 120),
        "UPS_WAKE_STEADY='2m': not a whole number; use an integer from 0 to 86400",
        "uses the default UPS_WAKE_STEADY=120",
    ),
    (
        GOOD + "UPS_WAKE_CHARGE=101\n",
        ("restart.wake_charge", 50),
        "UPS_WAKE_CHARGE='101': out of range; use an integer from 0 to 100",
        "uses the default UPS_WAKE_CHARGE=50",
    ),
    (
        GOOD + "UPS_WAKE_LIMIT=1\n",
        ("restart.wake_limit", 14400),
        "UPS_WAKE_LIMIT='1': out of range; use an integer from 10 to 604800",
        "uses the default UPS_WAKE_LIMIT=14400",
    ),
    (
        GOOD + "UPS_WAKE_AT_LIMIT=maybe\n",
        ("restart.wake_at_limit", "wake"),
        "UPS_WAKE_AT_LIMIT='maybe': use one of: wake, stay-off",
        "uses the default UPS_WAKE_AT_LIMIT=wake",
    ),
    (
        GOOD + "ESXI_KEY_FROM=10.0.0.0/8, office\n",
        ("key_from", ("auto",)),
        "ESXI_KEY_FROM='10.0.0.0/8, office': 'office' is not an IP address or network",
        "uses the default ESXI_KEY_FROM=auto",
    ),
    (
        GOOD + 'UPS_CLEAR_FSD="a \'b"\n',
        ("restart.clear_fsd", ("auto",)),
        'UPS_CLEAR_FSD="a \'b": cannot be split into words',
        "uses the default UPS_CLEAR_FSD=auto",
    ),
    (
        GOOD + "UPS_NAME=none\nESXI_DEADLINE=auto\n",
        ("deadline_auto", False),
        "ESXI_DEADLINE='auto': needs a UPS to read battery.runtime from, but UPS_NAME=none",
        "this shutdown uses ESXI_DEADLINE=240",
    ),
    (
        GOOD + "ESXI_WOL_MAC=esxi1.lan=aa:bb:cc\n",
        ("wake_on_lan", ()),
        "ESXI_WOL_MAC='esxi1.lan=aa:bb:cc', entry 'esxi1.lan=aa:bb:cc': not a MAC address",
        "esxi1.lan is not woken when power returns",
    ),
    (
        GOOD + "ESXI_WOL_MAC=esxi1.lan=aa:bb:cc:dd:ee:01\nESXI_WOL_BROADCAST=192.168.1.256\n",
        ("wake_on_lan", (WakeOnLan(ESXI1, "aa:bb:cc:dd:ee:01", "255.255.255.255", 9),)),
        "ESXI_WOL_BROADCAST='192.168.1.256', entry '192.168.1.256': not an IPv4 address",
        "the packets go to the other address given, else to the default 255.255.255.255",
    ),
    (
        GOOD + "ESXI_WOL_MAC=esxi1.lan=aa:bb:cc:dd:ee:01\nESXI_WOL_PORT=0\n",
        ("wake_on_lan", (WakeOnLan(ESXI1, "aa:bb:cc:dd:ee:01", "255.255.255.255", 9),)),
        "ESXI_WOL_PORT='0': out of range; use an integer from 1 to 65535",
        "uses the default ESXI_WOL_PORT=9",
    ),
    (
        GOOD + "ESXI_IPMI_USER=ADMIN\nESXI_IPMI_HOST=esxi1.lan=bmc1 lan\n",
        ("bmcs", ()),
        "ESXI_IPMI_HOST='esxi1.lan=bmc1 lan', entry 'esxi1.lan=bmc1 lan': not BMC[:port]",
        "esxi1.lan has no BMC for this run (Wake-on-LAN, if set)",
    ),
    (
        GOOD + "ESXI_IPMI_HOST=esxi1.lan=bmc1\nESXI_IPMI_USER=a b\n",
        ("bmcs", ()),
        "entry 'esxi1.lan=bmc1': no BMC user; set ESXI_IPMI_USER",
        "esxi1.lan has no BMC for this run",
    ),
    (
        GOOD + "ESXI_IPMI_HOST=esxi1.lan=bmc1\nESXI_IPMI_USER=A\n"
        "ESXI_IPMI_PASSWORD=123456789012345678901\n",
        ("bmcs", ()),
        "ESXI_IPMI_PASSWORD: longer than 20 bytes, more than IPMI allows",
        "no host is powered by IPMI",
    ),
    (
        GOOD + "ESXI_IPMI_INTERFACE=lanplsu\n",
        ("bmcs", ()),
        "ESXI_IPMI_INTERFACE='lanplsu': use one of: lanplus, lan",
        "uses the default ESXI_IPMI_INTERFACE=lanplus",
    ),
    (
        GOOD + "ESXI_IPMI_CIPHER=18\n",
        ("bmcs", ()),
        "ESXI_IPMI_CIPHER='18': out of range; use an integer from 0 to 17",
        "uses the default ESXI_IPMI_CIPHER=3",
    ),
    (
        GOOD + "ESXI_IPMI_HARD_OFF=maybe\n",
        ("ipmi_hard_off", False),
        "ESXI_IPMI_HARD_OFF='maybe': use yes or no",
        "uses the default ESXI_IPMI_HARD_OFF=no",
    ),
    (
        GOOD + "ESXI_BOOT_WAIT=5\n",
        ("boot_wait", 600),
        "ESXI_BOOT_WAIT='5': out of range; use an integer from 10 to 86400",
        "uses the default ESXI_BOOT_WAIT=600",
    ),
    (
        GOOD + "ESXI_DEADLIN=300\n",
        ("deadline", 240),
        "ESXI_DEADLIN: unknown setting (did you mean ESXI_DEADLINE?)",
        "ignores it and uses the default ESXI_DEADLINE=240",
    ),
    (
        GOOD + "ESXI_DEADLINE=60\nESXI_DEADLIN=300\n",
        ("deadline", 60),
        "ESXI_DEADLIN: unknown setting (did you mean ESXI_DEADLINE?)",
        "ignores it (ESXI_DEADLINE is set and applies)",
    ),
    (
        GOOD + "ESXI_HOSTNAME=esxi9\n",
        ("host", "esxi1.lan"),
        "ESXI_HOSTNAME: unknown setting (did you mean ESXI_HOST?)",
        "ignores it (ESXI_HOST is set and applies)",
    ),
    (
        GOOD + "BOGUS=1\n",
        ("host", "esxi1.lan"),
        "BOGUS: unknown setting",
        "ignores it",
    ),
    (
        "ESXIHOST=other\n" + GOOD,  # the alias first: the documented name still wins
        ("host", "esxi1.lan"),
        "ESXIHOST: conflicts with ESXI_HOST; keep only one of them",
        "uses ESXI_HOST",
    ),
    (
        GOOD + "this line is not a setting\nESXI_DEADLINE=60\n",
        ("deadline", 60),
        "line 4: cannot be parsed; write it as KEY=value",
        "ignores it",
    ),
    (
        "ESXI_HOST=esxi1, esxi1:22\n" + FILES,
        ("targets", (Target("esxi1", "root", 22),)),
        "ESXI_HOST='esxi1, esxi1:22': esxi1 is listed twice",
        "contacts it once",
    ),
    (
        "ESXI_HOST=esxi1,\n" + FILES,
        ("targets", (Target("esxi1", "root", 22),)),
        "an empty entry; separate hosts with ','",
        "ignored",
    ),
    (
        "ESXI_HOST=admin@esxi1:2222\nESXI_USER=root;id\nESXI_PORT=x\n" + FILES,
        ("targets", (Target("esxi1", "admin", 2222),)),
        "ESXI_USER='root;id': not a user name",
        "unused: no ESXI_HOST entry relies on it",
    ),
]


def _attribute(settings: Settings, name: str) -> object:
    value: object = settings
    for part in name.split("."):
        value = getattr(value, part)
    return value


def _ids(rows: Sequence[tuple[str, object, str, str]]) -> list[str]:
    return [row[2].split(":")[0][:40] for row in rows]


@pytest.mark.parametrize(("body", "read_as", "text", "instead"), OPTIONAL, ids=_ids(OPTIONAL))
def test_bad_optional_value_uses_the_default_at_shutdown(
    files: dict[str, Path], body: str, read_as: tuple[str, object], text: str, instead: str
) -> None:
    validation = validate(write_env(files, body))
    assert validation.settings is not None, validation.problems
    attribute, expected = read_as
    assert _attribute(validation.settings, attribute) == expected
    assert [p for p in validation.problems if p.fatal] == []
    [problem] = [p for p in validation.problems if text in p.text]
    assert instead in problem.instead
    assert validation.skipped == ()


def test_the_table_covers_every_optional_setting() -> None:
    covered = {body.splitlines()[-1].split("=")[0] for body, *_ in OPTIONAL}
    covered |= {"ESXI_STRATEGY", "UPS_SERVICE"}  # set in the rows before their last line
    address = {"ESXI_USER", "ESXI_PORT", "ESXI_KNOWN_HOSTS", *REQUIRED_KEYS}
    unchecked = {"ESXI_KEY_PASSPHRASE", "ESXI_SELF_VM"}  # any text is valid
    assert set(KNOWN_KEYS) - address - unchecked <= covered


def test_every_documented_default_is_valid(files: dict[str, Path]) -> None:
    body = GOOD + "".join(
        f"{key}={value}\n"
        for key, value in KNOWN_KEYS.items()
        if value is not None and key not in ("ESXI_KNOWN_HOSTS",)
    )
    validation = validate(write_env(files, body))
    assert validation.problems == ()
    assert validation.settings is not None


# What makes a host unreachable: (env file, the problem's text). No host is contacted.
FATAL = [
    (FILES, "ESXI_HOST: missing; it is required"),
    ("ESXI_HOST=\n" + FILES, "ESXI_HOST: is empty; it is required"),
    ("ESXI_HOST=, ,\n" + FILES, "ESXI_HOST=', ,': names no host; it is required"),
    ("ESXI_HOST=esxi1.lan; reboot\n" + FILES, "ESXI_HOST='esxi1.lan; reboot': not [user@]host"),
    ("ESXI_HOST=-oProxyCommand=x\n" + FILES, "ESXI_HOST='-oProxyCommand=x': not a host name"),
    ("ESXI_HOST=esxi1:99999\n" + FILES, "ESXI_HOST='esxi1:99999': out of range"),
    ("ESXI_HOST=r;id@esxi1\n" + FILES, "ESXI_HOST='r;id@esxi1': not a user name"),
    (GOOD + "ESXI_PORT=22x\n", "ESXI_PORT='22x': not a whole number"),
    (GOOD + "ESXI_PORT=0\n", "ESXI_PORT='0': out of range"),
    (GOOD + "ESXI_USER=root;id\n", "ESXI_USER='root;id': not a user name"),
    ("ESXI_HOST=h\nESXI_KNOWN_HOSTS=@KNOWN@\n", "ESXI_KEY_FILE: missing; it is required"),
    ("ESXI_HOST=h\nESXI_KEY_FILE=\nESXI_KNOWN_HOSTS=@KNOWN@\n", "ESXI_KEY_FILE: is empty"),
    (
        "ESXI_HOST=h\nESXI_KEY_FILE=/nonexistent/key\nESXI_KNOWN_HOSTS=@KNOWN@\n",
        "ESXI_KEY_FILE='/nonexistent/key': file not found; create one with: ssh-keygen",
    ),
    (
        "ESXI_HOST=h\nESXI_KEY_FILE=relative/key\nESXI_KNOWN_HOSTS=@KNOWN@\n",
        "ESXI_KEY_FILE='relative/key': must be an absolute path",
    ),
    (
        "ESXI_HOST=h\nESXI_KEY_FILE=/tmp\nESXI_KNOWN_HOSTS=@KNOWN@\n",
        "ESXI_KEY_FILE='/tmp': is not a regular file",
    ),
    (
        "ESXI_HOST=h\nESXI_KEY_FILE=@KEY@\nESXI_KNOWN_HOSTS=/nonexistent/kh\n",
        "ESXI_KNOWN_HOSTS='/nonexistent/kh': file not found; pin the host key",
    ),
    (
        "ESXI_HOST=h\nESXI_KEY_FILE=@KEY@\nESXI_KNOWN_HOSTS=known_hosts\n",
        "ESXI_KNOWN_HOSTS='known_hosts': must be an absolute path",
    ),
]


@pytest.mark.parametrize(("body", "text"), FATAL, ids=[t.split(":")[0][:40] for _, t in FATAL])
def test_what_makes_the_host_unreachable_stops_it(
    files: dict[str, Path], body: str, text: str
) -> None:
    validation = validate(write_env(files, body))
    assert validation.settings is None
    [problem] = [p for p in validation.problems if text in p.text]
    assert problem.fatal
    assert "no host can be contacted" in problem.instead


def test_an_unreadable_env_file_stops_every_host(files: dict[str, Path]) -> None:
    validation = validate(files["dir"] / "missing.env")
    assert validation.settings is None
    [problem] = validation.problems
    assert problem.fatal and "file not found" in problem.text


# Several hosts, one of them unreachable by its settings: the others are still contacted.
PER_HOST = [
    (
        "ESXI_HOST=esxi1, root@esxi2 lan, esxi3\n" + FILES,
        ["esxi1", "esxi3"],
        "entry 'root@esxi2 lan': not [user@]host[:port]",
        "does not contact 'root@esxi2 lan'; the other hosts go on",
    ),
    (
        "ESXI_HOST=esxi1, -oProxyCommand=x\n" + FILES,
        ["esxi1"],
        "entry '-oProxyCommand=x': not a host name",
        "does not contact '-oProxyCommand=x'; the other hosts go on",
    ),
    (
        "ESXI_HOST=esxi1, esxi2:70000\n" + FILES,
        ["esxi1"],
        "entry 'esxi2:70000': out of range",
        "does not contact 'esxi2:70000'; the other hosts go on",
    ),
    (
        "ESXI_HOST=esxi1, esxi2:2222\nESXI_PORT=22x\n" + FILES,
        ["esxi2"],
        "ESXI_PORT='22x': not a whole number",
        "does not contact 'esxi1' (no port is guessed); the other hosts go on",
    ),
    (
        "ESXI_HOST=esxi1, admin@esxi2\nESXI_USER=root;id\n" + FILES,
        ["esxi2"],
        "ESXI_USER='root;id': not a user name",
        "does not contact 'esxi1' (no user is guessed); the other hosts go on",
    ),
]


@pytest.mark.parametrize(
    ("body", "contacted", "text", "instead"), PER_HOST, ids=[r[2][:40] for r in PER_HOST]
)
def test_one_hosts_problem_never_stops_another(
    files: dict[str, Path], body: str, contacted: list[str], text: str, instead: str
) -> None:
    validation = validate(write_env(files, body))
    assert validation.settings is not None, validation.problems
    assert [t.host for t in validation.settings.all_targets] == contacted
    [problem] = [p for p in validation.problems if text in p.text]
    assert problem.fatal
    assert instead in problem.instead
    assert validation.skipped


STRICT = [(row[0], row[2]) for row in OPTIONAL + PER_HOST] + FATAL


@pytest.mark.parametrize(("body", "text"), STRICT, ids=[t.split(":")[0][:40] for _, t in STRICT])
def test_check_stays_strict(files: dict[str, Path], body: str, text: str) -> None:
    path = write_env(files, body)
    with pytest.raises(RestartAwareConfigError) as caught:
        load_settings(path)
    assert text in str(caught.value)
    assert str(path) in str(caught.value)


# -- the command: what `shutdown` and `check` do with them ------------------------------------


@pytest.fixture
def contacted(monkeypatch: pytest.MonkeyPatch) -> list[Settings]:
    """Hosts are not contacted for real: the settings `run_hosts` gets are recorded."""
    seen: list[Settings] = []

    def fake_run_hosts(settings: Settings, dry_run: bool) -> list[HostResult]:
        seen.append(settings)
        results = [HostResult(target.host) for target in settings.all_targets]
        for result in results:
            result.add("poweroff", ExitCode.OK, "it is going down")
        return results

    monkeypatch.setattr(runner, "run_hosts", fake_run_hosts)
    monkeypatch.setattr(lock, "acquire", lambda host, port: None)
    return seen


@pytest.fixture
def restarts(monkeypatch: pytest.MonkeyPatch) -> list[RestartSettings]:
    """The local restart is recorded, never run: UPS_SERVICE=auto would restart this
    machine's own NUT monitor."""
    seen: list[RestartSettings] = []

    def fake_restart_local(settings: RestartSettings, dry_run: bool) -> tuple[ExitCode, str]:
        seen.append(settings)
        return ExitCode.OK, "ok (recorded)"

    monkeypatch.setattr(runner, "restart_local", fake_restart_local)
    return seen


def _errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]


@pytest.mark.parametrize(("body", "read_as", "text", "instead"), OPTIONAL, ids=_ids(OPTIONAL))
def test_shutdown_goes_on_with_the_default_and_exits_config(
    files: dict[str, Path],
    contacted: list[Settings],
    restarts: list[RestartSettings],
    caplog: pytest.LogCaptureFixture,
    body: str,
    read_as: tuple[str, object],
    text: str,
    instead: str,
) -> None:
    with caplog.at_level(logging.INFO, logger="esxi_suspend"):
        code = runner.run(str(write_env(files, body)), dry_run=False)
    assert code == ExitCode.CONFIG
    [settings] = contacted
    assert restarts == [settings.restart]
    errors = _errors(caplog)
    assert "the shutdown goes on" in errors[0]
    assert any(text in line and instead in line for line in errors), errors
    summary = next(r.getMessage() for r in caplog.records if "summary:" in r.getMessage())
    assert "problem(s), see above" in summary and "exit 6 (CONFIG)" in summary


@pytest.mark.parametrize(("body", "text"), FATAL, ids=[t.split(":")[0][:40] for _, t in FATAL])
def test_shutdown_without_a_reachable_host_still_restarts(
    files: dict[str, Path],
    contacted: list[Settings],
    restarts: list[RestartSettings],
    caplog: pytest.LogCaptureFixture,
    body: str,
    text: str,
) -> None:
    with caplog.at_level(logging.INFO, logger="esxi_suspend"):
        code = runner.run(str(write_env(files, body)), dry_run=False)
    assert code == ExitCode.CONFIG
    assert contacted == []
    assert len(restarts) == 1
    errors = _errors(caplog)
    assert "no host can be contacted" in errors[0]
    assert any(text in line and "no host can be contacted" in line for line in errors), errors


@pytest.mark.parametrize(
    ("body", "hosts", "text", "instead"), PER_HOST, ids=[r[2][:40] for r in PER_HOST]
)
def test_shutdown_contacts_the_other_hosts(
    files: dict[str, Path],
    contacted: list[Settings],
    restarts: list[RestartSettings],
    caplog: pytest.LogCaptureFixture,
    body: str,
    hosts: list[str],
    text: str,
    instead: str,
) -> None:
    with caplog.at_level(logging.INFO, logger="esxi_suspend"):
        code = runner.run(str(write_env(files, body)), dry_run=False)
    assert code == ExitCode.CONFIG
    [settings] = contacted
    assert [t.host for t in settings.all_targets] == hosts
    assert len(restarts) == 1
    assert any(text in line and instead in line for line in _errors(caplog))
    summary = next(r.getMessage() for r in caplog.records if "summary:" in r.getMessage())
    assert "not contacted (configuration)" in summary and "exit 6 (CONFIG)" in summary


@pytest.mark.parametrize(("body", "text"), STRICT, ids=[t.split(":")[0][:40] for _, t in STRICT])
def test_check_contacts_no_host_and_says_not_ready(
    files: dict[str, Path],
    contacted: list[Settings],
    restarts: list[RestartSettings],
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    body: str,
    text: str,
) -> None:
    with caplog.at_level(logging.INFO, logger="esxi_suspend"):
        code = runner.run(str(write_env(files, body)), dry_run=True)
    assert code == ExitCode.CONFIG
    assert contacted == []
    assert "result: NOT ready (exit 6 CONFIG)" in capsys.readouterr().out
    assert any(line.startswith("  - ") and text in line for line in _errors(caplog))
    assert "this shutdown" not in caplog.text  # check lists problems, not shutdown's fallbacks


def test_every_problem_is_listed_at_shutdown_too(
    files: dict[str, Path],
    contacted: list[Settings],
    restarts: list[RestartSettings],
    caplog: pytest.LogCaptureFixture,
) -> None:
    body = GOOD + "ESXI_STRATEGY=paralel\nESXI_DEADLIN=300\nESXI_POLL_INTERVAL=fast\n"
    with caplog.at_level(logging.INFO, logger="esxi_suspend"):
        assert runner.run(str(write_env(files, body)), dry_run=False) == ExitCode.CONFIG
    errors = _errors(caplog)
    assert errors[0].startswith(f"configuration {files['dir'] / 'esxi-suspend.env'} has 3 ")
    for key in ("ESXI_STRATEGY=", "ESXI_DEADLIN:", "ESXI_POLL_INTERVAL="):
        assert sum(line.startswith(f"  - {key}") for line in errors) == 1, errors
    [settings] = contacted
    assert (settings.strategy, settings.deadline, settings.poll_interval) == ("autostop", 240, 2)


@pytest.mark.parametrize(
    ("runtime", "shown", "code"),
    [
        ("300", "deadline: ESXI_DEADLINE=auto: 270 s = battery.runtime 300 s (a@h)", 0),
        (None, "deadline: ESXI_DEADLINE=auto: no battery.runtime (no answer): using the", 6),
    ],
)
def test_check_shows_the_auto_deadline_and_shutdown_uses_it(
    files: dict[str, Path],
    contacted: list[Settings],
    restarts: list[RestartSettings],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    runtime: str | None,
    shown: str,
    code: int,
) -> None:
    """`check` prints the deadline it would use now (NOT ready when auto cannot be read);
    `shutdown` gives the hosts that deadline, or the fallback, and goes on."""

    def upsc(name: str, variable: str, timeout: float) -> str:
        if runtime is None or variable != "battery.runtime":
            raise ups.UpsUnreadable("no answer")
        return runtime

    monkeypatch.setattr(ups, "upsc", upsc)
    body = GOOD + "ESXI_DEADLINE=auto\nUPS_NAME=a@h\nUPS_RUNTIME_MARGIN=30\n"
    monkeypatch.setattr(clock, "now", lambda: 1000.0)
    assert runner.run(str(write_env(files, body)), dry_run=True, called_at=1000.0) == code
    assert shown in capsys.readouterr().out
    assert runner.run(str(write_env(files, body)), dry_run=False, called_at=1000.0) == 0
    assert contacted[-1].deadline == (270 if runtime else 240)
