"""The per-study job against a fake gateway and pipeline (no Orthanc, no models)."""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest
from support.fake_gateway import FakeGateway, FakePipeline, ct_dataset
from support.nm_fixtures import make_nm

from scintiseg.core.result import ImageEntry, Status, StudyResult
from scintiseg.core.store import GatewayError
from scintiseg.dicom.nm import UnreadableImageError
from scintiseg.work.jobs import (
    StudyJobs,
    needs_work,
    study_status,
)
from scintiseg.work.selection import Selection, radiopharmaceutical_text

MODELS = ["scintiseg-gland@1.0.0", "scintiseg-nodule@1.0.0"]


def make_jobs(gw: FakeGateway, pipe: FakePipeline | None = None, **selection: object) -> StudyJobs:
    rules = Selection(**selection)  # type: ignore[arg-type]
    pipe = pipe or FakePipeline()
    return StudyJobs(gw, lambda: pipe, rules, ["CPUExecutionProvider"])


def nm_study(gw: FakeGateway, seed: int = 0, images: int = 1) -> tuple[str, list[str]]:
    """An NM study of ``images`` single-frame images (same series) in the fake store."""
    first = make_nm(seed=seed)
    ids = []
    for n in range(images):
        ds = make_nm(seed=seed, rows=64 + n)  # another matrix: another SOP Instance UID
        ds.StudyInstanceUID = first.StudyInstanceUID
        ds.SeriesInstanceUID = first.SeriesInstanceUID
        ids.append(gw.add(ds))
    return gw.study_id(first), ids


def test_nm_study_gets_one_seg_per_image_and_a_done_result() -> None:
    gw, pipe = FakeGateway(), FakePipeline()
    study, ids = nm_study(gw, images=2)
    result = make_jobs(gw, pipe).run(study)
    assert result is not None and result.status == Status.DONE
    assert len(pipe.processed) == 2 and gw.count("store_instance") == 2
    stored = gw.result(study)
    assert stored == result.to_dict()
    assert stored["models"] == MODELS and stored["providers"] == ["CPUExecutionProvider"]
    assert len(stored["seg_instance_ids"]) == 2
    for entry in stored["images"].values():
        assert entry["status"] == Status.DONE and entry["source_instance_id"] in ids
        for key in ("fetch_ms", "parse_ms", "seg_write_ms", "store_ms", "gland_inference_ms"):
            assert key in entry["timings_ms"]
    assert stored["timings_ms"]["store_ms"] >= 0 and "job_ms" in stored["timings_ms"]
    # the SEGs joined the study (as in Orthanc), in a SEG series
    assert {i.modality for i in gw.instances.values()} == {"NM", "SEG"}


def test_stable_again_after_our_seg_does_nothing() -> None:
    gw, pipe = FakeGateway(), FakePipeline()
    study, _ = nm_study(gw)
    jobs = make_jobs(gw, pipe)
    jobs.run(study)
    writes, fetches = gw.count("write_result"), gw.count("instance_file")
    again = jobs.run(study)  # the study turns stable again once our SEG has arrived
    assert again is not None and again.status == Status.DONE
    assert gw.count("write_result") == writes, "nothing to do must write nothing"
    assert gw.count("instance_file") == fetches and len(pipe.processed) == 1
    assert not needs_work(gw.typed_result(study), str(gw.last_update[study]))


def test_new_image_later_is_processed_alone() -> None:
    gw, pipe = FakeGateway(), FakePipeline()
    study, _ = nm_study(gw)
    jobs = make_jobs(gw, pipe)
    jobs.run(study)
    late = make_nm(seed=0, rows=100)
    late.StudyInstanceUID = make_nm(seed=0).StudyInstanceUID
    gw.add(late)
    assert needs_work(gw.typed_result(study), str(gw.last_update[study]))
    result = jobs.run(study)
    assert result is not None and result.status == Status.DONE
    assert pipe.processed[-1] == str(late.SOPInstanceUID) and len(pipe.processed) == 2
    assert len(result.images) == 2 and len(result.seg_instance_ids) == 2


def test_an_upgrade_reprocesses_only_when_asked() -> None:
    gw = FakeGateway()
    study, ids = nm_study(gw, images=2)
    make_jobs(gw).run(study)
    old_segs = set(gw.result(study)["seg_instance_ids"])
    new = FakePipeline(version="2")
    upgraded = StudyJobs(gw, lambda: new, Selection())
    # the start-up scan does not requeue the database after an upgrade...
    assert not needs_work(gw.typed_result(study), str(gw.last_update[study]))
    # ...unless ReprocessOnUpgrade: the study was made by a superseded version
    assert needs_work(gw.typed_result(study), str(gw.last_update[study]), new.outdated)
    again = upgraded.run(study)  # turning stable again: the images stay as they were
    assert again is not None and new.processed == [] and again.models == MODELS
    result = upgraded.run(study, upgrade=True)  # POST .../process
    assert result is not None and result.status == Status.DONE and len(new.processed) == 2
    assert result.models == ["scintiseg-gland@2.0.0", "scintiseg-nodule@2.0.0"]
    for entry in result.images.values():
        assert entry.models == new.models
    # a new SEG series is added; the old one kept (DeleteSupersededSeg is off)
    assert old_segs <= set(gw.instances) and not old_segs & set(result.seg_instance_ids)
    assert upgraded.run(study, upgrade=True) == result and len(new.processed) == 2  # nothing left to do


def test_reprocess_on_upgrade_and_delete_superseded_seg() -> None:
    gw = FakeGateway()
    study, _ = nm_study(gw)
    make_jobs(gw).run(study)
    (old_seg,) = gw.result(study)["seg_instance_ids"]
    new = FakePipeline(version="2")
    jobs = StudyJobs(gw, lambda: new, Selection(), reprocess_on_upgrade=True, delete_superseded_seg=True)
    result = jobs.run(study)
    assert result is not None and len(new.processed) == 1
    (new_seg,) = result.seg_instance_ids
    assert new_seg in gw.instances and old_seg not in gw.instances and gw.count("delete_instance") == 1


def test_a_job_keeps_the_models_it_started_with() -> None:
    gw = FakeGateway()
    study, _ = nm_study(gw, images=3)
    first, second = FakePipeline(version="1"), FakePipeline(version="2")
    snapshots = iter([first, second, second])
    jobs = StudyJobs(gw, lambda: next(snapshots), Selection())
    result = jobs.run(study)  # the registry "reloads" after the job's start: no effect on it
    assert result is not None and result.status == Status.DONE
    assert len(first.processed) == 3 and second.processed == []
    assert result.models == MODELS


def test_a_study_no_model_applies_to_is_skipped_from_the_index() -> None:
    gw, pipe = FakeGateway(), FakePipeline()
    study, _ = nm_study(gw)
    pipe.applies = lambda modality, description: "bone" in description.lower()
    result = make_jobs(gw, pipe).run(study)
    assert result is not None and result.status == Status.SKIPPED
    assert "no active model applies to the series" in result.reason
    assert gw.count("instance_file") == 0 and gw.count("series_instances") == 0


def test_an_image_no_model_applies_to_is_skipped_with_the_reason() -> None:
    gw, pipe = FakeGateway(), FakePipeline()
    study, ids = nm_study(gw)
    pipe.not_applying.add(gw.instances[ids[0]].sop_instance_uid)
    result = make_jobs(gw, pipe).run(study)
    assert result is not None and result.status == Status.SKIPPED
    assert "radionuclide ^201^Thallium" in result.reason and gw.count("store_instance") == 0


def test_ct_study_is_skipped_cheaply_with_a_reason() -> None:
    gw, pipe = FakeGateway(), FakePipeline()
    ct = ct_dataset("1.2.3.4.5.6")
    gw.add(ct)
    study = gw.study_id(ct)
    result = make_jobs(gw, pipe).run(study)
    assert result is not None and result.status == Status.SKIPPED
    assert "no NM series" in result.reason and "CT" in result.reason
    assert pipe.processed == [] and gw.count("instance_file") == 0
    assert gw.count("series_instances") == 0
    # stable again: nothing written
    writes = gw.count("write_result")
    make_jobs(gw, pipe).run(study)
    assert gw.count("write_result") == writes


def test_sop_class_and_series_description_rules() -> None:
    gw = FakeGateway()
    study, _ = nm_study(gw)
    result = make_jobs(gw, sop_classes=("1.2.3",)).run(study)
    assert result is not None and result.status == Status.SKIPPED and "SOP class" in result.reason
    result = make_jobs(gw, series_description=re.compile("(?i)bone")).run(study)
    assert result is not None and result.status == Status.SKIPPED and "'THYROID ANT'" in result.reason
    result = make_jobs(gw, series_description=re.compile("(?i)thyr")).run(study)
    assert result is not None and result.status == Status.DONE


def test_radiopharmaceutical_rule_skips_without_a_model_run() -> None:
    gw, pipe = FakeGateway(), FakePipeline()
    study, _ = nm_study(gw)
    result = make_jobs(gw, pipe, radiopharmaceutical=re.compile("(?i)MDP|oxidronate")).run(study)
    assert result is not None and result.status == Status.SKIPPED
    assert "pertechnetate" in result.reason and pipe.processed == []
    assert "pertechnetate" in radiopharmaceutical_text(make_nm())


def test_a_failing_image_fails_the_study_but_not_the_others() -> None:
    gw, pipe = FakeGateway(), FakePipeline()
    study, ids = nm_study(gw, images=3)
    bad = gw.instances[ids[1]].sop_instance_uid
    pipe.fail[bad] = RuntimeError("model exploded")
    result = make_jobs(gw, pipe).run(study)  # must not raise
    assert result is not None and result.status == Status.FAILED
    assert "1 of 3 image(s) failed" in result.reason and "model exploded" in result.reason
    assert result.images[bad].status == Status.FAILED
    assert gw.count("store_instance") == 2
    # failed images are not retried on the next stable event ...
    make_jobs(gw, pipe).run(study)
    assert gw.count("store_instance") == 2
    # ... but on demand
    del pipe.fail[bad]
    result = make_jobs(gw, pipe).run(study, retry_failed=True)
    assert result is not None and result.status == Status.DONE and gw.count("store_instance") == 3


def test_force_segments_every_image_again() -> None:
    gw, pipe = FakeGateway(), FakePipeline()
    study, _ = nm_study(gw, images=2)
    jobs = make_jobs(gw, pipe)
    first = jobs.run(study)
    again = jobs.run(study, force=True)
    assert len(pipe.processed) == 4
    assert first is not None and again is not None and again.status == Status.DONE
    assert again.seg_instance_ids == first.seg_instance_ids  # deterministic UIDs: same SEGs
    assert {e.store_status for e in again.images.values()} == {"AlreadyStored"}


def test_unreadable_and_not_nm_images() -> None:
    gw, pipe = FakeGateway(), FakePipeline()
    study, ids = nm_study(gw, images=2)
    uid0 = gw.instances[ids[0]].sop_instance_uid
    pipe.fail[uid0] = UnreadableImageError("instance x has 3 samples per pixel")
    result = make_jobs(gw, pipe).run(study)
    assert result is not None and result.status == Status.FAILED
    assert result.images[uid0].reason == "instance x has 3 samples per pixel"


def test_job_error_boundary_records_failure_and_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    gw = FakeGateway()
    study, _ = nm_study(gw)
    gw.fail_on["study_series"] = GatewayError("GET /studies/x/series failed: database is locked")
    with caplog.at_level(logging.ERROR, logger="scintiseg"):
        result = make_jobs(gw).run(study)
    assert result is not None and result.status == Status.FAILED
    assert result.reason.startswith("internal error: GatewayError") and "database is locked" in result.reason
    assert "Traceback" in caplog.text or any(r.exc_info for r in caplog.records)
    # a failure recorded by the boundary is retried at the next start
    assert needs_work(gw.typed_result(study), str(gw.last_update[study]))


def test_boundary_survives_a_store_that_cannot_even_record() -> None:
    gw = FakeGateway()
    study, _ = nm_study(gw)
    gw.fail_on["study_series"] = GatewayError("boom")
    gw.fail_on["write_result"] = GatewayError("boom again")
    assert make_jobs(gw).run(study) is None


def test_deleted_study_records_nothing() -> None:
    gw = FakeGateway()
    assert make_jobs(gw).run("study-gone") is None
    assert gw.count("write_result") == 0


def test_stop_between_images_leaves_pending_then_resumes() -> None:
    gw, pipe = FakeGateway(), FakePipeline()
    study, _ = nm_study(gw, images=3)
    stop = {"now": False}

    def store_then_stop(_: bytes) -> None:
        stop["now"] = True  # Orthanc starts stopping while the first SEG is stored

    gw.on_store = store_then_stop
    result = make_jobs(gw, pipe).run(study, should_stop=lambda: stop["now"])
    assert result is not None and result.status == Status.PENDING and len(result.images) == 1
    assert needs_work(gw.typed_result(study), str(gw.last_update[study]))
    gw.on_store = None
    result = make_jobs(gw, pipe).run(study)
    assert result is not None and result.status == Status.DONE
    assert len(pipe.processed) == 3 and gw.count("store_instance") == 3


def test_progress_is_recorded_after_each_image() -> None:
    gw = FakeGateway()
    study, _ = nm_study(gw, images=3)
    seen: list[str] = []
    original = gw.write_result

    def spy(study_id: str, result: StudyResult) -> None:
        seen.append(f"{result.status}:{len(result.images)}")
        original(study_id, result)

    gw.write_result = spy  # type: ignore[method-assign]
    make_jobs(gw).run(study)
    assert seen == [f"{Status.PROCESSING}:0", f"{Status.PROCESSING}:1", f"{Status.PROCESSING}:2", f"{Status.DONE}:3"]


def test_logs_name_studies_by_orthanc_id_only(caplog: pytest.LogCaptureFixture) -> None:
    gw, pipe = FakeGateway(), FakePipeline()
    study, ids = nm_study(gw)
    ct = ct_dataset(str(make_nm().StudyInstanceUID), n=1)
    gw.add(ct)
    pipe.fail[gw.instances[ids[0]].sop_instance_uid] = RuntimeError("boom")
    with caplog.at_level(logging.DEBUG, logger="scintiseg"):
        make_jobs(gw, pipe).run(study)
    assert study in caplog.text
    for secret in ("Thyroid^Test", "SCINTI-0001", "Secret^Patient", "SECRET-ID-1"):
        assert secret not in caplog.text
        assert secret not in (gw.metadata.get(study) or "")


def test_result_has_no_patient_identity() -> None:
    gw = FakeGateway()
    study, _ = nm_study(gw)
    make_jobs(gw).run(study)
    text = gw.metadata[study]
    assert "Thyroid^Test" not in text and "SCINTI-0001" not in text


@pytest.mark.parametrize(
    ("result", "last_update", "expected"),
    [
        (None, "1", True),
        ({"status": Status.PENDING, "models": MODELS, "study_last_update": "1"}, "1", True),
        ({"status": Status.PROCESSING, "models": MODELS, "study_last_update": "1"}, "1", True),
        ({"status": Status.DONE, "models": MODELS, "study_last_update": "1"}, "1", False),
        ({"status": Status.SKIPPED, "models": MODELS, "study_last_update": "1"}, "1", False),
        ({"status": Status.DONE, "models": MODELS, "study_last_update": "1"}, "2", True),
        # models added or upgraded since never requeue a study by themselves
        ({"status": Status.DONE, "models": ["other@1"], "study_last_update": "1"}, "1", False),
        ({"status": Status.DONE, "models": ["scintiseg-gland@0.9.0"], "study_last_update": "1"}, "1", False),
        ({"status": Status.FAILED, "models": MODELS, "study_last_update": "1"}, "1", False),
    ],
)
def test_needs_work(result: dict[str, Any] | None, last_update: str, expected: bool) -> None:
    assert needs_work(StudyResult.from_dict(result) if result else None, last_update) is expected


def test_needs_work_with_reprocess_on_upgrade() -> None:
    outdated = FakePipeline().outdated
    def done(models: list[str]) -> StudyResult:
        return StudyResult(Status.DONE, models=models, study_last_update="1")

    assert needs_work(done(["scintiseg-gland@0.9.0"]), "1", outdated)
    assert not needs_work(done(MODELS), "1", outdated)
    assert not needs_work(done(["scintiseg-gland-i131@1.0.0"]), "1", outdated)  # another model


def test_study_status_wording() -> None:
    assert study_status({}) == (Status.SKIPPED, "no image to segment")
    status, reason = study_status({"a": ImageEntry(Status.DONE), "b": ImageEntry(Status.SKIPPED, reason="not NM")})
    assert status == Status.DONE and reason == "1 image(s) segmented, 1 skipped (not NM)"


# ------------------------------------------------------------------ preview pictures


def test_preview_is_stored_after_each_seg_and_does_not_loop() -> None:
    gw, pipe = FakeGateway(), FakePipeline()
    study, _ = nm_study(gw, images=2)
    jobs = StudyJobs(gw, lambda: pipe, Selection(), store_preview=True)
    result = jobs.run(study)
    assert result is not None and result.status == Status.DONE
    assert {i.modality for i in gw.instances.values()} == {"NM", "SEG", "OT"}
    assert gw.count("store_instance") == 4  # a SEG and a picture per image
    for entry in result.images.values():
        assert entry.preview_instance_id in gw.instances
        assert entry.timings_ms is not None and entry.timings_ms["preview_ms"] >= 0
    # the pictures are not NM: the study turning stable again does nothing
    writes = gw.count("write_result")
    assert jobs.run(study) == result and gw.count("write_result") == writes
    assert len(pipe.processed) == 2


def test_a_failing_preview_costs_the_picture_not_the_seg(caplog: pytest.LogCaptureFixture) -> None:
    gw, pipe = FakeGateway(), FakePipeline()
    study, ids = nm_study(gw)
    uid = gw.instances[ids[0]].sop_instance_uid
    pipe.fail_preview[uid] = ValueError("cannot draw")
    result = StudyJobs(gw, lambda: pipe, Selection(), store_preview=True).run(study)
    assert result is not None and result.status == Status.DONE
    entry = result.images[uid]
    assert entry.seg_instance_id in gw.instances and entry.preview_instance_id is None
    assert entry.preview_error == "ValueError: cannot draw"
    assert "preview of instance" in caplog.text


def test_no_preview_unless_asked() -> None:
    gw, pipe = FakeGateway(), FakePipeline()
    study, _ = nm_study(gw)
    make_jobs(gw, pipe).run(study)
    assert {i.modality for i in gw.instances.values()} == {"NM", "SEG"}
