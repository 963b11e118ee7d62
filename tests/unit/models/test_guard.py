"""Model files: confined to the models folder (the registry refuses a folder that is not)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scintiseg.models.guard import ModelFilesError, confined_folder, confined_model_files


def models(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    for task in ("gland", "nodule"):
        folder = root / task
        folder.mkdir(parents=True)
        (folder / "model.onnx").write_bytes(f"onnx of {task}".encode())
        (folder / "card.json").write_text(json.dumps({"schema": 2, "stages": [{"onnx": "model.onnx"}]}))
    return root


def test_lists_cards_and_onnx_files(tmp_path: Path) -> None:
    root = models(tmp_path)
    assert [p.relative_to(root).as_posix() for p in confined_model_files(root)] == [
        "gland/card.json", "gland/model.onnx", "nodule/card.json", "nodule/model.onnx"
    ]


@pytest.mark.parametrize("onnx", ["../../outside.onnx", "/etc/hostname"])
@pytest.mark.parametrize("schema", [1, 2])
def test_a_card_naming_a_file_outside_the_folder_is_refused(tmp_path: Path, onnx: str, schema: int) -> None:
    root = models(tmp_path)
    (tmp_path / "outside.onnx").write_bytes(b"x")
    card = {"onnx": onnx} if schema == 1 else {"schema": 2, "stages": [{"onnx": "model.onnx"}, {"onnx": onnx}]}
    (root / "gland" / "card.json").write_text(json.dumps(card))
    with pytest.raises(ModelFilesError, match="outside the models folder"):
        confined_folder(root / "gland", root)
    assert confined_folder(root / "nodule", root)  # the other folder is fine


def test_a_symbolic_link_leading_out_is_refused(tmp_path: Path) -> None:
    root = models(tmp_path)
    elsewhere = tmp_path / "elsewhere.onnx"
    elsewhere.write_bytes(b"x")
    onnx = root / "nodule" / "model.onnx"
    onnx.unlink()
    onnx.symlink_to(elsewhere)
    with pytest.raises(ModelFilesError, match="outside the models folder"):
        confined_model_files(root)
