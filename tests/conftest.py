"""Fixtures: real SSH servers on 127.0.0.1 standing in for ESXi hosts (see sshservers.py).

`fake_esxi` runs each test against OpenSSH (ESXi 5.x and later) and dropbear (ESXi 4.x);
`openssh_esxi` and `dropbear_esxi` pick one. A missing server binary skips those tests
locally and fails them when CI=true.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import NoReturn

import outputs
import pytest
from sshservers import (
    KINDS,
    ClientKeys,
    ServerKind,
    ServerUnavailable,
    SshServer,
    make_client_keys,
    running_server,
)


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


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """No secret in any output of the whole suite: passphrase and private key material."""
    hits = outputs.find_secrets(outputs.RECORDED, outputs.secret_needles())
    session.config.stash[_SECRET_HITS] = hits
    if hits:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
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
