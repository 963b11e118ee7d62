"""Pixel grid and framing: where the neck lies in the image, at which zoom and rotation.

The neck frame (mm, ``u`` to the image right, ``v`` to the feet, origin at the thyroid's
centre) is rotated by ``theta`` and shifted by ``(cx, cy)`` in the image frame (mm from
the image centre). Framing draws the zoom (gland width / field-of-view width) and an
off-centre position that keeps the gland inside the image, except for a gland framed
wider than the field (a goitre reaching the image edge).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .anatomy import Blob, union_extent

__all__ = ["Framing", "Grid", "frame"]


class Grid:
    """Pixel-centre grid (mm) with a rotated, shifted neck frame."""

    def __init__(self, n: int, spacing: float, cx: float, cy: float, theta: float) -> None:
        self.n = n
        self.sp = spacing
        self.x = ((np.arange(n, dtype=np.float32) + 0.5) - n / 2) * np.float32(spacing)
        self.cx, self.cy = cx, cy
        self.c, self.s = math.cos(theta), math.sin(theta)

    def to_pixel(self, u: float, v: float) -> tuple[float, float]:
        """(row, col) continuous pixel index of a neck-frame point."""
        x = self.cx + u * self.c - v * self.s
        y = self.cy + u * self.s + v * self.c
        return y / self.sp + self.n / 2 - 0.5, x / self.sp + self.n / 2 - 0.5

    def box(self, u: float, v: float, r: float) -> tuple[slice, slice] | None:
        """Pixel slices covering the disc of radius r (mm) around neck point (u, v)."""
        row, col = self.to_pixel(u, v)
        rp = r / self.sp + 1
        i0, i1 = max(int(row - rp), 0), min(int(row + rp) + 2, self.n)
        j0, j1 = max(int(col - rp), 0), min(int(col + rp) + 2, self.n)
        if i0 >= i1 or j0 >= j1:
            return None
        return slice(i0, i1), slice(j0, j1)

    def blob_box(self, blob: Blob) -> tuple[slice, slice] | None:
        return self.box(blob.cx, blob.cy, blob.bound)

    def uv(self, box: tuple[slice, slice] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Neck-frame coordinates (mm) of the pixel centres of ``box`` (whole image: None)."""
        rows, cols = box if box is not None else (slice(0, self.n), slice(0, self.n))
        dx = self.x[cols] - np.float32(self.cx)
        dy = self.x[rows] - np.float32(self.cy)
        c, s = np.float32(self.c), np.float32(self.s)
        return dx[None, :] * c + dy[:, None] * s, -dx[None, :] * s + dy[:, None] * c

    def union_box(self, blobs: list[Blob]) -> tuple[slice, slice] | None:
        boxes = [b for b in (self.blob_box(bl) for bl in blobs) if b is not None]
        if not boxes:
            return None
        return (
            slice(min(b[0].start for b in boxes), max(b[0].stop for b in boxes)),
            slice(min(b[1].start for b in boxes), max(b[1].stop for b in boxes)),
        )


@dataclass(frozen=True)
class Framing:
    grid: Grid
    fov_mm: float
    width_fraction: float  # framed width (as drawn, both lobes) / FOV width
    rotation_deg: float
    offset_mm: tuple[float, float]
    to_edge: bool


def _pick(rng: np.random.Generator, lo: float, hi: float, plo: float, phi: float) -> float:
    """Uniform in [lo, hi] ∩ [plo, phi], or in [lo, hi] when they do not meet."""
    a, b = max(lo, plo), min(hi, phi)
    if a > b:
        a, b = lo, hi
    if a > b:
        return 0.5 * (lo + hi)
    return float(rng.uniform(a, b))


def frame(
    rng: np.random.Generator,
    blobs: list[Blob],
    n: int,
    width_fraction: tuple[float, float],
    *,
    to_edge: bool,
    max_fov_mm: float,
) -> Framing:
    """Draw rotation (+-20 deg), zoom and position for a gland made of ``blobs``.

    The FOV makes the framed width ``width_fraction`` of the image (and at least 1/0.85 of
    the gland's height and width, unless ``to_edge``: then the width is 90-125 % of the FOV
    and the gland is cut by the image edges). The neck centre is moved up to +-25 % of the
    FOV sideways and -15..+25 % vertically, keeping the gland >= max(3 px, 3 % FOV) inside.
    """
    theta = math.radians(rng.uniform(-20.0, 20.0))
    xmin, xmax, ymin, ymax = union_extent(blobs, theta)
    width, height = xmax - xmin, ymax - ymin
    if to_edge:
        frac = float(rng.uniform(0.9, 1.25))
        fov = width / frac
    else:
        frac = float(rng.uniform(*width_fraction))
        fov = min(max(width / frac, height / 0.85, width / 0.85), max_fov_mm)
    sp = fov / n
    half = fov / 2
    if to_edge:
        cx = float(rng.uniform(-0.1, 0.1) * fov) - 0.5 * (xmin + xmax)
        cy = float(rng.uniform(-0.1, 0.2) * fov) - 0.5 * (ymin + ymax)
    else:
        margin = max(3 * sp, 0.03 * fov)
        cx = _pick(rng, -half + margin - xmin, half - margin - xmax, -0.25 * fov, 0.25 * fov)
        cy = _pick(rng, -half + margin - ymin, half - margin - ymax, -0.15 * fov, 0.25 * fov)
    return Framing(
        grid=Grid(n, sp, cx, cy, theta),
        fov_mm=fov,
        width_fraction=width / fov,
        rotation_deg=math.degrees(theta),
        offset_mm=(cx, cy),
        to_edge=to_edge,
    )
