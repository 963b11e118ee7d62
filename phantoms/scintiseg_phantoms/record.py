"""The record every phantom family returns: counts, ground truth and a description.

Both families (:mod:`scintiseg_phantoms.thyroid`, the training family, and
:mod:`scintiseg_phantoms.independent`, the held-out one) return a :class:`Scan`,
so the DICOM writer, the datasets and the evaluation take either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Scan:
    """One synthetic anterior thyroid scintigraphy with its ground truth."""

    counts: np.ndarray  # (rows, cols) uint16 Poisson counts
    gland: np.ndarray  # (rows, cols) bool, gland outline including nodules (cold and hot)
    nodules: np.ndarray  # (rows, cols) bool, cold nodules only, subset of gland
    pixel_spacing_mm: float  # square pixels, at the thyroid plane
    kind: str  # one of CASE_KINDS
    params: dict[str, Any]  # JSON-serialisable description
