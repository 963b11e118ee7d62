"""Shared fixtures: stand-in ONNX models for tests that need a model, not a good one."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from integration.fake_models import write_fake_models  # noqa: E402


@pytest.fixture(scope="session")
def fake_models_dir(tmp_path_factory) -> Path:
    return write_fake_models(tmp_path_factory.mktemp("models"))
