"""The REST API on the real service, pipeline (stand-in models) and preview, over a fake store.

What the entry script wires in Orthanc, minus Orthanc: :class:`PluginBackend`
answers :func:`scintiseg.api.routes.dispatch`, and every answer is checked against
``docs/openapi.yaml``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support.fake_gateway import FakeGateway, ct_dataset
from support.openapi_check import check_against_spec, load_spec

from scintiseg.api import routes as rest
from scintiseg.app.backend import PluginBackend
from scintiseg.app.config import parse_section
from scintiseg.app.service import Service
from scintiseg.pipeline.preview import GLAND_RGB, png_to_rgb
from scintiseg_phantoms.dicom import scan_to_dataset, study_uids
from scintiseg_phantoms.thyroid import generate_scan


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return load_spec()


@pytest.fixture()
def running(fake_models_dir: Path) -> tuple[Service, FakeGateway, PluginBackend]:
    config = parse_section({"RecoveryScanMaxStudies": 0}, environ={"SCINTISEG_MODELS": str(fake_models_dir)})
    gateway = FakeGateway()
    service = Service(config, gateway)
    service.start()
    assert service.state == "running", service.error
    yield service, gateway, PluginBackend(service, gateway)
    service.stop()


def nm_study(gateway: FakeGateway, seed: int, kind: str = "cold_nodules") -> str:
    scan = generate_scan(seed, kind=kind, matrix=128)
    study_uid, series_uid, (sop_uid,) = study_uids(1000 + seed, 1)
    ds = scan_to_dataset(
        scan, patient_id="P1", patient_name="Doe^Jane", study_uid=study_uid, series_uid=series_uid, sop_uid=sop_uid
    )
    gateway.add(ds)
    return gateway.study_id(ds)


def call(backend: PluginBackend, spec: dict[str, Any], method: str, path: str, body: bytes | None = None) -> Any:
    answer = rest.dispatch(backend, method, path, body)
    check_against_spec(spec, method, path, answer)
    return answer, json.loads(answer.body) if answer.content_type == rest.JSON else answer.body


def test_a_processed_study_through_the_api(running: Any, spec: dict[str, Any]) -> None:
    service, gateway, backend = running
    study = nm_study(gateway, 3)
    assert service.submit(study) and service.wait_idle(60)

    answer, body = call(backend, spec, "GET", f"/scintiseg/studies/{study}")
    assert answer.status == 200 and body["status"] == "done"
    assert [m["ident"] for m in body["models"]] == service.jobs.models  # type: ignore[union-attr]
    (image,) = body["images"]
    assert image["seg_instance_id"] in gateway.instances
    gland = image["frames"][0]["labels"][0]
    assert gland["key"] == "gland" and gland["area_mm2"] > 0 and gland["counts"] > 0
    assert gland["right_lobe_share_pct"] + gland["left_lobe_share_pct"] == pytest.approx(100, abs=0.2)
    from scintiseg.pipeline.quality import FLAG_CODES

    assert all(f["code"] in FLAG_CODES and f["message"] for f in image["flags"])
    assert [m["ident"] for m in image["models"]] == service.jobs.models  # type: ignore[union-attr]
    # the preview picture was stored in the study too, as a Secondary Capture (OT)
    assert {i.modality for i in gateway.instances.values()} == {"NM", "SEG", "OT"}

    answer, png = call(backend, spec, "GET", f"/scintiseg/studies/{study}/preview.png")
    assert answer.status == 200 and answer.content_type == "image/png"
    rgb = png_to_rgb(png)
    assert (rgb == np.array(GLAND_RGB, dtype=np.uint8)).all(axis=-1).sum() > 100  # the gland outline

    answer, body = call(backend, spec, "GET", "/scintiseg/models")
    assert answer.status == 200
    assert sorted((m["labels"][0]["key"], m["stage"]) for m in body["models"]) == [
        ("gland", "active"), ("nodule", "active")]
    answer, body = call(backend, spec, "GET", "/scintiseg/health")
    assert answer.status == 200 and body["status"] == "ok"
    answer, body = call(backend, spec, "GET", "/scintiseg/queue")
    assert answer.status == 200 and body == {
        "state": "running", "pending": [], "running": [], "retrying": [], "failed": []
    }

    runs = service.jobs.pipeline_runs  # type: ignore[union-attr]
    answer, body = call(backend, spec, "POST", f"/scintiseg/studies/{study}/process", b'{"force": true}')
    assert answer.status == 202 and body["force"] is True
    assert service.wait_idle(60) and service.jobs.pipeline_runs == runs + 1  # type: ignore[union-attr]


def test_unknown_and_unprocessed_studies(running: Any, spec: dict[str, Any]) -> None:
    service, gateway, backend = running
    answer, body = call(backend, spec, "GET", "/scintiseg/studies/00000000-00000000-00000000-00000000-00000000")
    assert answer.status == 404 and "unknown study" in body["error"]
    study = nm_study(gateway, 4)  # stored, not stable yet: nothing recorded
    answer, body = call(backend, spec, "GET", f"/scintiseg/studies/{study}")
    assert answer.status == 200 and body["status"] == "pending"
    answer, body = call(backend, spec, "GET", f"/scintiseg/studies/{study}/preview.png")
    assert answer.status == 404 and "no segmented image" in body["error"]


def test_failed_studies_are_listed_in_the_queue(running: Any, spec: dict[str, Any]) -> None:
    service, gateway, backend = running
    study = nm_study(gateway, 5)
    gateway.fail_on["instance_file"] = OSError("disk full")
    assert service.submit(study) and service.wait_idle(60)
    answer, body = call(backend, spec, "GET", "/scintiseg/queue")
    assert [f["study"] for f in body["failed"]] == [study]
    assert "disk full" in body["failed"][0]["reason"]
    # retried successfully: no longer listed
    del gateway.fail_on["instance_file"]
    answer, _ = call(backend, spec, "POST", f"/scintiseg/studies/{study}/process")
    assert answer.status == 202 and service.wait_idle(60)
    assert call(backend, spec, "GET", "/scintiseg/queue")[1]["failed"] == []


def test_skipped_study_has_no_preview(running: Any, spec: dict[str, Any]) -> None:
    service, gateway, backend = running
    ct = ct_dataset("1.2.826.0.1.3680043.8.498.77")
    gateway.add(ct)
    study = gateway.study_id(ct)
    assert service.submit(study) and service.wait_idle(60)
    answer, body = call(backend, spec, "GET", f"/scintiseg/studies/{study}")
    assert body["status"] == "skipped" and "no NM series" in body["reason"]
    assert call(backend, spec, "GET", f"/scintiseg/studies/{study}/preview.png")[0].status == 404


def test_not_running_is_503(fake_models_dir: Path, spec: dict[str, Any]) -> None:
    config = parse_section(None, environ={"SCINTISEG_MODELS": str(fake_models_dir / "missing")})
    gateway = FakeGateway()
    service = Service(config, gateway)
    service.start()
    backend = PluginBackend(service, gateway)
    answer, body = call(backend, spec, "GET", "/scintiseg/health")
    assert answer.status == 503 and body["state"] == "failed" and "cannot load the models" in body["error"]
    assert call(backend, spec, "GET", "/scintiseg/models")[1] == {"models": []}
    study = nm_study(gateway, 6)
    assert call(backend, spec, "POST", f"/scintiseg/studies/{study}/process")[0].status == 503


def test_new_instances_are_processed_stable_age_after_the_last(fake_models_dir: Path) -> None:
    """NEW_INSTANCE -> tracker -> worker, without Orthanc's STABLE_STUDY; our SEG is ignored."""
    import dataclasses
    import time

    config = parse_section({"RecoveryScanMaxStudies": 0}, environ={"SCINTISEG_MODELS": str(fake_models_dir)})
    config = dataclasses.replace(config, stable_age_s=0.3)
    gateway = FakeGateway()
    service = Service(config, gateway)
    service.start()
    try:
        study = nm_study(gateway, 7)
        (nm_id,) = list(gateway.instances)
        t0 = time.monotonic()
        service.new_instance(nm_id)
        while gateway.result(study) is None and time.monotonic() - t0 < 20:
            time.sleep(0.02)
        assert time.monotonic() - t0 >= 0.3
        assert service.wait_idle(20)
        result = gateway.result(study)
        assert result is not None and result["status"] == "done"
        for seg_id in result["seg_instance_ids"]:
            service.new_instance(seg_id)  # Orthanc announces our own SEG too
        time.sleep(0.6)
        assert service.tracker is not None and service.tracker.handed_on == 1
        assert service.status()["stability_tracker"]["waiting"] == 0
    finally:
        service.stop()
