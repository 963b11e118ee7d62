"""How well the AI agrees with the physicians: Dice per label and nodule-by-nodule matching.

:func:`compare` takes the physician's masks (those of a label object mapped to ``gland`` /
``nodule``) and ScintiSeg's masks of the same image, and gives per label the Dice
coefficient, and for nodules the count of each side's nodules (8-connected components) and
how many of them the other side found (overlap of at least one pixel).
:func:`summarise` turns many such records into the figures of ``GET /scintiseg/stats``,
grouped by the model versions that made the AI masks. Pure numpy/scipy.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from scipy import ndimage

__all__ = ["compare", "dice", "nodule_matching", "summarise"]

_EIGHT = np.ones((3, 3), dtype=bool)


def dice(a: np.ndarray, b: np.ndarray) -> float | None:
    """Dice of two boolean masks; ``None`` when both are empty (nothing to agree on)."""
    total = int(a.sum()) + int(b.sum())
    if total == 0:
        return None
    return round(2.0 * int((a & b).sum()) / total, 4)


def _components(mask: np.ndarray) -> list[np.ndarray]:
    out: list[np.ndarray] = []
    for frame in mask.reshape(-1, *mask.shape[-2:]):
        labels, n = ndimage.label(frame, structure=_EIGHT)
        out += [labels == k for k in range(1, n + 1)]
    return out


def _frames(mask: np.ndarray) -> list[tuple[int, np.ndarray]]:
    return list(enumerate(mask.reshape(-1, *mask.shape[-2:])))


def nodule_matching(physician: np.ndarray, ai: np.ndarray) -> dict[str, int]:
    """Nodules of each side and those the other side found (frame by frame)."""
    counts = {"physician": 0, "ai": 0, "matched": 0, "missed_by_ai": 0, "ai_only": 0}
    for (_, p), (_, a) in zip(_frames(physician), _frames(ai), strict=True):
        p_parts, a_parts = _components(p), _components(a)
        found_by_ai = sum(1 for c in p_parts if (c & a).any())
        confirmed = sum(1 for c in a_parts if (c & p).any())
        counts["physician"] += len(p_parts)
        counts["ai"] += len(a_parts)
        counts["matched"] += found_by_ai
        counts["missed_by_ai"] += len(p_parts) - found_by_ai
        counts["ai_only"] += len(a_parts) - confirmed
    return counts


def compare(physician: Mapping[str, np.ndarray], ai: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Agreement on one image, for the labels the physician drew (``gland``, ``nodule``)."""
    out: dict[str, Any] = {"dice": {}, "nodules": None}
    for label, mask in sorted(physician.items()):
        theirs = ai.get(label)
        if theirs is None or theirs.shape != mask.shape:
            continue
        out["dice"][label] = dice(mask, theirs)
        if label == "nodule":
            out["nodules"] = nodule_matching(mask, theirs)
    return out


def _figures(values: list[float]) -> dict[str, Any]:
    return {
        "n": len(values),
        "mean": round(statistics.fmean(values), 4) if values else None,
        "median": round(statistics.median(values), 4) if values else None,
    }


def summarise(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per set of model versions: images, mean/median Dice per label, nodule agreement.

    ``records``: ``{"models": [...], "dice": {...}, "nodules": {...} | None}`` per labelled image.
    """
    groups: dict[tuple[str, ...], list[Mapping[str, Any]]] = {}
    for rec in records:
        groups.setdefault(tuple(str(m) for m in rec.get("models") or []), []).append(rec)
    out = []
    for models, recs in sorted(groups.items()):
        labels = sorted({label for r in recs for label in (r.get("dice") or {})})
        dice_figures = {
            label: _figures([float(r["dice"][label]) for r in recs if (r.get("dice") or {}).get(label) is not None])
            for label in labels
        }
        totals = {"physician": 0, "ai": 0, "matched": 0, "missed_by_ai": 0, "ai_only": 0}
        for r in recs:
            for key, value in (r.get("nodules") or {}).items():
                if key in totals:
                    totals[key] += int(value)
        nodules: dict[str, Any] = dict(totals)
        nodules["sensitivity"] = round(totals["matched"] / totals["physician"], 4) if totals["physician"] else None
        confirmed = totals["ai"] - totals["ai_only"]
        nodules["precision"] = round(confirmed / totals["ai"], 4) if totals["ai"] else None
        out.append({"models": list(models), "images": len(recs), "dice": dice_figures, "nodules": nodules})
    return out
