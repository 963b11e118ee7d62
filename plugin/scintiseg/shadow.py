"""How far a shadow candidate agrees with the active model it runs beside (never shown).

A shadow model (``deploy.json`` ``{"stage": "shadow"}``) sees the same images as
the active model of its name; its masks are never stored or shown. Per image,
:func:`compare` records the Dice coefficient of each label the two share and,
for numbered labels (nodules), how many connected components one found that
the other did not (no overlap at all). :class:`AgreementLog` keeps those
records since start-up and :meth:`AgreementLog.summary` answers ``GET
/scintiseg/models/{name}/{version}/agreement``, so that a promotion is decided
on evidence. Pure numpy/scipy.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .agreement import dice, nodule_matching

#: Records kept per shadow model (the newest).
MAX_RECORDS = 10000


def compare(
    active: Mapping[str, np.ndarray], shadow: Mapping[str, np.ndarray], numbered: Sequence[str]
) -> dict[str, Any]:
    """Agreement on one image (masks ``(frames, rows, cols)`` by label).

    Two empty masks agree fully (Dice 1.0). Components are matched as the physician
    labels are (:func:`scintiseg.agreement.nodule_matching`, the active model in the
    physician's place): a component counts as found by the other model when they
    share a pixel.
    """
    shared = sorted(set(active) & set(shadow))
    scores = {k: dice(active[k], shadow[k]) for k in shared}
    out: dict[str, Any] = {"dice": {k: 1.0 if v is None else v for k, v in scores.items()}}
    only_active = only_shadow = 0
    for k in shared:
        if k in numbered:
            matching = nodule_matching(active[k], shadow[k])
            only_active += matching["missed_by_ai"]
            only_shadow += matching["ai_only"]
    out["found_by_active_only"] = only_active
    out["found_by_shadow_only"] = only_shadow
    return out


class AgreementLog:
    """Per-image agreement records of the shadow models since start-up (thread-safe)."""

    def __init__(self) -> None:
        self._records: dict[str, list[dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def add(self, shadow: str, record: dict[str, Any]) -> None:
        with self._lock:
            items = self._records.setdefault(shadow, [])
            items.append(record)
            del items[:-MAX_RECORDS]

    def summary(self, shadow: str) -> dict[str, Any]:
        """Images compared, Dice per label (mean, min), components found by one model only."""
        with self._lock:
            items = list(self._records.get(shadow, []))
        per_label: dict[str, list[float]] = {}
        for r in items:
            for k, v in (r.get("dice") or {}).items():
                per_label.setdefault(k, []).append(float(v))
        return {
            "images": len(items),
            "against": sorted({str(r.get("against")) for r in items if r.get("against")}),
            "dice": {
                k: {"mean": round(float(np.mean(v)), 4), "min": round(float(np.min(v)), 4)}
                for k, v in sorted(per_label.items())
            },
            "found_by_active_only": sum(int(r.get("found_by_active_only", 0)) for r in items),
            "found_by_shadow_only": sum(int(r.get("found_by_shadow_only", 0)) for r in items),
            "images_with_disagreement": sum(
                1 for r in items if r.get("found_by_active_only") or r.get("found_by_shadow_only")
            ),
            "recent": items[-20:],
        }
