"""Synthetic anterior-neck thyroid scintigraphy: orchestration and the :class:`Scan` record.

``generate_scan(seed)`` is deterministic (``np.random.default_rng(seed)``); every random
choice below is drawn in a fixed order, so overriding ``matrix``/``isotope``/``collimator``
keeps the same anatomy. Parameter ranges (also in ``docs/synthetic-data.md``):

Case mix (``kind=None``): normal 22 %, cold_nodules 22 %, hot_nodule 7 %, goiter 7 %,
graves 6 %, thyroiditis 5 %, hemithyroidectomy 5 %, low_count 6 %, markers 5 %, i131 15 %.

Acquisition
    * isotope: ``i131`` kind is I-131; any other kind is I-131 with probability 6 %
      (about 20 % I-131 overall), otherwise Tc-99m pertechnetate.
    * collimator: pinhole 60 % (Tc) / 40 % (I-131), else parallel-hole.
    * matrix: 64 (5 %), 128 (35 %), 256 (50 %), 512 (10 %); I-131: 64 (10 %), 128 (55 %),
      256 (35 %); square.
    * field of view: chosen so that the thyroid width (bilateral width, even after
      hemithyroidectomy) is 35-65 % of the FOV width for pinhole, 25-45 % for parallel-hole
      (at least 1/0.85 of the gland height). Pixel spacing = FOV / matrix, hence e.g.
      pinhole at 256: ~0.27-0.96 mm (median 0.46), parallel at 128: ~0.7-2.5 mm (median
      1.3), parallel at 64: ~1.6-3.9 mm.
    * neck rotation uniform +-15 deg; neck centre offset up to +-12 % of the FOV horizontally,
      -8..+15 % vertically, always keeping the gland >= max(3 px, 3 % FOV) from the edges.
    * blur FWHM: pinhole Tc 3-6 mm, parallel Tc 6-10 mm, I-131 x1.5-2 plus a 5-12 %
      septal-penetration halo; Poisson noise; uint16.
    * thyroid counts (expected counts emitted by the gland, before blur): Tc 50k-500k
      (log-uniform), graves 150k-600k, thyroiditis 5k-40k, low_count 5k-20k, I-131 8k-50k;
      hemithyroidectomy halves it.

Anatomy (see :mod:`.anatomy`)
    * lobes: height 40-56 mm, width 15-25 mm (each x a lobe size factor 0.85-1.15, height
      by its square root), superellipse exponent 1.9-2.4, taper (pear shape, wider at the
      lower pole) 0.15-0.45, upper poles tilted outwards 2-18 deg, radial roughness
      harmonics 2-4 (<= 6 %), uptake asymmetry 0.75-1; trachea gap 8-18 mm; thickness
      profile ``(1 - rho**2)**q``, q 0.35-0.6; multiplicative uptake heterogeneity
      ``1 + h/2 * sum of 4 plane waves`` (wavelength 12-40 mm, std ~0.7 h), h 0.02-0.08.
    * isthmus present 85 % (graves 100 %, goiter 95 %), 7-16 mm tall, uptake 35-70 %;
      pyramidal lobe 15 % (graves 45 %, goiter 10 %), 18-36 mm long, uptake 30-60 %.
    * normal size x0.85-1.15; goiter x1.3-2.0 (width; height x sqrt), rougher outline,
      patchy uptake (h 0.06-0.14); graves x1.15-1.6, flat profile (q 0.3-0.45), uniform
      (h 0-0.04); thyroiditis x0.9-1.2, patchy (h 0.06-0.12); hemithyroidectomy: one
      lobe, no isthmus or pyramidal lobe.
    * cold nodules (cold_nodules kind): 1 (55 %), 2 (25 %), 3 (12 %), 4 (8 %); other kinds
      carry 1-3 with probability goiter 40 %, low_count 30 %, markers 25 %,
      hemithyroidectomy 25 %, graves 10 %, i131 60 %; never normal/hot_nodule/thyroiditis.
      Diameter 5 + 25*Beta(2, 2.2) mm (5-30, ~10 % below 10 mm; I-131 8-30 mm);
      residual activity 0.5*Beta(1.2, 1.8) of the surrounding gland (0-50 %, mean 20 %;
      0-35 % on I-131 and low_count scans); a lobe too small for its nodule is enlarged.
      A nodule covering fewer than 3 pixels is dropped (not a finding).
    * hot nodule (hot_nodule kind; 20 % of nodule-free i131 scans): diameter 12-35 mm,
      rest of the gland at 5-30 % activity; in ``gland`` but not in ``nodules``.

Artefacts
    * neck soft-tissue background, relative to the gland peak: Tc 3-15 %, I-131 1-5 %,
      graves 1-4 %, thyroiditis 33-71 % (gland peak only 1.4-3x background); the neck is
      100-140 mm wide and widens towards the shoulders; faint jugular/carotid blood-pool
      bands (50 %).
    * salivary glands: submandibular and parotid pairs above the thyroid, relative to the
      gland peak Tc 15-80 %, graves 2-15 %, thyroiditis 80-250 %, I-131 0-8 %; mouth/oral
      activity 40 %.
    * point markers (markers kind: 1-3, first at the sternal notch, second at the chin;
      other kinds 5 %: 1 at a random site): blurred peak 1.5-6x the gland peak, at least
      1.5 FWHM + 6 mm from the gland, inside the image.
    * flat room/detector background 0-3 % of the mean gland counts/pixel (<= 0.3).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np

from ..record import Scan
from .acquisition import (
    ISOTOPE_SPECS,
    blur,
    draw_fwhm_mm,
    normalise_collimator,
    normalise_isotope,
    poisson_counts,
)
from .anatomy import Blob, Thyroid, draw_thyroid, random_blob, union_extent

__all__ = ["CASE_KINDS", "KIND_WEIGHTS", "MATRIX_WEIGHTS", "Scan", "generate_scan"]

CASE_KINDS: tuple[str, ...] = (
    "normal",
    "cold_nodules",
    "hot_nodule",
    "goiter",
    "graves",
    "thyroiditis",
    "hemithyroidectomy",
    "low_count",
    "markers",
    "i131",
)
KIND_WEIGHTS: dict[str, float] = {
    "normal": 0.22,
    "cold_nodules": 0.22,
    "hot_nodule": 0.07,
    "goiter": 0.07,
    "graves": 0.06,
    "thyroiditis": 0.05,
    "hemithyroidectomy": 0.05,
    "low_count": 0.06,
    "markers": 0.05,
    "i131": 0.15,
}
MATRIX_WEIGHTS: dict[int, float] = {64: 0.05, 128: 0.35, 256: 0.50, 512: 0.10}
MATRIX_WEIGHTS_I131: dict[int, float] = {64: 0.10, 128: 0.55, 256: 0.35}
# probability of extra cold nodules for kinds whose main label is not cold nodules
_EXTRA_COLD = {
    "low_count": 0.30,
    "markers": 0.25,
    "hemithyroidectomy": 0.25,
    "graves": 0.10,
    "goiter": 0.40,
    "i131": 0.60,
}


def _choice(rng: np.random.Generator, weights: dict[Any, float]) -> Any:
    keys = list(weights)
    p = np.array([weights[k] for k in keys], dtype=np.float64)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def _loguniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


class _Grid:
    """Pixel-centre grid (mm) with a rotated, shifted neck frame."""

    def __init__(self, n: int, spacing: float, cx: float, cy: float, theta: float) -> None:
        self.n = n
        self.sp = spacing
        self.x = ((np.arange(n, dtype=np.float32) + 0.5) - n / 2) * np.float32(spacing)
        self.cx, self.cy = cx, cy
        self.c, self.s = math.cos(theta), math.sin(theta)

    def to_image(self, u: float, v: float) -> tuple[float, float]:
        return self.cx + u * self.c - v * self.s, self.cy + u * self.s + v * self.c

    def to_pixel(self, u: float, v: float) -> tuple[float, float]:
        """(row, col) continuous pixel index of a neck-frame point."""
        x, y = self.to_image(u, v)
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

    def uv(self, box: tuple[slice, slice]) -> tuple[np.ndarray, np.ndarray]:
        dx = self.x[box[1]] - np.float32(self.cx)
        dy = self.x[box[0]] - np.float32(self.cy)
        c, s = np.float32(self.c), np.float32(self.s)
        u = dx[None, :] * c + dy[:, None] * s
        v = -dx[None, :] * s + dy[:, None] * c
        return u, v

    def union_box(self, blobs: list[Blob]) -> tuple[slice, slice]:
        boxes = [b for b in (self.box(bl.cx, bl.cy, bl.bound) for bl in blobs) if b is not None]
        return (
            slice(min(b[0].start for b in boxes), max(b[0].stop for b in boxes)),
            slice(min(b[1].start for b in boxes), max(b[1].stop for b in boxes)),
        )


def _nodule_diameter(rng: np.random.Generator, lo: float = 5.0, hi: float = 30.0) -> float:
    return float(lo + (hi - lo) * rng.beta(2.0, 2.2))


def _place_nodules(
    rng: np.random.Generator,
    thyroid: Thyroid,
    diameters: list[float],
) -> tuple[Thyroid, list[Blob]]:
    """Place nodules inside lobes (widening a lobe that is too narrow). Returns the
    possibly modified thyroid and the nodule blobs (neck frame)."""
    lobes = list(thyroid.lobes)
    nodules: list[Blob] = []
    for d in diameters:
        r = d / 2
        li = int(rng.integers(0, len(lobes)))
        lobe = lobes[li]
        need_a = r * 1.15 + 1.0
        need_b = r * 1.3 + 2.0
        if lobe.a < need_a or lobe.b < need_b:
            da = max(need_a - lobe.a, 0.0)
            side = 1.0 if lobe.cx >= 0 else -1.0
            lobe = replace(
                lobe,
                a=max(lobe.a, need_a),
                b=max(lobe.b, need_b),
                cx=lobe.cx + side * da * 0.8,
            )
            lobes[li] = lobe
        for _ in range(12):
            a_eff = lobe.a * (1 - lobe.taper * 0.3)  # conservative for tapering
            s0 = rng.uniform(-1, 1) * max(a_eff - r, 0.0) * 0.6
            t0 = rng.uniform(-1, 1) * max(lobe.b - r, 0.0) * 0.65 + 0.15 * max(lobe.b - r, 0.0)
            c, s = math.cos(lobe.angle), math.sin(lobe.angle)
            cx = lobe.cx + s0 * c - t0 * s
            cy = lobe.cy + s0 * s + t0 * c
            if all(math.hypot(cx - o.cx, cy - o.cy) > 0.85 * (r + max(o.a, o.b)) for o in nodules):
                break
        ecc = rng.uniform(0.8, 1.0)
        nodules.append(
            random_blob(
                rng,
                cx,
                cy,
                r * ecc,
                r / math.sqrt(ecc),
                angle=rng.uniform(0, math.pi),
                roughness=0.08,
            )
        )
    return replace(thyroid, lobes=tuple(lobes)), nodules


def generate_scan(
    seed: int,
    *,
    kind: str | None = None,
    matrix: int | None = None,
    isotope: str | None = None,
    collimator: str | None = None,
) -> Scan:
    """Generate one synthetic scan, deterministic from ``seed``.

    ``kind=None`` draws the case kind from :data:`KIND_WEIGHTS`; ``matrix``, ``isotope``
    ("Tc-99m"/"I-131") and ``collimator`` ("pinhole"/"parallel") force a property.
    """
    rng = np.random.default_rng(seed)
    drawn_kind = _choice(rng, KIND_WEIGHTS)
    if kind is None:
        kind = drawn_kind
    if kind not in CASE_KINDS:
        raise ValueError(f"unknown kind {kind!r}; expected one of {CASE_KINDS}")

    # ---------------- acquisition choices
    iso = "I-131" if (kind == "i131" or rng.random() < 0.06) else "Tc-99m"
    if isotope is not None:
        forced = normalise_isotope(isotope)
        if kind == "i131" and forced != "I-131":
            raise ValueError("kind 'i131' requires isotope I-131")
        iso = forced
    coll = "pinhole" if rng.random() < (0.6 if iso == "Tc-99m" else 0.4) else "parallel"
    if collimator is not None:
        coll = normalise_collimator(collimator)
    n = int(_choice(rng, MATRIX_WEIGHTS if iso == "Tc-99m" else MATRIX_WEIGHTS_I131))
    if matrix is not None:
        if not 16 <= int(matrix) <= 2048:
            raise ValueError(f"matrix {matrix} out of range")
        n = int(matrix)
    fwhm = draw_fwhm_mm(rng, iso, coll)
    width_frac = rng.uniform(0.35, 0.65) if coll == "pinhole" else rng.uniform(0.25, 0.45)
    theta = math.radians(rng.uniform(-15.0, 15.0))

    # ---------------- anatomy
    scale = 1.0
    roughness = 0.06
    hetero = rng.uniform(0.02, 0.08)
    isthmus_p, pyr_p = 0.85, 0.15
    if kind == "goiter":
        scale, roughness, hetero, isthmus_p, pyr_p = (
            rng.uniform(1.3, 2.0),
            0.12,
            rng.uniform(0.06, 0.14),
            0.95,
            0.1,
        )
    elif kind == "graves":
        scale, hetero, isthmus_p, pyr_p = rng.uniform(1.15, 1.6), rng.uniform(0.0, 0.04), 1.0, 0.45
    elif kind == "thyroiditis":
        scale, hetero = rng.uniform(0.9, 1.2), rng.uniform(0.06, 0.12)
    else:
        scale = rng.uniform(0.85, 1.15)
    has_isthmus = bool(rng.random() < isthmus_p)
    has_pyr = bool(rng.random() < pyr_p)
    thyroid = draw_thyroid(
        rng,
        scale=scale,
        isthmus=has_isthmus,
        pyramidal=has_pyr,
        hemi=kind == "hemithyroidectomy",
        roughness=roughness,
    )
    if kind == "graves":
        thyroid = replace(thyroid, profile_q=float(rng.uniform(0.3, 0.45)), isthmus_uptake=0.75)

    # ---------------- findings
    n_cold = 0
    sub_kind_hot = False
    if kind == "cold_nodules":
        n_cold = int(_choice(rng, {1: 0.55, 2: 0.25, 3: 0.12, 4: 0.08}))
    elif kind in _EXTRA_COLD and rng.random() < _EXTRA_COLD[kind]:
        n_cold = int(_choice(rng, {1: 0.7, 2: 0.2, 3: 0.1}))
    if kind == "i131" and n_cold == 0 and rng.random() < 0.2:
        sub_kind_hot = True
    has_hot = kind == "hot_nodule" or sub_kind_hot
    cold_d = [_nodule_diameter(rng, 8.0 if iso == "I-131" else 5.0) for _ in range(n_cold)]
    hot_d = [float(rng.uniform(12.0, 35.0))] if has_hot else []
    thyroid, hot_blobs = _place_nodules(rng, thyroid, hot_d)
    thyroid, cold_blobs = _place_nodules(rng, thyroid, cold_d)
    # residual activity inside a cold nodule (fraction of the surrounding gland); kept
    # lower on noisy I-131 / low-count scans, where a faint defect would be invisible
    c_max = 0.35 if (iso == "I-131" or kind == "low_count") else 0.5
    cold_contrast = [float(c_max * rng.beta(1.2, 1.8)) for _ in cold_blobs]
    suppression = float(rng.uniform(0.05, 0.3)) if has_hot else 1.0

    # ---------------- field of view and position
    parts = thyroid.parts
    gland_blobs = parts + hot_blobs
    xmin, xmax, ymin, ymax = union_extent(gland_blobs, theta)
    width = xmax - xmin
    if thyroid.removed_side is not None:
        width = max(width, thyroid.virtual_width_mm * abs(math.cos(theta)))
    fov = max(width / width_frac, (ymax - ymin) / 0.85, (xmax - xmin) / 0.85)
    sp = fov / n
    margin = max(3 * sp, 0.03 * fov)
    half = fov / 2

    def _pick(lo: float, hi: float, plo: float, phi: float) -> float:
        a, b = max(lo, plo), min(hi, phi)
        if a > b:
            a, b = lo, hi
        if a > b:  # cannot happen given fov >= extent / 0.85, kept for safety
            return 0.5 * (lo + hi)
        return float(rng.uniform(a, b))

    ncx = _pick(-half + margin - xmin, half - margin - xmax, -0.12 * fov, 0.12 * fov)
    ncy = _pick(-half + margin - ymin, half - margin - ymax, -0.08 * fov, 0.15 * fov)
    grid = _Grid(n, sp, ncx, ncy, theta)

    # ---------------- gland activity (relative units, peak ~1)
    gbox = grid.union_box(gland_blobs)
    u, v = grid.uv(gbox)
    g_act = np.zeros(u.shape, dtype=np.float32)
    g_mask = np.zeros(u.shape, dtype=bool)
    q = thyroid.profile_q
    uptakes = list(thyroid.lobe_uptake)
    if thyroid.isthmus is not None:
        uptakes.append(thyroid.isthmus_uptake)
    if thyroid.pyramidal is not None:
        uptakes.append(thyroid.pyramidal_uptake)
    for blob, upt in zip(parts, uptakes, strict=True):
        rho = blob.rho(u, v)
        inside = rho < 1.0
        g_mask |= inside
        prof = np.clip(1.0 - rho * rho, 0.0, None) ** np.float32(q) * np.float32(upt)
        np.maximum(g_act, prof, out=g_act)
    if hetero > 0:
        field = np.zeros_like(u)
        for _ in range(4):
            wavelength = rng.uniform(12.0, 40.0)
            ang = rng.uniform(0, math.pi)
            k = 2 * math.pi / wavelength
            field += np.cos(
                np.float32(k * math.cos(ang)) * u
                + np.float32(k * math.sin(ang)) * v
                + np.float32(rng.uniform(0, 2 * math.pi))
            )
        g_act *= 1.0 + np.float32(hetero / 2.0) * field
    hot_params = []
    for hb in hot_blobs:
        rho = hb.rho(u, v)
        inside = rho < 1.0
        g_mask |= inside
        g_act *= np.float32(suppression)
        hot = np.clip(1.0 - rho * rho, 0.0, None) ** np.float32(0.4)
        np.maximum(g_act, hot, out=g_act)
        hot_params.append(
            {"diameter_mm": round(2 * math.sqrt(hb.a * hb.b), 2), "suppression": suppression}
        )
    n_mask = np.zeros(u.shape, dtype=bool)
    cold_params = []
    for cb, cc in zip(cold_blobs, cold_contrast, strict=True):
        rho = cb.rho(u, v)
        inside = (rho < 1.0) & g_mask
        if int(inside.sum()) < 3:
            continue  # too small to be seen at this matrix: not a finding
        n_mask |= inside
        depth = np.clip(1.0 - rho * rho, 0.0, 1.0) ** np.float32(0.25)
        g_act *= 1.0 - np.float32(1.0 - cc) * depth
        cold_params.append({"diameter_mm": round(2 * math.sqrt(cb.a * cb.b), 2), "contrast": cc})
    g_act *= g_mask  # activity strictly inside the outline
    gland_sum = float(g_act.sum())
    gland_peak = float(np.percentile(g_act[g_mask], 98)) if g_mask.any() else 1.0
    if hot_blobs:  # levels relative to the hot nodule: the rest of the neck is suppressed
        gland_peak = float(g_act.max())

    # ---------------- counts level
    if iso == "I-131":
        t_counts = _loguniform(rng, 8e3, 5e4)
    elif kind == "low_count":
        t_counts = _loguniform(rng, 5e3, 2e4)
    elif kind == "thyroiditis":
        t_counts = _loguniform(rng, 5e3, 4e4)
    elif kind == "graves":
        t_counts = _loguniform(rng, 1.5e5, 6e5)
    else:
        t_counts = _loguniform(rng, 5e4, 5e5)
    if kind == "hemithyroidectomy":
        t_counts *= 0.5

    # ---------------- background and artefacts (relative to gland peak)
    act = np.zeros((n, n), dtype=np.float32)
    act[gbox] = g_act
    if kind == "graves":
        bg = rng.uniform(0.01, 0.04)
        sal = rng.uniform(0.02, 0.15)
    elif kind == "thyroiditis":
        bg = 1.0 / rng.uniform(1.4, 3.0)
        sal = rng.uniform(0.8, 2.5)
    elif iso == "I-131":
        bg = rng.uniform(0.01, 0.05)
        sal = rng.uniform(0.0, 0.08)
    else:
        bg = rng.uniform(0.03, 0.15)
        sal = rng.uniform(0.15, 0.8)
    bg *= gland_peak
    sal *= gland_peak
    uu, vv = grid.uv((slice(0, n), slice(0, n)))
    top_v = min(b.cy - b.b for b in parts)
    bottom_v = max(b.cy + b.b for b in parts)
    neck_w = rng.uniform(50.0, 70.0) * (1.0 if scale < 1.3 else 1.1)
    shoulder_v = bottom_v + rng.uniform(5.0, 30.0)
    w = neck_w + 0.6 * np.clip(vv - np.float32(shoulder_v), 0.0, None)
    tissue = 1.0 / (1.0 + np.exp((np.abs(uu) - w) / np.float32(4.0)))
    act += np.float32(bg) * tissue
    has_vessels = bool(rng.random() < 0.5)
    if has_vessels:
        vu = max(abs(b.cx) + b.a for b in thyroid.lobes) + rng.uniform(3.0, 12.0)
        vw = rng.uniform(3.0, 6.0)
        act += np.float32(bg * rng.uniform(0.3, 1.0)) * np.exp(
            -(((np.abs(uu) - np.float32(vu)) / np.float32(vw)) ** 2)
        )
    sal_blobs: list[tuple[Blob, float]] = []
    for side in (-1.0, 1.0):
        sm = random_blob(
            rng,
            side * rng.uniform(25.0, 42.0),
            top_v - rng.uniform(12.0, 30.0) - 9.0,
            rng.uniform(9.0, 15.0),
            rng.uniform(7.0, 11.0),
            angle=side * math.radians(rng.uniform(-30, 10)),
            roughness=0.08,
        )
        sal_blobs.append((sm, sal * rng.uniform(0.7, 1.0)))
        pa = random_blob(
            rng,
            side * rng.uniform(45.0, 65.0),
            top_v - rng.uniform(45.0, 75.0),
            rng.uniform(10.0, 16.0),
            rng.uniform(16.0, 24.0),
            angle=side * math.radians(rng.uniform(-20, 5)),
            roughness=0.08,
        )
        sal_blobs.append((pa, sal * rng.uniform(0.6, 1.0)))
    has_mouth = bool(rng.random() < 0.4)
    if has_mouth:
        mo = random_blob(
            rng,
            rng.uniform(-5, 5),
            top_v - rng.uniform(45.0, 75.0),
            rng.uniform(14.0, 24.0),
            rng.uniform(6.0, 11.0),
            roughness=0.1,
        )
        sal_blobs.append((mo, sal * rng.uniform(0.3, 1.0)))
    for blob, level in sal_blobs:
        bx = grid.box(blob.cx, blob.cy, blob.bound)
        if bx is None:
            continue
        bu, bv = grid.uv(bx)
        act[bx] += np.float32(level) * blob.profile(bu, bv, 0.5)

    # ---------------- markers (point sources away from the gland)
    n_markers = 0
    if kind == "markers":
        n_markers = int(rng.integers(1, 4))
    elif rng.random() < 0.05:
        n_markers = 1
    scale_counts = t_counts / max(gland_sum, 1e-6)
    marker_params = []
    full_mask = np.zeros((n, n), dtype=bool)
    full_mask[gbox] = g_mask
    keep_out = (fwhm * 1.5 + 6.0) / sp
    sites = ["sternal_notch", "chin", "lateral", "random"]
    for mi in range(n_markers):
        site = sites[mi] if kind == "markers" and mi < 2 else sites[int(rng.integers(0, 4))]
        for _attempt in range(30):
            if site == "sternal_notch":
                mu, mv = rng.uniform(-6, 6), bottom_v + rng.uniform(12.0, 40.0)
            elif site == "chin":
                mu, mv = rng.uniform(-6, 6), top_v - rng.uniform(35.0, 90.0)
            elif site == "lateral":
                mu, mv = rng.choice([-1.0, 1.0]) * rng.uniform(45.0, 80.0), rng.uniform(-40, 40)
            else:
                mu = (rng.uniform(-0.45, 0.45) * fov) - ncx
                mv = (rng.uniform(-0.45, 0.45) * fov) - ncy
            row, col = grid.to_pixel(float(mu), float(mv))
            ri, ci = int(round(row)), int(round(col))
            if not (2 <= ri < n - 2 and 2 <= ci < n - 2):
                site = "random"
                continue
            k = int(math.ceil(keep_out))
            win = full_mask[max(ri - k, 0) : ri + k + 1, max(ci - k, 0) : ci + k + 1]
            if win.any():
                site = "random"
                continue
            # point source whose blurred peak is 1.5-6x the gland peak
            sigma_px = fwhm / 2.3548 / sp
            m_rel = rng.uniform(1.5, 6.0) * gland_peak * max(2 * math.pi * sigma_px**2, 1.0)
            act[ri, ci] += np.float32(m_rel)
            m_counts = m_rel * scale_counts
            marker_params.append({"site": site, "row": ri, "col": ci, "counts": round(m_counts)})
            break

    # ---------------- imaging
    lam = blur(act, fwhm, sp)
    halo = 0.0
    if iso == "I-131":
        halo = float(rng.uniform(0.05, 0.12))
        f = 4 if n % 4 == 0 and n >= 64 else 1
        small = lam.reshape(n // f, f, n // f, f).mean(axis=(1, 3))
        small = blur(small, fwhm * 4.0, sp * f)
        wide = np.repeat(np.repeat(small, f, axis=0), f, axis=1)
        lam = (1.0 - halo) * lam + halo * wide
    lam *= np.float32(scale_counts)
    # flat room/detector background: 0-3 % of the mean gland counts per pixel, <= 0.3
    room = min(rng.uniform(0.0, 0.03) * t_counts / max(int(g_mask.sum()), 1), 0.3)
    lam += np.float32(room)
    counts = poisson_counts(rng, lam)

    nod_full = np.zeros((n, n), dtype=bool)
    nod_full[gbox] = n_mask

    spec = ISOTOPE_SPECS[iso]
    day = int(rng.integers(0, 6 * 365))
    year, doy = 2019 + day // 365, day % 365
    month, dom = 1 + doy // 31 % 12, 1 + doy % 28
    hh, mm, ss = int(rng.integers(8, 17)), int(rng.integers(0, 60)), int(rng.integers(0, 60))
    duration_s = (
        int(rng.choice([300, 600, 900])) if iso == "I-131" else int(rng.choice([180, 300, 600]))
    )
    sex = "F" if rng.random() < 0.78 else "M"
    age = int(rng.integers(18, 86))
    params: dict[str, Any] = {
        "seed": int(seed),
        "kind": kind,
        "isotope": iso,
        "radiopharmaceutical": spec.pharmaceutical,
        "collimator": coll,
        "collimator_model": "PINHOLE" if coll == "pinhole" else spec.parallel_collimator,
        "matrix": n,
        "pixel_spacing_mm": sp,
        "fov_mm": fov,
        "fwhm_mm": fwhm,
        "septal_halo": halo,
        "rotation_deg": math.degrees(theta),
        "offset_mm": [ncx, ncy],
        "gland_width_fraction": (xmax - xmin) / fov,
        "virtual_width_fraction": width / fov,
        "scale": scale,
        "n_lobes": len(thyroid.lobes),
        "removed_side": thyroid.removed_side,
        "isthmus": thyroid.isthmus is not None,
        "pyramidal": thyroid.pyramidal is not None,
        "n_cold": len(cold_params),
        "cold_nodules": cold_params,
        "n_hot": len(hot_params),
        "hot_nodules": hot_params,
        "heterogeneity": hetero,
        "background_rel": bg / gland_peak,
        "salivary_rel": sal / gland_peak,
        "vessels": has_vessels,
        "mouth": has_mouth,
        "markers": len(marker_params),
        "marker_list": marker_params,
        "thyroid_counts": t_counts,
        "total_counts": int(counts.sum(dtype=np.int64)),
        "room_background": room,
        "acquisition_date": f"{year:04d}{month:02d}{dom:02d}",
        "acquisition_time": f"{hh:02d}{mm:02d}{ss:02d}",
        "frame_duration_s": duration_s,
        "dose_mbq": round(float(rng.uniform(*spec.dose_mbq)), 1),
        "patient_sex": sex,
        "patient_age": age,
    }
    params = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in params.items()}
    params["offset_mm"] = [round(ncx, 3), round(ncy, 3)]
    gland_full = np.zeros((n, n), dtype=bool)
    gland_full[gbox] = g_mask
    return Scan(
        counts=counts,
        gland=gland_full,
        nodules=nod_full,
        pixel_spacing_mm=float(sp),
        kind=kind,
        params=params,
    )
