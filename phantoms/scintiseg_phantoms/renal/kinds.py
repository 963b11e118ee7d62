"""The case kinds of the renal DMSA family: one table, one row per kind.

Every way in which one kind of case differs from another lives in :data:`KINDS`; the
generator (:mod:`.study`) reads a row and never tests a kind's name. Adding a kind means
adding a row here (and a line in ``docs/synthetic-data.md``, which a test compares).

Ranges are ``(low, high)`` drawn uniformly unless the field says log-uniform.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["KINDS", "KIND_WEIGHTS", "KidneyKind"]

Range = tuple[float, float]


@dataclass(frozen=True)
class KidneyKind:
    """What one case kind draws; defaults are two normal kidneys in the renal fossae."""

    weight: float  # share of the case mix when ``kind=None``
    summary: str  # one line for the docs
    # ---- one kidney changed (which one is drawn at random)
    scars_p: float = 0.0  # probability that a kidney carries cortical scars
    scars: Range = (1, 3)  # number of scars on a scarred kidney (integers)
    small_p: float = 0.0  # one kidney small (scale drawn in ``small_scale``)
    small_scale: Range = (0.5, 0.75)
    absent_p: float = 0.0  # one kidney absent (the other one larger)
    ectopic_p: float = 0.0  # one kidney in the pelvis: low, near the midline, anterior
    duplex_p: float = 0.0  # one kidney duplex: longer, two hila
    horseshoe: bool = False  # the lower poles joined across the midline
    # ---- imaging
    counts: Range = (1e5, 1e6)  # expected posterior-view counts, log-uniform
    motion_p: float = 0.12  # the patient moved during the acquisition (a blur streak)


KINDS: dict[str, KidneyKind] = {
    "normal": KidneyKind(0.30, "two kidneys of varied size, position, rotation and depth"),
    "scarred": KidneyKind(0.25, "1-3 photopenic cortical defects (scars) on one or both kidneys", scars_p=1.0),
    "small_kidney": KidneyKind(0.12, "one small kidney (0.5-0.75 of the length), lower uptake", small_p=1.0),
    "absent_kidney": KidneyKind(0.07, "one kidney absent, the other one larger", absent_p=1.0),
    "ectopic": KidneyKind(0.08, "one kidney in the pelvis, near the midline and anterior", ectopic_p=1.0),
    "horseshoe": KidneyKind(0.06, "lower poles joined across the midline, inverted tilt", horseshoe=True),
    "duplex": KidneyKind(0.07, "one duplex kidney: longer, two hila", duplex_p=1.0),
    "scarred_small": KidneyKind(
        0.05, "a small scarred kidney (reflux nephropathy)", scars_p=1.0, small_p=1.0
    ),
}

#: ``(names, weights)`` of the case mix.
KIND_WEIGHTS = (tuple(KINDS), tuple(k.weight for k in KINDS.values()))
