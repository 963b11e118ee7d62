"""Physician labels on a live Orthanc: sending a label object as OHIF saves one (DICOMweb
STOW-RS) and reading the study's label records from the ScintiSeg REST API.
"""

from __future__ import annotations

import io
import json
import urllib.request
import uuid
from typing import Any

import pydicom

from .openapi_check import check_answer, load_spec
from .orthanc_harness import OrthancServer


def stow(orthanc: OrthancServer, ds: pydicom.Dataset) -> dict[str, Any]:
    """STOW-RS to Orthanc's DICOMweb, as OHIF saves a segmentation."""
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n").encode() + buf.getvalue() + (
        f"\r\n--{boundary}--\r\n").encode()
    req = urllib.request.Request(
        orthanc.url + "/dicom-web/studies", data=body, method="POST",
        headers={"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
                 "Accept": "application/dicom+json"},
    )
    with urllib.request.urlopen(req, timeout=30) as answer:
        return dict(json.loads(answer.read()))


def labels(orthanc: OrthancServer, sid: str) -> list[dict[str, Any]]:
    """The study's label records (``GET /scintiseg/studies/{id}/labels``, checked against the spec)."""
    path = f"/scintiseg/studies/{sid}/labels"
    data = orthanc.request("GET", path)
    check_answer(load_spec(), "GET", path, 200, "application/json", data)
    return list(json.loads(data)["labels"])
