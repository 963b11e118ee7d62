"""Security on the real Orthanc: authentication on every route of ours, no remote access and no
Lua over REST under ``make run``, no path traversal, models from their folder only, no patient
identity in Orthanc's log.
"""

from __future__ import annotations

import http.client
import json
import posixpath
import re
import shutil
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.orthanc_harness import STABLE_AGE, OrthancServer, make_study, missing_tools

from scintiseg.api import routes as rest
from scintiseg.app.config import strip_json_comments

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_ID = "0" * 8 + "".join("-" + "0" * 8 for _ in range(4))
SECRET = b"secret outside the viewer's folder\n"


def raw(server: OrthancServer, method: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """One request with the path sent exactly as given (no client-side normalisation)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=30)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            conn.putheader(name, value)
        conn.putheader("Content-Length", "0")
        conn.endheaders()
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        conn.close()


def route_paths() -> set[str]:
    """Every path of ours: the registered route regexes and the OpenAPI paths, ids filled in."""
    paths = {"/scintiseg/status", "/ohif", "/ohif/", "/ohif/viewer", "/ohif/index.html"}
    for route in rest.ORTHANC_ROUTES:
        paths.add(re.sub(r"\([^)]*\)", SAMPLE_ID, route).replace("\\", ""))
    spec = yaml.safe_load((ROOT / "docs" / "openapi.yaml").read_text())
    for path in spec["paths"]:
        paths.add(re.sub(r"\{[^}]+\}", SAMPLE_ID, path))
    return paths


def start(tmp_path: Path, models: Path, **extra: Any) -> OrthancServer:
    if missing_tools():
        pytest.fail(str(missing_tools()))
    server = OrthancServer(data=tmp_path / "orthanc", models=models, extra_config=extra)
    server.auth = None
    return server


def test_every_route_of_ours_needs_credentials(tmp_path: Path, models_dir: Path) -> None:
    server = start(tmp_path, models_dir, AuthenticationEnabled=True, RegisteredUsers={"nurse": "s3cret-pass"})
    server.auth = ("nurse", "s3cret-pass")
    server.start()
    try:
        paths = route_paths()
        assert len(paths) >= 10 and any("/process" in p for p in paths)
        for path in sorted(paths):
            for method in ("GET", "POST"):
                status, _ = raw(server, method, path)
                assert status == 401, f"{method} {path} answered {status} without credentials"
                status, _ = raw(server, method, path, {"Authorization": "Basic bnVyc2U6d3Jvbmc="})  # nurse:wrong
                assert status == 401, f"{method} {path} answered {status} with a wrong password"
        assert json.loads(server.request("GET", "/scintiseg/health"))["status"] == "ok"
    finally:
        server.stop()


def test_make_run_refuses_remote_peers_and_lua_over_rest(orthanc: OrthancServer) -> None:
    folder = orthanc.data / "config"  # what scripts/run-orthanc.sh wrote and Orthanc loaded
    merged: dict[str, Any] = {}
    for path in sorted(folder.glob("*.json")):
        merged.update(json.loads(strip_json_comments(path.read_text())))
    assert merged["RemoteAccessAllowed"] is False
    assert merged["ExecuteLuaEnabled"] is False and merged["RestApiWriteToFileSystemEnabled"] is False
    assert merged["DicomAlwaysAllowStore"] is False and merged["DicomCheckModalityHost"] is True
    # the repository's configuration, which make run links, says the same
    shared = json.loads(strip_json_comments((ROOT / "orthanc.json").read_text()))
    assert shared["ExecuteLuaEnabled"] is False
    status, body = raw(orthanc, "POST", "/tools/execute-script")
    conn = http.client.HTTPConnection("127.0.0.1", orthanc.http_port, timeout=30)
    conn.request("POST", "/tools/execute-script", body=b'print("lua ran")')
    answer = conn.getresponse()
    text = answer.read()
    conn.close()
    assert answer.status in (403, 404) and b"lua ran" not in text, (answer.status, text)
    assert status in (403, 404)


@pytest.fixture(scope="module")
def viewer_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("viewer")
    site = root / "site"
    site.mkdir()
    (site / "index.html").write_text("<html>viewer</html>")
    (site / "app.js").write_text("// app")
    (root / "secret.txt").write_bytes(SECRET)
    (site / "link-out.txt").symlink_to(root / "secret.txt")
    (site / "dir-out").symlink_to(root)
    return site


@pytest.mark.parametrize(
    "path",
    [
        "/ohif/../secret.txt",
        "/ohif/%2e%2e/secret.txt",
        "/ohif/%2E%2E%2Fsecret.txt",
        "/ohif/..%2fsecret.txt",
        "/ohif/%2e%2e%5csecret.txt",
        "/ohif//etc/passwd",
        "/ohif/%2fetc%2fpasswd",
        "/ohif/link-out.txt",
        "/ohif/dir-out/secret.txt",
        "/ohif/app.js/../../secret.txt",
    ],
)
def test_no_path_leaves_the_viewer_folder(
    tmp_path: Path, models_dir: Path, viewer_site: Path, path: str, viewer_server: OrthancServer
) -> None:
    status, body = raw(viewer_server, "GET", path)
    assert SECRET not in body and b"root:" not in body, f"{path} leaked a file outside the site"
    assert status in (200, 400, 404), f"{path}: {status}"
    if status == 200:
        assert body == b"<html>viewer</html>", "only the viewer's page may answer"


@pytest.fixture(scope="module")
def viewer_server(tmp_path_factory: pytest.TempPathFactory, models_dir: Path, viewer_site: Path) -> Any:
    section = json.loads(strip_json_comments((ROOT / "orthanc.json").read_text()))["ScintiSeg"]
    server = start(tmp_path_factory.mktemp("viewer-orthanc"), models_dir,
                   ScintiSeg={**section, "OhifDirectory": str(viewer_site)})
    server.start()
    try:
        status, body = raw(server, "GET", "/ohif/app.js")
        assert status == 200 and body == b"// app"  # the site itself is served
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("name", ["..%2F..%2Fsystem", "%2e%2e", "..", "x" * 300, "%00", SAMPLE_ID + "%2F..%2F.."])
def test_routes_taking_an_id_refuse_traversal(orthanc: OrthancServer, name: str) -> None:
    for method, suffix in (("GET", ""), ("GET", "/preview.png"), ("POST", "/process")):
        path = f"/scintiseg/studies/{name}{suffix}"
        status, body = raw(orthanc, method, path)
        if status in (400, 404):
            continue  # refused by our route (or Orthanc's router)
        # Orthanc decodes and normalises the URL before routing: a ".." that climbs out of
        # /scintiseg/ reaches Orthanc's own route for the normalised path, never a file
        normalised = posixpath.normpath(urllib.parse.unquote(path))
        assert not normalised.startswith("/scintiseg/"), f"{method} {path}: {status} from our route"
        assert (status, body) == raw(orthanc, method, normalised), f"{method} {path} is not {normalised}"


def test_models_outside_the_configured_folder_are_refused(tmp_path: Path, models_dir: Path) -> None:
    models = Path(shutil.copytree(models_dir, tmp_path / "models"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    card_path = next(models.glob("*gland*/card.json"))
    card = json.loads(card_path.read_text())
    stage = card["stages"][0] if "stages" in card else card  # card schema 2, or the first format
    shutil.copy(card_path.parent / stage["onnx"], elsewhere / "model.onnx")
    stage["onnx"] = "../../elsewhere/model.onnx"
    card_path.write_text(json.dumps(card))
    server = start(tmp_path, models)
    with pytest.raises(AssertionError, match="outside the models folder"):
        server.start()  # the harness reports the plugin's failed state
    server.stop()


def test_no_patient_identity_in_orthancs_log(tmp_path: Path, models_dir: Path) -> None:
    section = json.loads(strip_json_comments((ROOT / "orthanc.json").read_text()))["ScintiSeg"]
    server = start(tmp_path, models_dir, ScintiSeg={**section, "LogLevel": "DEBUG"})
    server.start()
    try:
        import pydicom

        sent = []
        for seed, broken in ((7100, False), (7101, True)):
            study = make_study(tmp_path / str(seed), seed=seed)
            ds = pydicom.dcmread(study.files[0])
            ds.PatientName = f"Zyxwv^Qualmish{seed}"
            ds.PatientID = f"PIDQ{seed}X"
            ds.AccessionNumber = f"ACCQ{seed}Y"
            if broken:  # an error path logs too
                ds.PhotometricInterpretation = "PALETTE COLOR"
            ds.save_as(study.files[0], enforce_file_format=True)
            server.storescu(study.files)
            sent.append((study, ds))
        for study, _ in sent:
            server.wait_result(study.study_uid, timeout=STABLE_AGE + 60, statuses=("done", "failed"))
        server.wait_idle()
    finally:
        server.stop()
    log = server.log()
    assert "ScintiSeg" in log and "segmented" in log  # the log is there, and verbose
    for _, ds in sent:
        for value in (str(ds.PatientName), "Qualmish", ds.PatientID, ds.AccessionNumber):
            assert value not in log, f"{value!r} appears in Orthanc's log"
