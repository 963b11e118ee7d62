"""Fixtures of the integration tests: a real Orthanc with the real plugin.

The ``orthanc`` fixture is shared by a module's tests (one start, about 2 s);
tests that stop and restart Orthanc use ``new_orthanc``, a server of their own.
Both skip when Orthanc, orthanc-python or dcmtk are not installed.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fake_models import write_fake_models  # noqa: E402
from orthanc_harness import VERSIONS_SEEN, OrthancServer, missing_tools, serving, trained_models  # noqa: E402


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
