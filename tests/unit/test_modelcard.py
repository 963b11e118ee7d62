"""Model cards are validated, and a card that does not match its ONNX file is refused."""

import json

import pytest

from scintiseg.modelcard import ModelCardError, find_cards, load_card, sha256_file


def write_model(folder, task="gland", **changes):
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


def test_valid_card_loads(tmp_path):
    write_model(tmp_path / "g")
    card = load_card(tmp_path / "g")
    assert card.ident == "scintiseg-gland@1.0.0"
    assert card.type == ("SCT", "69748006", "Thyroid")
    assert card.normalisation.percentile == 99.0
    assert card.min_component_mm2 == 20.0


def test_tampered_onnx_is_refused(tmp_path):
    write_model(tmp_path / "g")
    (tmp_path / "g" / "model.onnx").write_bytes(b"swapped")
    with pytest.raises(ModelCardError, match="sha256"):
        load_card(tmp_path / "g")


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"task": "liver"}, "task"),
        ({"input": {"name": "image", "size": 128, "window": "crop",
                    "normalisation": {"percentile": 99, "clip": 1.5}}}, "window"),
        ({"label": {"name": "x", "category": ["SCT", "1"], "type": ["SCT", "2", "y"]}}, "category"),
        ({"onnx": "missing.onnx"}, "not found"),
    ],
)
def test_bad_cards_say_why(tmp_path, changes, message):
    write_model(tmp_path / "g", **changes)
    with pytest.raises(ModelCardError, match=message):
        load_card(tmp_path / "g")


def test_not_json(tmp_path):
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "card.json").write_text("{")
    with pytest.raises(ModelCardError, match="JSON"):
        load_card(tmp_path / "g")


def test_find_cards_needs_one_model_per_task(tmp_path):
    write_model(tmp_path / "gland", "gland")
    with pytest.raises(ModelCardError, match="no nodule model"):
        find_cards(tmp_path)
    write_model(tmp_path / "nodule", "nodule")
    assert set(find_cards(tmp_path)) == {"gland", "nodule"}
    write_model(tmp_path / "gland2", "gland")
    with pytest.raises(ModelCardError, match="two gland models"):
        find_cards(tmp_path)


def _refine_section(folder, **changes):
    onnx = folder / "refine.onnx"
    onnx.write_bytes(b"a second pass")
    section = {
        "onnx": "refine.onnx",
        "sha256": sha256_file(onnx),
        "input": {"name": "image", "size": 96, "window": "gland",
                  "normalisation": {"percentile": 98.0, "clip": 1.5}},
        "output": {"name": "logits", "threshold": 0.5},
    }
    section.update(changes)
    return section


def test_gland_refine_pass_is_part_of_the_gland_model(tmp_path):
    folder = tmp_path / "g"
    folder.mkdir()
    write_model(folder, refine=_refine_section(folder))
    card = load_card(folder)
    assert card.refine is not None
    assert card.refine.ident == card.ident == "scintiseg-gland@1.0.0"
    assert card.refine.path == folder / "refine.onnx" and card.refine.window == "gland"
    assert card.refine.size == 96 and card.refine.threshold == 0.5
    assert card.refine.normalisation.percentile == 98.0
    assert card.refine.label_name == card.label_name and card.refine.refine is None
    write_model(folder)
    assert load_card(folder).refine is None


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
def test_bad_refine_pass_is_refused(tmp_path, task, changes, message):
    folder = tmp_path / task
    folder.mkdir()
    section = _refine_section(folder, **changes)
    if changes.get("onnx") == "model.onnx":
        write_model(folder, task)
        section["sha256"] = sha256_file(folder / "model.onnx")
    write_model(folder, task, refine=section)
    with pytest.raises(ModelCardError, match=message):
        load_card(folder)
