"""Fixtures of the integration tests: a real Orthanc with the real plugin.

The ``orthanc`` fixture is shared by a module's tests (one start, about 2 s);
tests that stop and restart Orthanc use ``new_orthanc``, a server of their own.
Both skip when Orthanc, orthanc-python or dcmtk are not installed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.fake_models import write_fake_models
from support.orthanc_harness import VERSIONS_SEEN, OrthancServer, missing_tools, serving, trained_models
from support.pg_harness import PostgresServer


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Which Orthanc, Python plugin and Python the integration tests ran against."""
    for line in sorted(VERSIONS_SEEN):
        terminalreporter.write_line(f"Orthanc under test: {line}")


# -- fixtures ------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trained models if there are any, else fake ones."""
    return trained_models() or write_fake_models(tmp_path_factory.mktemp("fake-models"))


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[OrthancServer]:
    yield from serving(tmp_path_factory.mktemp("orthanc"), models_dir)


@pytest.fixture
def new_orthanc(tmp_path: Path, models_dir: Path) -> Iterator[OrthancServer]:
    """A server of the test's own (to stop and restart)."""
    missing = missing_tools()
    if missing:
        pytest.skip(missing)
    server = OrthancServer(data=tmp_path / "orthanc", models=models_dir)
    try:
        yield server
    finally:
        server.stop()


# -- PostgreSQL (the cluster's tests) --------------------------------------------------------
@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A private PostgreSQL server for the session; a missing server is a failure, not a skip."""
    from support.pg_harness import missing_postgres

    missing = missing_postgres()
    if missing:
        pytest.fail(missing)
    server = PostgresServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_uri(postgres: PostgresServer, request: pytest.FixtureRequest) -> str:
    """A fresh database of the session's server, for one test."""
    import re

    name = "t_" + re.sub(r"[^a-z0-9]+", "_", request.node.name.lower())[:50]
    return postgres.create_database(f"{name}_{id(request) % 100000}")
