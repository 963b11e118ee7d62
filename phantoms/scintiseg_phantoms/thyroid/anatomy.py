"""Implicit 2-D shapes of the anterior neck: thyroid lobes, isthmus, nodules, salivary glands.

Every shape is a :class:`Blob`: a (super)ellipse in its own frame, optionally tapered
(pear-shaped) and with a smooth random radial perturbation (harmonics 2..4). A blob
exposes ``rho(u, v)``, a normalised radius that equals 1 on the outline, is < 1 inside
and grows outside, evaluated with numpy on any grid of points in millimetres in the
*neck frame* (``u`` towards the image right = patient left, ``v`` towards the feet,
origin at the centre of the thyroid). Masks are ``rho < 1`` at pixel centres; projected
activity uses the thickness profile ``(1 - rho**2) ** q`` (``q = 0.5`` is an ellipsoid).

Thyroid anatomy is drawn by :func:`draw_thyroid`; the ranges per case kind are in
:mod:`scintiseg_phantoms.thyroid.kinds` and ``docs/synthetic-data.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Blob", "Thyroid", "draw_thyroid", "random_blob", "union_extent"]


@dataclass(frozen=True)
class Blob:
    """A smooth closed shape in the neck frame (all lengths in mm, angle in radians)."""

    cx: float
    cy: float
    a: float  # half width (along the blob's own s axis)
    b: float  # half height (along the blob's own t axis)
    angle: float = 0.0  # rotation of the blob frame, radians, counter-clockwise on screen
    p: float = 2.0  # superellipse exponent (2 = ellipse)
    taper: float = 0.0  # > 0: wider towards +t (the bottom), narrower towards -t
    harmonics: tuple[tuple[int, float, float], ...] = field(default_factory=tuple)
    # (order k, amplitude, phase) of the radial perturbation 1 + sum amp*cos(k*phi + phase)

    @property
    def bound(self) -> float:
        """Radius (mm) of a disc centred on (cx, cy) that contains the blob."""
        amp = sum(abs(h[1]) for h in self.harmonics)
        return max(self.a * (1.0 + abs(self.taper)), self.b) * (1.0 + amp) * 1.05 + 0.5

    def rho(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Normalised radius at points ``(u, v)`` (broadcast); 1 on the outline."""
        du = u - self.cx
        dv = v - self.cy
        c, s = math.cos(self.angle), math.sin(self.angle)
        ss = du * c + dv * s
        tt = -du * s + dv * c
        tn = tt / self.b
        a_eff: np.ndarray | float
        if self.taper:
            a_eff = self.a * np.clip(1.0 + self.taper * np.clip(tn, -1.5, 1.5), 0.35, None)
        else:
            a_eff = self.a
        sn = ss / a_eff
        if self.p == 2.0:
            r = np.sqrt(sn * sn + tn * tn)
        else:
            r = (np.abs(sn) ** self.p + np.abs(tn) ** self.p) ** (1.0 / self.p)
        if self.harmonics:
            phi = np.arctan2(tn, sn)
            pert: np.ndarray | float = 1.0
            for k, amp, ph in self.harmonics:
                pert = pert + amp * np.cos(k * phi + ph)
            r = r / pert
        return r

    def profile(self, u: np.ndarray, v: np.ndarray, q: float = 0.5) -> np.ndarray:
        """Projected thickness in [0, 1]: ``(1 - rho**2)**q`` inside, 0 outside."""
        r = self.rho(u, v)
        t = np.clip(1.0 - r * r, 0.0, None)
        return t**q if q != 1.0 else t


def random_blob(
    rng: np.random.Generator,
    cx: float,
    cy: float,
    a: float,
    b: float,
    *,
    angle: float = 0.0,
    roughness: float = 0.05,
    p_range: tuple[float, float] = (2.0, 2.0),
    taper: float = 0.0,
) -> Blob:
    """A blob with random superellipse exponent and radial harmonics of given roughness."""
    harm = tuple(
        (k, float(rng.uniform(0.0, roughness) / (k - 1)), float(rng.uniform(0, 2 * math.pi))) for k in (2, 3, 4)
    )
    p = float(rng.uniform(*p_range))
    return Blob(float(cx), float(cy), float(a), float(b), float(angle), p, float(taper), harm)


@dataclass(frozen=True)
class Thyroid:
    """Thyroid anatomy in the neck frame (mm).

    Every part here is functioning thyroid tissue and belongs to the gland mask, ectopic
    tissue included: physicians outline thyroid tissue wherever it lies, and the uptake
    they measure includes it. ``frame_blobs`` are the lobes as drawn before a removal or
    an absence: the camera is framed on the neck whether or not the gland is there.
    """

    lobes: tuple[Blob, ...]  # 2 lobes, 1 after hemithyroidectomy, 0 for a lingual-only thyroid
    lobe_uptake: tuple[float, ...]  # relative uptake per lobe (asymmetry)
    isthmus: Blob | None
    isthmus_uptake: float
    pyramidal: Blob | None
    pyramidal_uptake: float
    ectopic: Blob | None
    ectopic_uptake: float
    ectopic_site: str | None  # "lingual" or "thyroglossal"
    profile_q: float  # exponent of the thickness profile
    frame_blobs: tuple[Blob, ...]  # what the field of view is framed on
    removed_side: str | None  # "right"/"left" patient side for hemithyroidectomy

    @property
    def parts(self) -> list[tuple[Blob, float]]:
        """Every tissue part with its relative uptake."""
        out = list(zip(self.lobes, self.lobe_uptake, strict=True))
        for blob, uptake in (
            (self.isthmus, self.isthmus_uptake),
            (self.pyramidal, self.pyramidal_uptake),
            (self.ectopic, self.ectopic_uptake),
        ):
            if blob is not None:
                out.append((blob, uptake))
        return out

    @property
    def top_v(self) -> float:
        """Neck-frame height (mm) of the upper poles as drawn (present or not)."""
        return min(b.cy - b.b for b in self.frame_blobs[:2])

    @property
    def bottom_v(self) -> float:
        return max(b.cy + b.b for b in self.frame_blobs[:2])


def _draw_lobe(
    rng: np.random.Generator, side: float, base_a: float, base_b: float, gap: float, scale: float, roughness: float
) -> Blob:
    f = rng.uniform(0.85, 1.15)
    a = base_a * f * rng.uniform(0.9, 1.1)
    b = base_b * math.sqrt(f)
    tilt = side * math.radians(rng.uniform(2.0, 18.0))  # upper poles diverge
    return random_blob(
        rng,
        side * (gap / 2 + a * 0.95),
        rng.uniform(-3.0, 3.0) * scale,
        a,
        b,
        angle=tilt,
        roughness=roughness,
        p_range=(1.9, 2.4),
        taper=rng.uniform(0.15, 0.45),
    )


def _draw_isthmus(rng: np.random.Generator, lobes: list[Blob], scale: float) -> Blob:
    mean_b = 0.5 * (lobes[0].b + lobes[1].b)
    half_w = 0.5 * (lobes[1].cx - lobes[0].cx)
    return random_blob(
        rng,
        0.5 * (lobes[0].cx + lobes[1].cx),
        rng.uniform(0.2, 0.5) * mean_b,
        half_w * rng.uniform(1.0, 1.15) + 2.0,
        rng.uniform(3.5, 8.0) * math.sqrt(scale),
        angle=math.radians(rng.uniform(-6, 6)),
        roughness=0.04,
    )


def _draw_pyramidal(rng: np.random.Generator, lobes: list[Blob], scale: float) -> Blob:
    iy = rng.uniform(0.2, 0.5) * 0.5 * (lobes[0].b + lobes[1].b)
    pb = rng.uniform(9.0, 18.0) * math.sqrt(scale)
    return random_blob(
        rng,
        rng.uniform(-7.0, 7.0),
        iy - pb * rng.uniform(0.7, 0.95),
        rng.uniform(2.5, 4.0),
        pb,
        angle=math.radians(rng.uniform(-12, 12)),
        roughness=0.04,
        taper=rng.uniform(0.1, 0.4),
    )


def _draw_ectopic(rng: np.random.Generator, top_v: float, lingual_p: float) -> tuple[Blob, str]:
    """Lingual tissue (base of the tongue, 45-75 mm above the upper poles, 14-28 mm) or a
    thyroglossal remnant (on the midline 8-35 mm above the poles, 8-18 mm)."""
    if rng.random() < lingual_p:
        r, dv, site = rng.uniform(7.0, 14.0), rng.uniform(45.0, 75.0), "lingual"
    else:
        r, dv, site = rng.uniform(4.0, 9.0), rng.uniform(8.0, 35.0), "thyroglossal"
    ecc = rng.uniform(0.75, 1.0)
    blob = random_blob(
        rng,
        rng.uniform(-5.0, 5.0),
        top_v - dv,
        r / math.sqrt(ecc),
        r * ecc,
        angle=math.radians(rng.uniform(-20, 20)),
        roughness=0.06,
    )
    return blob, site


def draw_thyroid(
    rng: np.random.Generator,
    *,
    scale: float = 1.0,
    isthmus: bool = True,
    pyramidal: bool = False,
    hemi: bool = False,
    ectopic: bool = False,
    orthotopic: bool = True,
    roughness: float = 0.06,
    profile_q: tuple[float, float] = (0.35, 0.6),
) -> Thyroid:
    """Draw a thyroid: two tapered lobes, optional isthmus, pyramidal lobe, ectopic tissue.

    Normal lobes are 40-56 mm tall (half height ``b`` 20-28 mm) and 15-25 mm wide (half
    width ``a`` 7.5-12.5 mm) before ``scale`` (enlargement: width x scale, height x
    sqrt(scale)); each lobe gets an independent size factor 0.85-1.15 (width; its square
    root for the height) and uptake factor 0.75-1.0 (asymmetry). Without an orthotopic
    gland (``orthotopic=False``) the ectopic tissue is lingual and is the whole gland.
    """
    base_a = rng.uniform(7.5, 12.5) * scale
    base_b = rng.uniform(20.0, 28.0) * math.sqrt(scale)
    gap = rng.uniform(8.0, 18.0) * (0.8 + 0.2 * scale)  # trachea between lobes
    q = float(rng.uniform(*profile_q))
    drawn = [_draw_lobe(rng, side, base_a, base_b, gap, scale, roughness) for side in (-1.0, 1.0)]
    uptake = [float(rng.uniform(0.75, 1.0)) for _ in drawn]
    uptake = [x / max(uptake) for x in uptake]
    isth = _draw_isthmus(rng, drawn, scale) if isthmus else None
    pyr = _draw_pyramidal(rng, drawn, scale) if pyramidal else None
    top_v = min(b.cy - b.b for b in drawn)
    ect, site = _draw_ectopic(rng, top_v, 0.5 if orthotopic else 0.85) if ectopic or not orthotopic else (None, None)
    lobes, removed = drawn, None
    if hemi:
        keep = int(rng.integers(0, 2))
        removed = "right" if keep == 1 else "left"  # index 0 is patient right
        lobes, uptake, isth, pyr = [drawn[keep]], [1.0], None, None
    if not orthotopic:
        lobes, uptake, isth, pyr = [], [], None, None
    frame = tuple(drawn) + ((ect,) if ect is not None else ())
    return Thyroid(
        lobes=tuple(lobes),
        lobe_uptake=tuple(uptake),
        isthmus=isth,
        isthmus_uptake=float(rng.uniform(0.35, 0.7)),
        pyramidal=pyr,
        pyramidal_uptake=float(rng.uniform(0.3, 0.6)),
        ectopic=ect,
        ectopic_uptake=float(rng.uniform(0.5, 1.0)),
        ectopic_site=site,
        profile_q=q,
        frame_blobs=frame,
        removed_side=removed,
    )


def union_extent(blobs: list[Blob], angle: float, n: int = 64) -> tuple[float, float, float, float]:
    """Bounding box (xmin, xmax, ymin, ymax) in mm, in a frame rotated by ``angle`` radians,
    of the union of ``blobs``; sampled on an ``n x n`` grid per blob (~1 mm accuracy)."""
    c, s = math.cos(angle), math.sin(angle)
    xs: list[float] = []
    ys: list[float] = []
    for bl in blobs:
        r = bl.bound
        g = np.linspace(-r, r, n, dtype=np.float64)
        uu = bl.cx + g[None, :]
        vv = bl.cy + g[:, None]
        inside = bl.rho(uu, vv) < 1.0
        if not inside.any():
            continue
        vi, ui = np.nonzero(inside)
        pu = uu[0, ui]
        pv = vv[vi, 0]
        # neck frame -> image frame: x = u*c - v*s, y = u*s + v*c
        x = pu * c - pv * s
        y = pu * s + pv * c
        xs += [float(x.min()), float(x.max())]
        ys += [float(y.min()), float(y.max())]
    step = 2.0 * max(bl.bound for bl in blobs) / (n - 1)
    return min(xs) - step, max(xs) + step, min(ys) - step, max(ys) + step
