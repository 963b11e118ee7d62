"""The gland: spline lobes, an isthmus bridge, a pyramidal lobe, cold and hot nodules.

A lobe is a closed Catmull-Rom spline through twelve control points of a pear-shaped template
(narrow upper pole, full lower third, straighter medial border), each jittered, the
poles sharpened or rounded, the lobe tilted, and its outline lobulated through its
Fourier descriptors (:mod:`.geometry`). The isthmus is a separate spline whose ends sink
into both lobes, so the gland is the *union* of the pieces and the isthmus a bridge of it.
Nodules are placed by site (pole, lateral or medial edge, interior) in lobe coordinates;
the gland outline is the union with them, as a physician outlines a nodule that bulges
out of the lobe or opens onto the background.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .geometry import blob, closed_spline, fourier_detail, polygon_area
from .kinds import KindSpec

__all__ = ["Gland", "Lobe", "Nodule", "build_gland"]

#: Pear-shaped lobe template: (u, v) with u across the lobe in half-widths (+ lateral)
#: and v along it from the upper pole (0) to the lower pole (1).
LOBE_TEMPLATE = np.array(
    [
        (0.05, 0.00),
        (0.45, 0.10),
        (0.80, 0.30),
        (0.98, 0.55),
        (0.90, 0.80),
        (0.55, 0.96),
        (0.05, 1.00),
        (-0.55, 0.93),
        (-0.85, 0.72),
        (-0.78, 0.45),
        (-0.45, 0.20),
        (-0.18, 0.06),
    ]
)
ISTHMUS_V = 0.64  # lobe coordinate v of the isthmus (lower third)
#: Where nodules go and how often (cold and hot alike).
SITE_WEIGHTS = {"pole": 0.4, "edge": 0.35, "interior": 0.25}
LOBE_NAMES = {-1: "right", 1: "left"}  # image left is the patient's right (anterior view)


def log_uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    lo, hi = bounds
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi)))) if lo > 0 else float(rng.uniform(lo, hi))


@dataclass(frozen=True)
class Lobe:
    """One lobe: its outline (mm) and the frame that maps lobe coordinates (u, v) to mm."""

    side: int  # -1 on the image left (patient's right), +1 on the image right
    length: float
    width: float
    tilt: float  # radians, upper pole towards lateral when positive
    centre: tuple[float, float]
    outline: np.ndarray

    def point(self, u: float, v: float) -> np.ndarray:
        lu, ly = u * self.width / 2.0, (v - 0.5) * self.length
        c, s = np.cos(self.tilt), np.sin(self.tilt)
        return np.array([self.centre[0] + self.side * (lu * c - ly * s), self.centre[1] + lu * s + ly * c])

    @property
    def name(self) -> str:
        return LOBE_NAMES[self.side]


@dataclass(frozen=True)
class Nodule:
    outline: np.ndarray
    centre: tuple[float, float]
    diameter_mm: float  # equivalent diameter of the outline
    site: str
    lobe: str
    level: float  # cold: counts relative to the tissue around; hot: uptake relative to normal tissue
    rim: np.ndarray | None = None  # tissue wrapped around part of a cold nodule (a fan, mm)


@dataclass
class Gland:
    lobes: list[Lobe]
    isthmus: np.ndarray | None
    pyramidal: np.ndarray | None
    isthmus_uptake: float
    pyramidal_uptake: float
    tissue_level: float
    heterogeneity: float
    cold: list[Nodule] = field(default_factory=list)
    hot: list[Nodule] = field(default_factory=list)

    def outlines(self) -> list[np.ndarray]:
        parts = [lobe.outline for lobe in self.lobes]
        parts += [p for p in (self.isthmus, self.pyramidal) if p is not None]
        parts += [n.rim for n in self.cold if n.rim is not None]
        return parts + [n.outline for n in self.cold + self.hot]

    def bounds(self) -> tuple[float, float, float, float]:
        """(x_min, y_min, x_max, y_max) of the whole gland in anatomical mm."""
        pts = np.vstack(self.outlines())
        return float(pts[:, 0].min()), float(pts[:, 1].min()), float(pts[:, 0].max()), float(pts[:, 1].max())


def _lobe(rng: np.random.Generator, side: int, length: float, width: float, gap: float) -> Lobe:
    tilt = float(rng.uniform(0.03, 0.35))
    ctrl = LOBE_TEMPLATE + rng.normal(0.0, (0.07, 0.02), LOBE_TEMPLATE.shape)
    upper, lower = rng.uniform(0.6, 1.1), rng.uniform(0.9, 1.2)
    v = LOBE_TEMPLATE[:, 1]
    ctrl[:, 0] *= np.where(v < 0.3, upper + (1 - upper) * v / 0.3, np.where(v > 0.6, lower, 1.0))
    centre = (side * (gap / 2.0 + 0.8 * width / 2.0), -(ISTHMUS_V - 0.5) * length + rng.normal(0.0, 2.5))
    shell = Lobe(side, length, width, tilt, centre, np.empty((0, 2)))
    mm = np.array([shell.point(u, vv) for u, vv in ctrl])
    outline = fourier_detail(closed_spline(mm, 160), rng, rng.uniform(0.01, 0.035))
    return Lobe(side, length, width, tilt, centre, outline)


def _isthmus(rng: np.random.Generator, gap: float, widths: list[float], scale: float) -> np.ndarray:
    h = rng.uniform(4.0, 12.0) * scale
    xe = gap / 2.0 + min(5.0, 0.4 * min(widths))
    top, bottom, sag = rng.uniform(0.0, 0.3) * h, rng.uniform(-0.2, 0.2) * h, rng.uniform(-2.0, 3.0)
    pts = [
        (-xe, -0.5 * h),
        (-0.4 * xe, -0.5 * h + top),
        (0.4 * xe, -0.5 * h + top),
        (xe, -0.5 * h),
        (xe, 0.5 * h),
        (0.4 * xe, 0.5 * h + bottom),
        (-0.4 * xe, 0.5 * h + bottom),
        (-xe, 0.5 * h),
    ]
    return closed_spline(np.array(pts) + (0.0, sag), 96)


def _pyramidal(rng: np.random.Generator, isthmus: np.ndarray) -> np.ndarray:
    """A finger from the isthmus' upper border, usually left of the midline, pointing up."""
    x0 = rng.uniform(-2.0, 8.0)
    near = isthmus[np.abs(isthmus[:, 0] - x0) < 2.0]
    base = float(near[:, 1].min()) + 2.0 if len(near) else float(isthmus[:, 1].min()) + 2.0
    length, wb, wt, drift = rng.uniform(12.0, 35.0), rng.uniform(5.0, 9.0), rng.uniform(2.0, 4.0), rng.uniform(-3, 6)
    left = [
        (x0 - wb / 2, base),
        (x0 - (wb + wt) / 4 + drift / 2, base - length / 2),
        (x0 - wt / 2 + drift, base - length),
    ]
    right = [
        (x0 + wt / 2 + drift, base - length),
        (x0 + (wb + wt) / 4 + drift / 2, base - length / 2),
        (x0 + wb / 2, base),
    ]
    tip = [(x0 + drift, base - length - wt / 2)]
    return closed_spline(np.array(left + tip + right), 80)


def _nodule_centre(rng: np.random.Generator, lobe: Lobe, site: str, radius: float) -> np.ndarray:
    if site == "pole":
        v = rng.uniform(0.06, 0.16) if rng.random() < 0.5 else rng.uniform(0.84, 0.94)
        return lobe.point(float(np.clip(rng.normal(0.0, 0.25), -0.5, 0.5)), v)
    if site == "edge":
        inset = min(rng.uniform(0.1, 0.9) * radius, 0.8 * lobe.width / 2.0) / (lobe.width / 2.0)
        return lobe.point(float(rng.choice((-1.0, 1.0))) * (1.0 - inset), rng.uniform(0.25, 0.8))
    return lobe.point(rng.uniform(-0.2, 0.2), rng.uniform(0.3, 0.7))


def _rim(rng: np.random.Generator, outline: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """The lobe tissue stretched over a cold nodule: its outline widened by 1.5-5 mm over an
    arc of 40-100 % of the turn, the rest left open onto the background."""
    rel = outline - centre
    radius = np.hypot(rel[:, 0], rel[:, 1])
    wider = centre + rel * ((radius + rng.uniform(1.5, 5.0)) / np.maximum(radius, 1e-6))[:, None]
    coverage = rng.uniform(0.4, 1.0)
    if coverage > 0.97:
        return wider
    angle = (np.arctan2(rel[:, 1], rel[:, 0]) - rng.uniform(0, 2 * np.pi)) % (2 * np.pi)
    arc = np.argsort(angle)[: max(3, int(coverage * len(angle)))]
    return np.vstack([centre, wider[arc]])  # a fan from the centre, points in angular order


def _place_nodules(
    rng: np.random.Generator,
    gland: Gland,
    count: int,
    diameter: tuple[float, float],
    level: tuple[float, float],
    *,
    cold: bool,
) -> list[Nodule]:
    """Up to ``count`` nodules that do not overlap those already placed (20 tries each)."""
    placed: list[Nodule] = []
    others = gland.cold + gland.hot
    sites, weights = list(SITE_WEIGHTS), np.array(list(SITE_WEIGHTS.values()))
    for _ in range(count):
        for _try in range(20):
            lobe = gland.lobes[int(rng.integers(len(gland.lobes)))]
            site = str(rng.choice(sites, p=weights / weights.sum()))
            d = log_uniform(rng, diameter)
            if site == "interior":
                d = min(d, 0.7 * lobe.width)
            centre = _nodule_centre(rng, lobe, site, d / 2.0)
            if all(np.hypot(*(centre - n.centre)) > 0.55 * (d + n.diameter_mm) for n in others + placed):
                break
        else:
            continue
        aspect = rng.uniform(1.0, 1.3)
        radii = (d / 2.0 * np.sqrt(aspect), d / 2.0 / np.sqrt(aspect))
        outline = blob(rng, (float(centre[0]), float(centre[1])), radii, rng.uniform(0, np.pi), jitter=0.06)
        value = rng.uniform(*level) if cold else log_uniform(rng, level)
        eq_d = 2.0 * np.sqrt(polygon_area(outline) / np.pi)
        rim = _rim(rng, outline, centre) if cold else None
        placed.append(Nodule(outline, (float(centre[0]), float(centre[1])), float(eq_d), site, lobe.name, value, rim))
    return placed


def build_gland(rng: np.random.Generator, spec: KindSpec) -> Gland:
    """The gland of one scan, in anatomical mm (see the module docstring)."""
    mean_length = rng.uniform(*spec.lobe_length_mm)
    diff = rng.uniform(-spec.asymmetry, spec.asymmetry)
    sides = [-1, 1] if spec.lobes == 2 else [int(rng.choice((-1, 1)))]
    lengths = {-1: mean_length * (1 + diff / 2), 1: mean_length * (1 - diff / 2)}
    gap = rng.uniform(10.0, 24.0)
    lobes = []
    for side in sides:
        length = float(np.clip(lengths[side], 30.0, 70.0))
        lobes.append(_lobe(rng, side, length, length * rng.uniform(*spec.width_ratio), gap))
    isthmus = None
    if len(lobes) == 2 and rng.random() < spec.isthmus_prob:
        isthmus = _isthmus(rng, gap, [lobe.width for lobe in lobes], mean_length / 48.0)
    pyramidal = _pyramidal(rng, isthmus) if isthmus is not None and rng.random() < spec.pyramidal_prob else None
    gland = Gland(
        lobes=lobes,
        isthmus=isthmus,
        pyramidal=pyramidal,
        isthmus_uptake=rng.uniform(0.35, 0.8),
        pyramidal_uptake=rng.uniform(0.3, 0.7),
        tissue_level=rng.uniform(*spec.tissue_level),
        heterogeneity=rng.uniform(*spec.heterogeneity),
    )
    hot_n = int(rng.integers(spec.hot_count[0], spec.hot_count[1] + 1))
    gland.hot = _place_nodules(rng, gland, hot_n, spec.hot_diameter_mm, spec.hot_gain, cold=False)
    cold_n = int(rng.integers(spec.cold_count[0], spec.cold_count[1] + 1))
    gland.cold = _place_nodules(rng, gland, cold_n, spec.cold_diameter_mm, spec.cold_uptake, cold=True)
    return gland
