"""Closed planar contours to pixel masks: the even-odd fill at pixel centres, and its checks.

A contour is a polygon given in pixel coordinates ``(column, row)`` (pixel ``(r, c)`` has its
centre at ``(c, r)``, as DICOM places the first pixel's centre at Image Position (Patient)).
:func:`polygon_mask` fills the pixels whose centre lies inside (even-odd rule) and refuses,
with :class:`ContourError`, a contour that is empty (fewer than 3 distinct points, no area,
or not covering a single pixel centre) or that crosses itself (two edges that are not
neighbours intersect): such a drawing has no inside a mask could honestly say.
Pure numpy.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ContourError", "polygon_mask", "self_intersects"]

#: Area (pixels squared) under which a polygon counts as empty.
MIN_AREA = 1e-6


class ContourError(ValueError):
    """A contour that gives no mask; ``code`` is ``empty`` or ``self_intersecting``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _dedupe(points: np.ndarray) -> np.ndarray:
    """Drop repeated consecutive points and a closing point equal to the first."""
    keep = np.ones(len(points), dtype=bool)
    keep[1:] = np.any(np.abs(np.diff(points, axis=0)) > 1e-9, axis=1)
    points = points[keep]
    if len(points) > 1 and np.allclose(points[0], points[-1]):
        points = points[:-1]
    return points


def _cross(o: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a[..., 0] - o[..., 0]) * (b[..., 1] - o[..., 1]) - (a[..., 1] - o[..., 1]) * (b[..., 0] - o[..., 0])


def self_intersects(points: np.ndarray) -> bool:
    """Whether two non-adjacent edges of the closed polygon ``points`` (n, 2) meet."""
    n = len(points)
    if n < 4:
        return False
    a, b = points, np.roll(points, -1, axis=0)
    i, j = np.triu_indices(n, k=2)
    keep = ~((i == 0) & (j == n - 1))  # the first and last edges share a vertex
    i, j = i[keep], j[keep]
    p1, p2, q1, q2 = a[i], b[i], a[j], b[j]
    d1, d2 = _cross(q1, q2, p1), _cross(q1, q2, p2)
    d3, d4 = _cross(p1, p2, q1), _cross(p1, p2, q2)
    proper = (d1 * d2 < 0) & (d3 * d4 < 0)
    if proper.any():
        return True

    def on_segment(o: np.ndarray, s: np.ndarray, e: np.ndarray, d: np.ndarray) -> np.ndarray:
        inside = (np.minimum(s[:, 0], e[:, 0]) - 1e-9 <= o[:, 0]) & (o[:, 0] <= np.maximum(s[:, 0], e[:, 0]) + 1e-9)
        inside &= (np.minimum(s[:, 1], e[:, 1]) - 1e-9 <= o[:, 1]) & (o[:, 1] <= np.maximum(s[:, 1], e[:, 1]) + 1e-9)
        return (np.abs(d) < 1e-9) & inside

    touching = on_segment(p1, q1, q2, d1) | on_segment(p2, q1, q2, d2) | on_segment(q1, p1, p2, d3)
    touching |= on_segment(q2, p1, p2, d4)
    return bool(touching.any())


def polygon_mask(points: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Boolean ``(rows, cols)`` mask of the pixel centres inside the closed polygon ``points``."""
    pts = _dedupe(np.asarray(points, dtype=float).reshape(-1, 2))
    if len(pts) < 3:
        raise ContourError("empty", f"the contour has {len(pts)} distinct point(s), a polygon needs 3")
    x, y = pts[:, 0], pts[:, 1]
    if self_intersects(pts):
        raise ContourError("self_intersecting", "the contour crosses itself")
    area = 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))
    if area < MIN_AREA:
        raise ContourError("empty", "the contour encloses no area")
    mask = np.zeros((rows, cols), dtype=bool)
    r0, r1 = max(0, int(np.floor(y.min()))), min(rows - 1, int(np.ceil(y.max())))
    c0, c1 = max(0, int(np.floor(x.min()))), min(cols - 1, int(np.ceil(x.max())))
    if r0 > r1 or c0 > c1:
        raise ContourError("empty", "the contour lies outside the image")
    py, px = np.mgrid[r0 : r1 + 1, c0 : c1 + 1].astype(float)
    inside = np.zeros(py.shape, dtype=bool)
    x2, y2 = np.roll(x, -1), np.roll(y, -1)
    for xa, ya, xb, yb in zip(x, y, x2, y2, strict=True):
        if ya == yb:
            continue
        crosses = (ya > py) != (yb > py)
        x_at = xa + (py - ya) * (xb - xa) / (yb - ya)
        inside ^= crosses & (px < x_at)
    mask[r0 : r1 + 1, c0 : c1 + 1] = inside
    if not mask.any():
        raise ContourError("empty", "the contour covers no pixel centre")
    return mask
