"""Pseudonymization: keyed pseudonyms, the Orthanc request, the copy-then-delete job, the config."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
from pathlib import Path

import pydicom
import pytest
from support.fake_gateway import FakeGateway

from scintiseg.app.config import ConfigError, load_config
from scintiseg.core.store import GatewayError
from scintiseg.intake.anonymize import (
    AnonymizationConfig,
    Anonymizer,
    date_shift_days,
    is_pseudonymous,
    keyed_uid,
    orthanc_request,
    parse_anonymization,
    pseudonym,
    shift_date,
)
from scintiseg_phantoms.dicom import scan_to_dataset
from scintiseg_phantoms.thyroid import generate_scan

SECRET = "a-test-secret-of-32-characters!!"
CONFIG = AnonymizationConfig(enabled=True, secret=SECRET)


def nm(patient_id: str = "PAT-0042", name: str = "DOE^JANE", n: int = 0, study: str = "1.2.3.4") -> pydicom.Dataset:
    scan = generate_scan(7 + n, matrix=64)
    ds = scan_to_dataset(scan, patient_id=patient_id, patient_name=name, study_uid=study,
                         series_uid=study + ".1", sop_uid=f"{study}.1.{n}", instance_number=n + 1)
    ds.AccessionNumber = "ACC-778"
    ds.InstitutionName = "Hopital Secret"
    return ds


def test_pseudonyms_are_the_keyed_hmac_with_the_department_prefixes() -> None:
    mac = hmac.new(SECRET.encode(), b"PAT-0042", hashlib.sha256).hexdigest()
    assert pseudonym(SECRET, "PatientID", "PAT-0042") == "ID_" + mac[:12]
    assert pseudonym(SECRET, "PatientName", "DOE^JANE").startswith("Th_")
    assert pseudonym(SECRET, "AccessionNumber", "ACC-778").startswith("TA_")
    assert pseudonym(SECRET, "PatientID", "PAT-0042") == pseudonym(SECRET, "PatientID", "PAT-0042")
    assert pseudonym(SECRET, "PatientID", "PAT-0042") != pseudonym("another-secret-of-enough-size", "PatientID",
                                                                    "PAT-0042")
    assert keyed_uid(SECRET, "1.2.3") == keyed_uid(SECRET, "1.2.3") != keyed_uid(SECRET, "1.2.4")
    assert keyed_uid(SECRET, "1.2.3").startswith("2.25.") and len(keyed_uid(SECRET, "1.2.3")) <= 64


def test_marker_recognises_pseudonymous_patients_only() -> None:
    tags = {"PatientID": pseudonym(SECRET, "PatientID", "x"), "PatientName": pseudonym(SECRET, "PatientName", "y")}
    assert is_pseudonymous(tags)
    assert not is_pseudonymous({"PatientID": "PAT-0042", "PatientName": tags["PatientName"]})
    assert not is_pseudonymous({"PatientID": "ID_123", "PatientName": "Th_123"})
    assert not is_pseudonymous({})


def test_request_replaces_identity_and_uids_and_follows_the_date_mode() -> None:
    tags = {"PatientID": "PAT-0042", "PatientName": "DOE^JANE", "AccessionNumber": "ACC-778",
            "StudyInstanceUID": "1.2.3.4", "SeriesInstanceUID": "1.2.3.4.1", "SOPInstanceUID": "1.2.3.4.1.0",
            "StudyDate": "20240310", "StudyTime": "101500", "InstanceCreationDate": "20240310"}
    body = orthanc_request(CONFIG, tags)
    assert body["Force"] is True and body["KeepPrivateTags"] is False
    assert body["Replace"]["PatientID"] == pseudonym(SECRET, "PatientID", "PAT-0042")
    assert body["Replace"]["SOPInstanceUID"] == keyed_uid(SECRET, "1.2.3.4.1.0")
    assert "StudyDate" not in body["Replace"] and body["Remove"] == ["InstanceCreationDate"]
    keep = orthanc_request(AnonymizationConfig(enabled=True, secret=SECRET, dates="Keep"), tags)
    assert {"StudyDate", "StudyTime", "InstanceCreationDate"} <= set(keep["Keep"])
    shift = orthanc_request(AnonymizationConfig(enabled=True, secret=SECRET, dates="Shift"), tags)
    days = date_shift_days(SECRET, "PAT-0042", 365)
    assert 1 <= days <= 365
    assert shift["Replace"]["StudyDate"] == shift_date("20240310", days) != "20240310"
    assert SECRET not in json.dumps(body)


def test_copy_then_delete_keeps_nothing_of_the_identity() -> None:
    gw = FakeGateway()
    for n in range(2):
        gw.add(nm(n=n))
    original = gw.study_id(nm())
    anonymizer = Anonymizer(CONFIG, gw)
    outcome = anonymizer.run(original)
    assert outcome is not None and outcome.complete and outcome.copied == 2 and outcome.deleted == 2
    assert not gw.study_exists(original)
    assert outcome.pseudonymized is not None and gw.study_exists(outcome.pseudonymized)
    assert anonymizer.run(outcome.pseudonymized) is None  # pseudonymous: never again
    for inst in gw.instances.values():
        ds = pydicom.dcmread(io.BytesIO(inst.data))
        text = str(ds)
        for secret_value in ("PAT-0042", "DOE", "ACC-778", "Hopital", "1.2.3.4"):
            assert secret_value not in text
        assert is_pseudonymous(ds)


def test_a_failure_half_way_keeps_the_original_and_a_rerun_adds_no_duplicate() -> None:
    gw = FakeGateway()
    for n in range(3):
        gw.add(nm(n=n))
    original = gw.study_id(nm())
    stored = []

    def fail_third(data: bytes) -> None:
        stored.append(data)
        if len(stored) == 3:
            raise GatewayError("Orthanc stopped")

    gw.on_store = fail_third
    anonymizer = Anonymizer(CONFIG, gw)
    first = anonymizer.run(original)
    assert first is not None and not first.complete
    assert gw.study_exists(original) and len([i for i in gw.study_of.values() if i == original]) == 3
    gw.on_store = None
    second = anonymizer.run(original)
    assert second is not None and second.complete and second.copied == 3
    assert not gw.study_exists(original)
    assert len(gw.instances) == 3  # the two copies of the first run were stored again, not duplicated


def test_kept_original_is_marked_and_copied_once() -> None:
    gw = FakeGateway()
    gw.add(nm())
    original = gw.study_id(nm())
    anonymizer = Anonymizer(AnonymizationConfig(enabled=True, secret=SECRET, keep_original=True), gw)
    outcome = anonymizer.run(original)
    assert outcome is not None and outcome.deleted == 0 and gw.study_exists(original)
    result = gw.result(original)
    assert result is not None and result["status"] == "skipped"
    assert result["pseudonymized_study"] == outcome.pseudonymized
    anonymize_calls = gw.count("anonymize_instance")
    again = anonymizer.run(original)  # unchanged since: not copied again
    assert again is not None and again.pseudonymized == outcome.pseudonymized and again.copied == 0
    assert gw.count("anonymize_instance") == anonymize_calls
    gw.add(nm(n=1))  # a late image of the kept original: copied, the first one stored again
    late = anonymizer.run(original)
    assert late is not None and late.copied == 2 and late.pseudonymized == outcome.pseudonymized
    assert len(gw.instances) == 4  # two originals and their two copies, no duplicate


def test_config_requires_a_secret_and_never_shows_it(tmp_path: Path) -> None:
    base = {"UserMetadata": {"ScintiSegResult": 4242}}
    models = {"SCINTISEG_MODELS": str(tmp_path)}  # the models folder has no default
    with pytest.raises(ConfigError, match="Secret is required"):
        load_config({**base, "ScintiSeg": {"Anonymization": {"Enabled": True}}}, root=tmp_path, environ=models)
    with pytest.raises(ConfigError, match="at least 16"):
        load_config({**base, "ScintiSeg": {"Anonymization": {"Enabled": True, "Secret": "short"}}},
                    root=tmp_path, environ=models)
    with pytest.raises(ValueError, match="Keep may not name .*PatientID"):
        parse_anonymization({"Keep": ["PatientID"]}, {})
    with pytest.raises(ValueError, match="unknown option"):
        parse_anonymization({"Enable": True}, {})
    config = load_config({**base, "ScintiSeg": {"Anonymization": {"Enabled": True, "Secret": SECRET}}},
                         root=tmp_path, environ=models)
    assert config.anonymization.enabled and config.anonymization.secret == SECRET
    assert SECRET not in repr(config)
    from_env = load_config({**base, "ScintiSeg": {"Anonymization": {"Enabled": True}}}, root=tmp_path,
                           environ={**models, "SCINTISEG_ANONYMIZATION_SECRET": SECRET})
    assert from_env.anonymization.secret == SECRET
    assert not load_config(base, root=tmp_path, environ=models).anonymization.enabled
