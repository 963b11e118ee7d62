"""The registry of model folders: stages, refusals, versions, shadows, hot reload, and the
models each image runs (stand-in ONNX models, real onnxruntime)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from support.fake_models import affine_onnx, write_fake_model, write_fake_models

from scintiseg.models.card import sha256_file
from scintiseg.models.registry import Registry, onnx_loader
from scintiseg.models.rules import ImageFacts
from scintiseg.pipeline.image import NoModelApplies, Pipeline
from scintiseg_phantoms.dicom import scan_to_dataset, study_uids
from scintiseg_phantoms.thyroid import generate_scan

I131 = {"modalities": ["NM"], "radionuclide": {"codes": ["1368003"], "text": "(?i)iodine|I-?131"}, "priority": 10}
HOT_LABEL = {"key": "hot", "name": "Hot nodule", "category": ["SCT", "49755003", "Morphologically Altered Structure"],
             "type": ["SCT", "27925004", "Nodule"], "anatomic_region": ["SCT", "69748006", "Thyroid"],
             "colour": [0, 200, 255], "numbered": True}


def registry(folder: Path) -> Registry:
    return Registry(folder, onnx_loader(["CPUExecutionProvider"]), poll_s=0.1)


def stages(reg: Registry) -> dict[str, tuple[str, str | None]]:
    return {e.folder.name: (e.stage, e.error) for e in reg.current.entries}


def nm(seed: int, isotope: str = "Tc-99m", matrix: int = 128) -> pydicom.Dataset:
    scan = generate_scan(seed, kind="cold_nodules", matrix=matrix, isotope=isotope)
    study, series, (sop,) = study_uids(seed, 1)
    return scan_to_dataset(scan, patient_id="P", patient_name="T^P", study_uid=study, series_uid=series, sop_uid=sop)


def edit_card(folder: Path, **changes: Any) -> None:
    card = json.loads((folder / "card.json").read_text())
    card.update(changes)
    (folder / "card.json").write_text(json.dumps(card))


# -- refusal: one broken folder, the others keep serving ---------------------------------
def _invalid_card(f: Path) -> None:
    (f / "card.json").write_text("{ not json")


def _unknown_key(f: Path) -> None:
    edit_card(f, colour=[1, 2, 3])


def _missing_onnx(f: Path) -> None:
    (f / "model.onnx").unlink()


def _corrupt_onnx(f: Path) -> None:
    (f / "model.onnx").write_bytes(b"\x08\x07 not a protobuf of a model")
    card = json.loads((f / "card.json").read_text())
    card["stages"][0]["sha256"] = sha256_file(f / "model.onnx")  # the hash matches: the file is broken
    (f / "card.json").write_text(json.dumps(card))


def _sha_mismatch(f: Path) -> None:
    (f / "model.onnx").write_bytes(affine_onnx(40.0, 0.5))


def _output_shape(f: Path) -> None:
    (f / "model.onnx").write_bytes(affine_onnx(40.0, 0.35, channels=2))  # two channels, one label
    card = json.loads((f / "card.json").read_text())
    card["stages"][0]["sha256"] = sha256_file(f / "model.onnx")
    (f / "card.json").write_text(json.dumps(card))


def _input_shape(f: Path) -> None:
    card = json.loads((f / "card.json").read_text())
    card["stages"][0]["input"]["size"] = 96
    (f / "card.json").write_text(json.dumps(card))


def _bad_deploy(f: Path) -> None:
    (f / "deploy.json").write_text('{"stage": "canary"}')


@pytest.mark.parametrize(
    ("breaks", "message"),
    [
        (_invalid_card, "not valid JSON"),
        (_unknown_key, "unknown key"),
        (_missing_onnx, "not found"),
        (_corrupt_onnx, "cannot load"),
        (_sha_mismatch, "sha256 of model.onnx"),
        (_output_shape, "output shape"),
        (_input_shape, "input shape"),
        (_bad_deploy, "deploy.json"),
    ],
)
def test_a_broken_folder_is_refused_and_the_others_serve(tmp_path: Path, breaks: Any, message: str,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    write_fake_models(tmp_path)
    write_fake_model(tmp_path / "gland-2", "gland", version="2.0.0")
    breaks(tmp_path / "gland-2")
    reg = registry(tmp_path)
    stage, error = stages(reg)["gland-2"]
    assert stage == "refused" and error is not None and message in error, error
    assert f"model folder gland-2 refused: {error}" in caplog.text
    # the older gland version serves instead; the nodule model is untouched
    assert reg.current.models == ["scintiseg-gland@0.0.0-test", "scintiseg-nodule@0.0.0-test"]
    assert Pipeline(reg.current).process(nm(1)).models == reg.current.models


def test_a_need_no_active_model_meets_is_refused(tmp_path: Path) -> None:
    write_fake_model(tmp_path / "nodule", "nodule")
    write_fake_model(tmp_path / "hot", "nodule", name="scintiseg-hot", labels=[HOT_LABEL],
                     measurements=[{"kind": "region", "label": "hot"}],
                     needs={"window_of": "liver"})
    reg = registry(tmp_path)
    assert stages(reg)["nodule"] == ("refused", "needs label 'gland', which no active model provides")
    assert stages(reg)["hot"][0] == "refused"  # its card: a post step refers to gland, which it does not need
    write_fake_model(tmp_path / "gland", "gland")
    reg.reload()
    assert stages(reg)["nodule"] == ("active", None)


def test_a_served_model_broken_in_place_fails_the_images_it_applies_to(tmp_path: Path) -> None:
    from scintiseg.pipeline.image import ModelUnavailable

    write_fake_models(tmp_path)
    write_fake_model(tmp_path / "gland-i131", "gland", name="scintiseg-gland-i131", applies_to=I131)
    reg = registry(tmp_path)
    onnx = tmp_path / "gland-i131" / "model.onnx"
    original = onnx.read_bytes()
    onnx.write_bytes(original[: len(original) // 2])  # corrupted in place
    current = reg.reload()
    assert stages(reg)["gland-i131"][0] == "refused" and set(current.broken) == {"scintiseg-gland-i131"}
    pipeline = Pipeline(current)
    with pytest.raises(ModelUnavailable, match="scintiseg-gland-i131@0.0.0-test is refused now"):
        pipeline.process(nm(8, "I-131"))  # not a gland-only result from the Tc-99m models
    assert pipeline.process(nm(9, "Tc-99m")).models == current.models  # the others keep serving
    onnx.write_bytes(original)
    assert reg.reload().broken == {}
    # a folder removed on purpose is not broken: its name simply stops serving
    shutil.rmtree(tmp_path / "gland-i131")
    assert reg.reload().broken == {}


def test_a_study_whose_only_models_broke_fails_retriably_instead_of_being_skipped(tmp_path: Path) -> None:
    from support.fake_gateway import FakeGateway

    from scintiseg.core.result import Status
    from scintiseg.pipeline.image import PipelineSource
    from scintiseg.work.jobs import StudyJobs
    from scintiseg.work.selection import Selection

    write_fake_models(tmp_path)
    reg = registry(tmp_path)
    gw = FakeGateway()
    gw.add(nm(10))
    (study,) = set(gw.study_of.values())
    jobs = StudyJobs(gw, PipelineSource(reg), Selection())
    onnx = tmp_path / "gland" / "model.onnx"
    aside = onnx.with_suffix(".aside")
    onnx.rename(aside)  # the job's snapshot notices it before starting
    result = jobs.run(study)
    assert result is not None and result.status == Status.FAILED and result.retriable is True
    assert "scintiseg-gland@0.0.0-test is refused now" in result.reason and "not found" in result.reason
    aside.rename(onnx)
    again = jobs.run(study)
    assert again is not None and again.status == Status.DONE


def test_the_same_version_twice_is_refused_once(tmp_path: Path) -> None:
    write_fake_models(tmp_path)
    shutil.copytree(tmp_path / "gland", tmp_path / "gland-copy")
    assert stages(registry(tmp_path))["gland-copy"] == (
        "refused", "scintiseg-gland@0.0.0-test is already served from folder gland")


# -- versions ------------------------------------------------------------------------------
def test_highest_version_serves_older_superseded_removal_rolls_back(tmp_path: Path) -> None:
    write_fake_models(tmp_path, version="1.2.0")
    write_fake_model(tmp_path / "g2", "gland", version="1.10.0")
    reg = registry(tmp_path)
    assert stages(reg) == {"g2": ("active", None), "gland": ("superseded", None), "nodule": ("active", None)}
    first = reg.current
    shutil.rmtree(tmp_path / "g2")
    second = reg.reload()
    assert stages(reg)["gland"] == ("active", None)
    assert second.generation > first.generation
    # the snapshot a job took keeps its models (and their loaded sessions)
    assert first.models == ["scintiseg-gland@1.10.0", "scintiseg-nodule@1.2.0"]
    assert second.outdated(["scintiseg-gland@1.10.0", "scintiseg-nodule@1.2.0"]) == ["scintiseg-gland@1.10.0"]
    # an unchanged folder keeps its sessions across reloads
    assert second.entry("scintiseg-nodule", "1.2.0").model is first.entry("scintiseg-nodule", "1.2.0").model


def test_polling_notices_a_folder_moved_into_place(tmp_path: Path) -> None:
    models = tmp_path / "models"
    write_fake_models(models)
    reg = registry(models)
    reg.start()
    try:
        hidden = models / ".incoming"
        write_fake_model(hidden, "gland", version="3.0.0")  # written under a hidden name: ignored
        time.sleep(0.4)
        assert "scintiseg-gland@3.0.0" not in reg.current.models
        hidden.rename(models / "gland-3")
        deadline = time.monotonic() + 10
        while "scintiseg-gland@3.0.0" not in reg.current.models and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "scintiseg-gland@3.0.0" in reg.current.models
    finally:
        reg.stop()


# -- which models an image runs --------------------------------------------------------------
def test_an_i131_variant_serves_i131_images_only(tmp_path: Path) -> None:
    write_fake_models(tmp_path)
    write_fake_model(tmp_path / "gland-i131", "gland", name="scintiseg-gland-i131", applies_to=I131)
    write_fake_model(tmp_path / "nodule-i131", "nodule", name="scintiseg-nodule-i131", applies_to=I131)
    pipeline = Pipeline(registry(tmp_path).current)
    tc, iodine = nm(2, "Tc-99m"), nm(3, "I-131")
    assert pipeline.process(tc).models == ["scintiseg-gland@0.0.0-test", "scintiseg-nodule@0.0.0-test"]
    result = pipeline.process(iodine)
    assert result.models == ["scintiseg-gland-i131@0.0.0-test", "scintiseg-nodule-i131@0.0.0-test"]
    algorithms = [s.SegmentationAlgorithmIdentificationSequence[0].AlgorithmName for s in result.seg.SegmentSequence]
    assert algorithms == ["scintiseg-gland-i131", "scintiseg-nodule-i131"]
    assert "scintiseg-gland-i131@0.0.0-test" in result.seg.SeriesDescription


def test_no_model_applying_raises_with_the_reason(tmp_path: Path) -> None:
    write_fake_model(tmp_path / "gland", "gland", applies_to={"matrix": [256, 1024]})
    pipeline = Pipeline(registry(tmp_path).current)
    with pytest.raises(NoModelApplies, match="matrix 128x128"):
        pipeline.process(nm(4))
    assert pipeline.process(nm(4, matrix=256)).labels[0].key == "gland"  # a gland-only plan


def test_a_nodule_model_drops_out_where_no_gland_model_applies(tmp_path: Path) -> None:
    write_fake_model(tmp_path / "gland", "gland", applies_to={"image_type": ["WHOLE BODY"]})
    write_fake_model(tmp_path / "nodule", "nodule")
    current = registry(tmp_path).current
    plan = current.plan(ImageFacts.of(nm(5)))
    assert plan.models == [] and "needs 'gland'" in plan.why_not


def test_a_third_label_flows_through_without_code(tmp_path: Path) -> None:
    write_fake_models(tmp_path)
    write_fake_model(tmp_path / "hot", "nodule", name="scintiseg-hot", affine=(40.0, 1.0), labels=[HOT_LABEL],
                     measurements=[{"kind": "region", "label": "hot"},
                                   {"kind": "lesions", "label": "hot", "within": "gland"}])
    pipeline = Pipeline(registry(tmp_path).current)
    ds = nm(6)
    result = pipeline.process(ds)
    # dependency order, ties by model name
    assert [lb.key for lb in result.labels] == ["gland", "hot", "nodule"]
    assert [s.SegmentLabel for s in result.seg.SegmentSequence] == ["Thyroid gland", "Hot nodule", "Cold nodule"]
    assert result.masks["hot"].any() and not (result.masks["hot"] & ~result.masks["gland"]).any()
    hot = result.frames[0]["labels"]["hot"]
    assert hot["pixels"] == int(result.masks["hot"].sum()) and hot["count"] >= 1
    assert "hot_inference_ms" in result.timings_ms
    picture = pipeline.preview(ds, result)
    rgb = np.asarray(picture.pixel_array)
    assert (rgb == np.array([0, 200, 255], np.uint8)).all(axis=-1).sum() > 50  # outline and swatch


# -- shadow ----------------------------------------------------------------------------------
def test_a_shadow_runs_beside_and_is_never_shown(tmp_path: Path) -> None:
    write_fake_models(tmp_path)
    shadow = write_fake_model(tmp_path / "nodule-2", "nodule", version="2.0.0", affine=(-40.0, 0.3))
    (shadow / "deploy.json").write_text('{"stage": "shadow"}')
    reg = registry(tmp_path)
    assert stages(reg)["nodule-2"] == ("shadow", None)
    from scintiseg.pipeline.shadow import AgreementLog

    log = AgreementLog()
    pipeline = Pipeline(reg.current, agreement=log)
    result = pipeline.process(nm(7))
    assert result.models == ["scintiseg-gland@0.0.0-test", "scintiseg-nodule@0.0.0-test"]
    assert all("2.0.0" not in s.SegmentationAlgorithmIdentificationSequence[0].AlgorithmVersion
               for s in result.seg.SegmentSequence)
    record = result.shadow["scintiseg-nodule@2.0.0"]
    assert record["against"] == "scintiseg-nodule@0.0.0-test" and 0.0 <= record["dice"]["nodule"] <= 1.0
    assert set(record) == {"against", "dice", "found_by_active_only", "found_by_shadow_only"}
    summary = log.summary("scintiseg-nodule@2.0.0")
    assert summary["images"] == 1 and summary["dice"]["nodule"]["mean"] == record["dice"]["nodule"]
    # promoted: {"stage": "active"} makes it the served version
    (shadow / "deploy.json").write_text('{"stage": "active"}')
    reg.reload()
    assert stages(reg)["nodule-2"] == ("active", None) and stages(reg)["nodule"] == ("superseded", None)
    assert Pipeline(reg.current).process(nm(7)).shadow == {}
