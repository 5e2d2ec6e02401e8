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


@pytest.fixture(scope="session")
def client_keys(tmp_path_factory: pytest.TempPathFactory) -> ClientKeys:
    try:
        return make_client_keys(tmp_path_factory.mktemp("client-keys"))
    except ServerUnavailable as error:
        unavailable(str(error))


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
