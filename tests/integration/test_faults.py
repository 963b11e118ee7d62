"""Faults on the real Orthanc: model files removed or corrupted at run time, an onnxruntime
error, Orthanc refusing the SEG. Each study is marked failed with the reason, retried with
back-off up to RetryLimit, listed by GET /scintiseg/queue, and a manual retry works.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.fake_models import write_fake_models
from support.orthanc_harness import STABLE_AGE, OrthancServer, make_study, missing_tools, wait_for

pytestmark = pytest.mark.integration

#: A retry 1 s after the first failure, the second 2 s after the next one.
RETRIES = {"RetryLimit": 2, "RetryBackoffSeconds": 1}

#: Refuses every SEG while the flag file exists (Orthanc's Lua filter of received instances).
LUA_FILTER = """
function ReceivedInstanceFilter(dicom, origin, info)
  if dicom.Modality == 'SEG' then
    local flag = io.open('{flag}', 'r')
    if flag ~= nil then
      flag:close()
      return false
    end
  end
  return true
end
"""


def scintiseg_section(**changes: Any) -> dict[str, Any]:
    from scintiseg.app.config import strip_json_comments

    config = json.loads(strip_json_comments((Path(__file__).parents[2] / "orthanc.json").read_text()))
    return {**config["ScintiSeg"], **changes}


@contextlib.contextmanager
def server_with(tmp_path: Path, models: Path, **extra: Any) -> Iterator[OrthancServer]:
    if missing_tools():
        pytest.fail(str(missing_tools()))
    server = OrthancServer(data=tmp_path / "orthanc", models=models,
                           extra_config={"ScintiSeg": scintiseg_section(**RETRIES), **extra})
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def own_models(tmp_path: Path, models_dir: Path) -> Path:
    """A copy of the models that the test may damage."""
    return Path(shutil.copytree(models_dir, tmp_path / "models", symlinks=False))


def queue(server: OrthancServer) -> dict[str, Any]:
    return server.get("/scintiseg/queue")


def gave_up(server: OrthancServer, sid: str) -> dict[str, Any] | None:
    failed = [f for f in queue(server)["failed"] if f["study"] == sid and f["retry_at"] is None]
    return failed[0] if failed and failed[0]["attempts"] == RETRIES["RetryLimit"] + 1 else None


def send_one(server: OrthancServer, tmp_path: Path, seed: int, frames: int = 1) -> str:
    study = make_study(tmp_path / f"s{seed}", seed=seed, frames=frames)
    server.storescu(study.files)
    server.wait_result(study.study_uid, timeout=STABLE_AGE + 60, statuses=("failed", "done"))
    sid = server.study_id(study.study_uid)
    assert sid is not None
    return sid


def test_a_model_file_removed_then_restored_is_retried_through(
    tmp_path: Path, own_models: Path
) -> None:
    with server_with(tmp_path, own_models) as server:
        onnx = next(own_models.glob("*gland*/model.onnx"))
        aside = onnx.with_suffix(".aside")
        onnx.rename(aside)
        sid = send_one(server, tmp_path, seed=4000)
        result = server.result(sid)
        assert result is not None and result["status"] == "failed" and result["retriable"] is True
        # the registry notices before the job starts: the served gland model is refused
        assert "is refused now" in result["reason"] and "not found" in result["reason"], result["reason"]
        (retrying,) = [r for r in queue(server)["retrying"] if r["study"] == sid]
        assert retrying["attempts"] == 1 and retrying["retry_at"]
        aside.rename(onnx)  # restored: the automatic retry goes through
        done = wait_for("the retry", lambda: (r := server.result(sid)) and r["status"] == "done" and r, 30)
        assert len(done["seg_instance_ids"]) == 1
        assert all(f["study"] != sid for f in queue(server)["failed"] + queue(server)["retrying"])


def test_a_corrupted_model_file_fails_until_the_limit_then_a_manual_retry_works(
    tmp_path: Path, own_models: Path
) -> None:
    with server_with(tmp_path, own_models) as server:
        onnx = next(own_models.glob("*nodule*/model.onnx"))
        original = onnx.read_bytes()
        onnx.write_bytes(original[: len(original) // 2])  # a half-copied file
        sid = send_one(server, tmp_path, seed=4001)
        failed = wait_for("the retries to run out", lambda: gave_up(server, sid), 30)
        assert "is refused now" in failed["reason"] and "sha256 of model.onnx" in failed["reason"], failed
        assert server.get("/system")["Version"]  # Orthanc serves on
        onnx.write_bytes(original)
        answer = json.loads(server.request("POST", f"/scintiseg/studies/{sid}/process"))
        assert answer["queued"] is True
        wait_for("the manual retry", lambda: (r := server.result(sid)) and r["status"] == "done" and r, 30)
        assert all(f["study"] != sid for f in queue(server)["failed"])


def test_an_onnxruntime_error_fails_the_image_with_retries_and_other_studies_go_on(tmp_path: Path) -> None:
    models = write_fake_models(tmp_path / "fixed-batch", fixed_batch=1)  # fails on more than one frame
    with server_with(tmp_path, models) as server:
        sid = send_one(server, tmp_path, seed=4002, frames=3)
        failed = wait_for("the retries to run out", lambda: gave_up(server, sid), 30)
        assert "onnxruntime" in failed["reason"].lower() or "reshape" in failed["reason"].lower(), failed
        assert server.result(sid)["retriable"] is True  # type: ignore[index]
        ok = send_one(server, tmp_path, seed=4003, frames=1)
        assert server.result(ok)["status"] == "done"  # type: ignore[index]
        # a manual retry is taken and runs again (and fails again: the model cannot change)
        before = server.result(sid)["job_started"]  # type: ignore[index]
        server.request("POST", f"/scintiseg/studies/{sid}/process")
        wait_for("the manual retry", lambda: server.result(sid)["job_started"] != before, 30)  # type: ignore[index]


def test_orthanc_refusing_the_seg_fails_the_study_and_a_manual_retry_stores_it(
    tmp_path: Path, models_dir: Path
) -> None:
    flag = tmp_path / "refuse-seg"
    flag.write_text("on")
    lua = tmp_path / "filter.lua"
    lua.write_text(LUA_FILTER.replace("{flag}", str(flag)))
    with server_with(tmp_path, models_dir, LuaScripts=[str(lua)]) as server:
        sid = send_one(server, tmp_path, seed=4004)
        failed = wait_for("the retries to run out", lambda: gave_up(server, sid), 30)
        assert "refused to store" in failed["reason"] and "FilteredOut" in failed["reason"], failed
        assert "SEG" not in server.series_by_modality(sid)
        flag.unlink()  # storage accepts SEGs again
        server.request("POST", f"/scintiseg/studies/{sid}/process")
        wait_for("the manual retry", lambda: (r := server.result(sid)) and r["status"] == "done" and r, 30)
        assert len(server.series_by_modality(sid)["SEG"]) == 1
