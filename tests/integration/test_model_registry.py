"""Model folders added, broken, upgraded, rolled back and shadowed while a real Orthanc runs.

One Orthanc with the real plugin and its own copy of the models folder; folders are
written under a hidden name and renamed into place, as an operator (or ``export``)
does; studies go in with storescu. The registry must notice each change within
10 s, without a restart.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.fake_models import write_fake_model
from support.openapi_check import check_answer, load_spec
from support.orthanc_harness import STABLE_AGE, OrthancServer, make_study, serving, wait_for

pytestmark = pytest.mark.integration

#: The I-131 variants' rule: the radionuclide's SNOMED CT code or its name, and a priority.
I131 = {"modalities": ["NM"], "radionuclide": {"codes": ["1368003"], "text": "(?i)iodine|I-?131"}, "priority": 10}
NOTICE_S = 10.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[OrthancServer]:
    """An Orthanc of the module's own, on a copy of the models folder that the tests change."""
    models = tmp_path_factory.mktemp("registry") / "models"
    shutil.copytree(models_dir, models)
    yield from serving(tmp_path_factory.mktemp("orthanc-registry"), models)


def models(server: OrthancServer) -> dict[str, dict[str, Any]]:
    """``GET /scintiseg/models``, checked against the OpenAPI file, by folder name."""
    body = server.request("GET", "/scintiseg/models")
    check_answer(load_spec(), "GET", "/scintiseg/models", 200, "application/json", body)
    return {m["folder"]: m for m in json.loads(body)["models"]}


def active(server: OrthancServer) -> list[str]:
    return sorted(m["ident"] for m in models(server).values() if m["stage"] == "active")


def move_in(server: OrthancServer, name: str, write: Any) -> float:
    """Write a model folder under a hidden name, rename it into place; the time of the rename."""
    hidden = server.models / f".{name}.incoming"
    write(hidden)
    hidden.rename(server.models / name)
    return time.monotonic()


def remove(server: OrthancServer, *folders: str) -> None:
    """Delete model folders and wait for the registry to forget them."""
    for folder in folders:
        shutil.rmtree(server.models / folder)
    wait_for("the folders to be gone", lambda: not set(folders) & set(models(server)), timeout=NOTICE_S)


def wait_stage(server: OrthancServer, folder: str, stage: str, since: float) -> dict[str, Any]:
    entry = wait_for(
        f"folder {folder} to be {stage}",
        lambda: (lambda m: m if m and m["stage"] == stage else None)(models(server).get(folder)),
        timeout=NOTICE_S + 5,
        every=0.2,
    )
    assert time.monotonic() - since <= NOTICE_S, f"{folder} noticed after {time.monotonic() - since:.1f} s"
    return entry


def segment(server: OrthancServer, tmp: Path, seed: int, isotope: str) -> tuple[str, dict[str, Any]]:
    study = make_study(tmp / f"s{seed}", seed=seed, isotope=isotope)
    server.storescu(study.files)
    result = server.wait_result(study.study_uid, timeout=STABLE_AGE + 60)
    sid = server.study_id(study.study_uid)
    assert sid is not None
    return sid, result


def seg_algorithms(server: OrthancServer, instance_id: str) -> list[str]:
    seg = server.instance(instance_id)
    return [
        f"{item.SegmentationAlgorithmIdentificationSequence[0].AlgorithmName}@"
        f"{item.SegmentationAlgorithmIdentificationSequence[0].AlgorithmVersion}"
        for item in seg.SegmentSequence
    ]


def test_an_i131_variant_added_while_orthanc_runs_serves_i131_studies_only(
    server: OrthancServer, tmp_path: Path
) -> None:
    base = active(server)
    tc_before, before = segment(server, tmp_path, 300, "Tc-99m")
    assert before["models"] == base
    t = move_in(server, "gland-i131", lambda f: write_fake_model(
        f, "gland", name="scintiseg-gland-i131", version="1.0.0", applies_to=I131))
    move_in(server, "nodule-i131", lambda f: write_fake_model(
        f, "nodule", name="scintiseg-nodule-i131", version="1.0.0", applies_to=I131))
    wait_stage(server, "gland-i131", "active", t)
    wait_stage(server, "nodule-i131", "active", t)
    assert models(server)["gland-i131"]["applies_to"]["priority"] == 10

    _, tc = segment(server, tmp_path, 301, "Tc-99m")
    sid, iodine = segment(server, tmp_path, 302, "I-131")
    assert tc["models"] == base, "a Tc-99m study must keep the current models"
    variants = ["scintiseg-gland-i131@1.0.0", "scintiseg-nodule-i131@1.0.0"]
    assert iodine["models"] == variants
    (seg_id,) = iodine["seg_instance_ids"]
    assert seg_algorithms(server, seg_id) == variants
    assert "scintiseg-gland-i131@1.0.0" in server.instance(seg_id).SeriesDescription
    # the study made before the variants were added was not touched
    server.wait_idle()
    assert server.result(tc_before) == before
    remove(server, "gland-i131", "nodule-i131")


def test_a_broken_folder_dropped_in_is_refused_and_the_others_keep_serving(
    server: OrthancServer, tmp_path: Path
) -> None:
    base = active(server)

    def broken(folder: Path) -> None:
        write_fake_model(folder, "gland", version="50.0.0")
        (folder / "model.onnx").write_bytes(b"truncated")

    t = move_in(server, "gland-broken", broken)
    entry = wait_stage(server, "gland-broken", "refused", t)
    assert "sha256 of model.onnx" in entry["error"] and entry["name"] == "scintiseg-gland"
    assert "model folder gland-broken refused" in server.log()
    assert active(server) == base
    _, result = segment(server, tmp_path, 310, "Tc-99m")
    assert result["status"] == "done" and result["models"] == base
    assert server.get("/scintiseg/health")["status"] == "ok"
    remove(server, "gland-broken")


def test_an_upgrade_while_orthanc_runs_then_a_rollback(server: OrthancServer, tmp_path: Path) -> None:
    base = active(server)
    old_gland = next(m for m in base if m.startswith("scintiseg-gland@"))
    sid, before = segment(server, tmp_path, 320, "Tc-99m")
    t = move_in(server, "gland-9.0.0", lambda f: write_fake_model(f, "gland", version="9.0.0"))
    wait_stage(server, "gland-9.0.0", "active", t)
    old_folder = next(k for k, m in models(server).items() if m["ident"] == old_gland)
    assert models(server)[old_folder]["stage"] == "superseded"
    # nothing is reprocessed unasked (ReprocessOnUpgrade is off)...
    time.sleep(STABLE_AGE + 1)
    server.wait_idle()
    assert server.result(sid) == before
    # ...until the study is asked for: a new SEG series is added, the old one kept
    server.request("POST", f"/scintiseg/studies/{sid}/process")

    def upgraded() -> dict[str, Any] | None:
        r = server.result(sid)
        return r if r and r["status"] == "done" and "scintiseg-gland@9.0.0" in r["models"] else None

    after = wait_for("the study made again by the new version", upgraded, timeout=STABLE_AGE + 60)
    segs = server.series_by_modality(sid)["SEG"]
    assert len(segs) == 2 and before["seg_instance_ids"][0] in segs
    (new_seg,) = after["seg_instance_ids"]
    assert "scintiseg-gland@9.0.0" in seg_algorithms(server, new_seg)
    (entry,) = after["images"].values()
    assert "scintiseg-gland@9.0.0" in entry["models"]
    # removing the folder rolls back
    remove(server, "gland-9.0.0")
    assert active(server) == base


def test_a_shadow_candidate_runs_unseen_and_reports_its_agreement(server: OrthancServer, tmp_path: Path) -> None:
    base = active(server)
    old_nodule = next(m for m in base if m.startswith("scintiseg-nodule@"))

    def shadow(folder: Path) -> None:
        write_fake_model(folder, "nodule", version="99.0.0")
        (folder / "deploy.json").write_text('{"stage": "shadow"}')

    t = move_in(server, "nodule-candidate", shadow)
    wait_stage(server, "nodule-candidate", "shadow", t)
    sid, result = segment(server, tmp_path, 330, "Tc-99m")
    assert result["models"] == base
    assert len(server.series_by_modality(sid)["SEG"]) == 1
    (seg_id,) = result["seg_instance_ids"]
    assert "scintiseg-nodule@99.0.0" not in seg_algorithms(server, seg_id)
    body = server.request("GET", "/scintiseg/models/scintiseg-nodule/99.0.0/agreement")
    check_answer(load_spec(), "GET", "/scintiseg/models/scintiseg-nodule/99.0.0/agreement", 200,
                 "application/json", body)
    summary = json.loads(body)
    assert summary["stage"] == "shadow" and summary["images"] >= 1 and summary["against"] == [old_nodule]
    assert 0.0 <= summary["dice"]["nodule"]["min"] <= summary["dice"]["nodule"]["mean"] <= 1.0
    # the study answer shows nothing of the shadow
    study = json.loads(server.request("GET", f"/scintiseg/studies/{sid}"))
    assert "99.0.0" not in json.dumps(study)
    # the evidence outlives a restart: the records are in Orthanc's storage folder
    records = server.data / "db" / "scintiseg-shadow-agreement.jsonl"
    lines = [json.loads(line) for line in records.read_text().splitlines()]
    assert len(lines) == summary["images"] and {r["shadow"] for r in lines} == {"scintiseg-nodule@99.0.0"}
    server.restart()
    wait_stage(server, "nodule-candidate", "shadow", time.monotonic())
    after = json.loads(server.request("GET", "/scintiseg/models/scintiseg-nodule/99.0.0/agreement"))
    kept = ("images", "against", "dice", "found_by_active_only", "found_by_shadow_only")
    assert {k: after[k] for k in kept} == {k: summary[k] for k in kept}
    remove(server, "nodule-candidate")
