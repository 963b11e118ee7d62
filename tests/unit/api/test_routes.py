"""The /scintiseg/ REST routes against a fake backend, and their OpenAPI description."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from openapi_schema_validator import OAS30Validator
from support.openapi_check import check_against_spec, deref, load_spec

from scintiseg.api import routes as rest
from scintiseg.core.result import StudyResult
from scintiseg.core.store import NotFoundError
from scintiseg.dicom.seg.content import LABELS
from scintiseg.models.card import V1_TASKS, Measurement
from scintiseg.models.measurements import measure_frame
from scintiseg_phantoms.thyroid import generate_scan

MEASUREMENTS = [Measurement(m["kind"], m["label"], {k: v for k, v in m.items() if k not in ("kind", "label")})
                for task in ("gland", "nodule") for m in V1_TASKS[task]["measurements"]]

DONE_ID = "11111111-22222222-33333333-44444444-55555555"
NEW_ID = "aaaaaaaa-bbbbbbbb-cccccccc-dddddddd-eeeeeeee"
UNKNOWN_ID = "99999999-99999999-99999999-99999999-99999999"
PNG = b"\x89PNG\r\n\x1a\nfake"


def recorded_result() -> dict[str, Any]:
    """A result as :mod:`scintiseg.work.jobs` records it, with real measurements."""
    scan = generate_scan(7, kind="cold_nodules")
    frame = {"frame": 1, **measure_frame(scan.counts, {"gland": scan.gland, "nodule": scan.nodules},
                                          MEASUREMENTS, scan.pixel_spacing_mm)}
    return {
        "schema": 2,
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
                "models": ["scintiseg-gland@1.0.0", "scintiseg-nodule@1.0.0"],
                "frames": [frame],
                "flags": [{"code": "LOW_COUNTS", "message": "fewer counts than a reliable outline needs"}],
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

    def get_study_result(self, study_id: str) -> StudyResult | None:
        raw = self.results[study_id]
        return StudyResult.from_dict(raw) if raw is not None else None

    def render_preview(self, study_id: str) -> bytes | None:
        result = self.results[study_id]
        return PNG if result and result["seg_instance_ids"] else None

    reloads: int = 0

    def list_models(self) -> list[dict[str, Any]]:
        from scintiseg.models.registry import ModelEntry

        return [
            ModelEntry(Path("/models/broken"), "refused", "no model card (card.json) in /models/broken",
                       None, None).describe()
        ]

    def reload_models(self) -> list[dict[str, Any]] | None:
        if self.state != "running":
            return None
        self.reloads += 1
        return self.list_models()

    def agreement(self, name: str, version: str) -> dict[str, Any] | None:
        from scintiseg.pipeline.shadow import AgreementLog

        if (name, version) != ("scintiseg-nodule", "2.0.0"):
            return None
        log = AgreementLog()
        log.add("scintiseg-nodule@2.0.0", {"image": "1.2.3", "against": "scintiseg-nodule@1.0.0",
                                           "dice": {"nodule": 0.8}, "found_by_active_only": 1,
                                           "found_by_shadow_only": 0})
        return {"model": "scintiseg-nodule@2.0.0", "stage": "shadow", **log.summary("scintiseg-nodule@2.0.0")}

    def label_info(self) -> dict[str, dict[str, Any]]:
        return {k: {"name": v["name"], "colour": v["colour"], "numbered": v["numbered"]} for k, v in LABELS.items()}

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
    gland, nodules = done["frames"][0]["labels"]
    assert gland["key"] == "gland" and gland["name"] == "Thyroid gland" and gland["colour"] == [0, 230, 64]
    assert gland["area_mm2"] > 0 and gland["counts"] > 0 and not gland["numbered"]
    assert gland["right_lobe_share_pct"] + gland["left_lobe_share_pct"] == pytest.approx(100, abs=0.2)
    assert nodules["key"] == "nodule" and nodules["numbered"]
    assert nodules["count"] == len(nodules["components"]) >= 1
    nodule = nodules["components"][0]
    assert nodule["number"] == 1 and nodule["lobe"] in ("left", "right")
    assert nodule["pole"] in ("upper", "middle", "lower") and nodule["area_mm2"] > 0
    assert done["timings_ms"]["gland_inference_ms"] == 12.5
    assert done["flags"] == [{"code": "LOW_COUNTS", "message": "fewer counts than a reliable outline needs"}]
    assert [m["ident"] for m in done["models"]] == ["scintiseg-gland@1.0.0", "scintiseg-nodule@1.0.0"]
    assert failed["flags"] == [] and failed["models"] == []
    assert body["links"]["preview"].endswith("/preview.png")


def test_a_third_label_appears_without_code(spec: dict[str, Any]) -> None:
    backend = FakeBackend()
    frame = backend.results[DONE_ID]["images"]["1.2.3.4"]["frames"][0]  # type: ignore[index]
    frame["labels"]["hot"] = {"pixels": 12, "area_mm2": 48.0, "counts": 900.0, "count": 1,
                              "components": [{"pixels": 12, "area_mm2": 48.0, "lobe": "left", "pole": "upper",
                                              "count_ratio": 2.5, "centre_px": [40.0, 80.0]}]}
    _, body = call(backend, spec, "GET", f"/scintiseg/studies/{DONE_ID}")
    hot = body["images"][0]["frames"][0]["labels"][2]
    assert hot["key"] == "hot" and hot["name"] == "hot" and hot["colour"] is None  # not in the registry
    assert hot["count"] == 1 and hot["components"][0]["number"] == 1 and hot["numbered"]


def test_a_result_of_schema_1_still_reads(spec: dict[str, Any]) -> None:
    backend = FakeBackend()
    image = backend.results[DONE_ID]["images"]["1.2.3.4"]  # type: ignore[index]
    image["frames"] = [{"frame": 1, "gland_pixels": 10, "gland_area_mm2": 40.0, "gland_counts": 5.0,
                        "right_lobe_share_pct": 60.0, "left_lobe_share_pct": 40.0, "nodule_count": 0,
                        "nodules": []}]
    del image["models"]
    _, body = call(backend, spec, "GET", f"/scintiseg/studies/{DONE_ID}")
    gland, nodule = body["images"][0]["frames"][0]["labels"]
    assert gland["area_mm2"] == 40.0 and gland["right_lobe_share_pct"] == 60.0 and nodule["count"] == 0


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


def test_preview_is_the_png_or_404_before_any_seg(spec: dict[str, Any]) -> None:
    answer, body = call(FakeBackend(), spec, "GET", f"/scintiseg/studies/{DONE_ID}/preview.png")
    assert answer == rest.Response(200, PNG, "image/png")
    answer, body = call(FakeBackend(), spec, "GET", f"/scintiseg/studies/{NEW_ID}/preview.png")
    assert answer.status == 404 and "no segmented image" in body["error"]


def test_models_lists_refused_folders_with_their_error(spec: dict[str, Any]) -> None:
    answer, body = call(FakeBackend(), spec, "GET", "/scintiseg/models")
    assert answer.status == 200 and body["models"][0]["stage"] == "refused"
    assert "no model card" in body["models"][0]["error"] and body["models"][0]["folder"] == "broken"


def test_reload_rescans_while_running_and_is_503_otherwise(spec: dict[str, Any]) -> None:
    backend = FakeBackend()
    answer, body = call(backend, spec, "POST", "/scintiseg/models/reload")
    assert answer.status == 200 and backend.reloads == 1 and body["models"][0]["stage"] == "refused"
    answer, body = call(FakeBackend(state="failed"), spec, "POST", "/scintiseg/models/reload")
    assert answer.status == 503 and "not running" in body["error"]


def test_agreement_answers_a_shadow_models_summary_and_404_for_an_unknown_model(spec: dict[str, Any]) -> None:
    answer, body = call(FakeBackend(), spec, "GET", "/scintiseg/models/scintiseg-nodule/2.0.0/agreement")
    assert answer.status == 200 and body["images"] == 1 and body["dice"]["nodule"] == {"mean": 0.8, "min": 0.8}
    assert body["found_by_active_only"] == 1 and body["against"] == ["scintiseg-nodule@1.0.0"]
    answer, body = call(FakeBackend(), spec, "GET", "/scintiseg/models/nothing/1.0.0/agreement")
    assert answer.status == 404 and "nothing@1.0.0" in body["error"]


def test_queue_lists_pending_running_and_failed_studies(spec: dict[str, Any]) -> None:
    backend = FakeBackend(pending=[NEW_ID], running=[DONE_ID])
    answer, body = call(backend, spec, "GET", "/scintiseg/queue")
    assert answer.status == 200
    assert body["pending"] == [NEW_ID] and body["running"] == [DONE_ID]
    assert body["failed"][0]["study"] == DONE_ID


@pytest.mark.parametrize("state, status", [("running", 200), ("failed", 503), ("stopped", 503)])
def test_health_is_200_only_while_running(spec: dict[str, Any], state: str, status: int) -> None:
    answer, body = call(FakeBackend(state=state), spec, "GET", "/scintiseg/health")
    assert answer.status == status and body["state"] == state
    assert body["status"] == ("ok" if status == 200 else "unavailable")


@pytest.mark.parametrize(
    "payload, force",
    [(None, False), (b"", False), (b"  \n", False), (b"{}", False), (b'{"force": true}', True),
     (b'{"force": false}', False)],
)
def test_process_queues_the_study_with_the_force_flag_of_the_body(
    spec: dict[str, Any], payload: bytes | None, force: bool
) -> None:
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


def test_a_trailing_slash_is_ignored_and_a_decoded_question_mark_stays_in_its_segment() -> None:
    assert rest.dispatch(FakeBackend(), "GET", "/scintiseg/health/").status == 200
    # Orthanc hands the path decoded and without its query: /models/%3F/2.0.0/agreement
    # arrives as below and asks for the model named "?", not for /scintiseg/models
    answer = rest.dispatch(FakeBackend(), "GET", "/scintiseg/models/?/2.0.0/agreement")
    assert answer.status == 404 and "?@2.0.0" in json.loads(answer.body)["error"]
    assert rest.dispatch(FakeBackend(), "GET", "/scintiseg/queue?x=1").status == 404


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


def test_model_entries_match_schema(spec: dict[str, Any], tmp_path: Path) -> None:
    from support.fake_models import write_fake_model

    from scintiseg.models.registry import Registry

    write_fake_model(tmp_path / "gland", "gland", refine=(40.0, 0.7), metrics={"dice": 0.9})
    write_fake_model(tmp_path / "nodule", "nodule")
    write_fake_model(tmp_path / "i131", "gland", name="scintiseg-gland-i131",
                     applies_to={"modalities": ["NM"], "radionuclide": {"codes": ["1368003"], "text": "(?i)iod"},
                                 "matrix": [64, 512], "priority": 10})
    (tmp_path / "empty").mkdir()
    entries = {e.folder.name: e.describe() for e in Registry(tmp_path, lambda card: card).current.entries}
    schema = deref(spec, spec["components"]["schemas"]["Models"])
    OAS30Validator({**schema, "components": spec["components"]}).validate({"models": list(entries.values())})
    gland = entries["gland"]
    assert gland["ident"] == "scintiseg-gland@0.0.0-test" and gland["stage"] == "active" and gland["error"] is None
    assert [s["window"] for s in gland["stages"]] == ["image", "previous"] and np.isclose(gland["metrics"]["dice"], 0.9)
    assert gland["labels"][0]["key"] == "gland" and gland["needs"] is None
    assert entries["nodule"]["needs"] == {"window_of": "gland", "margin": 0.25}
    rule = entries["i131"]["applies_to"]
    assert rule["priority"] == 10
    assert rule["radionuclide"] == {"codes": ["1368003"], "text": "(?i)iod", "if_absent": "refuse"}
    assert entries["empty"]["stage"] == "refused" and "no model card" in entries["empty"]["error"]
