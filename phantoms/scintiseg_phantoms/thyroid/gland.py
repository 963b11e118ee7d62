"""The gland's activity, mask and nodule labels on the pixel grid.

Activity is relative, normalised so that the gland's peak (98th percentile inside the
mask; the hot nodule's maximum when there is one) is 1; every other level in the scan is
drawn relative to it. Activity lies strictly inside the mask; the mask is every tissue
part (lobes, isthmus, pyramidal lobe, ectopic tissue) and every nodule, cold or hot.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .anatomy import Blob, Thyroid
from .geometry import Grid
from .nodules import Nodule

__all__ = ["GlandLayer", "render_gland"]

#: a labelled cold nodule covering fewer pixels than this is not a finding: dropped
MIN_NODULE_PIXELS = 3


@dataclass(frozen=True)
class GlandLayer:
    activity: np.ndarray  # (n, n) float32, 0 outside the mask, peak ~1
    mask: np.ndarray  # (n, n) bool
    labels: np.ndarray  # (n, n) int16, k inside the k-th kept cold nodule
    cold: tuple[Nodule, ...]  # the kept cold nodules, label order
    tissue_sum: float  # activity sum before normalisation (0: empty gland)


class _Box:
    """Neck coordinates of the gland's pixel box; ``rho`` evaluates a blob on its own part of it."""

    def __init__(self, grid: Grid, box: tuple[slice, slice]) -> None:
        self.grid, self.box = grid, box
        self.u, self.v = grid.uv(box)

    def rho(self, blob: Blob) -> np.ndarray:
        out = np.full(self.u.shape, 2.0, dtype=np.float32)  # outside every blob
        sub = self.grid.blob_box(blob)
        if sub is None:
            return out
        (r0, r1), (c0, c1) = (
            (max(s.start, b.start) - b.start, min(s.stop, b.stop) - b.start) for s, b in zip(sub, self.box, strict=True)
        )
        if r1 > r0 and c1 > c0:
            out[r0:r1, c0:c1] = blob.rho(self.u[r0:r1, c0:c1], self.v[r0:r1, c0:c1])
        return out


def _tissue(thyroid: Thyroid, bx: _Box) -> tuple[np.ndarray, np.ndarray]:
    act = np.zeros(bx.u.shape, dtype=np.float32)
    mask = np.zeros(bx.u.shape, dtype=bool)
    q = np.float32(thyroid.profile_q)
    for blob, uptake in thyroid.parts:
        rho = bx.rho(blob)
        mask |= rho < 1.0
        np.maximum(act, np.clip(1.0 - rho * rho, 0.0, None) ** q * np.float32(uptake), out=act)
    return act, mask


def _heterogeneity(rng: np.random.Generator, u: np.ndarray, v: np.ndarray, h: float) -> np.ndarray:
    """``1 + h/2 * (sum of 4 plane waves, wavelength 12-40 mm)``: patchy uptake."""
    field = np.zeros(u.shape, dtype=np.float32)
    for _ in range(4):
        k = 2 * math.pi / rng.uniform(12.0, 40.0)
        ang, phase = rng.uniform(0, math.pi), rng.uniform(0, 2 * math.pi)
        field += np.cos(np.float32(k * math.cos(ang)) * u + np.float32(k * math.sin(ang)) * v + np.float32(phase))
    return 1.0 + np.float32(h / 2.0) * field


def _add_hot(act: np.ndarray, mask: np.ndarray, hot: Nodule, suppression: float, bx: _Box) -> None:
    rho = bx.rho(hot.blob)
    mask |= rho < 1.0
    act *= np.float32(suppression)
    np.maximum(act, np.clip(1.0 - rho * rho, 0.0, None) ** np.float32(0.4), out=act)


def _add_cold(act: np.ndarray, tissue: np.ndarray, mask: np.ndarray, nod: Nodule, bx: _Box) -> np.ndarray:
    """Carve a cold nodule; returns its pixels. Inside the tissue the projected defect is
    ``(1 - uptake) * min(1, depth * sqrt(1 - rho^2))``; outside it (a pole or edge nodule
    bulging out) the nodule holds ``uptake`` x the nearby tissue level, or nothing when merged."""
    rho = bx.rho(nod.blob)
    inside = rho < 1.0
    mask |= inside
    depth = np.minimum(np.float32(nod.depth) * np.sqrt(np.clip(1.0 - rho * rho, 0.0, None)), np.float32(1.0))
    within = inside & tissue
    ref = float(np.median(act[within])) if within.any() else 0.0
    act *= 1.0 - np.float32(1.0 - nod.relative_uptake) * depth
    if not nod.merged and ref > 0:
        outside = inside & ~tissue
        act[outside] = np.float32(nod.relative_uptake * ref) * depth[outside]
    return inside


def render_gland(
    rng: np.random.Generator,
    grid: Grid,
    thyroid: Thyroid,
    cold: list[Nodule],
    hot: list[Nodule],
    *,
    heterogeneity: float,
    suppression: float,
) -> GlandLayer:
    n = grid.n
    full_act = np.zeros((n, n), dtype=np.float32)
    full_mask = np.zeros((n, n), dtype=bool)
    full_labels = np.zeros((n, n), dtype=np.int16)
    blobs = [b for b, _ in thyroid.parts] + [x.blob for x in cold + hot]
    box = grid.union_box(blobs)
    h_rng = np.random.default_rng(rng.integers(1 << 32))  # same draws whether the box is empty or not
    if box is None:
        return GlandLayer(full_act, full_mask, full_labels, (), 0.0)
    bx = _Box(grid, box)
    act, tissue = _tissue(thyroid, bx)
    mask = tissue.copy()
    if heterogeneity > 0:
        act *= _heterogeneity(h_rng, bx.u, bx.v, heterogeneity)
    for h in hot:
        _add_hot(act, mask, h, suppression, bx)
    labels = np.zeros(bx.u.shape, dtype=np.int16)
    kept: list[Nodule] = []
    for nod in cold:
        inside = _add_cold(act, tissue, mask, nod, bx)
        free = inside & (labels == 0)
        if int(free.sum()) >= MIN_NODULE_PIXELS:
            kept.append(nod)
            labels[free] = len(kept)
    act *= mask
    total = float(act.sum())
    if mask.any():
        peak = float(act.max()) if hot else float(np.percentile(act[mask], 98))
        act /= np.float32(max(peak, 1e-6))
    full_act[box], full_mask[box], full_labels[box] = act, mask, labels
    return GlandLayer(full_act, full_mask, full_labels, tuple(kept), total)
