"""Synthetic Tc-99m DMSA renal cortical scintigraphy: one study, posterior and anterior views.

A case is drawn from its seed (and kind, :data:`.kinds.KINDS`), in millimetres on the
coronal plane, then imaged twice through the same body:

* **kidneys**: ellipsoids of varied length, width, position, tilt and depth; DMSA fixes in
  the cortex, so the projected uptake is the ellipsoid's thickness weighted by a cortical
  rim, with a photopenic hilum on the medial side (two on a duplex kidney); scars are
  wedge-shaped cortical defects; a horseshoe kidney joins the lower poles across the
  midline; an ectopic kidney lies low in the pelvis and anterior;
* **other uptake**: liver and spleen (faint), bladder, body background;
* **imaging**: each view attenuates each source by its depth (``mu`` 0.012/mm for the
  140 keV photons in tissue: the posterior view sees a kidney through its posterior depth,
  the anterior view through the rest of the body), blurs it with the camera's resolution
  (and a motion streak on some cases) and draws Poisson counts; both views last as long,
  so their totals differ as the attenuation makes them.

The truth: per view, the masks of the patient's left and right kidney (the whole outline,
scars included) and of the scars, and the **true split function**: each kidney's share of
the generated activity, before attenuation. The geometric mean of the two views' counts
cancels the depth (exactly for a point source), the posterior view alone does not: the
split function's tests measure both.

Image geometry: rows run from head to feet. The posterior view is seen from behind, so the
patient's left is on the image's left; the anterior view is its mirror image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from .kinds import KIND_WEIGHTS, KINDS, KidneyKind

__all__ = ["MU_PER_MM", "VIEWS", "RenalStudy", "RenalView", "generate_study"]

#: Effective linear attenuation of Tc-99m photons (140 keV) in soft tissue, per mm.
MU_PER_MM = 0.012
#: The views every study has, in acquisition order.
VIEWS = ("posterior", "anterior")


@dataclass(frozen=True)
class RenalView:
    """One view of a study with its truth masks (each ``(rows, cols)``)."""

    view: str  # "posterior" or "anterior"
    counts: np.ndarray  # uint16 Poisson counts
    left: np.ndarray  # bool, the patient's left kidney
    right: np.ndarray  # bool, the patient's right kidney
    scars: np.ndarray  # bool, cortical defects (inside the kidney masks)


@dataclass(frozen=True)
class RenalStudy:
    """A DMSA study: its views, pixel size, kind and the drawn parameters with the truth."""

    views: tuple[RenalView, ...]
    pixel_spacing_mm: float
    kind: str
    #: JSON-serialisable: ``split_left_pct``/``split_right_pct`` (the truth), ``kidneys``,
    #: ``body_thickness_mm``, ``counts``, ``matrix``, ``fov_mm``, ``fwhm_mm``, ``motion``
    params: dict[str, Any]

    def view(self, name: str) -> RenalView:
        for v in self.views:
            if v.view == name:
                return v
        raise KeyError(name)


@dataclass
class _Kidney:
    side: str  # "left" or "right" (the patient's)
    x: float  # mm, patient's left positive
    y: float  # mm, feet positive
    length: float  # mm
    width: float  # mm
    tilt: float  # degrees; positive: the upper pole toward the midline
    depth: float  # mm from the back skin to the kidney's centre
    uptake: float  # activity per unit of cortical thickness
    hila: tuple[float, ...] = (0.0,)  # positions of the hila along the long axis (-1..1)
    scars: tuple[tuple[float, float], ...] = ()  # (angle in degrees, half-width in degrees)
    horseshoe: bool = False


def _grid(n: int, px: float) -> tuple[np.ndarray, np.ndarray]:
    """Patient coordinates (x left+, y feet+) of the posterior view's pixel centres."""
    c = (np.arange(n) - (n - 1) / 2) * px
    y, col = np.meshgrid(c, c, indexing="ij")
    return -col, y  # posterior view: image left = patient left, so x decreases with the column


def _kidney_maps(k: _Kidney, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(activity, mask, scars) of one kidney on the grid."""
    medial = -1.0 if k.side == "left" else 1.0  # direction of the midline in x
    t = math.radians(k.tilt) * (1 if k.side == "left" else -1)
    dx, dy = x - k.x, y - k.y
    # long axis u (toward the feet), short axis v (toward the midline)
    u = dx * math.sin(t) + dy * math.cos(t)
    v = (dx * math.cos(t) - dy * math.sin(t)) * medial
    a, b = k.length / 2, k.width / 2
    r2 = (u / a) ** 2 + (v / b) ** 2
    mask = r2 <= 1.0
    r = np.sqrt(np.minimum(r2, 1.0))
    thickness = np.sqrt(np.clip(1.0 - r2, 0.0, None))
    cortex = np.where(r > 0.55, 1.0, 0.45)
    activity = thickness * cortex
    for h in k.hila:  # the pelvis: a photopenic notch on the medial side
        notch = ((u / a - h) / 0.28) ** 2 + ((v / b - 0.55) / 0.45) ** 2 <= 1.0
        activity = np.where(notch, activity * 0.15, activity)
    scars = np.zeros_like(mask)
    angle = np.degrees(np.arctan2(v / b, u / a))
    for centre, half in k.scars:
        delta = np.abs((angle - centre + 180.0) % 360.0 - 180.0)
        wedge = mask & (delta <= half) & (r > 0.45)
        scars |= wedge
        activity = np.where(wedge, activity * 0.12, activity)
    return activity * k.uptake * mask, mask, scars


def _ellipse(x: np.ndarray, y: np.ndarray, cx: float, cy: float, a: float, b: float) -> np.ndarray:
    return ((x - cx) / a) ** 2 + ((y - cy) / b) ** 2 <= 1.0


def _draw_kidneys(rng: np.random.Generator, spec: KidneyKind) -> list[_Kidney]:
    kidneys = []
    # one person's two kidneys are alike: their size and uptake vary around common values
    length, width, depth = rng.uniform(95, 125), rng.uniform(45, 60), rng.uniform(50, 80)
    for side in ("left", "right"):
        sign = 1.0 if side == "left" else -1.0
        kidneys.append(_Kidney(
            side=side,
            x=sign * rng.uniform(45, 70),
            # the right kidney lies a little lower (the liver above it)
            y=rng.uniform(-35, 5) + (rng.uniform(5, 20) if side == "right" else 0.0),
            length=length * rng.uniform(0.93, 1.07),
            width=width * rng.uniform(0.93, 1.07),
            tilt=rng.uniform(5, 25),
            depth=depth + rng.uniform(-15, 15),
            uptake=rng.uniform(0.92, 1.08),
        ))
    changed = kidneys[int(rng.integers(2))]
    other = kidneys[1] if changed is kidneys[0] else kidneys[0]
    if rng.random() < spec.small_p:
        s = rng.uniform(*spec.small_scale)
        changed.length *= s
        changed.width *= math.sqrt(s)
        changed.uptake *= rng.uniform(0.6, 0.9)
    if rng.random() < spec.duplex_p:
        changed.length *= rng.uniform(1.2, 1.35)
        changed.hila = (-0.4, 0.4)
    if rng.random() < spec.ectopic_p:
        sign = 1.0 if changed.side == "left" else -1.0
        changed.x = sign * rng.uniform(10, 45)
        changed.y = rng.uniform(110, 160)
        changed.length *= rng.uniform(0.7, 0.9)
        changed.tilt = rng.uniform(-30, 30)
        changed.depth = rng.uniform(110, 150)  # in the pelvis, toward the front
    if spec.horseshoe:
        for k in kidneys:
            k.x = (1.0 if k.side == "left" else -1.0) * rng.uniform(30, 45)
            k.y = rng.uniform(10, 40)
            k.tilt = -rng.uniform(15, 30)  # lower poles toward the midline
            k.horseshoe = True
    if rng.random() < spec.scars_p:
        scarred = [changed] if (spec.small_p > 0 or rng.random() < 0.6) else [changed, other]
        for k in scarred:
            n = int(rng.integers(int(spec.scars[0]), int(spec.scars[1]) + 1))
            # poles (0 / 180 degrees along the long axis) are the usual sites, the lateral
            # border (-90) the next one
            sites = rng.choice([180.0, 0.0, -90.0, -135.0, -45.0], size=n, replace=False)
            k.scars = tuple((float(c) + rng.uniform(-15, 15), rng.uniform(12, 28)) for c in sites)
    if rng.random() < spec.absent_p:
        kidneys.remove(changed)
        other.length *= rng.uniform(1.05, 1.2)  # compensatory hypertrophy
        other.uptake *= rng.uniform(1.0, 1.2)
    return kidneys


def _blur(image: np.ndarray, sigma_px: float, motion: tuple[float, float] | None) -> np.ndarray:
    out = ndimage.gaussian_filter(image, sigma_px, mode="constant")
    if motion is not None:  # a straight streak: the mean of shifted copies
        length_px, angle = motion
        steps = max(2, int(round(length_px)) + 1)
        acc = np.zeros_like(out)
        for s in np.linspace(0.0, length_px, steps):
            acc += ndimage.shift(out, (s * math.sin(angle), s * math.cos(angle)), order=1, mode="constant")
        out = acc / steps
    return out


def generate_study(seed: int, kind: str | None = None, matrix: int | None = None) -> RenalStudy:
    """One DMSA study, a pure function of ``seed`` (and ``kind``, ``matrix``)."""
    rng = np.random.default_rng([seed, 0xD35A])
    if kind is None:
        names, weights = KIND_WEIGHTS
        kind = str(rng.choice(names, p=np.asarray(weights) / sum(weights)))
    spec = KINDS[kind]
    n = int(matrix or rng.choice([128, 256], p=[0.6, 0.4]))
    fov = rng.uniform(350, 450)
    px = fov / n
    x, y = _grid(n, px)
    kidneys = _draw_kidneys(rng, spec)
    body = rng.uniform(180, 280)  # antero-posterior thickness at the kidneys (mm)

    # sources: (activity map, depth from the back in mm)
    sources: list[tuple[np.ndarray, float]] = []
    masks = {"left": np.zeros((n, n), bool), "right": np.zeros((n, n), bool)}
    scars = np.zeros((n, n), bool)
    activity_of = {"left": 0.0, "right": 0.0}
    for k in kidneys:
        act, mask, sc = _kidney_maps(k, x, y)
        sources.append((act, k.depth))
        masks[k.side] |= mask
        scars |= sc
        activity_of[k.side] += float(act.sum())
    if spec.horseshoe:  # the isthmus across the midline, shared by the two sides
        lower = max(k.y for k in kidneys) + rng.uniform(25, 40)
        isthmus = _ellipse(x, y, 0.0, lower, rng.uniform(25, 40), rng.uniform(8, 14))
        level = 0.5 * np.mean([k.uptake for k in kidneys])
        act = isthmus * level * 0.8
        sources.append((act, float(np.mean([k.depth for k in kidneys]))))
        for side, half in (("left", x >= 0), ("right", x < 0)):
            masks[side] |= isthmus & half
            activity_of[side] += float((act * half).sum())
    peak = max(float(s.max()) for s, _ in sources)
    liver = _ellipse(x, y, -rng.uniform(70, 110), -rng.uniform(50, 90), rng.uniform(70, 95), rng.uniform(55, 80))
    spleen = _ellipse(x, y, rng.uniform(80, 110), -rng.uniform(60, 90), rng.uniform(25, 40), rng.uniform(40, 55))
    bladder = _ellipse(x, y, rng.uniform(-10, 10), rng.uniform(170, 210), rng.uniform(30, 45), rng.uniform(22, 35))
    trunk = _ellipse(x, y, 0.0, 40.0, rng.uniform(150, 190), 400.0)
    sources += [
        (liver * peak * rng.uniform(0.02, 0.07), rng.uniform(90, 130)),
        (spleen * peak * rng.uniform(0.01, 0.05), rng.uniform(50, 80)),
        (bladder * peak * rng.uniform(0.05, 0.5), body - rng.uniform(40, 70)),
        (trunk * peak * rng.uniform(0.008, 0.03), body / 2),
    ]
    total = activity_of["left"] + activity_of["right"]
    split_left = 100.0 * activity_of["left"] / total if total else 0.0

    fwhm = rng.uniform(7.0, 12.0)
    motion = None
    if rng.random() < spec.motion_p:
        motion = (rng.uniform(3.0, 10.0) / px, rng.uniform(0, math.pi))
    expected = {}
    for view in VIEWS:
        image = np.zeros((n, n))
        for act, depth in sources:
            through = depth if view == "posterior" else body - depth
            image += act * math.exp(-MU_PER_MM * max(through, 0.0))
        expected[view] = _blur(image, fwhm / 2.3548 / px, motion)
    counts = float(math.exp(rng.uniform(*np.log(spec.counts))))
    scale = counts / float(expected["posterior"].sum())  # same acquisition time for both views
    views = []
    for view in VIEWS:
        lam = np.clip(expected[view] * scale, 0.0, None)
        img = np.minimum(rng.poisson(lam), 65535).astype(np.uint16)
        mirror = (lambda a: a[:, ::-1].copy()) if view == "anterior" else (lambda a: a.copy())
        views.append(RenalView(view, mirror(img), mirror(masks["left"]), mirror(masks["right"]), mirror(scars)))

    params: dict[str, Any] = {
        "family": "renal_dmsa",
        "kind": kind,
        "matrix": n,
        "fov_mm": round(fov, 2),
        "fwhm_mm": round(fwhm, 2),
        "body_thickness_mm": round(body, 1),
        "motion": motion is not None,
        "counts": {v.view: int(v.counts.sum(dtype=np.int64)) for v in views},
        "split_left_pct": round(split_left, 3),
        "split_right_pct": round(100.0 - split_left, 3) if total else 0.0,
        "kidneys": [
            {"side": k.side, "x_mm": round(k.x, 1), "y_mm": round(k.y, 1), "length_mm": round(k.length, 1),
             "width_mm": round(k.width, 1), "tilt_deg": round(k.tilt, 1), "depth_mm": round(k.depth, 1),
             "scars": len(k.scars), "duplex": len(k.hila) > 1, "horseshoe": k.horseshoe}
            for k in kidneys
        ],
        "isotope": "Tc-99m",
        "acquisition_date": "20260115",
        "acquisition_time": "101500",
    }
    return RenalStudy(tuple(views), px, kind, params)
