"""Model files: confined to the models folder, checked against their start-up snapshot."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from scintiseg.modelguard import ModelFiles, ModelFilesError, confined_model_files


def models(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    for task in ("gland", "nodule"):
        folder = root / task
        folder.mkdir(parents=True)
        (folder / "model.onnx").write_bytes(f"onnx of {task}".encode())
        (folder / "card.json").write_text(json.dumps({"onnx": "model.onnx"}))
    return root


def test_snapshot_lists_cards_and_onnx_files(tmp_path: Path) -> None:
    root = models(tmp_path)
    files = ModelFiles(root).files
    assert [p.relative_to(root).as_posix() for p in files] == [
        "gland/card.json", "gland/model.onnx", "nodule/card.json", "nodule/model.onnx"
    ]


def test_a_removed_or_changed_file_fails_the_check_and_a_restored_one_passes(tmp_path: Path) -> None:
    root = models(tmp_path)
    guard = ModelFiles(root)
    guard.check()
    onnx = root / "gland" / "model.onnx"
    original = onnx.read_bytes()
    onnx.unlink()
    with pytest.raises(ModelFilesError, match="was removed since start-up"):
        guard.check()
    onnx.write_bytes(b"corrupt")
    with pytest.raises(ModelFilesError, match="changed since start-up"):
        guard.check()
    onnx.write_bytes(original)  # restored: same content, new mtime
    guard.check()
    os.utime(onnx)  # touched only
    guard.check()


@pytest.mark.parametrize("onnx", ["../../outside.onnx", "/etc/hostname"])
def test_a_card_naming_a_file_outside_the_folder_is_refused(tmp_path: Path, onnx: str) -> None:
    root = models(tmp_path)
    (tmp_path / "outside.onnx").write_bytes(b"x")
    (root / "gland" / "card.json").write_text(json.dumps({"onnx": onnx}))
    with pytest.raises(ModelFilesError, match="outside the models folder"):
        confined_model_files(root)


def test_a_symbolic_link_leading_out_is_refused(tmp_path: Path) -> None:
    root = models(tmp_path)
    elsewhere = tmp_path / "elsewhere.onnx"
    elsewhere.write_bytes(b"x")
    onnx = root / "nodule" / "model.onnx"
    onnx.unlink()
    onnx.symlink_to(elsewhere)
    with pytest.raises(ModelFilesError, match="outside the models folder"):
        ModelFiles(root)
