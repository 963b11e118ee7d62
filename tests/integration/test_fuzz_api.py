"""Fuzzing the /scintiseg/ REST API from docs/openapi.yaml with schemathesis, on the real Orthanc.

Every operation of the description gets generated requests (ids, bodies); each answer
must be no server error and conform to the description (status code, content type,
schema). Kept to a few dozen requests per
operation so that the suite can afford it (well under a minute).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import unsupported_method
from support.orthanc_harness import OrthancServer

pytestmark = pytest.mark.integration

SCHEMA = schemathesis.openapi.from_path(str(Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"))


@SCHEMA.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_api_answers_as_described(case: schemathesis.Case, orthanc: OrthancServer) -> None:
    # methods the description does not list are answered by Orthanc's own HTTP server
    # (400 for TRACE, 405 with Allow for the others): not this API's to describe
    case.call_and_validate(base_url=orthanc.url, excluded_checks=[unsupported_method])
