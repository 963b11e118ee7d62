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


def bounding_box(mask: np.ndarray) -> tuple[slice, slice] | None:
    """The smallest ``(rows, cols)`` slices holding every ``True`` pixel; ``None`` if there is none.

    The masks are small next to the image (a gland covers a few percent of a
    256 x 256 field), so the morphology below works on this box only.
    """
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


def remove_small(mask: np.ndarray, min_size: int) -> np.ndarray:
    """``mask`` without the 8-connected components smaller than ``min_size`` pixels."""
    mask = np.asarray(mask, dtype=bool)
    out = np.zeros_like(mask)
    box = bounding_box(mask)
    if box is None:
        return out
    labels, n = ndimage.label(mask[box], structure=np.ones((3, 3), dtype=bool))
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    keep = sizes >= min_size
    keep[0] = False
    out[box] = keep[labels]
    return out


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """``mask`` with its holes filled (background not 4-connected to the image border).

    Same result as ``ndimage.binary_fill_holes`` on the whole image: outside the
    bounding box all is background, connected to the border, so the box padded
    with one background pixel stands for it.
    """
    mask = np.asarray(mask, dtype=bool)
    out = mask.copy()
    box = bounding_box(mask)
    if box is not None:
        filled = ndimage.binary_fill_holes(np.pad(mask[box], 1))
        out[box] = filled[1:-1, 1:-1]
    return out


def clean_gland(mask: np.ndarray, pixel_spacing_mm: float | None, min_area_mm2: float) -> np.ndarray:
    """Drop specks and fill holes in a gland mask."""
    return fill_holes(remove_small(mask, min_pixels(pixel_spacing_mm, min_area_mm2)))


def clean_nodules(
    mask: np.ndarray, gland: np.ndarray, pixel_spacing_mm: float | None, min_area_mm2: float
) -> np.ndarray:
    """Nodules inside the gland only, without specks."""
    inside = mask.astype(bool) & gland.astype(bool)
    return remove_small(inside, min_pixels(pixel_spacing_mm, min_area_mm2))
