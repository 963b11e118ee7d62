"""Under ``make test`` a test must fail, not skip, when a tool the suite needs is missing.

The integration and browser tests skip with a reason naming the missing tool
(``orthanc_harness.missing_tools``, ``e2e_harness.missing_browser_tools``), so
that a developer without Orthanc can still run the unit tests. ``make test``
(``.ci/run``) sets ``SCINTISEG_TOOLS_REQUIRED=1``: then the hooks in
``tests/conftest.py`` turn every skip whose reason names one of
:data:`REQUIRED_TOOLS` into a failure, at collection and at run time, whichever
helper raised it. ``tests/unit/test_required_tools.py`` proves it by running
pytest with ``storescu`` and Chromium out of reach.
"""

from __future__ import annotations

import os
import re
from typing import Any

ENV = "SCINTISEG_TOOLS_REQUIRED"

#: What ``make setup`` / ``make e2e-setup`` install, as the skip reasons name it.
REQUIRED_TOOLS = re.compile(
    r"Orthanc is not installed|orthanc-python|orthanc-dicomweb|storescu|dciodvfy|Chromium|Node\.js"
    r"|playwright-core|OHIF viewer is not installed",
    re.IGNORECASE,
)


def required() -> bool:
    return os.environ.get(ENV) == "1"


def skip_reason(report: Any) -> str:
    """The reason of a skipped report (pytest keeps it as (file, line, reason))."""
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


def enforce(report: Any) -> None:
    """Turn a skip for a missing required tool into a failure (when required)."""
    if not (required() and report.skipped):
        return
    reason = skip_reason(report)
    if REQUIRED_TOOLS.search(reason):
        report.outcome = "failed"
        report.longrepr = f"a tool the suite needs is missing ({ENV}=1, make test): {reason}"
