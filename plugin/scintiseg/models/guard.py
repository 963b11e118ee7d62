"""Model files must lie inside the models folder.

Models are loaded from the configured models folder only. :func:`confined_folder`
refuses a model folder whose card names an ONNX file (or holds a file reached
through a symbolic link) that resolves outside the models folder: an absolute or
``..`` path in a card, a link leading out. The registry (:mod:`scintiseg.models.registry`)
runs it on each folder before loading it, and refuses the folder with the reason.

What a running process does when files change is the registry's job: a folder
added, changed or removed is noticed (polling, and before each job's snapshot is
taken), a changed file whose sha256 no longer matches its card gets the folder
refused, and a job runs on the sessions it started with, loaded from files whose
sha256 matched the card, so every SEG names the model that made it.
"""

from __future__ import annotations

import json
from pathlib import Path

CARD_FILE = "card.json"


class ModelFilesError(RuntimeError):
    """A model file resolves outside the models folder."""


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve(strict=False).relative_to(root)
    except ValueError:
        return False
    return True


def _named_onnx(raw: object) -> list[str]:
    """The ONNX file names a card (schema 2 stages, or the first format's ``onnx``/``refine``) gives."""
    if not isinstance(raw, dict):
        return []
    sections = [raw, raw.get("refine"), *(raw.get("stages") or [])]
    return [s["onnx"] for s in sections if isinstance(s, dict) and isinstance(s.get("onnx"), str)]


def confined_folder(folder: Path, models_dir: Path) -> list[Path]:
    """The card and ONNX files of one model folder, all inside ``models_dir``.

    Raises :class:`ModelFilesError` when one resolves outside it.
    """
    root = Path(models_dir).resolve()
    card = folder / CARD_FILE
    if not card.is_file():
        return []
    try:
        raw = json.loads(card.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raw = {}  # the card loader reports it properly
    named = [card, *(folder / name for name in _named_onnx(raw))]
    named += [p for p in sorted(folder.iterdir()) if p.is_symlink()]
    for path in named:
        if not _inside(path, root):
            raise ModelFilesError(f"{path} resolves to {path.resolve()}, outside the models folder {root}: refused")
    return [p for p in dict.fromkeys(named) if p.exists()]


def confined_model_files(models_dir: Path) -> list[Path]:
    """Every card and ONNX file of the models' folders (:func:`confined_folder` on each)."""
    files: list[Path] = []
    for folder in sorted(p for p in Path(models_dir).iterdir() if p.is_dir()):
        files.extend(confined_folder(folder, models_dir))
    return files
