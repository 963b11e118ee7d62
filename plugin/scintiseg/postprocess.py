"""Model masks on the source matrix, made anatomically sane.

* The gland keeps its connected components above a minimum area (specks from
  salivary glands or markers go) and has its holes filled: a cold nodule is
  part of the gland outline, as a physician draws it.
* Nodules exist only inside the gland, and specks below a minimum area go.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

#: Fallback minimum component area, in pixels, when the image has no pixel spacing.
MIN_PIXELS_NO_SPACING = 8


def min_pixels(pixel_spacing_mm: float | None, min_area_mm2: float) -> int:
    """Minimum component size in pixels for an area in mm²."""
    if pixel_spacing_mm is None or pixel_spacing_mm <= 0:
        return MIN_PIXELS_NO_SPACING
    return max(1, int(round(min_area_mm2 / (pixel_spacing_mm**2))))


def remove_small(mask: np.ndarray, min_size: int) -> np.ndarray:
    """``mask`` without the 8-connected components smaller than ``min_size`` pixels."""
    labels, n = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    if n == 0:
        return np.zeros_like(mask, dtype=bool)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    keep = sizes >= min_size
    keep[0] = False
    return np.asarray(keep[labels], dtype=bool)


def clean_gland(mask: np.ndarray, pixel_spacing_mm: float | None, min_area_mm2: float) -> np.ndarray:
    """Drop specks and fill holes in a gland mask."""
    kept = remove_small(mask.astype(bool), min_pixels(pixel_spacing_mm, min_area_mm2))
    return np.asarray(ndimage.binary_fill_holes(kept), dtype=bool)


def clean_nodules(
    mask: np.ndarray, gland: np.ndarray, pixel_spacing_mm: float | None, min_area_mm2: float
) -> np.ndarray:
    """Nodules inside the gland only, without specks."""
    inside = mask.astype(bool) & gland.astype(bool)
    return remove_small(inside, min_pixels(pixel_spacing_mm, min_area_mm2))
