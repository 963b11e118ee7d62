"""Model cards: the JSON that travels with each ``model.onnx``.

A model folder ``models/<name>/`` holds ``model.onnx`` and ``card.json``. The
card is the whole contract between ``training/`` and the server: what the
model is (name, version, family), what it eats (input name, size, window,
normalisation), what it gives (output name, threshold, labels with SNOMED CT
codes), how it was trained and how it scored. :func:`load_card` validates a
card and checks the ONNX file's sha256, so a swapped or truncated model is
refused at start-up instead of producing silent nonsense.

Example card::

    {
      "name": "scintiseg-gland", "version": "1.0.0", "task": "gland",
      "family": "U-Net", "creator": "ScintiSeg",
      "onnx": "model.onnx", "sha256": "…",
      "input": {"name": "image", "size": 128, "window": "full",
                "normalisation": {"percentile": 99.0, "clip": 1.5}},
      "output": {"name": "logits", "threshold": 0.0},
      "label": {"name": "Thyroid gland",
                "category": ["SCT", "123037004", "Anatomical Structure"],
                "type": ["SCT", "69748006", "Thyroid"],
                "anatomic_region": null},
      "postprocess": {"min_component_mm2": 20.0},
      "training": {…}, "metrics": {…}
    }

A gland card may add a second pass, ``"refine"``: another ONNX file of the same
folder that sees the window around the first pass's gland (``"window":
"gland"``), as the nodule model does, and outlines the gland again at that
finer scale. It has its own ``onnx``, ``sha256``, ``input`` and ``output``
(and ``training``); name, version, labels and post-processing are the card's.
The two files are one model: one name, one version, one entry in a SEG::

    "refine": {"onnx": "refine.onnx", "sha256": "…",
               "input": {"name": "image", "size": 128, "window": "gland",
                         "normalisation": {"percentile": 99.0, "clip": 1.5}},
               "output": {"name": "logits", "threshold": 0.0}, "training": {…}}
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .preprocess import Normalisation

TASKS = ("gland", "nodule")
WINDOWS = ("full", "gland")
CARD_FILE = "card.json"

class ModelCardError(ValueError):
    """A model folder whose card is missing, malformed or does not match its ONNX file."""


Code = tuple[str, str, str]


@dataclass(frozen=True)
class ModelCard:
    """A validated model card; ``path`` is the ONNX file it describes."""

    name: str
    version: str
    task: str
    family: str
    creator: str
    path: Path
    sha256: str
    input_name: str
    size: int
    window: str
    normalisation: Normalisation
    output_name: str
    threshold: float
    label_name: str
    category: Code
    type: Code
    anatomic_region: Code | None
    min_component_mm2: float
    raw: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)
    #: The second pass of a gland model (a card of its own, same name and version), if any.
    refine: ModelCard | None = None

    @property
    def ident(self) -> str:
        """``name@version``, the string recorded wherever results are stored."""
        return f"{self.name}@{self.version}"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _code(value: Any, what: str) -> Code:
    if not (isinstance(value, list | tuple) and len(value) == 3 and all(isinstance(v, str) for v in value)):
        raise ModelCardError(f"{what} must be [scheme, value, meaning], got {value!r}")
    return (value[0], value[1], value[2])


def _get(d: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in d:
        raise ModelCardError(f"{where}: missing '{key}'")
    value = d[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ModelCardError(f"{where}: '{key}' has the wrong type ({type(value).__name__})")
    return value


def parse_card(raw: dict[str, Any], folder: Path, verify_sha256: bool = True) -> ModelCard:
    """Validate a card dictionary found in ``folder``."""
    where = str(folder / CARD_FILE)
    task = _get(raw, "task", str, where)
    if task not in TASKS:
        raise ModelCardError(f"{where}: task must be one of {TASKS}, got {task!r}")
    inp = _get(raw, "input", dict, where)
    out = _get(raw, "output", dict, where)
    label = _get(raw, "label", dict, where)
    norm = _get(inp, "normalisation", dict, where + " input")
    window = _get(inp, "window", str, where + " input")
    if window not in WINDOWS:
        raise ModelCardError(f"{where}: input.window must be one of {WINDOWS}, got {window!r}")
    size = _get(inp, "size", int, where + " input")
    if not 16 <= size <= 1024:
        raise ModelCardError(f"{where}: input.size out of range: {size}")
    onnx_path = folder / _get(raw, "onnx", str, where)
    if not onnx_path.is_file():
        raise ModelCardError(f"{where}: ONNX file {onnx_path} not found")
    sha = _get(raw, "sha256", str, where)
    if verify_sha256:
        actual = sha256_file(onnx_path)
        if actual != sha:
            raise ModelCardError(f"{where}: sha256 of {onnx_path.name} is {actual}, card says {sha}")
    region = label.get("anatomic_region")
    try:
        normalisation = Normalisation(
            percentile=float(_get(norm, "percentile", (int, float), where)),
            clip=float(_get(norm, "clip", (int, float), where)),
        )
    except ValueError as exc:
        raise ModelCardError(f"{where}: {exc}") from exc
    post = raw.get("postprocess", {})
    refine = None
    if raw.get("refine") is not None:
        refine = _parse_refine(raw, folder, verify_sha256)
    return ModelCard(
        name=_get(raw, "name", str, where),
        version=_get(raw, "version", str, where),
        task=task,
        family=raw.get("family", "U-Net"),
        creator=raw.get("creator", "ScintiSeg"),
        path=onnx_path,
        sha256=sha,
        input_name=_get(inp, "name", str, where),
        size=size,
        window=window,
        normalisation=normalisation,
        output_name=_get(out, "name", str, where),
        threshold=float(out.get("threshold", 0.0)),
        label_name=_get(label, "name", str, where),
        category=_code(label.get("category"), where + " label.category"),
        type=_code(label.get("type"), where + " label.type"),
        anatomic_region=None if region is None else _code(region, where + " label.anatomic_region"),
        min_component_mm2=float(post.get("min_component_mm2", 0.0)),
        raw=raw,
        refine=refine,
    )


def _parse_refine(raw: dict[str, Any], folder: Path, verify_sha256: bool) -> ModelCard:
    """The ``refine`` section of a gland card, as a card of the same model."""
    where = f"{folder / CARD_FILE} refine"
    if raw.get("task") != "gland":
        raise ModelCardError(f"{where}: only a gland model has a refine pass")
    section = _get(raw, "refine", dict, str(folder / CARD_FILE))
    stage = {k: v for k, v in raw.items() if k not in ("refine", "onnx", "sha256", "input", "output")}
    for key in ("onnx", "sha256", "input"):
        stage[key] = _get(section, key, (str, dict), where)
    stage["output"] = section.get("output", raw.get("output"))
    card = parse_card(stage, folder, verify_sha256)
    if card.window != "gland":
        raise ModelCardError(f"{where}: input.window must be 'gland' (the first pass's window), got {card.window!r}")
    if card.path == folder / str(raw.get("onnx")):
        raise ModelCardError(f"{where}: the refine pass needs its own ONNX file")
    return card


def load_card(folder: Path, verify_sha256: bool = True) -> ModelCard:
    """Read and validate ``folder/card.json``."""
    path = Path(folder) / CARD_FILE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ModelCardError(f"no model card at {path}") from exc
    except json.JSONDecodeError as exc:
        raise ModelCardError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(raw, dict):
        raise ModelCardError(f"{path}: a model card is a JSON object")
    return parse_card(raw, Path(folder), verify_sha256=verify_sha256)


def find_cards(models_dir: Path, verify_sha256: bool = True) -> dict[str, ModelCard]:
    """Every model under ``models_dir``, keyed by task; exactly one per task."""
    cards: dict[str, ModelCard] = {}
    root = Path(models_dir)
    if not root.is_dir():
        raise ModelCardError(f"models folder {root} does not exist")
    for sub in sorted(p for p in root.iterdir() if (p / CARD_FILE).is_file()):
        card = load_card(sub, verify_sha256=verify_sha256)
        if card.task in cards:
            raise ModelCardError(
                f"two {card.task} models in {root}: {cards[card.task].ident} and {card.ident}"
            )
        cards[card.task] = card
    missing = [t for t in TASKS if t not in cards]
    if missing:
        raise ModelCardError(f"no {', '.join(missing)} model in {root}")
    return cards
