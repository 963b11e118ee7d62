"""Cold and hot nodules: where in a lobe they sit, how big they are, how much they take up.

A nodule is a mass of thyroid tissue, so the gland outline goes round it: the gland mask
is the union of the lobes and of every nodule, also where a nodule at a pole or an edge
bulges out of the lobe. That is the commonest presentation of a cold nodule, a defect in
the outline, and the one a model learnt on interior nodules misses: poles and edges are
therefore most of the sites (:data:`SITE_WEIGHTS`). The part of a pole or edge nodule
that lies outside the lobe is either at the nodule's own residual uptake or, for
``merged`` nodules, at the background level (the cold area runs into the background).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from .anatomy import Blob, Thyroid, random_blob

__all__ = ["COLD", "HOT", "SITE_WEIGHTS", "Nodule", "NoduleSpec", "draw_nodules"]

#: where a nodule's centre is put: at a pole (upper 60 %, lower 40 %), at the lateral or
#: medial edge of a lobe, or inside it
SITE_WEIGHTS: dict[str, float] = {"pole": 0.32, "edge": 0.26, "interior": 0.42}


@dataclass(frozen=True)
class NoduleSpec:
    """The ranges of one nodule type."""

    diameter_mm: tuple[float, float]  # lo + (hi - lo) * Beta(beta)
    beta: tuple[float, float]
    uptake: tuple[float, float]  # relative uptake lo + (hi - lo) * Beta(uptake_beta), capped by the caller
    uptake_beta: tuple[float, float]
    merged_p: float  # share of pole/edge nodules whose outside part is at background level
    depth: tuple[float, float]  # sharpness k of the projected defect min(1, k sqrt(1 - rho^2))


COLD = NoduleSpec((5.0, 35.0), (1.5, 2.2), (0.0, 0.7), (1.0, 1.8), 0.5, (1.2, 3.0))
HOT = NoduleSpec((12.0, 35.0), (1.0, 1.0), (1.0, 1.0), (1.0, 1.0), 0.0, (1.0, 1.0))


@dataclass(frozen=True)
class Nodule:
    blob: Blob
    site: str  # "pole", "edge" or "interior"
    lobe: int  # index in Thyroid.lobes
    relative_uptake: float  # of the surrounding tissue (1 for a hot nodule: it is the peak)
    merged: bool
    depth: float

    @property
    def diameter_mm(self) -> float:
        return 2.0 * math.sqrt(self.blob.a * self.blob.b)


def _lobe_point(lobe: Blob, s: float, t: float) -> tuple[float, float]:
    c, sn = math.cos(lobe.angle), math.sin(lobe.angle)
    return lobe.cx + s * c - t * sn, lobe.cy + s * sn + t * c


def _half_width(lobe: Blob, t: float) -> float:
    return lobe.a * max(1.0 + lobe.taper * max(min(t / lobe.b, 1.5), -1.5), 0.35)


def _fit_lobe(lobe: Blob, r: float, site: str) -> Blob:
    """A lobe large enough for a nodule of radius ``r`` at ``site`` (enlarged outwards)."""
    need_a, need_b = (r * 1.15 + 1.0, r * 1.3 + 2.0) if site == "interior" else (r * 0.7, r * 1.0)
    if lobe.a >= need_a and lobe.b >= need_b:
        return lobe
    side = 1.0 if lobe.cx >= 0 else -1.0
    grow = max(need_a - lobe.a, 0.0)
    return replace(lobe, a=max(lobe.a, need_a), b=max(lobe.b, need_b), cx=lobe.cx + side * grow * 0.8)


def _centre(rng: np.random.Generator, lobe: Blob, r: float, site: str) -> tuple[float, float]:
    """A nodule centre (neck frame) at ``site`` of ``lobe``; pole and edge nodules cross the
    outline (their centre lies 0-0.8 radius inside it)."""
    inset = rng.uniform(0.0, 0.8) * r
    if site == "pole":
        sign = -1.0 if rng.random() < 0.6 else 1.0  # upper pole more often
        t = sign * (lobe.b - inset)
        s = rng.uniform(-0.5, 0.5) * _half_width(lobe, t)
    elif site == "edge":
        t = rng.uniform(-0.6, 0.6) * lobe.b
        s = (1.0 if rng.random() < 0.6 else -1.0) * (_half_width(lobe, t) - inset)
        s *= 1.0 if lobe.cx >= 0 else -1.0  # positive: lateral
    else:
        room_a = max(_half_width(lobe, 0.0) * (1 - lobe.taper * 0.3) - r, 0.0)
        room_b = max(lobe.b - r, 0.0)
        s = rng.uniform(-1, 1) * room_a * 0.6
        t = rng.uniform(-1, 1) * room_b * 0.65 + 0.15 * room_b
    return _lobe_point(lobe, s, t)


def _choice(rng: np.random.Generator, weights: dict[str, float]) -> str:
    keys = list(weights)
    p = np.array([weights[k] for k in keys])
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def draw_nodules(
    rng: np.random.Generator,
    thyroid: Thyroid,
    count: int,
    spec: NoduleSpec,
    *,
    max_uptake: float = 1.0,
    avoid: tuple[Nodule, ...] = (),
) -> tuple[Thyroid, list[Nodule]]:
    """``count`` nodules in the lobes of ``thyroid`` (enlarging a lobe that is too small).

    Returns the thyroid (possibly with enlarged lobes) and the nodules; a thyroid without
    lobes (lingual only) gets none. Nodules keep apart from each other and from ``avoid``.
    """
    lobes = list(thyroid.lobes)
    placed: list[Nodule] = []
    for _ in range(count if lobes else 0):
        lo, hi = spec.diameter_mm
        r = 0.5 * (lo + (hi - lo) * float(rng.beta(*spec.beta)))
        site = _choice(rng, SITE_WEIGHTS)
        li = int(rng.integers(0, len(lobes)))
        lobes[li] = _fit_lobe(lobes[li], r, site)
        others = list(avoid) + placed
        for _attempt in range(12):
            cx, cy = _centre(rng, lobes[li], r, site)
            if all(math.hypot(cx - o.blob.cx, cy - o.blob.cy) > 0.9 * (r + 0.5 * o.diameter_mm) for o in others):
                break
        ecc = rng.uniform(0.8, 1.0)
        blob = random_blob(rng, cx, cy, r * ecc, r / math.sqrt(ecc), angle=rng.uniform(0, math.pi), roughness=0.08)
        u_lo, u_hi = spec.uptake
        uptake = min(u_lo + (u_hi - u_lo) * float(rng.beta(*spec.uptake_beta)), max_uptake)
        merged = site != "interior" and bool(rng.random() < spec.merged_p)
        placed.append(Nodule(blob, site, li, float(uptake), merged, float(rng.uniform(*spec.depth))))
    return replace(thyroid, lobes=tuple(lobes)), placed
