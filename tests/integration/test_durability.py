"""Exactly-once work on the real Orthanc: kill -9 mid-burst, coalesced requests, durable requests."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from support.orthanc_harness import STABLE_AGE, OrthancServer, Study, make_study, wait_for

pytestmark = pytest.mark.integration


def outputs_per_image(server: OrthancServer, study: Study) -> tuple[int, int, int, dict]:  # type: ignore[type-arg]
    """(NM images, SEGs, previews, result) of a study."""
    sid = server.study_id(study.study_uid)
    assert sid is not None
    series = server.series_by_modality(sid)
    result = server.result(sid) or {}
    return len(series.get("NM", [])), len(series.get("SEG", [])), len(series.get("OT", [])), result


def test_kill_9_in_a_burst_of_30_studies_loses_nothing_and_doubles_nothing(
    new_orthanc: OrthancServer, tmp_path: Path
) -> None:
    server = new_orthanc
    server.start()
    studies = [make_study(tmp_path / str(i), seed=3000 + i, images=1 + i % 2) for i in range(30)]
    images = sum(len(s.files) for s in studies)
    server.storescu([f for s in studies for f in s.files])
    runs = wait_for(
        "8 images segmented", lambda: (r := server.get("/scintiseg/status")["pipeline_runs"]) >= 8 and r, 120, 0.02
    )
    server.kill()  # kill -9, in the middle of the burst
    assert runs < images, "the burst was over before the kill: the test proves nothing"

    server.start()
    for study in studies:
        server.wait_result(study.study_uid, timeout=180)
    server.wait_idle(120)
    for study in studies:
        nm, seg, ot, result = outputs_per_image(server, study)
        assert nm == len(study.files)
        assert seg == nm, f"{seg} SEG(s) for {nm} NM image(s) in study {study.study_uid}"
        assert ot == nm, f"{ot} preview(s) for {nm} NM image(s)"
        assert result["status"] == "done" and len(result["seg_instance_ids"]) == nm
    status = server.get("/scintiseg/status")
    assert status["recovery"]["queued"] >= 1  # the scan found the unfinished studies


def test_concurrent_reprocess_requests_for_one_study_make_one_job(orthanc: OrthancServer, tmp_path: Path) -> None:
    big = make_study(tmp_path / "big", seed=3100, images=4)
    target = make_study(tmp_path / "target", seed=3101)
    orthanc.storescu(big.files + target.files)
    orthanc.wait_result(big.study_uid, timeout=STABLE_AGE + 60)
    orthanc.wait_result(target.study_uid, timeout=STABLE_AGE + 60)
    orthanc.wait_idle()
    big_id, target_id = orthanc.study_id(big.study_uid), orthanc.study_id(target.study_uid)
    runs = orthanc.get("/scintiseg/status")["pipeline_runs"]
    # keep the worker busy with the big study, then ask for the target ten times at once
    orthanc.request("POST", f"/scintiseg/studies/{big_id}/process", b'{"force": true}')
    answers: list[dict] = []  # type: ignore[type-arg]

    def ask() -> None:
        answers.append(json.loads(orthanc.request("POST", f"/scintiseg/studies/{target_id}/process",
                                                  b'{"force": true}')))

    threads = [threading.Thread(target=ask) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    orthanc.wait_idle()
    assert len(answers) == 10 and all(a["queued"] for a in answers)
    ran = orthanc.get("/scintiseg/status")["pipeline_runs"] - runs
    assert ran == len(big.files) + 1, f"{ran} images segmented: the ten requests did not make one job"
    _, seg, _, _ = outputs_per_image(orthanc, target)
    assert seg == 1
    assert orthanc.get("/scintiseg/status")["work_state"]["records"] == 0


def test_a_manual_force_and_retry_queued_when_orthanc_died_run_at_the_next_start(
    new_orthanc: OrthancServer, tmp_path: Path
) -> None:
    server = new_orthanc
    server.start()
    busy = make_study(tmp_path / "busy", seed=3200, images=4)
    done = make_study(tmp_path / "done", seed=3201)
    server.storescu(busy.files + done.files)
    for study in (busy, done):
        server.wait_result(study.study_uid, timeout=STABLE_AGE + 60)
    server.wait_idle()
    busy_id, done_id = server.study_id(busy.study_uid), server.study_id(done.study_uid)
    before = server.result(str(done_id))
    assert before is not None and server.get("/scintiseg/status")["work_state"]["backend"] == "metadata"
    server.request("POST", f"/scintiseg/studies/{busy_id}/process", b'{"force": true}')
    server.request("POST", f"/scintiseg/studies/{done_id}/process", b'{"force": true}')  # queued behind it
    server.kill()

    server.start()
    status = server.get("/scintiseg/status")
    assert status["recovery"]["requests"] >= 1, status["recovery"]

    def redone() -> dict | None:  # type: ignore[type-arg]
        r = server.result(str(done_id))
        return r if r and r["job_started"] != before["job_started"] and r["status"] == "done" else None

    after = wait_for("the forced study to be segmented again", redone, 60)
    assert after["images"].keys() == before["images"].keys()
    server.wait_idle()
    _, seg, ot, _ = outputs_per_image(server, done)
    assert (seg, ot) == (1, 1)  # same deterministic UIDs: nothing doubled
    assert server.get("/scintiseg/status")["work_state"]["records"] == 0
