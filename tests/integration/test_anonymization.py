"""Pseudonymization on arrival, on the real Orthanc with storescu.

A study full of identity (patient, accession, institution, physicians, a private tag, an
identity sequence) arrives; the plugin copies it through Orthanc's anonymization with the
keyed pseudonyms, deletes the original and segments the copy only. Every element of every
instance of the copy (NM, SEG, preview) and the ScintiSeg result are scanned for the source's
identifying values.
"""

from __future__ import annotations

import json
import urllib.error
from pathlib import Path

import pydicom
import pytest
from support.anonymization import SECRET, pseudonym, scintiseg_section, study_ids, wait_pseudonymized, with_identity
from support.identity_scan import identifying_values, leaks_in_bytes, leaks_in_dataset
from support.orthanc_harness import STABLE_AGE, OrthancServer, make_study, missing_tools, wait_for


@pytest.fixture
def anon_orthanc(tmp_path: Path, models_dir: Path):  # type: ignore[no-untyped-def]
    missing = missing_tools()
    if missing:
        pytest.fail(missing)
    server = OrthancServer(data=tmp_path / "orthanc", models=models_dir,
                           extra_config={"ScintiSeg": scintiseg_section()})
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_arrival_is_pseudonymized_the_original_deleted_and_nothing_identifying_left(
    anon_orthanc: OrthancServer, tmp_path: Path
) -> None:
    orthanc = anon_orthanc
    study = make_study(tmp_path / "in", seed=31, images=2, kind="cold_nodules")
    sources = [with_identity(p, 31) for p in study.files]
    values = identifying_values(sources, extra=[str(sources[0].StudyDate)])
    assert {"INT000031", "ACC00031X", "HOUSE", "Clinique Secrete du Lac", sources[0].SOPInstanceUID} <= values
    assert len(leaks_in_dataset(sources[0], values)) > 15  # the scan finds the identity where it is
    orthanc.storescu(study.files)
    sid, result = wait_pseudonymized(orthanc, "INT000031", STABLE_AGE + 60)
    orthanc.wait_idle(60)

    # the original is gone, the copy is the only study, with the keyed pseudonyms
    assert study_ids(orthanc) == [sid]
    assert orthanc.study_id(study.study_uid) is None
    tags = orthanc.get(f"/studies/{sid}")
    assert tags["PatientMainDicomTags"]["PatientName"] == pseudonym("Th_", "INTEGRATION^CASE31")
    assert tags["MainDicomTags"]["AccessionNumber"] == pseudonym("TA_", "ACC00031X")
    assert len(result["images"]) == 2 and all(e["status"] == "done" for e in result["images"].values())

    # every element of every instance, sequences and private tags included
    modalities = orthanc.series_by_modality(sid)
    assert set(modalities) >= {"NM", "SEG"}
    leaks = []
    for instance_ids in modalities.values():
        for iid in instance_ids:
            ds = orthanc.instance(iid)
            leaks += [f"{ds.Modality} {iid}: {leak}" for leak in leaks_in_dataset(ds, values)]
            if ds.Modality == "NM":
                assert ds.PatientIdentityRemoved == "YES"
                assert not any(elem.tag.is_private for elem in ds)
    assert leaks == []
    raw_result = orthanc.request("GET", f"/studies/{sid}/metadata/ScintiSegResult")
    assert leaks_in_bytes(raw_result, values) == []
    api = orthanc.request("GET", f"/scintiseg/studies/{sid}")
    assert leaks_in_bytes(api, values) == []

    # the secret appears in no answer and no log line
    for path in ("/scintiseg/status", "/scintiseg/health", "/scintiseg/models", "/scintiseg/queue"):
        assert SECRET.encode() not in orthanc.request("GET", path)
    assert SECRET not in orthanc.log()

    # the same patient sent again (another study) gets the same pseudonym; nothing is re-anonymized
    again = make_study(tmp_path / "again", seed=31, images=1)
    for path in again.files:
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID = ds.StudyInstanceUID + ".2"
        ds.SeriesInstanceUID = ds.SeriesInstanceUID + ".2"
        ds.SOPInstanceUID = ds.SOPInstanceUID + ".2"
        ds.save_as(path, enforce_file_format=True)
    orthanc.storescu(again.files)

    def two_studies() -> bool:
        ids = study_ids(orthanc)
        try:
            return len(ids) == 2 and all(
                orthanc.get(f"/studies/{s}")["PatientMainDicomTags"]["PatientID"] == pseudonym("ID_", "INT000031")
                for s in ids
            )
        except urllib.error.HTTPError:  # an original deleted meanwhile
            return False

    wait_for("the second study's pseudonymized copy", two_studies, STABLE_AGE + 60)
    orthanc.wait_idle(60)
    assert len(orthanc.get("/patients")) == 1


def test_kept_original_is_never_segmented_and_sending_it_again_adds_no_copy(
    tmp_path: Path, models_dir: Path
) -> None:
    missing = missing_tools()
    if missing:
        pytest.fail(missing)
    orthanc = OrthancServer(data=tmp_path / "orthanc", models=models_dir,
                            extra_config={"ScintiSeg": scintiseg_section(KeepOriginal=True, Dates="Shift")})
    orthanc.start()
    try:
        study = make_study(tmp_path / "in", seed=32, images=1)
        orthanc.storescu(study.files)
        sid, _ = wait_pseudonymized(orthanc, "INT000032", STABLE_AGE + 60)
        original = orthanc.study_id(study.study_uid)
        assert original is not None and original != sid
        kept = orthanc.result(original)
        assert kept is not None and kept["status"] == "skipped" and kept["pseudonymized_study"] == sid
        assert set(orthanc.series_by_modality(original)) == {"NM"}  # no SEG on the original
        copy = orthanc.instance(orthanc.series_by_modality(sid)["NM"][0])
        source = pydicom.dcmread(study.files[0])
        assert copy.StudyDate and copy.StudyDate < source.StudyDate  # shifted, not removed

        orthanc.storescu(study.files)  # the same images once more
        orthanc.restart()  # and the start-up scan passes over the original again
        orthanc.wait_idle(60)
        assert len(orthanc.get(f"/studies/{sid}/instances")) == 3  # NM + SEG + preview, no duplicate
        assert sorted(study_ids(orthanc)) == sorted([sid, original])
    finally:
        orthanc.stop()


def test_orthanc_refuses_to_start_without_a_secret(tmp_path: Path, models_dir: Path) -> None:
    missing = missing_tools()
    if missing:
        pytest.fail(missing)
    section = scintiseg_section()
    del section["Anonymization"]["Secret"]
    orthanc = OrthancServer(data=tmp_path / "orthanc", models=models_dir, extra_config={"ScintiSeg": section})
    with pytest.raises(AssertionError, match="Secret is required"):
        orthanc.start()
    orthanc.stop()


def test_a_copy_left_half_way_is_completed_without_duplicates_at_the_next_start(
    tmp_path: Path, models_dir: Path
) -> None:
    """Orthanc stopped after copying one of two images: the original is intact; at the next
    start the scan finds it, the copy is completed (the first image stored again as
    AlreadyStored) and only then is the original deleted."""
    missing = missing_tools()
    if missing:
        pytest.fail(missing)
    from scintiseg.intake.anonymize import AnonymizationConfig, orthanc_request

    off = scintiseg_section()
    off["Enabled"] = False  # the worker does not run: the state Orthanc was left in
    orthanc = OrthancServer(data=tmp_path / "orthanc", models=models_dir, extra_config={"ScintiSeg": off})

    def disabled() -> bool:
        try:
            return bool(orthanc.get("/scintiseg/status")["state"] == "disabled")
        except OSError:  # not answering yet
            return False

    orthanc._plugin_running = disabled  # type: ignore[method-assign]  # started, but not working
    orthanc.start()
    study = make_study(tmp_path / "in", seed=33, images=2)
    orthanc.storescu(study.files)
    original = wait_for("the original", lambda: orthanc.study_id(study.study_uid), 30)
    first = sorted(orthanc.series_by_modality(original)["NM"])[0]
    request = orthanc_request(AnonymizationConfig(enabled=True, secret=SECRET),
                              orthanc.get(f"/instances/{first}/simplified-tags"))
    copy = orthanc.request("POST", f"/instances/{first}/anonymize", json.dumps(request).encode())
    assert orthanc.upload(copy)["Status"] == "Success"
    assert len(study_ids(orthanc)) == 2  # the original (2 images) and a half copy (1 image)
    orthanc.stop()

    del orthanc._plugin_running  # type: ignore[attr-defined]
    orthanc.extra_config = {"ScintiSeg": scintiseg_section()}
    orthanc.start()
    try:
        sid, result = wait_pseudonymized(orthanc, "INT000033", STABLE_AGE + 60)
        orthanc.wait_idle(60)
        assert study_ids(orthanc) == [sid] and orthanc.study_id(study.study_uid) is None
        assert len(orthanc.series_by_modality(sid)["NM"]) == 2  # no duplicate of the first image
        assert len(result["images"]) == 2
    finally:
        orthanc.stop()
