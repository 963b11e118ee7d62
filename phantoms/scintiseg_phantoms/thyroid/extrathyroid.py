"""Uptake outside the thyroid: salivary glands, mouth, oesophagus, vessels, body background.

Pertechnetate (and, less, iodide) is taken up by the salivary glands and the oral mucosa,
swallowed saliva marks the oesophagus, and the blood pool outlines the jugular and carotid
vessels. Each source is drawn with a level relative to the gland's peak (1), from faint
to brighter than the gland, and at a distance from the gland: a submandibular gland may
sit within touching distance of an upper pole (the case where a model outlines salivary
tissue as thyroid) or far above it. None of it is ever inside the gland mask: the layer
is zeroed there (:func:`render_sources`), so blur is the only way it reaches the gland.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .anatomy import Blob, Thyroid, random_blob
from .geometry import Grid

__all__ = ["SOURCE_PROBABILITIES", "Source", "body_background", "draw_sources", "render_sources"]

#: probability that each optional source is present (submandibular glands always are)
SOURCE_PROBABILITIES: dict[str, float] = {"parotid": 0.85, "mouth": 0.4, "oesophagus": 0.2, "vessels": 0.5}
#: distance (mm) from an upper pole to a submandibular gland: touching or far
NEAR_GAP_MM = (0.0, 6.0)
FAR_GAP_MM = (12.0, 50.0)


@dataclass(frozen=True)
class Source:
    name: str
    level: float  # peak activity relative to the gland peak
    blob: Blob | None = None  # None for the bands (oesophagus, vessels)
    gap_mm: float | None = None  # designed distance from the nearest upper pole
    band_u: tuple[float, ...] = ()  # band centres (neck frame u, mm)
    band_width_mm: float = 0.0
    q: float = 0.5  # exponent of the blob's thickness profile (lower: sharper edge)


def _pole(lobe: Blob) -> tuple[float, float]:
    """The upper pole of a lobe (neck frame)."""
    return lobe.cx + lobe.b * math.sin(lobe.angle), lobe.cy - lobe.b * math.cos(lobe.angle)


def _side_lobe(thyroid: Thyroid, side: float) -> Blob:
    """The lobe on ``side`` (-1 image left), present or as drawn before removal."""
    present = [lb for lb in thyroid.lobes if lb.cx * side > 0]
    return present[0] if present else thyroid.frame_blobs[0 if side < 0 else 1]


def _submandibular(rng: np.random.Generator, thyroid: Thyroid, side: float, level: float, near: bool) -> Source:
    a, b = rng.uniform(9.0, 15.0), rng.uniform(7.0, 11.0)
    gap = float(rng.uniform(*(NEAR_GAP_MM if near else FAR_GAP_MM)))
    phi = math.radians(rng.uniform(5.0, 45.0))  # from straight up, outwards
    dx, dy = side * math.sin(phi), -math.cos(phi)
    reach = 1.0 / math.sqrt((dx / a) ** 2 + (dy / b) ** 2) * 1.1  # centre to outline along d, with roughness
    pu, pv = _pole(_side_lobe(thyroid, side))
    blob = random_blob(
        rng,
        pu + dx * (gap + reach),
        pv + dy * (gap + reach),
        a,
        b,
        angle=side * math.radians(rng.uniform(-30, 10)),
        roughness=0.08,
    )
    name = f"submandibular_{'right' if side < 0 else 'left'}"
    return Source(name, level * rng.uniform(0.6, 1.0), blob, gap, q=float(rng.uniform(0.25, 0.5)))


def draw_sources(
    rng: np.random.Generator, thyroid: Thyroid, *, salivary: float, background: float, near_p: float
) -> list[Source]:
    """Salivary glands at level ``salivary``, mouth, oesophagus, vessels (``background`` scale).

    All draws happen in a fixed order whatever is present, so a change of one probability
    moves nothing else.
    """
    top = thyroid.top_v
    near_side = -1.0 if rng.random() < 0.5 else 1.0
    near = bool(rng.random() < near_p)
    present = {name: bool(rng.random() < p) for name, p in SOURCE_PROBABILITIES.items()}
    out = [_submandibular(rng, thyroid, side, salivary, near and side == near_side) for side in (-1.0, 1.0)]
    for side in (-1.0, 1.0):
        blob = random_blob(
            rng,
            side * rng.uniform(45.0, 70.0),
            top - rng.uniform(50.0, 90.0),
            rng.uniform(10.0, 16.0),
            rng.uniform(16.0, 24.0),
            angle=side * math.radians(rng.uniform(-20, 5)),
            roughness=0.08,
        )
        if present["parotid"]:
            out.append(Source(f"parotid_{'right' if side < 0 else 'left'}", salivary * rng.uniform(0.5, 1.0), blob))
    mouth = random_blob(
        rng,
        rng.uniform(-5, 5),
        top - rng.uniform(45.0, 85.0),
        rng.uniform(14.0, 24.0),
        rng.uniform(6.0, 11.0),
        roughness=0.1,
    )
    mouth_level = salivary * rng.uniform(0.2, 1.0)
    if present["mouth"]:
        out.append(Source("mouth", mouth_level, mouth))
    oes = Source(
        "oesophagus",
        min(salivary * rng.uniform(0.05, 0.5), 0.4),
        band_u=(rng.uniform(0.0, 8.0),),
        band_width_mm=rng.uniform(2.5, 5.0),
    )
    if present["oesophagus"]:
        out.append(oes)
    outer = max((abs(lb.cx) + lb.a for lb in thyroid.frame_blobs[:2]), default=20.0)
    vu = outer + rng.uniform(3.0, 12.0)
    vessels = Source(
        "vessels", background * rng.uniform(0.3, 1.2), band_u=(-vu, vu), band_width_mm=rng.uniform(3.0, 6.0)
    )
    if present["vessels"]:
        out.append(vessels)
    return out


def render_sources(
    grid: Grid, sources: list[Source], gland_mask: np.ndarray, uu: np.ndarray
) -> tuple[np.ndarray, list[float]]:
    """The extra-thyroid activity layer (zero in the gland mask) and each source's peak in the image."""
    n = grid.n
    layer = np.zeros((n, n), dtype=np.float32)
    peaks: list[float] = []
    for src in sources:
        if src.blob is not None:
            box = grid.blob_box(src.blob)
            if box is None:
                peaks.append(0.0)
                continue
            bu, bv = grid.uv(box)
            part = np.float32(src.level) * src.blob.profile(bu, bv, src.q)
            layer[box] += part
            peaks.append(float(part.max()) if part.size else 0.0)
        else:
            band = np.zeros((n, n), dtype=np.float32)
            for cu in src.band_u:
                band += np.exp(-(((uu - np.float32(cu)) / np.float32(src.band_width_mm)) ** 2))
            layer += np.float32(src.level) * band
            peaks.append(float(src.level))
    layer[gland_mask] = 0.0
    return layer, peaks


def body_background(
    rng: np.random.Generator, thyroid: Thyroid, uu: np.ndarray, vv: np.ndarray, level: float, wide: bool
) -> np.ndarray:
    """Neck soft tissue: a band 100-154 mm wide that widens to the shoulders, at ``level``."""
    neck_w = rng.uniform(50.0, 70.0) * (1.1 if wide else 1.0)
    shoulder_v = thyroid.bottom_v + rng.uniform(5.0, 30.0)
    w = neck_w + 0.6 * np.clip(vv - np.float32(shoulder_v), 0.0, None)
    return np.float32(level) / (1.0 + np.exp((np.abs(uu) - w) / np.float32(4.0)))
