"""The gland drawn on the detector grid: masks, per-nodule labels and its activity.

Activity is a projection, so it follows the gland's *thickness*: a lobe is modelled as
having an elliptical cross-section, thickness ``sqrt(1 - (1 - s)^2)`` of the normalised
distance ``s`` to the outline (from a Euclidean distance transform), so the rim fades
and the isthmus and pyramidal lobe, thin bands, come out fainter still (their own
uptake factor on top). Texture is a log-normal smooth field; cold nodules scale the
tissue they replace, hot nodules set their own level.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import fft, ndimage

from .anatomy import Gland
from .geometry import Frame

__all__ = ["GlandImage", "bbox", "render_gland", "smooth_field", "thickness"]


@dataclass
class GlandImage:
    """The gland on the padded grid of a :class:`Frame`."""

    gland: np.ndarray  # bool: lobes, isthmus, pyramidal lobe and every nodule
    labels: np.ndarray  # int16: k inside gland.cold[k - 1]
    activity: np.ndarray  # float32 projected activity, 0 outside the gland
    sites: list[str]  # per cold nodule: the site its outline actually has


def smooth_field(rng: np.random.Generator, shape: tuple[int, int], sigma_px: float) -> np.ndarray:
    """Zero-mean, unit-variance Gaussian random field with correlation length ``sigma_px``
    (white noise filtered in the frequency domain: the cost does not grow with sigma)."""
    noise = rng.standard_normal(shape).astype(np.float32)
    fy = np.fft.fftfreq(shape[0]).astype(np.float32)[:, None]
    fx = np.fft.rfftfreq(shape[1]).astype(np.float32)[None, :]
    gain = np.exp(-2.0 * (np.pi * max(sigma_px, 0.5)) ** 2 * (fy**2 + fx**2))
    gain[0, 0] = 0.0
    field = fft.irfft2(fft.rfft2(noise, workers=1) * gain, s=shape, workers=1).astype(np.float32)
    std = float(field.std())
    return field / std if std > 0 else field


def thickness(mask: np.ndarray, spacing_mm: float, d_ref_mm: float) -> np.ndarray:
    """Path length through a body of elliptical cross-section, 1 deeper than ``d_ref_mm`` inside."""
    s = np.clip(ndimage.distance_transform_edt(mask) * spacing_mm / d_ref_mm, 0.0, 1.0)
    return np.sqrt(s * (2.0 - s)).astype(np.float32)


def bbox(mask: np.ndarray, pad: int) -> tuple[slice, slice]:
    """Slices of the rows and columns ``mask`` occupies, widened by ``pad`` pixels."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    h, w = mask.shape
    return (
        slice(max(int(rows[0]) - pad, 0), min(int(rows[-1]) + pad + 1, h)),
        slice(max(int(cols[0]) - pad, 0), min(int(cols[-1]) + pad + 1, w)),
    )


def _mark_centre(mask: np.ndarray, frame: Frame, centre: tuple[float, float]) -> None:
    """Make a nodule smaller than a pixel cover the pixel its centre falls in."""
    col, row = np.rint(frame.to_pixels(np.array([centre]))[0]).astype(int)
    if 0 <= row < mask.shape[0] and 0 <= col < mask.shape[1]:
        mask[row, col] = True


def render_gland(rng: np.random.Generator, gland: Gland, frame: Frame) -> GlandImage:
    shape = frame.padded
    lobes = np.zeros(shape, dtype=bool)
    for lobe in gland.lobes:
        lobes |= frame.mask(lobe.outline)
    isthmus = frame.mask(gland.isthmus) if gland.isthmus is not None else np.zeros(shape, bool)
    pyramidal = frame.mask(gland.pyramidal) if gland.pyramidal is not None else np.zeros(shape, bool)
    base = lobes | isthmus | pyramidal
    tissue = base.copy()
    for nodule in gland.cold:
        if nodule.rim is not None:
            tissue |= frame.mask(nodule.rim)
    hot = [frame.mask(n.outline) for n in gland.hot]
    labels = np.zeros(shape, dtype=np.int16)
    sites = []
    for k, nodule in enumerate(gland.cold, start=1):
        m = frame.mask(nodule.outline)
        if not m.any():
            _mark_centre(m, frame, nodule.centre)
        m &= labels == 0
        labels[m] = k
        # an "interior" nodule whose outline reaches past the lobe is an edge nodule
        sites.append("edge" if nodule.site == "interior" and (m & ~base).any() else nodule.site)
    mask = tissue | (labels > 0)
    for m in hot:
        mask |= m
    activity = np.zeros(shape, dtype=np.float32)
    if not mask.any():
        return GlandImage(mask, labels, activity, sites)

    box = bbox(mask, 3)
    sub = mask[box]
    depth = thickness(sub, frame.spacing_mm, 0.35 * float(np.mean([lobe.width for lobe in gland.lobes])))
    het = gland.heterogeneity
    texture = np.exp(het * smooth_field(rng, sub.shape, rng.uniform(3.0, 8.0) / frame.spacing_mm) - het**2 / 2)
    uptake = np.full(sub.shape, gland.tissue_level, dtype=np.float32)
    uptake[(isthmus & ~lobes)[box]] *= gland.isthmus_uptake
    uptake[(pyramidal & ~lobes & ~isthmus)[box]] *= gland.pyramidal_uptake
    for nodule, m in zip(gland.hot, hot, strict=True):
        uptake[m[box]] = nodule.level
    sub_labels = labels[box]
    for k, nodule in enumerate(gland.cold, start=1):
        uptake[sub_labels == k] *= nodule.level
    activity[box] = np.where(sub, depth * uptake * texture, 0.0)
    return GlandImage(mask, labels, activity, sites)
