"""What a physician reads off a segmentation, scored against the phantom's truth.

Pure numpy/scipy, for one image at a time; :mod:`scintiseg_training.evaluate`
aggregates. The rules (written once here and in ``docs/evaluation.md``):

* **gland Dice** on the source matrix;
* **low-count image**: fewer than :data:`LOW_COUNTS_GLAND` counts inside the TRUE gland
  (the served ``low_counts`` flag's threshold); the gland mean is also given without them;
* **gland outside the thyroid**: the image has a predicted gland component of which
  less than :data:`OUTSIDE_OVERLAP` of the area lies in the true gland (salivary
  glands, markers, oesophagus outlined as thyroid);
* **cold nodule found**: the predicted nodules cover at least :data:`HIT_FRACTION` of
  a true nodule's area (at least one pixel); sensitivity is given by the nodule's
  diameter (:data:`DIAMETER_BINS`, the phantom's own diameter);
* **false nodule**: a predicted nodule component that touches no true cold nodule.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from scintiseg.pipeline.quality import LOW_COUNTS_GLAND

#: A predicted gland component with less of its area inside the true gland lies outside it.
OUTSIDE_OVERLAP = 0.2
#: Share of a true nodule's area the prediction must cover for the nodule to count as found.
HIT_FRACTION = 0.1
#: Diameter classes of cold nodules, mm: (label, lower bound inclusive, upper bound exclusive).
DIAMETER_BINS: tuple[tuple[str, float, float], ...] = (
    ("<10 mm", 0.0, 10.0),
    ("10-15 mm", 10.0, 15.0),
    ("15-20 mm", 15.0, 20.0),
    (">=20 mm", 20.0, float("inf")),
)
EIGHT = np.ones((3, 3), dtype=bool)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    tot = int(a.sum()) + int(b.sum())
    return 1.0 if tot == 0 else 2.0 * int((a & b).sum()) / tot


def diameter_bin(d_mm: float) -> str:
    for name, lo, hi in DIAMETER_BINS:
        if lo <= d_mm < hi:
            return name
    raise ValueError(f"diameter {d_mm}")


def truth_nodules(
    nodules: np.ndarray, labels: np.ndarray | None, diameters_mm: list[float] | None, spacing_mm: float
) -> list[tuple[np.ndarray, float]]:
    """Each true cold nodule as (mask, diameter mm).

    The phantom's own labels and diameters where it gives them; otherwise the
    connected components of the nodule mask and their area-equivalent diameter.
    """
    out = []
    if labels is not None and diameters_mm:
        for k, d in enumerate(diameters_mm, 1):
            mask = (labels == k) & nodules
            if mask.any():
                out.append((mask, float(d)))
        return out
    lab, n = ndimage.label(nodules, structure=EIGHT)
    for k in range(1, n + 1):
        mask = lab == k
        out.append((mask, float(2.0 * np.sqrt(mask.sum() / np.pi) * spacing_mm)))
    return out


@dataclass
class ImageScore:
    """One image (or its mirror) scored as a physician would read it."""

    gland_dice: float
    low_count: bool
    gland_outside: bool
    nodule_dice: float | None  # None on images without a true cold nodule
    found: list[tuple[float, bool]] = field(default_factory=list)  # (diameter mm, found) per true nodule
    false_nodules: int = 0


def score_image(
    counts: np.ndarray,
    gland_truth: np.ndarray,
    nodule_truth: np.ndarray,
    gland_pred: np.ndarray,
    nodule_pred: np.ndarray,
    spacing_mm: float,
    labels: np.ndarray | None = None,
    diameters_mm: list[float] | None = None,
) -> ImageScore:
    true_nodules = truth_nodules(nodule_truth, labels, diameters_mm, spacing_mm)
    found = []
    for mask, d in true_nodules:
        covered = int((mask & nodule_pred).sum())
        found.append((d, covered >= max(1, HIT_FRACTION * int(mask.sum()))))
    lab, n = ndimage.label(nodule_pred, structure=EIGHT)
    false = 0
    if n:
        touches = ndimage.maximum(nodule_truth, lab, range(1, n + 1))
        false = int(np.sum(np.asarray(touches) == 0))
    glab, gn = ndimage.label(gland_pred, structure=EIGHT)
    outside = False
    if gn:
        inside = np.asarray(ndimage.mean(gland_truth, glab, range(1, gn + 1)))
        outside = bool((inside < OUTSIDE_OVERLAP).any())
    return ImageScore(
        gland_dice=dice(gland_pred, gland_truth),
        low_count=float(np.asarray(counts, dtype=np.float64)[gland_truth].sum()) < LOW_COUNTS_GLAND,
        gland_outside=outside,
        nodule_dice=dice(nodule_pred, nodule_truth) if nodule_truth.any() else None,
        found=found,
        false_nodules=false,
    )


def _mean(values: list[float]) -> float | None:
    return round(float(np.mean(values)), 4) if values else None


def summarise_scores(scores: list[ImageScore], n_scans: int | None = None) -> dict[str, object]:
    """The physician's figures over a set of images."""
    gland = [s.gland_dice for s in scores]
    normal_counts = [s.gland_dice for s in scores if not s.low_count]
    nod = [s.nodule_dice for s in scores if s.nodule_dice is not None]
    sens: dict[str, object] = {}
    for name, lo, hi in DIAMETER_BINS:
        hits = [f for s in scores for d, f in s.found if lo <= d < hi]
        sens[name] = {"n": len(hits), "sensitivity": _mean([float(h) for h in hits])}
    images = len(scores)
    return {
        "images": images,
        "gland_dice_mean": _mean(gland),
        "gland_dice_mean_low_count_excluded": _mean(normal_counts),
        "low_count_images": images - len(normal_counts),
        "gland_dice_median": round(float(np.median(gland)), 4) if gland else None,
        "gland_dice_min": round(float(np.min(gland)), 4) if gland else None,
        "gland_outside_fraction": _mean([float(s.gland_outside) for s in scores]),
        "images_with_cold_nodules": len(nod),
        "nodule_dice_mean": _mean([float(v) for v in nod]),
        "nodule_sensitivity_by_diameter": sens,
        "false_nodules_per_image": _mean([float(s.false_nodules) for s in scores]),
        **({"scans": n_scans} if n_scans is not None else {}),
    }
