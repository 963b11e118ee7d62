"""Everything in the image that is not thyroid: the neck, blood pool, salivary glands,
mouth, oesophagus and point markers.

Each is a :class:`Source` with its own depth, so the camera blurs (and a pinhole
magnifies) it differently from the thyroid. *Focal* sources (salivary glands, mouth,
oesophagus, vessels, markers) are kept at least :data:`CLEARANCE_MM` away from the gland
mask: they are moved away, or left out, rather than allowed to touch it, so that no
extra-thyroid uptake is ever part of the ground truth. The neck's soft tissue is
diffuse background and lies under the gland as it does in a patient.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from .anatomy import Gland, log_uniform
from .geometry import Frame, blob, closed_spline
from .kinds import KindSpec
from .scene import bbox, thickness

__all__ = ["CLEARANCE_MM", "Source", "Surroundings", "build_surroundings", "keep_out"]

CLEARANCE_MM = 3.0
VESSEL_PROB = 0.45
MARKER_SETS = {"chin": 0.6, "sternal_notch": 0.6, "ruler": 0.4}


@dataclass
class Source:
    name: str
    activity: np.ndarray  # padded grid, float32
    depth_mm: float  # relative to the thyroid, positive deeper (further from the camera)
    focal: bool  # extra-thyroid uptake (never inside the gland mask)


@dataclass
class Surroundings:
    sources: list[Source]
    markers: list[dict[str, Any]]  # {"type", "row", "col"} of the markers inside the field
    salivary: list[dict[str, Any]]  # {"gland", "side", "uptake", "near"}


def keep_out(gland: np.ndarray, spacing_mm: float) -> np.ndarray:
    """Pixels closer than :data:`CLEARANCE_MM` to the gland (the gland included)."""
    out = np.zeros_like(gland)
    if not gland.any():
        return out
    pad = int(np.ceil(CLEARANCE_MM / spacing_mm)) + 2
    box = bbox(gland, pad)
    out[box] = ndimage.distance_transform_edt(~gland[box]) * spacing_mm < CLEARANCE_MM
    return out


def _dome(mask: np.ndarray, frame: Frame, level: float, d_ref_mm: float) -> np.ndarray:
    act = np.zeros(mask.shape, dtype=np.float32)
    if mask.any():
        box = bbox(mask, 2)
        act[box] = level * thickness(mask[box], frame.spacing_mm, d_ref_mm)
    return act


def _place(
    make: Callable[[float], np.ndarray], frame: Frame, depth: float, forbidden: np.ndarray, step_mm: float
) -> np.ndarray | None:
    """The mask of ``make(shift)`` for the first shift (0, step, 2 step, ...) clear of ``forbidden``."""
    for attempt in range(10):
        m = frame.mask(make(attempt * step_mm), depth)
        if not (m & forbidden).any():
            return m
    return None


Grid = tuple[np.ndarray, np.ndarray]


def _neck(grid: Grid, rng: np.random.Generator, level: float) -> Source:
    """Soft tissue: a neck widening into the jaw above and the shoulders below, plus the
    mediastinal blood pool rising from the lower edge."""
    xa, ya = grid
    neck, jaw, shoulders = rng.uniform(48, 68), rng.uniform(62, 82), rng.uniform(130, 180)
    y_jaw, y_sh = -rng.uniform(60, 95), rng.uniform(55, 95)
    sig = lambda t: 1.0 / (1.0 + np.exp(-t))  # noqa: E731
    half = neck + (shoulders - neck) * sig((ya - y_sh) / 18.0) + (jaw - neck) * sig((y_jaw - ya) / 15.0)
    path = np.sqrt(np.clip(1.0 - ((xa - rng.uniform(-5, 5)) / half) ** 2, 0.0, 1.0))
    pool = rng.uniform(0.2, 1.5) * sig((ya - y_sh - rng.uniform(15, 60)) / 25.0)
    return Source("neck", (level * path * (1.0 + pool)).astype(np.float32), 0.0, False)


def _vessels(grid: Grid, rng: np.random.Generator, gland: Gland, level: float, forbidden: np.ndarray) -> Source | None:
    """Jugular/carotid blood pool: two vertical bands lateral to the lobes."""
    x0, _, x1, _ = gland.bounds()
    xa, ya = grid
    act = np.zeros(xa.shape, dtype=np.float32)
    for edge, side in ((x0, -1), (x1, 1)):
        hw = rng.uniform(3.0, 5.5)
        centre = (
            edge + side * (CLEARANCE_MM + 2.0 + rng.uniform(0, 8) + hw) + 2.0 * np.sin(ya / 50.0 + rng.uniform(0, 6))
        )
        act += np.sqrt(np.clip(1.0 - ((xa - centre) / hw) ** 2, 0.0, 1.0))
    act *= level
    return None if ((act > 0) & forbidden).any() else Source("vessels", act, rng.uniform(0, 10), True)


def _salivary(
    frame: Frame, rng: np.random.Generator, gland: Gland, spec: KindSpec, ref: float, forbidden: np.ndarray
) -> tuple[list[Source], list[dict[str, Any]]]:
    uptake = log_uniform(rng, spec.salivary_uptake) * ref
    near = bool(rng.random() < spec.salivary_near_prob)
    poles = {lobe.side: float(lobe.outline[:, 1].min()) for lobe in gland.lobes}
    top = min(poles.values())
    sources, meta = [], []
    depth = rng.uniform(-8.0, 4.0)
    sub = np.zeros(frame.padded, dtype=np.float32)
    for side in (-1, 1):
        rx, ry = rng.uniform(9, 15), rng.uniform(7, 12)
        x = side * rng.uniform(26, 44)
        y = poles.get(side, top) - rng.uniform(3, 12) - ry if near else -rng.uniform(55, 85)
        angle, seed = rng.uniform(-0.4, 0.4), int(rng.integers(1 << 31))

        def make(
            shift: float, x: float = x, y: float = y, rx: float = rx, ry: float = ry, a: float = angle, s: int = seed
        ) -> np.ndarray:
            return blob(np.random.default_rng(s), (x, y - shift), (rx, ry), a)

        m = _place(make, frame, depth, forbidden, 4.0)
        if m is not None:
            level = uptake * rng.uniform(0.7, 1.3)
            sub += _dome(m, frame, level, 0.5 * ry)
            meta.append({"gland": "submandibular", "side": side, "uptake": round(level / ref, 3), "near": near})
    sources.append(Source("submandibular", sub, depth, True))
    if rng.random() < 0.7:
        depth_p = rng.uniform(5.0, 20.0)
        par = np.zeros(frame.padded, dtype=np.float32)
        for side in (-1, 1):
            outline = blob(
                rng,
                (side * rng.uniform(55, 75), -rng.uniform(85, 125)),
                (rng.uniform(10, 15), rng.uniform(16, 26)),
                rng.uniform(-0.3, 0.3),
            )
            m = frame.mask(outline, depth_p)
            if not (m & forbidden).any():
                level = uptake * rng.uniform(0.5, 1.1)
                par += _dome(m, frame, level, 8.0)
                meta.append({"gland": "parotid", "side": side, "uptake": round(level / ref, 3), "near": False})
        sources.append(Source("parotid", par, depth_p, True))
    return sources, meta


def _mouth(frame: Frame, rng: np.random.Generator, ref: float, forbidden: np.ndarray) -> Source | None:
    centre, radii, angle = (rng.uniform(-6, 6), -rng.uniform(80, 120)), (rng.uniform(14, 24), rng.uniform(7, 13)), 0.0
    depth, seed = rng.uniform(5, 20), int(rng.integers(1 << 31))
    m = _place(
        lambda s: blob(np.random.default_rng(seed), (centre[0], centre[1] - s), radii, angle),
        frame,
        depth,
        forbidden,
        5.0,
    )
    level = log_uniform(rng, (0.05, 1.5)) * ref
    return None if m is None else Source("mouth", _dome(m, frame, level, 6.0), depth, True)


def _oesophagus(
    frame: Frame, rng: np.random.Generator, gland: Gland, ref: float, forbidden: np.ndarray
) -> Source | None:
    """Swallowed activity: a bolus in the oesophagus below the gland, a little left of the midline."""
    _, _, _, y_max = gland.bounds()
    x, w, length = rng.uniform(-2, 8), rng.uniform(7, 13), rng.uniform(15, 55)
    top = y_max + CLEARANCE_MM + rng.uniform(2, 10)
    depth = rng.uniform(15, 30)

    def make(shift: float) -> np.ndarray:
        y0 = top + shift
        pts = [
            (x - w / 2, y0 + 3),
            (x, y0),
            (x + w / 2, y0 + 3),
            (x + w / 2 + 1, y0 + length / 2),
            (x + w / 2, y0 + length - 3),
            (x, y0 + length),
            (x - w / 2, y0 + length - 3),
            (x - w / 2 - 1, y0 + length / 2),
        ]
        return closed_spline(np.array(pts), 64)

    m = _place(make, frame, depth, forbidden, 4.0)
    level = log_uniform(rng, (0.05, 0.8)) * ref
    return None if m is None else Source("oesophagus", _dome(m, frame, level, w / 3), depth, True)


def _marker_positions(rng: np.random.Generator, gland: Gland, reach: float) -> list[tuple[str, float, float]]:
    """Chin, sternal notch and ruler positions (mm); ``reach`` scales their distance to the gland."""
    x0, y0, x1, y1 = gland.bounds()
    chosen = [name for name, p in MARKER_SETS.items() if rng.random() < p] or ["sternal_notch"]
    out = []
    if "chin" in chosen:
        out.append(("chin", rng.uniform(-5, 5), y0 - reach * rng.uniform(40, 80)))
    if "sternal_notch" in chosen:
        out.append(("sternal_notch", rng.uniform(-4, 4), y1 + reach * rng.uniform(12, 40)))
    if "ruler" in chosen:
        n, step = int(rng.integers(5, 12)), 10.0
        if rng.random() < 0.5:
            side = rng.choice((-1, 1))
            x, ys = (x1 if side > 0 else -x0) * side + side * reach * rng.uniform(10, 35), y0 + rng.uniform(-20, 10)
            out += [("ruler", float(x), ys + i * step) for i in range(n)]
        else:
            y, xs = y1 + reach * rng.uniform(20, 50), -(n - 1) * step / 2 + rng.uniform(-10, 10)
            out += [("ruler", xs + i * step, y) for i in range(n)]
    return out


def _markers(
    frame: Frame, rng: np.random.Generator, gland: Gland, ref: float, forbidden: np.ndarray
) -> tuple[Source, list[dict[str, Any]]]:
    """Point sources on the skin, splatted bilinearly (a marker is smaller than any pixel).

    Drawn again closer to the gland (up to ten times) until at least one is in the field."""
    depth = -rng.uniform(15.0, 30.0)
    area_px = np.pi * 1.5**2 / frame.spacing_mm**2
    m, n = frame.margin, frame.matrix
    for attempt in range(10):
        act = np.zeros(frame.padded, dtype=np.float32)
        inside = []
        for kind, x, y in _marker_positions(rng, gland, 0.7**attempt):
            col, row = frame.to_pixels(np.array([[x, y]]), depth)[0]
            c0, r0 = int(np.floor(col)), int(np.floor(row))
            if (
                not (0 <= r0 < act.shape[0] - 1 and 0 <= c0 < act.shape[1] - 1)
                or forbidden[r0 : r0 + 2, c0 : c0 + 2].any()
            ):
                continue
            fc, fr = col - c0, row - r0
            total = log_uniform(rng, (1.0, 15.0)) * ref * area_px
            act[r0 : r0 + 2, c0 : c0 + 2] += total * np.array(
                [[(1 - fr) * (1 - fc), (1 - fr) * fc], [fr * (1 - fc), fr * fc]]
            )
            if m <= row < m + n - 1 and m <= col < m + n - 1:
                inside.append({"type": kind, "row": round(row - m, 1), "col": round(col - m, 1)})
        if inside:
            break
    return Source("markers", act, depth, True), inside


def build_surroundings(
    rng: np.random.Generator,
    spec: KindSpec,
    gland: Gland,
    frame: Frame,
    gland_mask: np.ndarray,
    ref: float,
    neck_level: float,
) -> Surroundings:
    """All non-thyroid sources of one scan; ``ref`` is the thyroid's peak uptake level."""
    forbidden = keep_out(gland_mask, frame.spacing_mm)
    grid = frame.anatomical_grid()
    sources = [_neck(grid, rng, neck_level)]
    if rng.random() < VESSEL_PROB:
        vessels = _vessels(grid, rng, gland, rng.uniform(0.1, 0.5) * neck_level, forbidden)
        sources += [vessels] if vessels is not None else []
    salivary: list[dict[str, Any]] = []
    if rng.random() < spec.salivary_prob:
        found, salivary = _salivary(frame, rng, gland, spec, ref, forbidden)
        sources += found
    for prob, build in (
        (spec.mouth_prob, lambda: _mouth(frame, rng, ref, forbidden)),
        (spec.oesophagus_prob, lambda: _oesophagus(frame, rng, gland, ref, forbidden)),
    ):
        if rng.random() < prob:
            source = build()
            sources += [source] if source is not None else []
    markers: list[dict[str, Any]] = []
    if rng.random() < spec.marker_prob:
        source, markers = _markers(frame, rng, gland, max(ref, neck_level), forbidden)
        sources.append(source)
    return Surroundings(sources, markers, salivary)
