"""The installed `esxi-suspend` command, run the way upsmon runs SHUTDOWNCMD.

No terminal, stdin closed, an environment of PATH only, cwd `/`, against real SSH servers
(OpenSSH and dropbear) whose `vim-cmd` and `poweroff` are the fakes in tests/fakehost.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import outputs
import pytest
from sshservers import FAKEHOST_DATA, SshServer

from esxi_suspend.ssh import keyline

COMMAND = Path(sys.executable).parent / "esxi-suspend"
UPSMON_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
TIMEOUT = 90.0

AUTOSTOP = "vim-cmd hostsvc/autostartmanager/autostop"
POWEROFF = "poweroff"
VM_NAMES = ("nut-client", "Web Server [prod] (v2)", "win2019")


@dataclass(frozen=True)
class Outcome:
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def _close_stdin() -> None:
    os.close(0)


def esxi_suspend(*args: str, env_file: Path | None = None, timeout: float = TIMEOUT) -> Outcome:
    """Run the installed command as upsmon would; `env_file` goes in via ESXI_SUSPEND_ENV."""
    if not COMMAND.exists():
        pytest.fail(f"{COMMAND} is not installed (pip install -e .)", pytrace=False)
    env = {"PATH": UPSMON_PATH}
    if env_file is not None:
        env["ESXI_SUSPEND_ENV"] = str(env_file)
    started = time.monotonic()
    try:
        result = subprocess.run(
            [str(COMMAND), *args],
            preexec_fn=_close_stdin,
            start_new_session=True,  # no controlling terminal
            capture_output=True,
            text=True,
            env=env,
            cwd="/",
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        pytest.fail(f"esxi-suspend {' '.join(args)} ran over {timeout} s: {error}")
    outputs.record(f"esxi-suspend {' '.join(args)}", result.stdout + result.stderr)
    return Outcome(result.returncode, result.stdout, result.stderr, time.monotonic() - started)


def shutdown(
    server: SshServer,
    *extra: str,
    passphrase: bool = False,
    mode: int = 0o600,
    **env: str | None,
) -> Outcome:
    """`esxi-suspend shutdown --env-file F` with F written for `server` (+ overrides)."""
    env_file = server.write_env(passphrase=passphrase, mode=mode, settings=env)
    return esxi_suspend("shutdown", "--env-file", str(env_file), *extra)


def changing_commands(server: SshServer) -> list[str]:
    """Logged commands that change a host: autostop, poweroff, power.* but power.getstate."""
    return [
        line
        for line in server.commands()
        if line.startswith((AUTOSTOP, POWEROFF))
        or (line.startswith("vim-cmd vmsvc/power.") and "power.getstate" not in line)
    ]


def assert_clean(outcome: Outcome) -> None:
    assert "Traceback" not in outcome.output, outcome.output


# In the default fake fleet VM 15 runs outside the autostart list and VM 12's stop action is
# the host default, PowerOff: ESXi's autostop alone would hard power both off. So both get their
# own stop action (guest shutdown: tools run) before autostop runs.
OWN_STEPS = ["vim-cmd vmsvc/power.shutdown 12", "vim-cmd vmsvc/power.shutdown 15"]


def assert_autostop_then_poweroff(server: SshServer) -> None:
    """The quirk's fix, then autostop, then poweroff: last and once."""
    commands = changing_commands(server)
    assert commands.count(POWEROFF) == 1, commands
    assert commands[-1] == POWEROFF, commands
    assert sorted(commands[:2]) == OWN_STEPS, commands
    assert commands[2] == AUTOSTOP, commands


# -- the normal shutdown ------------------------------------------------------------------


def test_shutdown_runs_autostop_then_poweroff_then_restarts(fake_esxi: SshServer) -> None:
    outcome = shutdown(fake_esxi)

    assert outcome.returncode == 0, outcome.output
    commands = fake_esxi.commands()
    assert AUTOSTOP in commands, commands
    assert POWEROFF in commands, commands
    assert commands.index(AUTOSTOP) < commands.index(POWEROFF)
    assert commands.count(POWEROFF) == 1
    assert commands[-1] == POWEROFF  # nothing after the host is going down
    assert len(fake_esxi.restarts()) == 1
    assert_clean(outcome)


def test_env_file_from_environment_variable(openssh_esxi: SshServer) -> None:
    outcome = esxi_suspend("shutdown", env_file=openssh_esxi.write_env())

    assert outcome.returncode == 0, outcome.output
    assert_autostop_then_poweroff(openssh_esxi)
    assert len(openssh_esxi.restarts()) == 1


def test_poweroff_dropping_the_session_is_success(fake_esxi: SshServer) -> None:
    fake_esxi.write_fake("poweroff_mode", "drop")

    outcome = shutdown(fake_esxi)

    assert outcome.returncode == 0, outcome.output
    assert fake_esxi.commands().count(POWEROFF) == 1
    assert len(fake_esxi.restarts()) == 1
    assert_clean(outcome)


def test_verbose_puts_steps_on_stderr(openssh_esxi: SshServer) -> None:
    quiet = shutdown(openssh_esxi)
    shutil.rmtree(openssh_esxi.fake_dir / "state")  # the same VMs running again
    verbose = shutdown(openssh_esxi, "-v")

    assert quiet.returncode == verbose.returncode == 0, verbose.output
    assert "autostop" in verbose.stderr
    # without a syslog socket (as on this test machine) quiet stderr has the steps already
    assert len(verbose.stderr.splitlines()) >= len(quiet.stderr.splitlines())
    assert_clean(verbose)


def test_passphrase_protected_key(fake_esxi: SshServer) -> None:
    outcome = shutdown(fake_esxi, "-v", passphrase=True)

    assert outcome.returncode == 0, outcome.output
    assert_autostop_then_poweroff(fake_esxi)
    assert fake_esxi.passphrase not in outcome.output
    assert_clean(outcome)


def test_wrong_passphrase_fails_before_connecting(openssh_esxi: SshServer) -> None:
    outcome = shutdown(openssh_esxi, passphrase=True, ESXI_KEY_PASSPHRASE="not it")

    # The contract leaves this open: a key that cannot be decrypted is CONFIG (6) in the
    # program as built, and would be CONNECTION (5) if it were found out while authenticating.
    assert outcome.returncode in (5, 6), outcome.output
    assert openssh_esxi.commands() == []
    assert len(openssh_esxi.restarts()) == 1
    assert openssh_esxi.passphrase not in outcome.output
    assert_clean(outcome)


# -- the host must go down even when autostop does not finish --------------------------------


def test_autostop_hang_is_cut_by_the_deadline(fake_esxi: SshServer) -> None:
    fake_esxi.write_fake("autostop_seconds", "60")

    outcome = shutdown(fake_esxi, "-v", ESXI_DEADLINE="12")

    assert outcome.returncode == 0, outcome.output
    commands = changing_commands(fake_esxi)
    assert commands.index(AUTOSTOP) < commands.index(POWEROFF)
    # the VM autostop never reached (nut-client, in the sequence) was suspended by the host's
    # final step, then poweroff; the others had their own stop action first
    assert "vim-cmd vmsvc/power.suspend 1" in commands, commands
    assert commands[-1] == POWEROFF
    assert outcome.seconds < 25, "the deadline did not bound autostop"
    assert "[host] esxi-suspend: final: suspending the VMs still running" in outcome.stderr
    assert len(fake_esxi.restarts()) == 1
    assert_clean(outcome)


def test_autostop_failure_still_powers_off(fake_esxi: SshServer) -> None:
    fake_esxi.write_fake("autostop_exit", "1")

    outcome = shutdown(fake_esxi, "-v", ESXI_DEADLINE="10")

    assert outcome.returncode == 0, outcome.output
    commands = changing_commands(fake_esxi)
    assert commands.index(AUTOSTOP) < commands.index(POWEROFF)
    assert commands[-1] == POWEROFF
    assert "fake autostop failure" in outcome.stderr  # the host's log reached ours
    assert len(fake_esxi.restarts()) == 1
    assert_clean(outcome)


def test_unreadable_inventory_falls_back_to_plain_autostop(fake_esxi: SshServer) -> None:
    fake_esxi.write_fake("get_defaults.txt", "garbage\n")

    outcome = shutdown(fake_esxi)

    assert outcome.returncode == 4, outcome.output
    assert changing_commands(fake_esxi) == [AUTOSTOP, POWEROFF]
    assert len(fake_esxi.restarts()) == 1
    assert_clean(outcome)


# -- host keys and connections: refuse, but still restart locally --------------------------


def test_unknown_host_key_is_refused(fake_esxi: SshServer) -> None:
    outcome = shutdown(fake_esxi, ESXI_KNOWN_HOSTS=str(fake_esxi.empty_known_hosts))

    assert outcome.returncode == 5, outcome.output
    assert fake_esxi.commands() == []
    assert len(fake_esxi.restarts()) == 1
    assert_clean(outcome)


def test_changed_host_key_is_refused_with_fingerprint(fake_esxi: SshServer) -> None:
    outcome = shutdown(fake_esxi, ESXI_KNOWN_HOSTS=str(fake_esxi.wrong_known_hosts))

    assert outcome.returncode == 5, outcome.output
    assert "SHA256:" in outcome.output
    assert fake_esxi.commands() == []
    assert len(fake_esxi.restarts()) == 1
    assert_clean(outcome)


def test_unauthorized_key_is_a_connection_error(openssh_esxi: SshServer) -> None:
    outcome = shutdown(openssh_esxi, ESXI_KEY_FILE=str(openssh_esxi.keys.stranger_key))

    assert outcome.returncode == 5, outcome.output
    assert openssh_esxi.commands() == []
    assert len(openssh_esxi.restarts()) == 1
    assert_clean(outcome)


def test_nothing_listening_is_a_connection_error(openssh_esxi: SshServer, tmp_path: Path) -> None:
    env_file = openssh_esxi.write_env(tmp_path / "closed.env", ESXI_PORT="1")

    outcome = esxi_suspend("shutdown", "--env-file", str(env_file), timeout=30)

    assert outcome.returncode == 5, outcome.output
    assert len(openssh_esxi.restarts()) == 1
    assert_clean(outcome)


# -- dry run ------------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [["shutdown", "--dry-run"], ["check"]], ids=["dry-run", "check"])
def test_dry_run_changes_nothing_and_shows_the_plan(fake_esxi: SshServer, argv: list[str]) -> None:
    env_file = fake_esxi.write_env()

    outcome = esxi_suspend(*argv, "--env-file", str(env_file))

    assert outcome.returncode == 0, outcome.output
    assert changing_commands(fake_esxi) == []
    assert "vim-cmd vmsvc/getallvms" in fake_esxi.commands()  # read-only steps still ran
    assert fake_esxi.restarts() == []
    for name in VM_NAMES:
        assert name in outcome.stdout, outcome.stdout
    # a name ends where its datastore path begins, even when the name holds brackets
    assert "[datastore1] Web Server" not in outcome.stdout, outcome.stdout
    assert_clean(outcome)


def test_dry_run_lists_vms_of_a_written_listing(openssh_esxi: SshServer) -> None:
    default = (FAKEHOST_DATA / "getallvms.txt").read_text().splitlines()
    openssh_esxi.write_fake(
        "getallvms.txt",
        "\n".join(
            [*default, "23     Ünïcode «VM» 'quoted'   [ds 3] u/u.vmx   otherGuest   vmx-19"]
        ),
    )

    outcome = esxi_suspend("check", "--env-file", str(openssh_esxi.write_env()))

    assert outcome.returncode == 0, outcome.output
    assert "Ünïcode «VM» 'quoted'" in outcome.stdout
    assert changing_commands(openssh_esxi) == []
    assert_clean(outcome)


# -- usage and configuration ----------------------------------------------------------------


@pytest.mark.parametrize("argv", [[], ["reboot"], ["shutdown", "--no-such-option"]])
def test_usage_errors_run_nothing(openssh_esxi: SshServer, argv: list[str]) -> None:
    outcome = esxi_suspend(*argv, env_file=openssh_esxi.write_env())

    assert outcome.returncode == 2, outcome.output
    assert "usage" in outcome.stderr.lower()
    assert openssh_esxi.commands() == []
    assert openssh_esxi.restarts() == []
    assert_clean(outcome)


def test_missing_env_file(tmp_path: Path) -> None:
    missing = tmp_path / "no-such.env"

    outcome = esxi_suspend("shutdown", "--env-file", str(missing))

    assert outcome.returncode == 6, outcome.output
    assert str(missing) in outcome.stderr
    assert_clean(outcome)


def test_config_error_still_restarts_locally(openssh_esxi: SshServer) -> None:
    outcome = shutdown(openssh_esxi, ESXI_HOST=None, ESXI_KEY_FILE=None)

    assert outcome.returncode == 6, outcome.output
    assert "ESXI_HOST" in outcome.stderr
    assert "ESXI_KEY_FILE" in outcome.stderr  # every problem reported at once
    assert openssh_esxi.commands() == []
    assert len(openssh_esxi.restarts()) == 1
    assert_clean(outcome)


def test_env_file_readable_by_others_warns_but_works(openssh_esxi: SshServer) -> None:
    outcome = shutdown(openssh_esxi, mode=0o644)

    assert outcome.returncode == 0, outcome.output
    env_file = openssh_esxi.local_dir / "esxi-suspend.env"
    assert str(env_file) in outcome.stderr or "600" in outcome.stderr, outcome.stderr
    assert_autostop_then_poweroff(openssh_esxi)
    assert_clean(outcome)


# -- the host side survives us ----------------------------------------------------------------


def test_host_finishes_the_sequence_after_we_are_killed(fake_esxi: SshServer) -> None:
    fake_esxi.write_fake("autostop_seconds", "60")  # autostop still running when we die
    env_file = fake_esxi.write_env(ESXI_DEADLINE="10")
    ours = subprocess.Popen(
        [str(COMMAND), "shutdown", "--env-file", str(env_file)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={"PATH": UPSMON_PATH},
        cwd="/",
    )
    try:
        deadline = time.monotonic() + 20
        while AUTOSTOP not in fake_esxi.commands():
            assert time.monotonic() < deadline, "autostop never started"
            time.sleep(0.05)
        os.killpg(ours.pid, signal.SIGKILL)  # our process dies mid-sequence ...
        fake_esxi.drop_sessions()  # ... and its connection with it
    finally:
        ours.wait(10)
    deadline = time.monotonic() + 30
    while POWEROFF not in fake_esxi.commands():
        assert time.monotonic() < deadline, f"no poweroff: {fake_esxi.commands()}"
        time.sleep(0.1)
    commands = changing_commands(fake_esxi)
    assert commands.index(AUTOSTOP) < commands.index(POWEROFF)
    assert commands.count(POWEROFF) == 1


def test_python_dash_m_is_the_same_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "esxi_suspend"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 2  # usage
    assert "usage: esxi-suspend" in done.stderr


# -- the key restricted as enroll writes it ------------------------------------------------


def test_shutdown_and_check_with_the_restricted_key(fake_esxi: SshServer) -> None:
    """Our key's line as enroll writes it for this server (its banner: OpenSSH takes from=
    and every no-*, Debian's dropbear every no-*): the whole shutdown path still works, and
    check shows the restrictions where it finds the line (dropbear's ~/.ssh here)."""
    takes = keyline.server_options(fake_esxi.banner)
    addresses = ("127.0.0.1",) if takes.takes_from else ()
    options = keyline.options_text(addresses, takes.restrictions)
    assert "no-pty" in options and "no-port-forwarding" in options
    fields = Path(f"{fake_esxi.key_file}.pub").read_text().split()
    fake_esxi.authorized_keys.write_text(keyline.key_line(options, *fields) + "\n")

    check = esxi_suspend("check", "--env-file", str(fake_esxi.write_env()))
    assert check.returncode == 0, check.output
    if fake_esxi.kind == "dropbear":
        assert (
            "  key: our line in /root/.ssh/authorized_keys: no-port-forwarding, "
            "no-agent-forwarding, no-X11-forwarding, no-pty\n" in check.stdout
        ), check.stdout

    outcome = shutdown(fake_esxi)
    assert outcome.returncode == 0, outcome.output
    assert_autostop_then_poweroff(fake_esxi)
    assert_clean(outcome)
