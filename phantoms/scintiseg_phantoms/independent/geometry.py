"""Closed contours and the mapping from the patient's neck to the detector's pixels.

Every outline of this family (thyroid lobes, isthmus, pyramidal lobe, nodules, salivary
glands) is a polygon sampled from a closed cubic (Catmull-Rom) spline through a few control points,
then given lobulated detail by perturbing its Fourier descriptors (the harmonics of the
complex contour ``x + iy``). No outline is the level set of an implicit function, so the
shapes differ in kind from ellipse- or superellipse-based phantoms.

Coordinates: *anatomical* millimetres with the origin between the lobes at the isthmus,
``x`` towards the image right (the patient's left in an anterior view) and ``y`` towards
the feet. :class:`Frame` rotates and shifts them into the detector plane, scales them for
a pinhole's depth-dependent magnification and maps them to the pixels of a padded grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Frame", "closed_spline", "fill_polygon", "fourier_detail", "polygon_area", "blob"]


def closed_spline(points: np.ndarray, n: int = 160) -> np.ndarray:
    """About ``n`` points of the closed Catmull-Rom spline through ``points`` (k, 2).

    A cubic Hermite curve through every control point with tangents ``(P[i+1] - P[i-1]) / 2``;
    each segment gets samples in proportion to its chord, so the polygon is evenly dense.
    """
    p = np.asarray(points, dtype=float)
    nxt, prv = np.roll(p, -1, axis=0), np.roll(p, 1, axis=0)
    tangent = (nxt - prv) / 2.0
    chord = np.hypot(*(nxt - p).T)
    per = np.maximum(2, np.round(n * chord / chord.sum()).astype(int))
    seg = np.repeat(np.arange(len(p)), per)
    t = (np.arange(per.sum()) - np.repeat(np.cumsum(per) - per, per)) / np.repeat(per, per)
    t2, t3 = t * t, t * t * t
    h00, h10, h01, h11 = 2 * t3 - 3 * t2 + 1, t3 - 2 * t2 + t, -2 * t3 + 3 * t2, t3 - t2
    m0, m1 = tangent[seg], np.roll(tangent, -1, axis=0)[seg]
    return np.asarray(h00[:, None] * p[seg] + h10[:, None] * m0 + h01[:, None] * nxt[seg] + h11[:, None] * m1)


def fourier_detail(
    curve: np.ndarray, rng: np.random.Generator, amplitude: float, k_min: int = 2, k_max: int = 7
) -> np.ndarray:
    """``curve`` with random energy added to its Fourier descriptors ``k_min..k_max``.

    The added harmonic ``k`` has a size of ``amplitude * rms_radius / k**1.5``, so low
    orders bend the outline and high orders only lobulate it; small amplitudes (< 0.08)
    keep the contour simple.
    """
    if amplitude <= 0:
        return curve
    z = curve[:, 0] + 1j * curve[:, 1]
    n = len(z)
    coeffs = np.fft.fft(z)
    rms = float(np.sqrt(np.mean(np.abs(z - z.mean()) ** 2)))
    for k in range(k_min, k_max + 1):
        size = amplitude * rms * n / k**1.5
        for index in (k, n - k):
            coeffs[index] += size * (rng.normal() + 1j * rng.normal()) / np.sqrt(2.0)
    z = np.fft.ifft(coeffs)
    return np.column_stack([z.real, z.imag])


def polygon_area(poly: np.ndarray) -> float:
    """Area enclosed by a simple polygon (shoelace formula), in the polygon's units squared."""
    x, y = poly[:, 0], poly[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2.0)


def blob(
    rng: np.random.Generator,
    centre: tuple[float, float],
    radii: tuple[float, float],
    angle: float,
    *,
    jitter: float = 0.08,
    detail: float = 0.03,
    n_ctrl: int = 8,
) -> np.ndarray:
    """A rounded closed outline (n, 2) in mm: spline through jittered control points on an oval."""
    t = np.linspace(0.0, 2 * np.pi, n_ctrl, endpoint=False) + rng.uniform(0, 2 * np.pi / n_ctrl)
    r = 1.0 + rng.normal(0.0, jitter, n_ctrl)
    local = np.column_stack([radii[0] * r * np.cos(t), radii[1] * r * np.sin(t)])
    c, s = np.cos(angle), np.sin(angle)
    ctrl = local @ np.array([[c, s], [-s, c]]) + np.asarray(centre)
    return fourier_detail(closed_spline(ctrl, 96), rng, detail)


def fill_polygon(poly_px: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Boolean mask of the pixels whose centres lie inside ``poly_px`` (columns, rows).

    Even-odd scan conversion without sorting: each edge crossing of a pixel row adds one
    at the first pixel centre to its right, and the running sum's parity is the inside.
    """
    h, w = shape
    x, y = poly_px[:, 0], poly_px[:, 1]
    x1, y1 = np.roll(x, -1), np.roll(y, -1)
    lo = np.clip(np.ceil(np.minimum(y, y1)), 0, h).astype(np.int64)
    hi = np.clip(np.ceil(np.maximum(y, y1)), 0, h).astype(np.int64)
    n_rows = hi - lo
    total = int(n_rows.sum())
    mask = np.zeros(shape, dtype=bool)
    if total == 0:
        return mask
    edge = np.repeat(np.arange(len(x)), n_rows)
    start = np.repeat(np.cumsum(n_rows) - n_rows, n_rows)
    rows = lo[edge] + (np.arange(total) - start)
    t = (rows - y[edge]) / (y1[edge] - y[edge])
    cols = np.clip(np.ceil(x[edge] + t * (x1[edge] - x[edge])), 0, w).astype(np.int64)
    r0, r1 = int(rows.min()), int(rows.max()) + 1
    diff = np.zeros((r1 - r0, w + 1), dtype=np.int32)
    np.add.at(diff, (rows - r0, cols), 1)
    mask[r0:r1] = (np.cumsum(diff[:, :w], axis=1) & 1).astype(bool)
    return mask


@dataclass(frozen=True)
class Frame:
    """Anatomy (mm) to detector pixels: rotation, shift, pinhole magnification, padding.

    ``pinhole_distance_mm`` is the aperture-to-thyroid distance, ``None`` for a parallel-hole
    collimator; a source ``depth_mm`` deeper than the thyroid (positive) is then projected
    with a magnification ``a / (a + depth)`` relative to the thyroid, about the optical axis
    at the image centre.
    """

    matrix: int
    spacing_mm: float
    margin: int  # pixels of padding on each side (sources outside the field still blur in)
    rotation_rad: float
    offset_mm: tuple[float, float]
    pinhole_distance_mm: float | None = None

    @property
    def padded(self) -> tuple[int, int]:
        n = self.matrix + 2 * self.margin
        return n, n

    def magnification(self, depth_mm: float) -> float:
        a = self.pinhole_distance_mm
        return 1.0 if a is None else a / (a + depth_mm)

    def to_plane(self, points_mm: np.ndarray, depth_mm: float = 0.0) -> np.ndarray:
        """Anatomical mm to mm in the image plane, relative to the image centre."""
        c, s = np.cos(self.rotation_rad), np.sin(self.rotation_rad)
        rotated = points_mm @ np.array([[c, s], [-s, c]])
        return (rotated + np.asarray(self.offset_mm)) * self.magnification(depth_mm)

    def to_pixels(self, points_mm: np.ndarray, depth_mm: float = 0.0) -> np.ndarray:
        """Anatomical mm to (column, row) of the padded grid."""
        centre = (self.matrix + 2 * self.margin - 1) / 2.0
        return self.to_plane(points_mm, depth_mm) / self.spacing_mm + centre

    def mask(self, outline_mm: np.ndarray, depth_mm: float = 0.0) -> np.ndarray:
        """The padded-grid mask of an outline given in anatomical mm."""
        return fill_polygon(self.to_pixels(outline_mm, depth_mm), self.padded)

    def anatomical_grid(self) -> tuple[np.ndarray, np.ndarray]:
        """Anatomical (x, y) in mm of every padded pixel centre, at the thyroid's depth."""
        h, w = self.padded
        centre = (h - 1) / 2.0
        axis = ((np.arange(h, dtype=np.float32) - centre) * self.spacing_mm).astype(np.float32)
        px, py = axis[None, :] - self.offset_mm[0], axis[:, None] - self.offset_mm[1]
        c, s = np.float32(np.cos(self.rotation_rad)), np.float32(np.sin(self.rotation_rad))
        # inverse of the row-vector rotation in to_plane
        return px * c + py * s, -px * s + py * c

    def crop(self, image: np.ndarray) -> np.ndarray:
        m, n = self.margin, self.matrix
        return image[m : m + n, m : m + n]
