"""Pseudonymization on a live Orthanc: the ScintiSeg section that turns it on with a known
secret, a synthetic NM file filled with identity, the pseudonyms to expect, and waiting for
the pseudonymized copy of a study to be segmented.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import urllib.error
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from scintiseg.app.config import strip_json_comments

from .orthanc_harness import ROOT, OrthancServer, wait_for

SECRET = "integration-secret-0123456789abcdef"


def scintiseg_section(**anonymization: Any) -> dict[str, Any]:
    config = json.loads(strip_json_comments((ROOT / "orthanc.json").read_text()))
    section = dict(config["ScintiSeg"])
    section["Anonymization"] = {"Enabled": True, "Secret": SECRET, **anonymization}
    return section


def with_identity(path: Path, seed: int) -> Dataset:
    """Fill a synthetic NM file with every kind of identifying value."""
    ds = pydicom.dcmread(path)
    ds.AccessionNumber = f"ACC{seed:05d}X"
    ds.InstitutionName = "Clinique Secrete du Lac"
    ds.InstitutionAddress = "12 rue Cachee, Geneve"
    ds.ReferringPhysicianName = "HOUSE^GREGORY"
    ds.OperatorsName = "NURSE^RATCHED"
    ds.PatientAddress = "7 Hidden Lane"
    ds.StudyID = f"STUDY{seed}"
    other = Dataset()
    other.PatientID = f"OTHERID{seed:04d}"
    other.IssuerOfPatientID = "HOSPITAL-B"
    ds.OtherPatientIDsSequence = Sequence([other])
    block = ds.private_block(0x0099, "SECRET VENDOR", create=True)
    block.add_new(0x01, "LO", f"private copy of {ds.PatientName}")
    ds.save_as(path, enforce_file_format=True)
    return ds


def pseudonym(prefix: str, value: str) -> str:
    return prefix + hmac.new(SECRET.encode(), value.encode(), hashlib.sha256).hexdigest()[:12]


def study_ids(orthanc: OrthancServer) -> list[str]:
    return [str(s) for s in orthanc.get("/studies")]


def wait_pseudonymized(orthanc: OrthancServer, patient_id: str, timeout: float) -> tuple[str, dict[str, Any]]:
    """The pseudonymized study of ``patient_id`` once it is segmented: (study id, result)."""
    wanted = pseudonym("ID_", patient_id)

    def probe() -> tuple[str, dict[str, Any]] | None:
        for sid in study_ids(orthanc):
            try:
                study = orthanc.get(f"/studies/{sid}")
            except urllib.error.HTTPError:  # the original, deleted meanwhile
                continue
            if study["PatientMainDicomTags"].get("PatientID") == wanted:
                result = orthanc.result(sid)
                if result and result["status"] == "done":
                    return sid, result
        return None

    return wait_for(f"the pseudonymized study of {patient_id} to be segmented", probe, timeout)
