"""``generate(seed, kind=...)``: one scan of the independent family, and its ground truth.

The steps, each a small function of its own module: the kind's row of the table
(:mod:`.kinds`), the gland in millimetres (:mod:`.anatomy`), the camera
(:mod:`.camera`), the placement of the gland in the field (:func:`_frame`), the gland
on the pixel grid (:mod:`.scene`), the rest of the neck (:mod:`.surroundings`), then
blur, sensitivity and Poisson counts (:mod:`.camera`).

Determinism: the kind comes from the seed alone (:func:`pick_kind`) and the scan from a
stream of ``(seed, kind)``, so ``generate(s)`` equals ``generate(s, kind=generate(s).kind)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import numpy as np

from ..record import Scan
from .anatomy import Gland, build_gland, log_uniform
from .camera import Acquisition, Optics, circular_field, draw_acquisition, padded_margin, poisson_counts, sensitivity
from .geometry import Frame
from .kinds import KIND_TABLE, KINDS
from .scene import GlandImage, render_gland
from .surroundings import Surroundings, build_surroundings

__all__ = ["Scene", "build_scene", "generate", "pick_kind"]

FAMILY = "independent"
ROTATION_SD_DEG, ROTATION_MAX_DEG = 7.0, 20.0
VISIBLE_SHARE = 0.2  # extra-thyroid peak / thyroid peak above which "extrathyroid" is true
LOW_COUNT_TOTAL = 20_000
_STREAM = 0x1D5E  # keeps this family's random streams apart from any other use of the seed


KIND_BLOCK = 50  # every block of 50 consecutive seeds (0-49, 50-99, ...) holds the same mix


def _allocation() -> tuple[str, ...]:
    """The kinds of one block of seeds: the table's weights by largest remainder."""
    weights = np.array([KIND_TABLE[k].weight for k in KINDS])
    share = weights / weights.sum() * KIND_BLOCK
    counts = np.floor(share).astype(int)
    for i in np.argsort(-(share - counts), kind="stable")[: KIND_BLOCK - counts.sum()]:
        counts[i] += 1
    return tuple(k for k, c in zip(KINDS, counts, strict=True) for _ in range(c))


ALLOCATION = _allocation()


def pick_kind(seed: int) -> str:
    """The kind ``generate(seed)`` produces: a shuffled fixed mix within each block of
    :data:`KIND_BLOCK` seeds, so that even a short run of seeds has every kind in the
    table's proportions."""
    if seed < 0:
        raise ValueError("seeds are non-negative integers")
    block, position = divmod(seed, KIND_BLOCK)
    order = np.random.default_rng([_STREAM, block, 0]).permutation(KIND_BLOCK)
    return ALLOCATION[int(order[position])]


def _frame(rng: np.random.Generator, gland: Gland, acq: Acquisition, margin_range: tuple[float, float]) -> Frame:
    """Rotation, field of view and an off-centre position that keeps the gland in the field
    (unless the kind's field is smaller than the gland, as a goitre's may be)."""
    rotation = np.deg2rad(np.clip(rng.normal(0.0, ROTATION_SD_DEG), -ROTATION_MAX_DEG, ROTATION_MAX_DEG))
    probe = Frame(acq.matrix, 1.0, 0, float(rotation), (0.0, 0.0))
    pts = probe.to_plane(np.vstack(gland.outlines()))
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    extent = float((hi - lo).max())
    fov = float(np.clip(extent * rng.uniform(*margin_range) * acq.collimator.fov_factor, 60.0, 400.0))
    spacing = fov / acq.matrix
    free = np.maximum(fov / 2.0 - (hi - lo) / 2.0 - 0.03 * fov, 0.04 * fov)
    free = np.minimum(free, 0.2 * fov)
    offset = -(lo + hi) / 2.0 + rng.uniform(-free, free)
    return Frame(
        acq.matrix,
        spacing,
        padded_margin(acq, spacing),
        float(rotation),
        (float(offset[0]), float(offset[1])),
        acq.pinhole_distance_mm,
    )


def _cold_truth(g: GlandImage, gland: Gland, labels: np.ndarray) -> tuple[list[dict[str, Any]], np.ndarray]:
    """One entry per cold nodule still in the field, labels renumbered 1..n to match."""
    out: list[dict[str, Any]] = []
    relabelled = np.zeros(labels.shape, dtype=np.int16)
    for k, nodule in enumerate(gland.cold, start=1):
        rows, cols = np.nonzero(labels == k)
        if len(rows) == 0:
            continue
        relabelled[rows, cols] = len(out) + 1
        out.append(
            {
                "diameter_mm": round(nodule.diameter_mm, 2),
                "site": g.sites[k - 1],
                "lobe": nodule.lobe,
                "relative_uptake": round(nodule.level, 3),
                "centre_px": [round(float(rows.mean()), 1), round(float(cols.mean()), 1)],
                "area_px": int(len(rows)),
            }
        )
    return out, relabelled


def _patient(rng: np.random.Generator) -> dict[str, Any]:
    day = date(2025, 1, 6) + timedelta(days=int(rng.integers(0, 700)))
    seconds = int(rng.integers(8 * 3600, 17 * 3600))
    return {
        "acquisition_date": day.strftime("%Y%m%d"),
        "acquisition_time": f"{seconds // 3600:02d}{seconds // 60 % 60:02d}{seconds % 60:02d}",
        "patient_age": int(rng.integers(18, 86)),
        "patient_sex": "F" if rng.random() < 0.75 else "M",
    }


def _image(
    rng: np.random.Generator, acq: Acquisition, frame: Frame, g: GlandImage, sur: Surroundings
) -> tuple[np.ndarray, bool, list[dict[str, Any]], bool]:
    """Counts, whether extra-thyroid uptake is visible, markers in the field, circular field."""
    optics = Optics(acq, frame.padded, frame.spacing_mm)
    focal = [(s.activity, s.depth_mm) for s in sur.sources if s.focal and s.name != "markers"]
    rest = [(s.activity, s.depth_mm) for s in sur.sources if not s.focal or s.name == "markers"]
    thyroid = frame.crop(optics.blur([(g.activity, 0.0)]))
    extra = frame.crop(optics.blur(focal)) if focal else np.zeros_like(thyroid)
    other = frame.crop(optics.blur(rest))
    sens = sensitivity(rng, acq, frame.spacing_mm)
    markers = sur.markers
    circle = False
    if acq.circular_field:
        n = acq.matrix
        rows, cols = np.nonzero(frame.crop(g.gland))
        reach = float(np.hypot(rows - (n - 1) / 2.0, cols - (n - 1) / 2.0).max()) + 3.0
        radius = rng.uniform(0.44, 0.5) * n
        if radius >= reach:
            circle = True
            sens = sens * circular_field(n, radius)
            c = (n - 1) / 2.0
            markers = [m for m in sur.markers if np.hypot(m["row"] - c, m["col"] - c) < radius - 1]
    visible = float((extra * sens).max()) >= VISIBLE_SHARE * float((thyroid * sens).max())
    counts = poisson_counts(rng, (thyroid + extra + other) * sens, acq)
    if circle:
        counts[sens == 0] = 0
    return counts, visible, markers, circle


@dataclass
class Scene:
    """Everything drawn for one scan before the camera counts it (tests inspect it)."""

    kind: str
    gland: Gland
    acquisition: Acquisition
    frame: Frame
    image: GlandImage
    surroundings: Surroundings
    gland_to_neck: float
    rng: np.random.Generator  # the scan's stream, where the counting continues


def build_scene(seed: int, kind: str | None = None) -> Scene:
    """The gland, camera, placement and surroundings of ``generate(seed, kind=kind)``."""
    kind = pick_kind(seed) if kind is None else kind
    if kind not in KIND_TABLE:
        raise ValueError(f"unknown kind {kind!r}; choose one of {', '.join(KINDS)}")
    spec = KIND_TABLE[kind]
    rng = np.random.default_rng([_STREAM, seed, 1 + KINDS.index(kind)])
    gland = build_gland(rng, spec)
    acq = draw_acquisition(rng, spec)
    frame = _frame(rng, gland, acq, spec.fov_margin)
    g = render_gland(rng, gland, frame)
    ref = max([gland.tissue_level] + [n.level for n in gland.hot])
    gland_to_neck = log_uniform(rng, spec.gland_to_neck)
    sur = build_surroundings(rng, spec, gland, frame, g.gland, ref, ref / gland_to_neck)
    return Scene(kind, gland, acq, frame, g, sur, gland_to_neck, rng)


def generate(seed: int, *, kind: str | None = None) -> Scan:
    """One anterior thyroid scintigraphy of the independent family (see the package docs)."""
    scene = build_scene(seed, kind)
    kind, gland, acq, frame, g, sur = (
        scene.kind,
        scene.gland,
        scene.acquisition,
        scene.frame,
        scene.image,
        scene.surroundings,
    )
    rng, gland_to_neck = scene.rng, scene.gland_to_neck
    counts, visible, markers, circle = _image(rng, acq, frame, g, sur)
    mask = frame.crop(g.gland).copy()
    cold, labels = _cold_truth(g, gland, frame.crop(g.labels))
    total = int(counts.sum(dtype=np.int64))
    col = acq.collimator
    params: dict[str, Any] = {
        "family": FAMILY,
        "kind": kind,
        "seed": int(seed),
        "cold_nodules": cold,
        "markers": len(markers),
        "extrathyroid": bool(visible),
        "suppressed": bool(gland.hot) and gland.tissue_level < 0.5,
        "total_counts": total,
        "low_count": total < LOW_COUNT_TOTAL,
        "isotope": acq.isotope,
        "collimator": col.kind,
        "collimator_model": acq.collimator_model,
        "matrix": acq.matrix,
        "fov_mm": round(frame.spacing_mm * acq.matrix, 2),
        "pixel_spacing_mm": round(frame.spacing_mm, 5),
        "fwhm_mm": round(acq.fwhm_mm, 2),
        "psf_core": acq.core,
        "tail_weight": round(acq.tail_weight, 4),
        "scatter_fraction": round(acq.scatter_fraction, 3),
        "pinhole_distance_mm": None if acq.pinhole_distance_mm is None else round(acq.pinhole_distance_mm, 1),
        "circular_field": circle,
        "rotation_deg": round(float(np.rad2deg(frame.rotation_rad)), 2),
        "offset_mm": [round(v, 2) for v in frame.offset_mm],
        "lobes": [
            {"lobe": lb.name, "length_mm": round(lb.length, 1), "width_mm": round(lb.width, 1)} for lb in gland.lobes
        ],
        "isthmus": gland.isthmus is not None,
        "pyramidal": gland.pyramidal is not None,
        "n_cold": len(cold),
        "n_hot": len(gland.hot),
        "hot_nodules": [{"diameter_mm": round(n.diameter_mm, 2), "lobe": n.lobe, "site": n.site} for n in gland.hot],
        "tissue_level": round(gland.tissue_level, 3),
        "gland_to_neck": round(gland_to_neck, 3),
        "salivary": sur.salivary,
        "sources": sorted({s.name for s in sur.sources if s.activity.any()}),
        "marker_positions": markers,
        "gland_at_border": bool(mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any()),
        "frame_duration_s": acq.frame_duration_s,
        "dose_mbq": round(acq.dose_mbq, 1),
        **_patient(rng),
    }
    return Scan(
        counts=counts,
        gland=mask,
        nodules=labels > 0,
        pixel_spacing_mm=float(frame.spacing_mm),
        kind=kind,
        params=params,
        nodule_labels=labels,
    )
