"""Shared fixtures: stand-in ONNX models for tests that need a model, not a good one.

And the hooks that make a missing required tool fail the suite under ``make test``
(:mod:`support.required_tools`).
"""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.fake_models import write_fake_models
from support.required_tools import enforce


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: Any, call: Any) -> Iterator[None]:
    outcome = yield
    enforce(outcome.get_result())  # type: ignore[attr-defined]


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: Any) -> Iterator[None]:
    outcome = yield
    enforce(outcome.get_result())  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def fake_models_dir(tmp_path_factory) -> Path:
    return write_fake_models(tmp_path_factory.mktemp("models"))
