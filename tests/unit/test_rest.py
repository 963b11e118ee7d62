"""The /scintiseg/ REST routes against a fake backend, and their OpenAPI description."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from openapi_check import check_against_spec, deref, load_spec
from openapi_schema_validator import OAS30Validator

from scintiseg import rest
from scintiseg.gateway import NotFoundError
from scintiseg.measurements import measure_frame
from scintiseg_phantoms.thyroid import generate_scan

DONE_ID = "11111111-22222222-33333333-44444444-55555555"
NEW_ID = "aaaaaaaa-bbbbbbbb-cccccccc-dddddddd-eeeeeeee"
UNKNOWN_ID = "99999999-99999999-99999999-99999999-99999999"
PNG = b"\x89PNG\r\n\x1a\nfake"


def recorded_result() -> dict[str, Any]:
    """A result as :mod:`scintiseg.jobs` records it, with real measurements."""
    scan = generate_scan(7, kind="cold_nodules")
    frame = measure_frame(scan.counts, scan.gland, scan.nodules, scan.pixel_spacing_mm)
    frame["frame"] = 1
    return {
        "schema": 1,
        "status": "done",
        "reason": "1 image(s) segmented",
        "models": ["scintiseg-gland@1.0.0", "scintiseg-nodule@1.0.0"],
        "providers": ["CPUExecutionProvider"],
        "software": "ScintiSeg 0.1.0",
        "updated": "2026-01-02T03:04:05.678Z",
        "study_last_update": "20260102T030405",
        "seg_instance_ids": ["seg-1"],
        "images": {
            "1.2.3.4": {
                "source_instance_id": "nm-1",
                "updated": "2026-01-02T03:04:05.000Z",
                "status": "done",
                "source_sop_instance_uid": "1.2.3.4",
                "seg_sop_instance_uid": "1.2.3.5",
                "seg_series_instance_uid": "1.2.3.6",
                "seg_instance_id": "seg-1",
                "store_status": "Success",
                "frames": [frame],
                "timings_ms": {"gland_inference_ms": 12.5, "total_ms": 40.0},
            },
            "1.2.3.9": {
                "source_instance_id": "nm-2",
                "status": "failed",
                "reason": "cannot decode the pixel data",
            },
        },
        "timings_ms": {"job_ms": 55.0},
    }


@dataclass
class FakeBackend:
    results: dict[str, dict[str, Any] | None] = field(
        default_factory=lambda: {DONE_ID: recorded_result(), NEW_ID: None}
    )
    state: str = "running"
    pending: list[str] = field(default_factory=list)
    running: list[str] = field(default_factory=list)
    queued: list[tuple[str, bool]] = field(default_factory=list)
    fail_with: Exception | None = None

    def study_exists(self, study_id: str) -> bool:
        if self.fail_with is not None:
            raise self.fail_with
        return study_id in self.results

    def get_study_result(self, study_id: str) -> dict[str, Any] | None:
        return self.results[study_id]

    def render_preview(self, study_id: str) -> bytes | None:
        result = self.results[study_id]
        return PNG if result and result["seg_instance_ids"] else None

    def list_models(self) -> list[dict[str, Any]]:
        return [
            {
                "ident": "scintiseg-gland@1.0.0", "name": "scintiseg-gland", "version": "1.0.0",
                "task": "gland", "family": "U-Net", "creator": "ScintiSeg", "sha256": "0" * 64,
                "label": {"name": "Thyroid gland", "category": ["SCT", "91723000", "Anatomical Structure"],
                          "type": ["SCT", "69748006", "Thyroid"]},
                "input": {"size": 128, "window": "full"},
                "metrics": {"dice": 0.93},
                "refine": {"sha256": "1" * 64, "input": {"size": 128, "window": "gland"}},
            }
        ]

    def queue_snapshot(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "pending": list(self.pending),
            "running": list(self.running),
            "failed": [{"study": DONE_ID, "reason": "1 of 2 image(s) failed", "updated": None}],
        }

    def enqueue(self, study_id: str, force: bool) -> bool:
        if self.state != "running":
            return False
        self.queued.append((study_id, force))
        return True

    def health(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "error": None if self.state == "running" else "cannot load the models",
            "models": ["scintiseg-gland@1.0.0", "scintiseg-nodule@1.0.0"],
            "providers": ["CPUExecutionProvider"],
            "software": "ScintiSeg 0.1.0",
        }


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return load_spec()


def call(backend: FakeBackend, spec: dict[str, Any], method: str, path: str,
         body: bytes | None = None) -> tuple[rest.Response, Any]:
    answer = rest.dispatch(backend, method, path, body)
    check_against_spec(spec, method, path, answer)
    parsed = json.loads(answer.body) if answer.content_type == rest.JSON else answer.body
    return answer, parsed


# -- routes --------------------------------------------------------------------------------
def test_study_done(spec: dict[str, Any]) -> None:
    answer, body = call(FakeBackend(), spec, "GET", f"/scintiseg/studies/{DONE_ID}")
    assert answer.status == 200
    assert body["status"] == "done" and body["reason"] == "1 image(s) segmented"
    assert [m["name"] for m in body["models"]] == ["scintiseg-gland", "scintiseg-nodule"]
    assert body["models"][0]["version"] == "1.0.0"
    assert body["seg_instance_ids"] == ["seg-1"]
    done, failed = body["images"]
    assert done["seg_instance_id"] == "seg-1" and done["instance_id"] == "nm-1"
    assert failed["status"] == "failed" and "decode" in failed["reason"]
    frame = done["frames"][0]
    assert frame["gland_area_mm2"] > 0 and frame["gland_counts"] > 0
    assert frame["right_lobe_share_pct"] + frame["left_lobe_share_pct"] == pytest.approx(100, abs=0.2)
    assert frame["nodule_count"] == len(frame["nodules"]) >= 1
    nodule = frame["nodules"][0]
    assert nodule["number"] == 1 and nodule["lobe"] in ("left", "right")
    assert nodule["pole"] in ("upper", "middle", "lower") and nodule["area_mm2"] > 0
    assert done["timings_ms"]["gland_inference_ms"] == 12.5
    assert body["links"]["preview"].endswith("/preview.png")


@pytest.mark.parametrize(
    "pending, running, status",
    [([], [], "pending"), ([NEW_ID], [], "pending"), ([], [NEW_ID], "processing")],
)
def test_study_without_result(spec: dict[str, Any], pending: list[str], running: list[str],
                              status: str) -> None:
    backend = FakeBackend(pending=pending, running=running)
    answer, body = call(backend, spec, "GET", f"/scintiseg/studies/{NEW_ID}")
    assert answer.status == 200 and body["status"] == status and body["images"] == []
    assert body["reason"]


def test_study_being_reprocessed_is_processing(spec: dict[str, Any]) -> None:
    _, body = call(FakeBackend(running=[DONE_ID]), spec, "GET", f"/scintiseg/studies/{DONE_ID}")
    assert body["status"] == "processing" and len(body["images"]) == 2


@pytest.mark.parametrize("study", [UNKNOWN_ID, "not-an-id", "..%2F..%2Fsystem"])
def test_unknown_study_is_404(spec: dict[str, Any], study: str) -> None:
    for method, suffix in (("GET", ""), ("GET", "/preview.png"), ("POST", "/process")):
        answer, body = call(FakeBackend(), spec, method, f"/scintiseg/studies/{study}{suffix}")
        assert answer.status == 404 and body["status"] == 404 and study in body["error"]


def test_preview(spec: dict[str, Any]) -> None:
    answer, body = call(FakeBackend(), spec, "GET", f"/scintiseg/studies/{DONE_ID}/preview.png")
    assert answer == rest.Response(200, PNG, "image/png")
    answer, body = call(FakeBackend(), spec, "GET", f"/scintiseg/studies/{NEW_ID}/preview.png")
    assert answer.status == 404 and "no segmented image" in body["error"]


def test_models(spec: dict[str, Any]) -> None:
    answer, body = call(FakeBackend(), spec, "GET", "/scintiseg/models")
    assert answer.status == 200 and body["models"][0]["task"] == "gland"


def test_queue(spec: dict[str, Any]) -> None:
    backend = FakeBackend(pending=[NEW_ID], running=[DONE_ID])
    answer, body = call(backend, spec, "GET", "/scintiseg/queue")
    assert answer.status == 200
    assert body["pending"] == [NEW_ID] and body["running"] == [DONE_ID]
    assert body["failed"][0]["study"] == DONE_ID


@pytest.mark.parametrize("state, status", [("running", 200), ("failed", 503), ("stopped", 503)])
def test_health(spec: dict[str, Any], state: str, status: int) -> None:
    answer, body = call(FakeBackend(state=state), spec, "GET", "/scintiseg/health")
    assert answer.status == status and body["state"] == state
    assert body["status"] == ("ok" if status == 200 else "unavailable")


@pytest.mark.parametrize(
    "payload, force",
    [(None, False), (b"", False), (b"  \n", False), (b"{}", False), (b'{"force": true}', True),
     (b'{"force": false}', False)],
)
def test_process(spec: dict[str, Any], payload: bytes | None, force: bool) -> None:
    backend = FakeBackend()
    answer, body = call(backend, spec, "POST", f"/scintiseg/studies/{DONE_ID}/process", payload)
    assert answer.status == 202 and body == {
        "study": DONE_ID, "queued": True, "force": force,
        "links": {"study": f"/scintiseg/studies/{DONE_ID}"},
    }
    assert backend.queued == [(DONE_ID, force)]


@pytest.mark.parametrize(
    "payload, message",
    [(b"{force: 1}", "must be JSON"), (b"[true]", "JSON object"), (b'{"force": "yes"}', "true or false"),
     (b'{"force": 1}', "true or false"), (b'{"forse": true}', "unknown field"), (b"\xff\xfe", "JSON")],
)
def test_process_bad_body_is_400(spec: dict[str, Any], payload: bytes, message: str) -> None:
    backend = FakeBackend()
    answer, body = call(backend, spec, "POST", f"/scintiseg/studies/{DONE_ID}/process", payload)
    assert answer.status == 400 and message in body["error"]
    assert backend.queued == []


def test_process_when_not_running_is_503(spec: dict[str, Any]) -> None:
    answer, body = call(FakeBackend(state="failed"), spec, "POST", f"/scintiseg/studies/{DONE_ID}/process")
    assert answer.status == 503 and "not running" in body["error"]


@pytest.mark.parametrize(
    "method, path, allow",
    [
        ("POST", "/scintiseg/health", ["GET"]),
        ("DELETE", f"/scintiseg/studies/{DONE_ID}", ["GET"]),
        ("PUT", f"/scintiseg/studies/{DONE_ID}/preview.png", ["GET"]),
        ("GET", f"/scintiseg/studies/{DONE_ID}/process", ["POST"]),
        ("POST", "/scintiseg/models", ["GET"]),
        ("DELETE", "/scintiseg/queue", ["GET"]),
    ],
)
def test_wrong_method_is_405(spec: dict[str, Any], method: str, path: str, allow: list[str]) -> None:
    answer, body = call(FakeBackend(), spec, method, path)
    assert answer.status == 405 and body["status"] == 405
    assert rest.allowed_methods(path) == allow


def test_unknown_route_is_404() -> None:
    answer = rest.dispatch(FakeBackend(), "GET", "/scintiseg/nothing")
    assert answer.status == 404 and json.loads(answer.body)["status"] == 404


def test_backend_failures_are_500_or_404(caplog: pytest.LogCaptureFixture) -> None:
    answer = rest.dispatch(FakeBackend(fail_with=RuntimeError("boom")), "GET", f"/scintiseg/studies/{DONE_ID}")
    assert answer.status == 500 and "boom" in json.loads(answer.body)["error"]
    assert "failed" in caplog.text
    answer = rest.dispatch(FakeBackend(fail_with=NotFoundError("gone")), "GET", f"/scintiseg/studies/{DONE_ID}")
    assert answer.status == 404


def test_trailing_slash_and_query_are_ignored() -> None:
    assert rest.dispatch(FakeBackend(), "GET", "/scintiseg/health/").status == 200
    assert rest.dispatch(FakeBackend(), "GET", "/scintiseg/queue?x=1").status == 200


def test_json_is_ascii() -> None:
    backend = FakeBackend()
    backend.results[DONE_ID]["reason"] = "Schilddrüse — 1 image"  # type: ignore[index]
    answer = rest.dispatch(backend, "GET", f"/scintiseg/studies/{DONE_ID}")
    assert answer.body.isascii()
    assert json.loads(answer.body)["reason"] == "Schilddrüse — 1 image"


# -- the description itself ------------------------------------------------------------------
def test_openapi_lists_exactly_the_routes(spec: dict[str, Any]) -> None:
    assert spec["openapi"].startswith("3.0")
    documented = {
        (method.upper(), template)
        for template, item in spec["paths"].items()
        for method in item
        if method in ("get", "post", "put", "delete")
    }
    implemented = set()
    for template in spec["paths"]:
        concrete = template.replace("{id}", DONE_ID)
        for method in rest.allowed_methods(concrete):
            implemented.add((method, template))
    assert documented == implemented
    # every Orthanc registration regex matches one documented path and vice versa
    concrete_paths = [t.replace("{id}", DONE_ID) for t in spec["paths"]]
    for pattern in rest.ORTHANC_ROUTES:
        assert sum(bool(re.fullmatch(pattern, p)) for p in concrete_paths) == 1, pattern
    assert len(rest.ORTHANC_ROUTES) == len(spec["paths"])


def test_model_info_matches_schema(spec: dict[str, Any], tmp_path: Path) -> None:
    from scintiseg.modelcard import parse_card

    (tmp_path / "model.onnx").write_bytes(b"onnx")
    raw = {
        "name": "scintiseg-gland", "version": "1.0.0", "task": "gland", "onnx": "model.onnx",
        "sha256": "a" * 64,
        "input": {"name": "image", "size": 128, "window": "full",
                  "normalisation": {"percentile": 99.0, "clip": 1.5}},
        "output": {"name": "logits"},
        "label": {"name": "Thyroid gland", "category": ["SCT", "91723000", "Anatomical Structure"],
                  "type": ["SCT", "69748006", "Thyroid"]},
        "metrics": {"dice": 0.9},
    }
    info = rest.model_info(parse_card(raw, tmp_path, verify_sha256=False))
    schema = deref(spec, spec["components"]["schemas"]["Model"])
    OAS30Validator({**schema, "components": spec["components"]}).validate(info)
    assert info["ident"] == "scintiseg-gland@1.0.0" and np.isclose(info["metrics"]["dice"], 0.9)
    assert info["refine"] is None
    # a gland model with a second pass says so
    (tmp_path / "refine.onnx").write_bytes(b"second pass")
    raw["refine"] = {"onnx": "refine.onnx", "sha256": "b" * 64,
                     "input": {"name": "image", "size": 96, "window": "gland",
                               "normalisation": {"percentile": 99.0, "clip": 1.5}}}
    info = rest.model_info(parse_card(raw, tmp_path, verify_sha256=False))
    OAS30Validator({**schema, "components": spec["components"]}).validate(info)
    assert info["refine"] == {"sha256": "b" * 64, "input": {"size": 96, "window": "gland"}}
