"""Model cards: the JSON that travels with each model folder.

A model folder (any name) holds one or more ONNX files and ``card.json``. The
card is the whole contract between ``training/`` and the server (schema 2)::

    {
      "schema": 2, "name": "scintiseg-gland", "version": "1.2.0",
      "family": "U-Net", "creator": "ScintiSeg",
      "labels": [{"key": "gland", "name": "Thyroid gland",
                  "category": ["SCT", "123037004", "Anatomical Structure"],
                  "type": ["SCT", "69748006", "Thyroid"], "anatomic_region": null,
                  "colour": [0, 230, 64], "numbered": false}],
      "needs": null,
      "applies_to": {"modalities": ["NM"], "radionuclide": {"codes": ["1368003"]},
                     "priority": 10, ...},
      "stages": [
        {"onnx": "model.onnx", "sha256": "…", "window": "image",
         "input": {"name": "image", "size": 128}, "output": {"name": "logits", "threshold": 0.0},
         "pre": [{"step": "normalise", "percentile": 99.0, "clip": 1.5}],
         "post": [{"step": "clean_gland", "min_component_mm2": 20.0}]},
        {"onnx": "refine.onnx", "sha256": "…", "window": "previous", …}
      ],
      "measurements": [{"kind": "region", "label": "gland"}, {"kind": "lobes", "label": "gland"}],
      "training": {…}, "metrics": {…}
    }

* ``labels``: what the model segments, one output channel each (``key`` names the
  mask everywhere: measurements, results, preview; ``name`` and the SNOMED CT codes
  go into the SEG; ``colour`` is the display colour; ``numbered`` labels have their
  connected components numbered in the preview, like cold nodules);
* ``needs``: ``null`` (the whole image) or ``{"window_of": LABEL, "margin": 0.25}``:
  the model sees the window around another model's label (the nodule model needs
  the gland);
* ``applies_to``: where the model applies (:mod:`scintiseg.models.rules`), with its
  ``priority`` among the models that produce the same label;
* ``stages``: the network passes, in order. ``window`` is ``"image"`` (the whole
  field), ``"needs"`` (the window of the needed label) or ``"previous"`` (the window
  around the previous stage's result: the gland's second pass; a frame where the
  previous stage found nothing, or where this stage finds nothing, keeps the previous
  result). ``pre`` and ``post`` are named steps of the fixed table of
  :mod:`scintiseg.models.steps`, with their parameters;
* ``measurements``: the measurements the model feeds (:mod:`scintiseg.models.measurements`).

Cards of the first format (``"task": "gland" | "nodule"``, one ``label``, an optional
``refine`` pass) are still read: :func:`convert_v1` turns them into schema 2.
:func:`load_card` validates a card and checks every ONNX file's sha256, so a swapped
or truncated model is refused instead of producing silent nonsense.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scintiseg.dicom.seg.content import LABELS
from scintiseg.models import rules, steps
from scintiseg.models.measurements import KINDS  # the table lives with the measurements themselves

SCHEMA = 2
CARD_FILE = "card.json"
STAGE_WINDOWS = ("image", "needs", "previous")
#: Keys of a schema-2 card; anything else is a typo (``training`` and ``metrics`` are free-form).
CARD_KEYS = frozenset(
    {"schema", "name", "version", "family", "creator", "labels", "needs", "applies_to", "stages",
     "measurements", "outline", "training", "metrics", "description"}
)
_KEY = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_VERSION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+_-]{0,31}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,47}$")

Code = tuple[str, str, str]
RGB = tuple[int, int, int]


class ModelCardError(ValueError):
    """A model folder whose card is missing, malformed or does not match its ONNX file."""


@dataclass(frozen=True)
class Label:
    """One output of a model: a mask key, its SEG description and its display colour."""

    key: str
    name: str
    category: Code
    type: Code
    anatomic_region: Code | None
    colour: RGB
    numbered: bool = False


@dataclass(frozen=True)
class Needs:
    """The model sees the window around ``label`` (found by another model) instead of the image."""

    label: str
    margin: float = 0.25


@dataclass(frozen=True)
class OutlineLimits:
    """What a label's outline may measure on a frame the model was made for (mm, bounding box).

    A frame whose outline falls outside is an image of another organ or exam (a thyroid
    model that outlines both kidneys of a renal scan draws them 175-245 mm wide): the image
    is skipped, nothing stored.
    """

    width_mm: tuple[float, float]
    height_mm: tuple[float, float]

    def why_not(self, width: float, height: float) -> str | None:
        lo_w, hi_w = self.width_mm
        lo_h, hi_h = self.height_mm
        if lo_w <= width <= hi_w and lo_h <= height <= hi_h:
            return None
        return f"{width:.0f} x {height:.0f} mm (made for {lo_w:g}-{hi_w:g} x {lo_h:g}-{hi_h:g} mm)"

    def describe(self) -> dict[str, list[float]]:
        return {"width_mm": list(self.width_mm), "height_mm": list(self.height_mm)}


@dataclass(frozen=True)
class Stage:
    """One network pass of a model."""

    path: Path
    sha256: str
    window: str
    input_name: str
    size: int
    output_name: str
    threshold: float
    pre: tuple[steps.Step, ...]
    post: tuple[steps.Step, ...]


@dataclass(frozen=True)
class Measurement:
    """A measurement of :data:`scintiseg.models.measurements.KINDS` on one label."""

    kind: str
    label: str
    params: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class ModelCard:
    """A validated model card (schema 2); ``folder`` holds its ONNX files."""

    name: str
    version: str
    family: str
    creator: str
    folder: Path
    labels: tuple[Label, ...]
    needs: Needs | None
    applies_to: rules.AppliesTo
    stages: tuple[Stage, ...]
    measurements: tuple[Measurement, ...]
    #: label key -> the outline limits of the images the model was made for
    outline: dict[str, OutlineLimits] = field(default_factory=dict)
    raw: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)

    @property
    def ident(self) -> str:
        """``name@version``, the string recorded wherever results are stored."""
        return f"{self.name}@{self.version}"

    @property
    def label_keys(self) -> tuple[str, ...]:
        return tuple(label.key for label in self.labels)

    @property
    def sha256(self) -> str:
        """The first stage's ONNX sha256 (the model's fingerprint in listings)."""
        return self.stages[0].sha256


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key of a version: numeric parts compare as numbers (``1.10.0`` > ``1.9.2``)."""
    parts = re.split(r"[.+_-]", version)
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in parts)


# -- validation helpers --------------------------------------------------------------------
def _get(d: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str, default: Any = ...) -> Any:
    if key not in d or d[key] is None and default is not ...:
        if default is ...:
            raise ModelCardError(f"{where}: missing '{key}'")
        return default
    value = d[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ModelCardError(f"{where}: '{key}' has the wrong type ({type(value).__name__})")
    return value


def _code(value: Any, what: str) -> Code:
    if not (isinstance(value, list | tuple) and len(value) == 3 and all(isinstance(v, str) and v for v in value)):
        raise ModelCardError(f"{what} must be [scheme, value, meaning], got {value!r}")
    return (value[0], value[1], value[2])


def _colour(value: Any, what: str) -> RGB:
    if not (
        isinstance(value, list | tuple)
        and len(value) == 3
        and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in value)
    ):
        raise ModelCardError(f"{what} must be [r, g, b] with 0-255 integers, got {value!r}")
    return (value[0], value[1], value[2])


def _label(raw: Any, where: str) -> Label:
    if not isinstance(raw, dict):
        raise ModelCardError(f"{where}: a label is a JSON object")
    key = _get(raw, "key", str, where)
    if not _KEY.match(key):
        raise ModelCardError(f"{where}: label key {key!r} must be lower-case letters, digits and _")
    region = raw.get("anatomic_region")
    return Label(
        key=key,
        name=_get(raw, "name", str, where),
        category=_code(raw.get("category"), f"{where} category"),
        type=_code(raw.get("type"), f"{where} type"),
        anatomic_region=None if region is None else _code(region, f"{where} anatomic_region"),
        colour=_colour(raw.get("colour"), f"{where} colour"),
        numbered=bool(_get(raw, "numbered", bool, where, False)),
    )


def _needs(raw: Any, where: str) -> Needs | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ModelCardError(f"{where}: 'needs' is null or {{\"window_of\": LABEL}}")
    label = _get(raw, "window_of", str, where)
    margin = float(_get(raw, "margin", (int, float), where, 0.25))
    if not 0.0 <= margin <= 2.0:
        raise ModelCardError(f"{where}: needs.margin must lie in [0, 2], got {margin}")
    return Needs(label=label, margin=margin)


def _stage(raw: Any, folder: Path, where: str, verify_sha256: bool) -> Stage:
    if not isinstance(raw, dict):
        raise ModelCardError(f"{where}: a stage is a JSON object")
    inp = _get(raw, "input", dict, where)
    out = _get(raw, "output", dict, where)
    window = _get(raw, "window", str, where)
    if window not in STAGE_WINDOWS:
        raise ModelCardError(f"{where}: window must be one of {STAGE_WINDOWS}, got {window!r}")
    size = _get(inp, "size", int, where + " input")
    if not 16 <= size <= 1024:
        raise ModelCardError(f"{where}: input.size out of range: {size}")
    onnx_name = _get(raw, "onnx", str, where)
    onnx_path = folder / onnx_name
    if Path(onnx_name).is_absolute() or ".." in Path(onnx_name).parts:
        raise ModelCardError(f"{where}: onnx must name a file of the model folder, got {onnx_name!r}")
    if not onnx_path.is_file():
        raise ModelCardError(f"{where}: ONNX file {onnx_path} not found")
    sha = _get(raw, "sha256", str, where)
    if verify_sha256:
        actual = sha256_file(onnx_path)
        if actual != sha:
            raise ModelCardError(f"{where}: sha256 of {onnx_path.name} is {actual}, card says {sha}")
    try:
        pre = steps.parse_steps(raw.get("pre") or [], steps.PRE)
        post = steps.parse_steps(raw.get("post") or [], steps.POST)
    except steps.StepError as exc:
        raise ModelCardError(f"{where}: {exc}") from exc
    return Stage(
        path=onnx_path,
        sha256=sha,
        window=window,
        input_name=_get(inp, "name", str, where + " input"),
        size=size,
        output_name=_get(out, "name", str, where + " output"),
        threshold=float(_get(out, "threshold", (int, float), where + " output", 0.0)),
        pre=pre,
        post=post,
    )


def _measurement(raw: Any, keys: tuple[str, ...], where: str) -> Measurement:
    if not isinstance(raw, dict):
        raise ModelCardError(f"{where}: a measurement is a JSON object")
    kind = _get(raw, "kind", str, where)
    if kind not in KINDS:
        raise ModelCardError(f"{where}: measurement kind must be one of {sorted(KINDS)}, got {kind!r}")
    label = _get(raw, "label", str, where)
    if label not in keys:
        raise ModelCardError(f"{where}: measurement label {label!r} is not one of the model's labels {keys}")
    params = {k: v for k, v in raw.items() if k not in ("kind", "label")}
    return Measurement(kind=kind, label=label, params=params)


def parse_card(raw: dict[str, Any], folder: Path, verify_sha256: bool = True) -> ModelCard:
    """Validate a card dictionary found in ``folder`` (schema 2, or the first format, converted)."""
    where = str(folder / CARD_FILE)
    if "schema" not in raw and "task" in raw:
        raw = convert_v1(raw)
    if raw.get("schema") != SCHEMA:
        raise ModelCardError(f"{where}: 'schema' must be {SCHEMA}, got {raw.get('schema')!r}")
    unknown = sorted(set(raw) - CARD_KEYS)
    if unknown:
        raise ModelCardError(f"{where}: unknown key(s) {', '.join(unknown)}")
    name = _get(raw, "name", str, where)
    version = _get(raw, "version", str, where)
    if not _NAME.match(name):
        raise ModelCardError(f"{where}: name {name!r} must be letters, digits, '.', '_' or '-' (48 at most)")
    if not _VERSION.match(version):
        raise ModelCardError(f"{where}: version {version!r} is not a version string")
    raw_labels = _get(raw, "labels", list, where)
    if not raw_labels:
        raise ModelCardError(f"{where}: a model has at least one label")
    labels = tuple(_label(x, f"{where} labels[{i}]") for i, x in enumerate(raw_labels))
    keys = tuple(label.key for label in labels)
    if len(set(keys)) != len(keys):
        raise ModelCardError(f"{where}: label keys repeat: {keys}")
    needs = _needs(raw.get("needs"), where)
    if needs is not None and needs.label in keys:
        raise ModelCardError(f"{where}: a model cannot need its own label {needs.label!r}")
    raw_stages = _get(raw, "stages", list, where)
    if not raw_stages:
        raise ModelCardError(f"{where}: a model has at least one stage")
    stages = tuple(_stage(s, folder, f"{where} stages[{i}]", verify_sha256) for i, s in enumerate(raw_stages))
    for i, stage in enumerate(stages):
        if stage.window == "needs" and needs is None:
            raise ModelCardError(f"{where} stages[{i}]: window 'needs' without 'needs'")
        if stage.window == "previous" and i == 0:
            raise ModelCardError(f"{where} stages[0]: the first stage has no previous stage")
        for step in stage.post:
            for ref in step.label_refs():
                if ref not in keys and (needs is None or ref != needs.label):
                    raise ModelCardError(
                        f"{where} stages[{i}]: step {step.name} refers to label {ref!r}, "
                        "neither the model's nor the one it needs"
                    )
    if len({s.path for s in stages}) != len(stages):
        raise ModelCardError(f"{where}: each stage needs its own ONNX file")
    try:
        applies = rules.parse_applies_to(raw.get("applies_to") or {})
    except rules.RuleError as exc:
        raise ModelCardError(f"{where}: applies_to: {exc}") from exc
    measurements = tuple(
        _measurement(m, keys, f"{where} measurements[{i}]")
        for i, m in enumerate(_get(raw, "measurements", list, where, []))
    )
    outline = _outline(raw.get("outline"), keys, where)
    return ModelCard(
        name=name,
        version=version,
        family=str(raw.get("family") or "U-Net"),
        creator=str(raw.get("creator") or "ScintiSeg"),
        folder=folder,
        labels=labels,
        needs=needs,
        applies_to=applies,
        stages=stages,
        measurements=measurements,
        outline=outline,
        raw=raw,
    )


def _outline(raw: Any, keys: tuple[str, ...], where: str) -> dict[str, OutlineLimits]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ModelCardError(f"{where}: outline must be an object {{label: {{\"width_mm\": [min, max], ...}}}}")
    out = {}
    for key, limits in raw.items():
        if key not in keys:
            raise ModelCardError(f"{where}: outline of {key!r}, not a label of the model")
        if not isinstance(limits, dict) or set(limits) != {"width_mm", "height_mm"}:
            raise ModelCardError(f"{where}: outline.{key} needs exactly width_mm and height_mm")
        bounds = []
        for name in ("width_mm", "height_mm"):
            value = limits[name]
            ok = (isinstance(value, list) and len(value) == 2
                  and all(isinstance(v, int | float) and not isinstance(v, bool) and v >= 0 for v in value)
                  and value[0] <= value[1])
            if not ok:
                raise ModelCardError(f"{where}: outline.{key}.{name} must be [min, max] in mm, got {value!r}")
            bounds.append((float(value[0]), float(value[1])))
        out[key] = OutlineLimits(bounds[0], bounds[1])
    return out


def read_card_json(folder: Path) -> dict[str, Any]:
    """The raw JSON object of ``folder/card.json`` (:class:`ModelCardError` if unreadable)."""
    path = Path(folder) / CARD_FILE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ModelCardError(f"no model card at {path}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelCardError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(raw, dict):
        raise ModelCardError(f"{path}: a model card is a JSON object")
    return raw


def load_card(folder: Path, verify_sha256: bool = True) -> ModelCard:
    """Read and validate ``folder/card.json``."""
    return parse_card(read_card_json(folder), Path(folder), verify_sha256=verify_sha256)


#: Where the thyroid models apply (the ``applies_to`` of the shipped cards): NM images whose
#: header names a thyroid tracer (pertechnetate, iodide I-123 or I-131) or says nothing of it,
#: whose body part (when given) is the neck, and whose descriptions, body part and tracer texts
#: name no other exam, in the languages departments write them (renal, bone, cardiac, lung,
#: hepatobiliary, brain, parathyroid, whole-body and PET exams, and their tracers).
THYROID_APPLIES_TO: dict[str, Any] = {
    "modalities": ["NM"],
    "radiopharmaceutical": {
        "codes": ["19495007", "67690002", "111160004"],  # CID 25: pertechnetate, iodide I-123, I-131
        "text": r"(?i)pertechn|TcO4|iod|\bI-?12[3]\b|\bI-?131\b|\b12[3]I\b|\b131I\b|\bNaI\b",
        "if_absent": "accept",
    },
    "radionuclide": {
        "codes": ["72454006", "21572004", "1368003"],  # CID 18: Tc-99m, I-123, I-131
        "text": r"(?i)99m|techne|iod|\bI-?12[3]\b|\bI-?131\b|\b12[3]I\b|\b131I\b",
        "if_absent": "accept",
    },
    "body_part": r"(?i)thyr|neck|head|\bcou\b|hals|cuello|collo",
    "excludes": (
        r"(?i)renal|kidney|\brein|niere|ri[ñn][oó]n|\brene\b|dmsa|succimer|mag-?3|mertiatid|dtpa|pentet|n[ée]phro|nefro"
        r"|bone|osseu|oss[eo]|skelet|squelet|knochen|hueso|[óo]seo|\bmdp\b|\bhdp\b|hmdp|medron|oxidron|\bdpd\b"
        r"|cardi|myocard|heart|c(?:oe|œ)ur|\bherz|coraz|cuore|sestamibi|\bmibi\b|tetrofosmin|thallium|\btl-?201|muga"
        r"|lung|pulmon|poumon|lunge|polmon|\bmaa\b|macro-?agg|technegas|ventilat|perfusion"
        r"|hepat|liver|\bfoie|leber|h[íi]gado|\bhida\b|mebrofenin|biliar|gastr|brain|cerveau|cerebr|gehirn"
        r"|datscan|ioflupan|parathyr|parathyro|nebenschild|paratir|mibg|octreo|gallium|\bga-?6[78]"
        r"|leu[ck]o|\bwbc\b|lymph|sentinel|whole.?body|corps.entier|ganzk[oö]rper|cuerpo.entero|corpo.intero"
        r"|\bf-?18|\bfdg\b"
    ),
    "priority": 0,
}

#: What a thyroid gland's outline may measure (the gland card's ``outline``): on 200 phantom
#: scans of both families the shipped gland model drew at most 98 mm wide and 111 mm tall
#: (94 x 97 mm on 200 others that did not choose it); on renal DMSA views whose header says
#: nothing it drew the kidneys 175-245 mm wide (docs/plugin.md, "Thyroid scans only").
THYROID_OUTLINE: dict[str, list[float]] = {"width_mm": [0, 150], "height_mm": [0, 140]}


# -- the first card format -----------------------------------------------------------------
#: What a first-format card's ``task`` implied, now written in the card.
V1_TASKS: dict[str, dict[str, Any]] = {
    "gland": {
        "key": "gland", "colour": [0, 230, 64], "numbered": False, "needs": None, "window": "image",
        "post": "clean_gland", "measurements": [{"kind": "region", "label": "gland"},
                                                {"kind": "lobes", "label": "gland"}],
    },
    "nodule": {
        "key": "nodule", "colour": [255, 0, 255], "numbered": True, "needs": {"window_of": "gland"},
        "window": "needs", "post": "clean_nodules",
        "measurements": [{"kind": "region", "label": "nodule"},
                         {"kind": "lesions", "label": "nodule", "within": "gland"}],
    },
}
_V1_DROP = ("task", "onnx", "sha256", "input", "output", "label", "postprocess", "refine")


def _v1_stage(section: dict[str, Any], window: str, post: dict[str, Any]) -> dict[str, Any]:
    inp = section.get("input") or {}
    norm = inp.get("normalisation") or {}
    stage: dict[str, Any] = {
        "onnx": section.get("onnx"),
        "sha256": section.get("sha256"),
        "window": window,
        "input": {"name": inp.get("name", "image"), "size": inp.get("size")},
        "output": section.get("output") or {"name": "logits", "threshold": 0.0},
        "pre": [{"step": "normalise", "percentile": norm.get("percentile", 99.0), "clip": norm.get("clip", 1.5)}],
        "post": [post],
    }
    if section.get("training") is not None:
        stage["training"] = section["training"]
    return stage


def convert_v1(raw: dict[str, Any]) -> dict[str, Any]:
    """A first-format card (``task``, ``label``, ``refine``) as a schema-2 card; ONNX files unchanged."""
    task = raw.get("task")
    if task not in V1_TASKS:
        raise ModelCardError(f"task must be one of {tuple(V1_TASKS)}, got {task!r}")
    spec = V1_TASKS[task]
    label = dict(raw.get("label") or {})
    label.update({"key": spec["key"], "colour": spec["colour"], "numbered": spec["numbered"]})
    minimum = float((raw.get("postprocess") or {}).get("min_component_mm2", 0.0))
    post: dict[str, Any] = {"step": spec["post"], "min_component_mm2": minimum}
    if task == "nodule":
        post["within"] = "gland"
    first = _v1_stage(raw, spec["window"], post)
    first.pop("training", None)  # the model's training stays at the card's top level
    stages = [first]
    if raw.get("refine") is not None:
        refine = raw["refine"]
        if task != "gland":
            raise ModelCardError("only a gland model has a refine pass")
        if not isinstance(refine, dict):
            raise ModelCardError("'refine' must be a JSON object")
        if (refine.get("input") or {}).get("window") not in (None, "gland"):
            raise ModelCardError("refine: input.window must be 'gland' (the first pass's window)")
        stages.append(_v1_stage({"output": raw.get("output"), **refine}, "previous", post))
    out = {k: v for k, v in raw.items() if k not in _V1_DROP}
    out.update({
        "schema": SCHEMA,
        "labels": [label],
        "needs": spec["needs"],
        "applies_to": {"modalities": ["NM"], "priority": 0},
        "stages": stages,
        "measurements": spec["measurements"],
    })
    # keep the familiar order: identity first, then the contract, then provenance
    order = ["schema", "name", "version", "family", "creator", "labels", "needs", "applies_to", "stages",
             "measurements"]
    return {**{k: out[k] for k in order if k in out}, **{k: v for k, v in out.items() if k not in order}}


def _default_outline(task: str, outline: dict[str, Any] | None) -> dict[str, Any]:
    if outline is None:
        outline = {"gland": dict(THYROID_OUTLINE)} if task == "gland" else {}
    return {"outline": outline} if outline else {}


def task_card(
    task: str,
    *,
    name: str,
    version: str,
    stages: list[dict[str, Any]],
    size: int = 128,
    percentile: float = 99.0,
    clip: float = 1.5,
    min_component_mm2: float | None = None,
    applies_to: dict[str, Any] | None = None,
    outline: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A schema-2 card for a model of the shipped kinds (``gland``, ``nodule``).

    ``applies_to`` defaults to :data:`THYROID_APPLIES_TO`; ``outline`` to
    :data:`THYROID_OUTLINE` on the gland (``{}``: no outline limits).

    ``stages`` give each pass's ``onnx`` and ``sha256`` (and optionally ``training``);
    the first sees the image (gland) or the gland window (nodule), a second one the
    window of the first's result. Training's export and the test stand-ins write
    their cards with this, so both stay the schema the plugin reads.
    """
    spec = V1_TASKS[task]
    minimum = float(min_component_mm2 if min_component_mm2 is not None else (20.0 if task == "gland" else 10.0))
    post: dict[str, Any] = {"step": spec["post"], "min_component_mm2": minimum}
    if task == "nodule":
        post["within"] = "gland"
    built = []
    for i, stage in enumerate(stages):
        built.append({
            "onnx": stage["onnx"],
            "sha256": stage["sha256"],
            "window": spec["window"] if i == 0 else "previous",
            "input": {"name": "image", "size": size},
            "output": {"name": "logits", "threshold": 0.0},
            "pre": [{"step": "normalise", "percentile": percentile, "clip": clip}],
            "post": [post],
            **({"training": stage["training"]} if stage.get("training") is not None else {}),
        })
    return {
        "schema": SCHEMA,
        "name": name,
        "version": version,
        "family": extra.pop("family", "U-Net"),
        "creator": extra.pop("creator", "ScintiSeg"),
        "labels": [dict(LABELS[task])],
        "needs": spec["needs"],
        "applies_to": applies_to if applies_to is not None else dict(THYROID_APPLIES_TO),
        **_default_outline(task, outline),
        "stages": built,
        "measurements": spec["measurements"],
        **extra,
    }
