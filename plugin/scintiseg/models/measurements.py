"""Numbers a physician reads off a thyroid scan, from the image and its masks.

Conventions (anterior view, as displayed): image columns run from the
patient's right (left of the image) to the patient's left. The midline
between the lobes is the column of least gland width between the two lobes'
centres (the isthmus), or the gland's centre of mass when nothing narrows.
Poles are thirds of a lobe's height: upper, middle, lower.

What is measured is data: each model card lists its measurements by kind, from
the table :data:`KINDS` (``region``: pixels, area, counts; ``lobes``: the right
and left lobe shares of a gland; ``lesions``: one entry per connected component,
with its lobe and pole in the ``within`` label and its count ratio to the ring
of that label around it). A frame's figures are keyed by label.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import ndimage

#: Width, in pixels, of the ring of gland around a nodule that its count ratio compares with.
RING_PX = 3


def _area_mm2(pixels: int, spacing: float | None) -> float | None:
    return None if spacing is None else round(pixels * spacing * spacing, 1)


def midline_column(gland: np.ndarray) -> float:
    """Column that separates the right lobe (image left) from the left lobe."""
    cols = np.flatnonzero(gland.any(axis=0))
    if cols.size == 0:
        return gland.shape[1] / 2.0
    profile = gland.sum(axis=0).astype(float)
    centre = float(ndimage.center_of_mass(gland)[1])
    lo, hi = cols[0], cols[-1]
    span = hi - lo
    # search the narrowest column in the central half of the gland's width
    a, b = int(lo + span * 0.25), int(hi - span * 0.25)
    if b <= a:
        return centre
    inner = profile[a : b + 1]
    if inner.min() >= 0.8 * min(profile[lo : a + 1].max(), profile[b : hi + 1].max()):
        return centre
    return float(a + int(np.argmin(inner)) + 0.5)


def _region(counts: np.ndarray, mask: np.ndarray, masks: Mapping[str, np.ndarray],
            spacing: float | None, params: Mapping[str, Any]) -> dict[str, Any]:
    """Area and total counts of a label."""
    pixels = int(mask.sum())
    return {"pixels": pixels, "area_mm2": _area_mm2(pixels, spacing), "counts": round(float(counts[mask].sum()), 1)}


def _lobes(counts: np.ndarray, mask: np.ndarray, masks: Mapping[str, np.ndarray],
           spacing: float | None, params: Mapping[str, Any]) -> dict[str, Any]:
    """Share of the counts in the patient's right and left lobes of a gland label."""
    mid = midline_column(mask)
    cols = np.arange(mask.shape[1])[None, :] + 0.5
    total = float(counts[mask].sum())
    right = mask & (cols < mid)  # patient's right lobe: image left
    left = mask & (cols >= mid)
    return {
        "right_lobe_share_pct": round(100.0 * counts[right].sum() / total, 1) if total > 0 else None,
        "left_lobe_share_pct": round(100.0 * counts[left].sum() / total, 1) if total > 0 else None,
    }


def _lesions(counts: np.ndarray, mask: np.ndarray, masks: Mapping[str, np.ndarray],
             spacing: float | None, params: Mapping[str, Any]) -> dict[str, Any]:
    """One entry per connected component, placed in the lobes of the ``within`` label."""
    within = params.get("within")
    gland = masks.get(str(within)) if within else None
    gland = np.zeros_like(mask) if gland is None else gland.astype(bool)
    mid = midline_column(gland)
    cols = np.arange(gland.shape[1])[None, :] + 0.5
    right = gland & (cols < mid)
    left = gland & (cols >= mid)
    labels, n = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    ring_struct = np.ones((3, 3), dtype=bool)
    items = []
    rows_n, cols_n = gland.shape
    for i, (rs, cs) in enumerate(ndimage.find_objects(labels), 1):
        # the component's box, grown by the ring's width (3 dilations), within the image
        r0, r1 = max(rs.start - RING_PX, 0), min(rs.stop + RING_PX, rows_n)
        c0, c1 = max(cs.start - RING_PX, 0), min(cs.stop + RING_PX, cols_n)
        box = (slice(r0, r1), slice(c0, c1))
        comp = labels[box] == i
        rr, cc = ndimage.center_of_mass(comp)
        r, c = rr + r0, cc + c0
        lobe_mask = right if c + 0.5 < mid else left
        lobe = "right" if c + 0.5 < mid else "left"
        rows = np.flatnonzero(lobe_mask.any(axis=1))
        if rows.size:
            frac = (r - rows[0]) / max(1, rows[-1] - rows[0])
            pole = "upper" if frac < 1 / 3 else ("middle" if frac < 2 / 3 else "lower")
        else:
            pole = "middle"
        ring = ndimage.binary_dilation(comp, ring_struct, iterations=RING_PX) & gland[box] & ~mask[box]
        inside = float(counts[box][comp].mean())
        around = float(counts[box][ring].mean()) if ring.any() else 0.0
        items.append(
            {
                "pixels": int(comp.sum()),
                "area_mm2": _area_mm2(int(comp.sum()), spacing),
                "lobe": lobe,
                "pole": pole,
                "count_ratio": round(inside / around, 3) if around > 0 else None,
                "centre_px": [round(float(r), 1), round(float(c), 1)],
            }
        )
    return {"count": n, "components": items}


MeasureFn = Callable[
    [np.ndarray, np.ndarray, Mapping[str, np.ndarray], "float | None", Mapping[str, Any]], dict[str, Any]
]

#: The measurements a model card may name (``"measurements": [{"kind": ..., "label": ...}]``).
KINDS: dict[str, MeasureFn] = {"region": _region, "lobes": _lobes, "lesions": _lesions}


def measure_frame(
    counts: np.ndarray,
    masks: Mapping[str, np.ndarray],
    measurements: Sequence[Any],
    pixel_spacing_mm: float | None,
) -> dict[str, Any]:
    """``{"labels": {key: {...}}}``: each label's figures, as the models' cards ask.

    ``measurements`` are :class:`scintiseg.models.card.Measurement` (``kind``, ``label``,
    ``params``); every label of ``masks`` gets an entry, empty if nothing measures it.
    """
    counts = np.asarray(counts, dtype=np.float64)
    bools = {k: np.asarray(m, dtype=bool) for k, m in masks.items()}
    out: dict[str, dict[str, Any]] = {k: {} for k in bools}
    for m in measurements:
        if m.label in bools:
            out[m.label].update(KINDS[m.kind](counts, bools[m.label], bools, pixel_spacing_mm, m.params))
    return {"labels": out}
