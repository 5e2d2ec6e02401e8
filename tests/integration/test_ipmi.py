"""IPMI against a real BMC simulator (OpenIPMI's ipmi_sim on 127.0.0.1, tests/bmc.py): the
client (power state, on, soft, off), its failures named with the fix, the password never on a
command line, `esxi-suspend wake` and `check` with a BMC."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import bmc as bmcs
import outputs
import pytest
from bmc import SimulatedBmc
from sshservers import HOST, SshServer, free_port

from esxi_suspend.errors import ExitCode
from esxi_suspend.power import bmc as host_bmc
from esxi_suspend.power import ipmi
from esxi_suspend.power.ipmi import IpmiError
from esxi_suspend.settings.model import Bmc, Target

COMMAND = Path(sys.executable).parent / "esxi-suspend"
TARGET = Target("esxi1", "root", 22)


def _bmc(sim: SimulatedBmc, **changes: object) -> Bmc:
    fields: dict[str, object] = {
        "target": TARGET,
        "address": HOST,
        "port": sim.port,
        "user": bmcs.USER,
        "password": bmcs.PASSWORD,
    }
    fields.update(changes)
    return Bmc(**fields)  # type: ignore[arg-type]


def test_power_state_on_soft_and_off(bmc: SimulatedBmc) -> None:
    target = _bmc(bmc)
    assert ipmi.power_is_on(target, 10) is True
    ipmi.power_off(target, 10)
    assert ipmi.power_is_on(target, 10) is False and not bmc.on
    ipmi.power_on(target, 10)
    assert ipmi.power_is_on(target, 10) is True
    ipmi.power_soft(target, 10)  # the host takes a few seconds to go down
    off, _waited, error = host_bmc.wait_power(target, False, 20, 10)
    assert off and error is None
    assert bmc.calls()[:4] == ["get power", "set power 0", "get power", "set power 1"]
    assert "set shutdown 1" in bmc.calls()


def test_the_lan_interface_works_too(bmc: SimulatedBmc) -> None:
    assert ipmi.power_is_on(_bmc(bmc, interface="lan"), 10) is True


@pytest.mark.parametrize(
    ("changes", "kind", "text"),
    [
        (
            {"password": "wrong-password"},
            "refused",
            "refused user admin or its password: check ESXI_IPMI_USER and ESXI_IPMI_PASSWORD",
        ),
        ({"user": "nobody"}, "refused", "refused user nobody or its password"),
        ({"cipher": 17}, "cipher", "does not offer cipher suite 17: set ESXI_IPMI_CIPHER"),
    ],
)
def test_failures_name_the_setting_to_fix(
    bmc: SimulatedBmc, changes: dict[str, object], kind: str, text: str
) -> None:
    with pytest.raises(IpmiError) as caught:
        ipmi.power_is_on(_bmc(bmc, **changes), 10)
    assert caught.value.kind == kind and text in str(caught.value)
    assert caught.value.exit_code == ExitCode.CONNECTION
    assert bmcs.PASSWORD not in str(caught.value)


def test_a_bmc_that_never_answers_is_bounded_and_named() -> None:
    silent = Bmc(TARGET, HOST, bmcs.free_udp_port(), "admin", bmcs.PASSWORD)
    with pytest.raises(IpmiError) as caught:
        ipmi.power_is_on(silent, 3)
    assert caught.value.kind == "no answer", caught.value
    assert f"no answer from the BMC at {HOST}:{silent.port}" in str(caught.value)
    assert "IPMI over LAN is enabled in the BMC" in str(caught.value)


def test_ipmitool_missing_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ipmi, "PROGRAM", "/nonexistent/ipmitool")
    with pytest.raises(IpmiError) as caught:
        ipmi.power_is_on(Bmc(TARGET, HOST, 623, "admin", "x"), 3)
    assert caught.value.exit_code == ExitCode.CONFIG
    assert "apt-get install ipmitool" in str(caught.value)


def test_the_password_is_never_on_a_command_line(
    bmc: SimulatedBmc, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ipmitool stand-in first on PATH writes its argv and its IPMI_PASSWORD, then runs the
    real one: the password is in its environment only (-E), and the call still works."""
    seen = tmp_path / "argv"
    wrapper = tmp_path / "bin" / "ipmitool"
    wrapper.parent.mkdir()
    wrapper.write_text(
        f'#!/bin/sh\necho "$*" >>{seen}\n[ "$IPMI_PASSWORD" = {bmcs.PASSWORD!r} ] && '
        f'echo env-ok >>{seen}\nexec /usr/bin/ipmitool "$@"\n'
    )
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{wrapper.parent}:{os.environ['PATH']}")
    monkeypatch.setenv("IPMITOOL_PASSWORD", "not-this-one")  # would win over IPMI_PASSWORD
    assert ipmi.power_is_on(_bmc(bmc), 10) is True
    argv, env_ok = seen.read_text().splitlines()
    assert bmcs.PASSWORD not in argv and env_ok == "env-ok"
    assert " -E " in argv and " -C 3 " in argv and "-P" not in argv.split()


def _env(server: SshServer, sim: SimulatedBmc, **extra: str) -> Path:
    return server.write_env(settings={**sim.settings(server.host), **extra})


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(COMMAND), *argv],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    outputs.record(f"esxi-suspend {argv[0]}", done.stdout + done.stderr)
    return done


def test_wake_powers_an_off_host_on_and_waits_for_its_ssh_port(
    bmc: SimulatedBmc, tmp_path: Path
) -> None:
    bmc.set_power(False)
    port = free_port()
    bmc.boots_on(port, seconds=1.0)
    env = tmp_path / "wake.env"
    env.write_text(
        f"ESXI_HOST={HOST}:{port}\nESXI_KEY_FILE={env}\nESXI_KNOWN_HOSTS={env}\n"
        + "".join(f"{k}={v}\n" for k, v in bmc.settings(HOST).items())
        + "ESXI_CONNECT_TIMEOUT=5\nESXI_BOOT_WAIT=30\n"
    )
    done = _run("wake", "--env-file", str(env), "-v")
    assert done.returncode == 0, done.stderr
    assert bmc.on and "set power 1" in bmc.calls()
    assert "powered on by its BMC; host back after" in done.stdout, done.stdout
    assert "result: 0 sent, 1 powered on by IPMI, 0 without ESXI_WOL_MAC, 0 failed" in done.stdout
    assert bmcs.PASSWORD not in done.stdout + done.stderr
    again = _run("wake", HOST, "--env-file", str(env))
    assert again.returncode == 0 and "its BMC says power on already: nothing sent" in again.stdout


def test_wake_with_a_wrong_bmc_password_says_which_setting(
    bmc: SimulatedBmc, tmp_path: Path
) -> None:
    bmc.set_power(False)
    env = tmp_path / "wake.env"
    env.write_text(
        f"ESXI_HOST={HOST}\nESXI_KEY_FILE={env}\nESXI_KNOWN_HOSTS={env}\n"
        + f"ESXI_IPMI_HOST={HOST}={HOST}:{bmc.port}\nESXI_IPMI_USER=admin\n"
        + "ESXI_IPMI_PASSWORD=wrong-password\n"
    )
    done = _run("wake", "--env-file", str(env))
    assert done.returncode == ExitCode.CONNECTION, done.stderr
    assert "NOT powered on: the BMC at" in done.stdout
    assert "check ESXI_IPMI_USER and ESXI_IPMI_PASSWORD" in done.stdout
    assert not bmc.on and "wrong-password" not in done.stdout + done.stderr


def test_check_reads_the_power_state_and_changes_nothing(
    openssh_esxi: SshServer, bmc: SimulatedBmc
) -> None:
    done = _run("check", "--env-file", str(_env(openssh_esxi, bmc)))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"ipmi: IPMI works: its BMC at {HOST}:{bmc.port} says power on (read only" in (
        done.stdout
    )
    assert bmc.calls() == ["get power"] and bmc.on


def test_check_says_when_ipmi_does_not_work(openssh_esxi: SshServer, bmc: SimulatedBmc) -> None:
    env = _env(openssh_esxi, bmc, ESXI_IPMI_PASSWORD="wrong-password")
    done = _run("check", "--env-file", str(env))
    assert done.returncode == ExitCode.CONNECTION, done.stdout + done.stderr
    assert "ipmi: IPMI does NOT work: the BMC at" in done.stdout
    assert "check ESXI_IPMI_USER and ESXI_IPMI_PASSWORD" in done.stdout
    assert "NOT ready" in done.stdout
