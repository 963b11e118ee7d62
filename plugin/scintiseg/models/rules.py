"""Where a model applies: the ``applies_to`` rule of its card.

A rule has two halves, so that a study no model applies to costs no file read:

* the **index** half (:meth:`AppliesTo.matches_series`): modality, SOP class and
  series description, read from Orthanc's index;
* the **header** half (:meth:`AppliesTo.matches_image`): radionuclide and
  radiopharmaceutical (code values or text), body part, words that name another
  exam (``excludes``), image type, matrix and pixel spacing bounds, read from the
  image's header once it is fetched.

Every condition left out (or ``null``) accepts anything. A radionuclide or
radiopharmaceutical condition refuses an image whose header says nothing of it,
unless it reads ``"if_absent": "accept"``; ``body_part`` accepts an image without
``BodyPartExamined``. ``excludes`` is searched in the study and series
descriptions, the protocol name, the body part and the radiopharmaceutical and
radionuclide texts: a match refuses the image (a renal DMSA study is not a
thyroid scan, whatever else its header says). ``priority`` (an integer, default
0) decides between models that apply to the same image and produce the same
label: the highest runs.

Example::

    "applies_to": {"modalities": ["NM"], "series_description": "(?i)thyroid",
                   "radionuclide": {"codes": ["1368003"], "text": "(?i)I-?131|iodine",
                                    "if_absent": "accept"},
                   "body_part": "(?i)thyroid|neck", "excludes": "(?i)renal|dmsa|bone",
                   "image_type": ["STATIC"], "matrix": [64, 512],
                   "pixel_spacing_mm": [0.5, 6.0], "priority": 10}
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pydicom

APPLIES_KEYS = frozenset(
    {"modalities", "sop_classes", "series_description", "radionuclide", "radiopharmaceutical",
     "body_part", "excludes", "image_type", "matrix", "pixel_spacing_mm", "priority"}
)


class RuleError(ValueError):
    """An ``applies_to`` rule that cannot be read."""


@dataclass(frozen=True)
class CodeOrText:
    """Matches a coded item when one of its code values is in ``codes`` or its text matches ``text``."""

    codes: tuple[str, ...] = ()
    text: re.Pattern[str] | None = None
    #: a header that carries no code and no text for it passes
    if_absent: bool = False

    def matches(self, values: list[str], texts: list[str]) -> bool:
        if self.if_absent and not any(values) and not any(t.strip() for t in texts):
            return True
        if self.codes and any(v in self.codes for v in values):
            return True
        return self.text is not None and any(self.text.search(t) for t in texts)

    def describe(self) -> dict[str, Any]:
        return {"codes": list(self.codes), "text": self.text.pattern if self.text else None,
                "if_absent": "accept" if self.if_absent else "refuse"}


@dataclass(frozen=True)
class AppliesTo:
    modalities: tuple[str, ...] | None = None
    sop_classes: tuple[str, ...] | None = None
    series_description: re.Pattern[str] | None = None
    radionuclide: CodeOrText | None = None
    radiopharmaceutical: CodeOrText | None = None
    body_part: re.Pattern[str] | None = None
    excludes: re.Pattern[str] | None = None
    image_type: tuple[str, ...] | None = None
    matrix: tuple[int, int] | None = None
    pixel_spacing_mm: tuple[float, float] | None = None
    priority: int = 0

    # -- the index half ------------------------------------------------------------------
    def matches_series(self, modality: str, description: str) -> bool:
        if self.modalities is not None and modality.upper() not in self.modalities:
            return False
        return self.series_description is None or bool(self.series_description.search(description or ""))

    def matches_sop_class(self, sop_class_uid: str) -> bool:
        return self.sop_classes is None or sop_class_uid in self.sop_classes

    # -- the header half -----------------------------------------------------------------
    def matches_image(self, facts: ImageFacts) -> str | None:
        """``None`` when the image qualifies, else why not (for the logs and the result)."""
        if self.excludes is not None:
            for text in facts.exam_texts():
                if self.excludes.search(text):
                    return f"{text!r} names another exam"
        if self.body_part is not None and facts.body_part and not self.body_part.search(facts.body_part):
            return f"body part {facts.body_part}"
        if self.radionuclide is not None and not self.radionuclide.matches(facts.nuclide_codes, facts.nuclide_texts):
            return f"radionuclide {' | '.join(facts.nuclide_texts) or '(none)'}"
        if self.radiopharmaceutical is not None and not self.radiopharmaceutical.matches(
            facts.pharmaceutical_codes, facts.pharmaceutical_texts
        ):
            return f"radiopharmaceutical {' | '.join(facts.pharmaceutical_texts) or '(none)'}"
        if self.image_type is not None and not set(self.image_type) <= set(facts.image_type):
            return f"image type {'/'.join(facts.image_type) or '(none)'}"
        if self.matrix is not None:
            lo, hi = self.matrix
            if not (lo <= facts.rows <= hi and lo <= facts.columns <= hi):
                return f"matrix {facts.rows}x{facts.columns}"
        if self.pixel_spacing_mm is not None:
            lo_s, hi_s = self.pixel_spacing_mm
            if facts.pixel_spacing_mm is None or not lo_s <= facts.pixel_spacing_mm <= hi_s:
                return f"pixel spacing {facts.pixel_spacing_mm} mm"
        return None

    def describe(self) -> dict[str, Any]:
        """JSON view (``GET /scintiseg/models``)."""
        return {
            "modalities": list(self.modalities) if self.modalities is not None else None,
            "sop_classes": list(self.sop_classes) if self.sop_classes is not None else None,
            "series_description": self.series_description.pattern if self.series_description else None,
            "radionuclide": self.radionuclide.describe() if self.radionuclide else None,
            "radiopharmaceutical": self.radiopharmaceutical.describe() if self.radiopharmaceutical else None,
            "body_part": self.body_part.pattern if self.body_part else None,
            "excludes": self.excludes.pattern if self.excludes else None,
            "image_type": list(self.image_type) if self.image_type is not None else None,
            "matrix": list(self.matrix) if self.matrix is not None else None,
            "pixel_spacing_mm": list(self.pixel_spacing_mm) if self.pixel_spacing_mm is not None else None,
            "priority": self.priority,
        }


@dataclass(frozen=True)
class ImageFacts:
    """What the header half of a rule reads from an image, gathered once per image."""

    nuclide_codes: list[str]
    nuclide_texts: list[str]
    pharmaceutical_codes: list[str]
    pharmaceutical_texts: list[str]
    image_type: tuple[str, ...]
    rows: int
    columns: int
    pixel_spacing_mm: float | None
    #: study and series descriptions, protocol name (those present)
    descriptions: tuple[str, ...] = ()
    body_part: str = ""

    def exam_texts(self) -> list[str]:
        """Every text of the header that may name the exam."""
        texts = [*self.descriptions, self.body_part, *self.pharmaceutical_texts, *self.nuclide_texts]
        return [t for t in texts if t.strip()]

    @classmethod
    def of(cls, ds: pydicom.Dataset) -> ImageFacts:
        nuc_codes: list[str] = []
        nuc_texts: list[str] = []
        ph_codes: list[str] = []
        ph_texts: list[str] = []
        for item in ds.get("RadiopharmaceuticalInformationSequence", None) or []:
            if item.get("Radiopharmaceutical"):
                ph_texts.append(str(item.Radiopharmaceutical))
            if item.get("Radionuclide"):
                nuc_texts.append(str(item.Radionuclide))
            for code in item.get("RadionuclideCodeSequence", None) or []:
                nuc_codes.append(str(code.get("CodeValue", "")))
                if code.get("CodeMeaning"):
                    nuc_texts.append(str(code.CodeMeaning))
            for code in item.get("RadiopharmaceuticalCodeSequence", None) or []:
                ph_codes.append(str(code.get("CodeValue", "")))
                if code.get("CodeMeaning"):
                    ph_texts.append(str(code.CodeMeaning))
        spacing = None
        raw = ds.get("PixelSpacing", None)
        try:
            if raw is not None and len(raw) == 2:
                spacing = float((float(raw[0]) * float(raw[1])) ** 0.5)
        except (TypeError, ValueError):
            spacing = None
        image_type = tuple(str(v).upper() for v in (ds.get("ImageType", None) or []))
        descriptions = tuple(
            str(ds.get(k) or "") for k in ("StudyDescription", "SeriesDescription", "ProtocolName") if ds.get(k)
        )
        return cls(nuc_codes, nuc_texts, ph_codes, ph_texts, image_type,
                   int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0), spacing,
                   descriptions, str(ds.get("BodyPartExamined") or ""))


# -- parsing -------------------------------------------------------------------------------
def compile_regex(value: Any, what: str) -> re.Pattern[str] | None:
    """A regular expression option (``None`` or ``""``: none); :class:`RuleError` names ``what``."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise RuleError(f"{what} must be a regular expression string or null, got {value!r}")
    try:
        return re.compile(value)
    except re.error as exc:
        raise RuleError(f"{what} is not a valid regular expression ({exc}): {value!r}") from exc


def _strings(value: Any, what: str, upper: bool = False) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise RuleError(f"{what} must be a non-empty list of strings, got {value!r}")
    return tuple(v.upper() if upper else v for v in value)


def _code_or_text(value: Any, what: str) -> CodeOrText | None:
    if value is None:
        return None
    if isinstance(value, str):  # a bare string is a text pattern
        return CodeOrText(text=compile_regex(value, what))
    if not isinstance(value, dict) or set(value) - {"codes", "text", "if_absent"}:
        raise RuleError(
            f"{what} must be a regex string or {{\"codes\": [...], \"text\": REGEX, \"if_absent\": ...}}, "
            f"got {value!r}"
        )
    codes = _strings(value.get("codes"), f"{what}.codes") or ()
    text = compile_regex(value.get("text"), f"{what}.text")
    if not codes and text is None:
        raise RuleError(f"{what} needs codes or text")
    if_absent = value.get("if_absent", "refuse")
    if if_absent not in ("accept", "refuse"):
        raise RuleError(f"{what}.if_absent must be \"accept\" or \"refuse\", got {if_absent!r}")
    return CodeOrText(codes=codes, text=text, if_absent=if_absent == "accept")


def _bounds(value: Any, what: str, kind: type) -> Any:
    if value is None:
        return None
    ok = (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(v, kind if kind is int else (int, float)) and not isinstance(v, bool) for v in value)
        and value[0] <= value[1]
    )
    if not ok:
        raise RuleError(f"{what} must be [min, max], got {value!r}")
    return (kind(value[0]), kind(value[1]))


def parse_applies_to(raw: Any) -> AppliesTo:
    if not isinstance(raw, dict):
        raise RuleError(f"applies_to must be a JSON object, got {raw!r}")
    unknown = sorted(set(raw) - APPLIES_KEYS)
    if unknown:
        raise RuleError(f"unknown condition(s) {', '.join(unknown)}")
    priority = raw.get("priority", 0)
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise RuleError(f"priority must be an integer, got {priority!r}")
    return AppliesTo(
        modalities=_strings(raw.get("modalities"), "modalities", upper=True),
        sop_classes=_strings(raw.get("sop_classes"), "sop_classes"),
        series_description=compile_regex(raw.get("series_description"), "series_description"),
        radionuclide=_code_or_text(raw.get("radionuclide"), "radionuclide"),
        radiopharmaceutical=_code_or_text(raw.get("radiopharmaceutical"), "radiopharmaceutical"),
        body_part=compile_regex(raw.get("body_part"), "body_part"),
        excludes=compile_regex(raw.get("excludes"), "excludes"),
        image_type=_strings(raw.get("image_type"), "image_type", upper=True),
        matrix=_bounds(raw.get("matrix"), "matrix", int),
        pixel_spacing_mm=_bounds(raw.get("pixel_spacing_mm"), "pixel_spacing_mm", float),
        priority=priority,
    )
