"""Model cards (schema 2 and the first format) are validated, and a card that does not
match its ONNX files is refused with the reason."""

import json

import pytest
from support import ROOT

from scintiseg.models.card import ModelCardError, convert_v1, load_card, sha256_file, task_card, version_key


def write_v1(folder, task="gland", **changes):
    """A card of the first format (``task``, ``label``, ``refine``)."""
    folder.mkdir(parents=True, exist_ok=True)
    onnx = folder / "model.onnx"
    onnx.write_bytes(b"not really onnx, the card only checks the hash " + task.encode())
    card = {
        "name": f"scintiseg-{task}",
        "version": "1.0.0",
        "task": task,
        "onnx": "model.onnx",
        "sha256": sha256_file(onnx),
        "input": {
            "name": "image",
            "size": 128,
            "window": "full" if task == "gland" else "gland",
            "normalisation": {"percentile": 99.0, "clip": 1.5},
        },
        "output": {"name": "logits", "threshold": 0.0},
        "label": {
            "name": "Thyroid gland",
            "category": ["SCT", "123037004", "Anatomical Structure"],
            "type": ["SCT", "69748006", "Thyroid"],
            "anatomic_region": None,
        },
        "postprocess": {"min_component_mm2": 20},
    }
    card.update(changes)
    (folder / "card.json").write_text(json.dumps(card))
    return card


def write_v2(folder, task="gland", **changes):
    folder.mkdir(parents=True, exist_ok=True)
    onnx = folder / "model.onnx"
    onnx.write_bytes(b"stand-in " + task.encode())
    card = task_card(task, name=f"scintiseg-{task}", version="2.0.0",
                     stages=[{"onnx": "model.onnx", "sha256": sha256_file(onnx)}])
    card.update(changes)
    (folder / "card.json").write_text(json.dumps(card))
    return card


def test_schema_2_card_loads(tmp_path):
    write_v2(tmp_path / "n", "nodule")
    card = load_card(tmp_path / "n")
    assert card.ident == "scintiseg-nodule@2.0.0" and card.label_keys == ("nodule",)
    (label,) = card.labels
    assert label.type == ("SCT", "27925004", "Nodule") and label.colour == (255, 0, 255) and label.numbered
    assert card.needs is not None and card.needs.label == "gland"
    (stage,) = card.stages
    assert stage.window == "needs" and stage.size == 128 and [s.name for s in stage.pre] == ["normalise"]
    assert [s.name for s in stage.post] == ["clean_nodules"] and stage.post[0].params["within"] == "gland"
    assert [(m.kind, m.label) for m in card.measurements] == [("region", "nodule"), ("lesions", "nodule")]
    assert card.applies_to.modalities == ("NM",) and card.applies_to.priority == 0


def test_first_format_card_reads_as_schema_2(tmp_path):
    folder = tmp_path / "g"
    write_v1(folder)
    refine = folder / "refine.onnx"
    refine.write_bytes(b"a second pass")
    raw = write_v1(folder, refine={"onnx": "refine.onnx", "sha256": sha256_file(refine),
                                   "input": {"name": "image", "size": 96, "window": "gland",
                                             "normalisation": {"percentile": 98.0, "clip": 1.5}},
                                   "output": {"name": "logits", "threshold": 0.5}})
    card = load_card(folder)
    assert card.ident == "scintiseg-gland@1.0.0" and card.label_keys == ("gland",)
    first, second = card.stages
    assert (first.window, second.window) == ("image", "previous")
    assert second.size == 96 and second.threshold == 0.5 and second.pre[0].params["percentile"] == 98.0
    assert first.post[0].name == "clean_gland" and first.post[0].params["min_component_mm2"] == 20.0
    converted = convert_v1(raw)
    assert converted["schema"] == 2 and "task" not in converted and "refine" not in converted


def test_shipped_cards_are_schema_2():
    for folder in sorted((ROOT / "models").iterdir()):
        raw = json.loads((folder / "card.json").read_text())
        assert raw["schema"] == 2, folder
        load_card(folder)


def test_tampered_onnx_is_refused(tmp_path):
    write_v2(tmp_path / "g")
    (tmp_path / "g" / "model.onnx").write_bytes(b"swapped")
    with pytest.raises(ModelCardError, match="sha256"):
        load_card(tmp_path / "g")


def _stage(**changes):
    return {"onnx": "model.onnx", "sha256": "x", "window": "image", "input": {"name": "image", "size": 128},
            "output": {"name": "logits"}, **changes}


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"schema": 3}, "schema"),
        ({"colour": 1}, "unknown key"),
        ({"labels": []}, "at least one label"),
        ({"labels": [{"key": "Gland!", "name": "x", "category": ["SCT", "1", "a"], "type": ["SCT", "2", "b"],
                      "colour": [1, 2, 3]}]}, "label key"),
        ({"labels": [{"key": "g", "name": "x", "category": ["SCT", "1"], "type": ["SCT", "2", "b"],
                      "colour": [1, 2, 3]}]}, "category"),
        ({"labels": [{"key": "g", "name": "x", "category": ["SCT", "1", "a"], "type": ["SCT", "2", "b"],
                      "colour": [1, 2, 300]}]}, "colour"),
        ({"stages": [_stage(window="crop")]}, "window must be one of"),
        ({"stages": [_stage(window="previous")]}, "no previous stage"),
        ({"stages": [_stage(window="needs")]}, "without 'needs'"),
        ({"stages": [_stage(onnx="missing.onnx")]}, "not found"),
        ({"stages": [_stage(onnx="../model.onnx")]}, "file of the model folder"),
        ({"stages": [_stage(pre=[{"step": "sharpen"}])]}, "unknown step 'sharpen'"),
        ({"stages": [_stage(post=[{"step": "clean_gland", "min_area": 3}])]}, "takes no parameter min_area"),
        ({"stages": [_stage(post=[{"step": "keep_inside"}])]}, "needs label"),
        ({"stages": [_stage(post=[{"step": "keep_inside", "label": "liver"}])]}, "refers to label 'liver'"),
        ({"stages": [_stage(pre=[{"step": "normalise", "percentile": 10}])]}, "percentile"),
        ({"needs": {"window_of": "gland"}}, "its own label"),
        ({"applies_to": {"modality": ["NM"]}}, "unknown condition"),
        ({"applies_to": {"matrix": [512, 64]}}, "matrix"),
        ({"applies_to": {"series_description": "("}}, "regular expression"),
        ({"applies_to": {"priority": "high"}}, "priority"),
        ({"measurements": [{"kind": "volume", "label": "gland"}]}, "measurement kind"),
        ({"measurements": [{"kind": "region", "label": "nodule"}]}, "not one of the model's labels"),
        ({"version": "1 0"}, "version"),
    ],
)
def test_bad_cards_say_why(tmp_path, changes, message):
    card = write_v2(tmp_path / "g")
    for stage in changes.get("stages") or []:
        if stage.get("sha256") == "x":
            stage["sha256"] = card["stages"][0]["sha256"]
    write_v2(tmp_path / "g", **changes)
    with pytest.raises(ModelCardError, match=message):
        load_card(tmp_path / "g")


def test_not_json(tmp_path):
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "card.json").write_text("{")
    with pytest.raises(ModelCardError, match="JSON"):
        load_card(tmp_path / "g")


@pytest.mark.parametrize(
    ("task", "changes", "message"),
    [
        ("nodule", {}, "only a gland model"),
        ("gland", {"sha256": "0" * 64}, "sha256 of refine.onnx"),
        ("gland", {"onnx": "model.onnx"}, "its own ONNX file"),
        ("gland", {"onnx": "missing.onnx"}, "not found"),
        ("gland", {"input": {"name": "image", "size": 128, "window": "full",
                             "normalisation": {"percentile": 99.0, "clip": 1.5}}}, "must be 'gland'"),
    ],
)
def test_bad_first_format_refine_pass_is_refused(tmp_path, task, changes, message):
    folder = tmp_path / task
    folder.mkdir()
    onnx = folder / "refine.onnx"
    onnx.write_bytes(b"a second pass")
    section = {"onnx": "refine.onnx", "sha256": sha256_file(onnx),
               "input": {"name": "image", "size": 96, "window": "gland",
                         "normalisation": {"percentile": 98.0, "clip": 1.5}}, **changes}
    write_v1(folder, task)
    if changes.get("onnx") == "model.onnx":
        section["sha256"] = sha256_file(folder / "model.onnx")
    write_v1(folder, task, refine=section)
    with pytest.raises(ModelCardError, match=message):
        load_card(folder)


def test_versions_compare_by_number():
    assert version_key("1.10.0") > version_key("1.9.2") > version_key("1.2.0")
    assert version_key("2.0.0") > version_key("1.2.0")
