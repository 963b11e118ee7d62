"""Helpers of the browser tests: prerequisites, the server under test, the processed study.

The server is the integration tests' :class:`support.orthanc_harness.OrthancServer`
(``scripts/run-orthanc.sh``, free loopback ports, trained or fake models).
``SCINTISEG_E2E_URL=http://host:port`` runs the tests against a server that is
already running instead (the study is then uploaded with ``POST /instances``).

Prerequisites come from ``scripts/setup-e2e.sh`` (Chromium, ``playwright-core``,
the OHIF site). Missing ones skip the tests with the command to run, and so does
a server that does not serve ``/ohif/`` and ``/dicom-web/``, unless
``SCINTISEG_E2E_REQUIRED=1`` (``make e2e``) turns those skips into failures.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .orthanc_harness import (
    OrthancServer,
    wait_for,
)

ROOT = Path(__file__).resolve().parents[2]
E2E = ROOT / "tests" / "e2e"

CHROMIUM = os.environ.get("SCINTISEG_CHROMIUM", "/usr/bin/chromium")
OHIF_SITE = ROOT / "build" / "ohif" / "site"
REQUIRED = os.environ.get("SCINTISEG_E2E_REQUIRED") == "1"


def skip_or_fail(reason: str) -> None:
    if REQUIRED:
        pytest.fail(reason)
    pytest.skip(reason)


def missing_browser_tools() -> str | None:
    if not os.access(CHROMIUM, os.X_OK):
        return f"Chromium not found at {CHROMIUM} (scripts/setup-e2e.sh)"
    if shutil.which("node") is None:
        return "Node.js not found (scripts/setup-e2e.sh)"
    if not (E2E / "node_modules" / "playwright-core").is_dir():
        return "playwright-core is not installed in tests/e2e (scripts/setup-e2e.sh)"
    if not (OHIF_SITE / "index.html").is_file():
        return "the OHIF viewer is not installed in build/ohif (scripts/setup-ohif.sh)"
    return None


@dataclass
class Server:
    """What the browser tests need of a server: its URL and a way to put a study in."""

    url: str
    harness: OrthancServer | None = None

    def request(self, method: str, path: str, body: bytes | None = None) -> bytes:
        req = urllib.request.Request(self.url + path, data=body, method=method)
        with urllib.request.urlopen(req, timeout=30) as answer:
            return bytes(answer.read())

    def get(self, path: str) -> Any:
        return json.loads(self.request("GET", path))

    def status(self, path: str) -> int:
        try:
            with urllib.request.urlopen(self.url + path, timeout=30) as answer:
                return int(answer.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except OSError:
            return 0

    def study_id(self, study_uid: str) -> str | None:
        found = json.loads(self.request("POST", "/tools/lookup", study_uid.encode()))
        return next((f["ID"] for f in found if f["Type"] == "Study"), None)

    def wait_result(self, study_uid: str, timeout: float = 90) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            sid = self.study_id(study_uid)
            if sid is None:
                return None
            meta = self.get(f"/studies/{sid}/metadata?expand")
            text = meta.get("ScintiSegResult")
            result = json.loads(text) if text else None
            return result if result and result.get("status") in ("done", "failed", "skipped") else None

        return wait_for(f"ScintiSeg's result on {study_uid}", done, timeout, every=0.5)


@dataclass
class ProcessedStudy:
    study_uid: str
    study_id: str
    result: dict[str, Any]
