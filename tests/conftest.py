"""Fixtures: real SSH servers on 127.0.0.1 standing in for ESXi hosts (see sshservers.py).

`fake_esxi` runs each test against OpenSSH (ESXi 5.x and later) and dropbear (ESXi 4.x);
`openssh_esxi` and `dropbear_esxi` pick one; `bmc` is a BMC (OpenIPMI's ipmi_sim, bmc.py);
`make_host` builds simulated hosts driven without SSH (HostModel), stopped after the test.
A missing server binary skips those tests locally and fails them when CI=true.

At the end of the session two checks can fail it though every test passed: no secret in any
output (outputs.py), and nothing left behind in /tmp, /run (/run/esxi-suspend, /run/nut) or the
working tree (leftovers.py).
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn

import bmc as bmcs
import leftovers
import outputs
import pytest
from simhelpers import MakeHost
from sshservers import (
    KINDS,
    ClientKeys,
    ServerKind,
    ServerUnavailable,
    SshServer,
    make_client_keys,
    running_server,
)
from wol import Listener, listening

from esxi_suspend.simulator.fleet import Fleet, default_fleet
from esxi_suspend.simulator.host import HostModel


@pytest.fixture
def make_host() -> Iterator[MakeHost]:
    """`make(fleet=None, time_scale=0.002, **knobs)`: a HostModel of `fleet` (the default
    fleet) with `knobs` replaced in it; every one made is stopped after the test."""
    made: list[HostModel] = []

    def make(fleet: Fleet | None = None, time_scale: float = 0.002, **knobs: Any) -> HostModel:
        model = HostModel(replace(fleet or default_fleet(), **knobs), time_scale)
        made.append(model)
        return model

    yield make
    for model in made:
        model.stop()


def unavailable(reason: str) -> NoReturn:
    """Skip when a test needs what this machine lacks; on CI that is a failure."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: required)", pytrace=False)
    pytest.skip(reason)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item,
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Remember a failed call so the server fixture can print its log on teardown."""
    report: pytest.TestReport = yield
    if report.when == "call" and report.failed:
        item.stash[_CALL_FAILED] = True
    return report


_CALL_FAILED = pytest.StashKey[bool]()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Keep what every test printed (and logged) for the secrets check at the end."""
    for name, text in report.sections:
        outputs.record(f"{report.nodeid} {name}", text)


_SECRET_HITS = pytest.StashKey[list[str]]()
_BEFORE = pytest.StashKey[leftovers.Snapshot]()
_LEFTOVERS = pytest.StashKey[list[str]]()
_REMOVED = pytest.StashKey[list[str]]()


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[_BEFORE] = leftovers.snapshot(session.config.rootpath)


@pytest.hookimpl(trylast=True)  # after the session fixtures' teardown (pytest's runner)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """No secret in any output of the whole suite, and nothing left behind on the machine."""
    config = session.config
    hits = outputs.find_secrets(outputs.RECORDED, outputs.secret_needles())
    config.stash[_SECRET_HITS] = hits
    failed = bool(hits)
    before = config.stash.get(_BEFORE, None)
    if before is not None:
        config.stash[_REMOVED] = leftovers.clean(before)
        left = leftovers.leftovers(before, leftovers.snapshot(config.rootpath))
        config.stash[_LEFTOVERS] = left
        failed = failed or bool(left)
    if failed and session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    _report_leftovers(terminalreporter)
    hits = terminalreporter.config.stash.get(_SECRET_HITS, [])
    checked = sum(len(text) for _source, text in outputs.RECORDED)
    if hits:
        terminalreporter.section("SECRETS FOUND IN OUTPUT", red=True)
        for hit in hits:
            terminalreporter.line(hit, red=True)
    elif outputs.secret_needles():
        terminalreporter.line(
            f"secrets check: {len(outputs.RECORDED)} outputs, {checked} characters, "
            f"{len(outputs.secret_needles())} secret strings: no hit"
        )


def _report_leftovers(terminalreporter: pytest.TerminalReporter) -> None:
    config = terminalreporter.config
    if _LEFTOVERS not in config.stash:
        return
    left = config.stash[_LEFTOVERS]
    removed = config.stash.get(_REMOVED, [])
    cleaned = (
        f"; removed {len(removed)} lock file(s) or empty dir(s) the runs leave" if removed else ""
    )
    if not left:
        terminalreporter.line(
            f"leftovers check: /tmp, /run, {leftovers.LOCK_DIR}, {leftovers.NUT_RUN}, git status: "
            f"as before the session{cleaned}"
        )
        return
    terminalreporter.section("LEFTOVERS: THE SESSION CHANGED THE MACHINE", red=True)
    for line in left:
        terminalreporter.line(line, red=True)
    terminalreporter.line(
        f"{len(left)} difference(s) between the start and the end of the session{cleaned}. "
        "Whatever else ran on this machine meanwhile (an edit, another test run) shows here too."
    )


@pytest.fixture(scope="session")
def client_keys(tmp_path_factory: pytest.TempPathFactory) -> ClientKeys:
    try:
        keys = make_client_keys(tmp_path_factory.mktemp("client-keys"))
    except ServerUnavailable as error:
        unavailable(str(error))
    outputs.SECRET_STRINGS.append(keys.passphrase)
    outputs.SECRET_FILES.extend([keys.key, keys.passphrase_key, keys.stranger_key])
    return keys


def _serve(
    kind: ServerKind, tmp_path: Path, client_keys: ClientKeys, request: pytest.FixtureRequest
) -> Iterator[SshServer]:
    try:
        with running_server(kind, tmp_path / f"esxi-{kind}", client_keys) as server:
            yield server
            if request.node.stash.get(_CALL_FAILED, False):
                # shown under "Captured stdout teardown" of the failed test
                print(f"--- {kind} server log ({server.log_file}) ---\n{server.log()}")
    except ServerUnavailable as error:
        unavailable(str(error))


@pytest.fixture(params=KINDS)
def fake_esxi(
    request: pytest.FixtureRequest, tmp_path: Path, client_keys: ClientKeys
) -> Iterator[SshServer]:
    """A fake ESXi host per test, once behind OpenSSH and once behind dropbear."""
    yield from _serve(request.param, tmp_path, client_keys, request)


@pytest.fixture
def openssh_esxi(
    request: pytest.FixtureRequest, tmp_path: Path, client_keys: ClientKeys
) -> Iterator[SshServer]:
    yield from _serve("openssh", tmp_path, client_keys, request)


@pytest.fixture
def dropbear_esxi(
    request: pytest.FixtureRequest, tmp_path: Path, client_keys: ClientKeys
) -> Iterator[SshServer]:
    yield from _serve("dropbear", tmp_path, client_keys, request)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """A key file and a known_hosts for an env file (test_config.write_env fills them in)."""
    key = tmp_path / "id_ed25519"
    key.write_text("not checked here\n")
    key.chmod(0o600)
    known = tmp_path / "known_hosts"
    known.write_text("")
    return {"key": key, "known": known, "dir": tmp_path}


@pytest.fixture
def bmc(tmp_path: Path) -> Iterator[bmcs.SimulatedBmc]:
    """A BMC on 127.0.0.1 (OpenIPMI's ipmi_sim; bmc.py), the host's power on; its password is
    one of the secrets no output may hold."""
    if bmcs.PASSWORD not in outputs.SECRET_STRINGS:
        outputs.SECRET_STRINGS.append(bmcs.PASSWORD)
    try:
        with bmcs.running_bmc(tmp_path / "bmc") as running:
            yield running
    except bmcs.BmcUnavailable as error:
        unavailable(str(error))


@pytest.fixture
def listener() -> Iterator[Listener]:
    """A Wake-on-LAN listener on 127.0.0.1 (wol.py): where a test's magic packets go."""
    with listening() as udp:
        yield udp
