"""The model files on disk must stay the ones loaded, and inside the models folder.

The models are loaded once, at start-up, and every SEG names their versions.
If a ``model.onnx`` or ``card.json`` is then removed, truncated or replaced
(a half-copied upgrade, a full disk, a mistaken ``rm``), the process would
go on writing SEGs that name files which no longer exist as they were: an
audit trail that lies. :class:`ModelFiles` takes a snapshot (size, mtime,
sha256) of every file of the models folder at load time, and
:meth:`ModelFiles.check` runs before each job that has images to segment:
a removed or changed file fails the job with a readable reason (retried with
back-off, so a restored file lets the study through; a real upgrade needs a
restart, as documented). A file whose size and mtime are unchanged is not
hashed again, so the check costs a few ``stat`` calls.

:func:`confined_model_files` refuses, at load, a card whose ONNX path (or a
file of the folder, through a symbolic link) resolves outside the configured
models folder: models are loaded from that folder only.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .modelcard import sha256_file as _sha256

CARD_FILE = "card.json"


class ModelFilesError(RuntimeError):
    """A model file is outside the models folder, removed or changed since start-up."""


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve(strict=False).relative_to(root)
    except ValueError:
        return False
    return True


def confined_model_files(models_dir: Path) -> list[Path]:
    """Every file of the models' folders (cards and the ONNX files they name).

    Raises :class:`ModelFilesError` when one resolves outside ``models_dir``
    (an absolute or ``..`` path in a card, a symbolic link leading out).
    """
    root = Path(models_dir).resolve()
    files: list[Path] = []
    for folder in sorted(p for p in Path(models_dir).iterdir() if p.is_dir()):
        card = folder / CARD_FILE
        if not card.is_file():
            continue
        named = [card]
        try:
            raw = json.loads(card.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raw = {}  # the card loader reports it properly
        if isinstance(raw, dict):
            for stage in (raw, raw.get("refine")):
                if isinstance(stage, dict) and isinstance(stage.get("onnx"), str):
                    named.append(folder / stage["onnx"])
        for path in named:
            if not _inside(path, root):
                raise ModelFilesError(
                    f"{path} resolves to {path.resolve()}, outside the models folder {root}: refused"
                )
        files.extend(p for p in named if p.exists())
    return files


class ModelFiles:
    """A snapshot of the model files, checked before each job."""

    def __init__(self, models_dir: Path) -> None:
        self.models_dir = Path(models_dir)
        self._known: dict[Path, tuple[int, int, str]] = {}
        for path in confined_model_files(self.models_dir):
            st = path.stat()
            self._known[path] = (st.st_size, st.st_mtime_ns, _sha256(path))

    @property
    def files(self) -> list[Path]:
        return sorted(self._known)

    def check(self) -> None:
        """Raise :class:`ModelFilesError` if a file is gone or its content changed."""
        for path, (size, mtime, digest) in list(self._known.items()):
            try:
                st = os.stat(path)
            except OSError as exc:
                raise ModelFilesError(
                    f"model file {path} was removed since start-up ({exc.strerror}); restore it "
                    "(or restart Orthanc after a model upgrade)"
                ) from exc
            if (st.st_size, st.st_mtime_ns) == (size, mtime):
                continue
            try:
                now = _sha256(path)
            except OSError as exc:
                raise ModelFilesError(f"model file {path} cannot be read: {exc}") from exc
            if now != digest:
                raise ModelFilesError(
                    f"model file {path} changed since start-up (sha256 {now[:12]}..., loaded "
                    f"{digest[:12]}...); restore it, or restart Orthanc to load a new model"
                )
            self._known[path] = (st.st_size, st.st_mtime_ns, digest)  # touched, same content
