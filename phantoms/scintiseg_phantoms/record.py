"""The record every phantom family returns: counts, ground truth and a description.

Both families (:mod:`scintiseg_phantoms.thyroid`, the training family, and
:mod:`scintiseg_phantoms.independent`, the held-out one) return a :class:`Scan`,
so the DICOM writer, the datasets and the evaluation take either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

#: Keys every family puts in :attr:`Scan.params` (the evaluation and the quality-flag
#: tests read them; a family may add its own keys beside them).
TRUTH_KEYS = (
    "family",  # "thyroid" or "independent"
    "cold_nodules",  # [{"diameter_mm", "site" ("pole", "edge" or "interior"), ...}], one per label of nodule_labels
    "markers",  # number of point markers in the image
    "extrathyroid",  # True when uptake outside the gland (salivary, mouth, vessels, ...) is visible
    "suppressed",  # True when a hot nodule suppresses the rest of the gland
    "total_counts",  # counts in the whole image
)


@dataclass(frozen=True)
class Scan:
    """One synthetic anterior thyroid scintigraphy with its ground truth."""

    counts: np.ndarray  # (rows, cols) uint16 Poisson counts
    gland: np.ndarray  # (rows, cols) bool, gland outline including nodules (cold and hot)
    nodules: np.ndarray  # (rows, cols) bool, cold nodules only, subset of gland
    pixel_spacing_mm: float  # square pixels, at the thyroid plane
    kind: str  # the family's case kind
    params: dict[str, Any]  # JSON-serialisable description, with at least TRUTH_KEYS
    #: (rows, cols) int16: 0 outside cold nodules, k inside params["cold_nodules"][k-1]
    #: (None where a family does not label them one by one)
    nodule_labels: np.ndarray | None = None
