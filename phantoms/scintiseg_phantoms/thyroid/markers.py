"""Point markers: hot point sources that departments put on the sternal notch, the chin, a side.

A marker sits at least 1.5 FWHM + 6 mm from the gland and 2 pixels inside the image; its
blurred peak is 1.5-6x the gland's peak. A site that does not fit falls back to a random
place in the image (up to 30 tries, then the marker is dropped).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from .anatomy import Thyroid
from .geometry import Grid

__all__ = ["MARKER_SITES", "place_markers"]

Site = Callable[[np.random.Generator, Thyroid, Grid], tuple[float, float]]


def _random_site(rng: np.random.Generator, thyroid: Thyroid, grid: Grid) -> tuple[float, float]:
    fov = grid.n * grid.sp
    x, y = rng.uniform(-0.45, 0.45, size=2) * fov - np.array([grid.cx, grid.cy])
    return float(x * grid.c + y * grid.s), float(-x * grid.s + y * grid.c)


#: neck-frame position (mm) of each named site
MARKER_SITES: dict[str, Site] = {
    "sternal_notch": lambda rng, t, g: (rng.uniform(-6, 6), t.bottom_v + rng.uniform(12.0, 40.0)),
    "chin": lambda rng, t, g: (rng.uniform(-6, 6), t.top_v - rng.uniform(35.0, 90.0)),
    "lateral": lambda rng, t, g: (rng.choice([-1.0, 1.0]) * rng.uniform(45.0, 80.0), rng.uniform(-40, 40)),
    "random": _random_site,
}
_ORDER = tuple(MARKER_SITES)


def place_markers(
    rng: np.random.Generator, count: int, thyroid: Thyroid, grid: Grid, gland: np.ndarray, fwhm_mm: float
) -> list[dict[str, float | int | str]]:
    """Marker positions and blurred-peak levels (x gland peak); the first two of several
    markers go to the sternal notch and the chin, the others anywhere."""
    n, sp = grid.n, grid.sp
    keep_out = int(math.ceil((fwhm_mm * 1.5 + 6.0) / sp))
    out: list[dict[str, float | int | str]] = []
    for mi in range(count):
        site = _ORDER[mi] if count > 1 and mi < 2 else _ORDER[int(rng.integers(0, len(_ORDER)))]
        for _attempt in range(30):
            row, col = grid.to_pixel(*MARKER_SITES[site](rng, thyroid, grid))
            ri, ci = int(round(row)), int(round(col))
            inside = 2 <= ri < n - 2 and 2 <= ci < n - 2
            if (
                not inside
                or gland[max(ri - keep_out, 0) : ri + keep_out + 1, max(ci - keep_out, 0) : ci + keep_out + 1].any()
            ):
                site = "random"
                continue
            out.append({"site": site, "row": ri, "col": ci, "level": float(rng.uniform(1.5, 6.0))})
            break
    return out
