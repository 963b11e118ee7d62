"""What goes into a ScintiSeg segment: coded concepts, display colours, the segment spec.

Codes are ``(coding scheme designator, code value, code meaning)`` tuples, the
order used by the model cards (``["SCT", "69748006", "Thyroid"]``).

:data:`LABELS` is the one table of what the shipped models produce; the model
cards (training's export) and the test stand-in models take it from here. At
run time the model cards are the source of truth (a model may bring any label). Its codes are the ones
ScintiSeg's SEG output is specified with:

* gland: category ``SCT 123037004 "Anatomical Structure"``, type
  ``SCT 69748006 "Thyroid"``;
* cold nodule: category ``SCT 49755003 "Morphologically Altered Structure"``,
  type ``SCT 27925004 "Nodule"``, anatomic region ``SCT 69748006 "Thyroid"``.

Note on the category codes: the current DICOM edition's CID 7150 lists
"Anatomical Structure" as ``SCT 91723000`` (``123037004`` is SNOMED's "Body
structure" top concept, which older editions used under that meaning) and
now calls ``49755003`` "Morphologically Abnormal Structure". CID 7150 is
extensible, so both are valid in a SEG (``dciodvfy`` accepts them); we keep
the specified codes so that results stay comparable with what the department
already stores. The type codes (CID 7151), the anatomic region (CID 4) and
the algorithm family (CID 7162, ``DCM 123110 "Artificial Intelligence"``)
are the context groups' own.

A :class:`SegmentSpec` holds whatever code its caller gives it (model cards
are the source of truth at run time); the writer checks only that codes are
well formed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

Code = tuple[str, str, str]
RGB = tuple[int, int, int]

ANATOMICAL_STRUCTURE: Code = ("SCT", "123037004", "Anatomical Structure")
MORPHOLOGICALLY_ALTERED_STRUCTURE: Code = ("SCT", "49755003", "Morphologically Altered Structure")
THYROID: Code = ("SCT", "69748006", "Thyroid")
NODULE: Code = ("SCT", "27925004", "Nodule")
ARTIFICIAL_INTELLIGENCE: Code = ("DCM", "123110", "Artificial Intelligence")

#: Display colours: the SEG's Recommended Display CIELab Value (OHIF draws the
#: segment in it) and the preview outlines. Green and magenta stay apart on
#: grey and "hot" NM colour maps.
GLAND_RGB: RGB = (0, 230, 64)
NODULE_RGB: RGB = (255, 0, 255)

#: The label each shipped model produces, as its model card (schema 2) writes it.
LABELS: dict[str, dict[str, Any]] = {
    "gland": {
        "key": "gland",
        "name": "Thyroid gland",
        "category": list(ANATOMICAL_STRUCTURE),
        "type": list(THYROID),
        "anatomic_region": None,
        "colour": list(GLAND_RGB),
        "numbered": False,
    },
    "nodule": {
        "key": "nodule",
        "name": "Cold nodule",
        "category": list(MORPHOLOGICALLY_ALTERED_STRUCTURE),
        "type": list(NODULE),
        "anatomic_region": list(THYROID),
        "colour": list(NODULE_RGB),
        "numbered": True,
    },
}

#: Display colour of each task's segment.
DISPLAY_RGB: dict[str, RGB] = {"gland": GLAND_RGB, "nodule": NODULE_RGB}


@dataclass(frozen=True)
class SegmentSpec:
    """One segment of the SEG, as described by a model card label.

    ``label`` is the model's label value (informative; the SEG numbers its
    segments 1..n in the order they are given to :func:`build_seg`).
    ``algorithm_family`` is a code of CID 7162 (default: Artificial
    Intelligence). The segment algorithm type is always ``AUTOMATIC``.
    ``display_rgb`` becomes the Recommended Display CIELab Value (viewers
    pick their own colour when it is ``None``).
    """

    label: int
    name: str
    category: Code
    type: Code
    anatomic_region: Code | None
    algorithm_name: str
    algorithm_version: str
    algorithm_family: Code = ARTIFICIAL_INTELLIGENCE
    display_rgb: RGB | None = None

    def with_algorithm(
        self, name: str, version: str, family: Code = ARTIFICIAL_INTELLIGENCE
    ) -> SegmentSpec:
        """This segment as produced by algorithm ``name`` ``version``."""
        return dataclasses.replace(
            self, algorithm_name=name, algorithm_version=version, algorithm_family=family
        )


def _template(task: str) -> SegmentSpec:
    label = LABELS[task]
    region = label["anatomic_region"]
    return SegmentSpec(
        label=1,
        name=label["name"],
        category=tuple(label["category"]),  # type: ignore[arg-type]
        type=tuple(label["type"]),  # type: ignore[arg-type]
        anatomic_region=tuple(region) if region else None,  # type: ignore[arg-type]
        algorithm_name="",
        algorithm_version="",
        display_rgb=DISPLAY_RGB[task],
    )


#: Template for the whole thyroid gland; complete it with :meth:`SegmentSpec.with_algorithm`.
GLAND = _template("gland")

#: Template for hypo-fixating ("cold") nodules inside the gland.
COLD_NODULE = _template("nodule")
