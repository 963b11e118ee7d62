"""One synthetic anterior-neck thyroid scintigraphy: the steps, in order, with their draws.

``generate_scan(seed)`` is deterministic. Each step draws from its own random stream
(spawned from the seed), so forcing ``matrix``/``isotope``/``collimator`` or changing one
step's draws keeps every other step's (same anatomy, same findings). What a case kind
changes is read from its row of :data:`.kinds.KINDS`; the ranges are listed in
``docs/synthetic-data.md``.

Steps: case kind -> acquisition (isotope, collimator, matrix, blur, counts) -> anatomy
(:mod:`.anatomy`) -> nodules (:mod:`.nodules`) -> framing (:mod:`.geometry`) -> gland
layer (:mod:`.gland`) -> extra-thyroid sources and body background (:mod:`.extrathyroid`)
-> markers (:mod:`.markers`) -> blur, halos, detector effects (:mod:`.detector`) ->
Poisson -> stored counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..record import Scan
from .acquisition import (
    COUNTS_RANGE,
    IMAGING,
    ISOTOPE_SPECS,
    MATRIX_WEIGHTS,
    MAX_FOV_MM,
    blur,
    normalise_collimator,
    normalise_isotope,
    poisson_counts,
)
from .anatomy import Thyroid, draw_thyroid
from .detector import background_effects, draw_effects, expected_effects, pool_for_storage, stored_counts
from .extrathyroid import Source, body_background, draw_sources, render_sources
from .geometry import Framing, frame
from .gland import GlandLayer, render_gland
from .kinds import CASE_KINDS, KIND_WEIGHTS, KINDS, KindSpec
from .markers import place_markers
from .nodules import COLD, HOT, Nodule, draw_nodules

__all__ = ["CASE_KINDS", "KIND_WEIGHTS", "MATRIX_WEIGHTS", "Case", "Scan", "build_case", "draw_kind", "generate_scan"]

_STREAMS = (
    "kind",
    "acquisition",
    "anatomy",
    "findings",
    "framing",
    "extrathyroid",
    "markers",
    "detector",
    "noise",
    "metadata",
)
#: a hot nodule leaves the gland "suppressed" when the rest of the gland is at most this
SUPPRESSED_BELOW = 0.4
#: an extra-thyroid source is "visible" from this level (x gland peak) and 25 % of the background
VISIBLE_LEVEL = 0.05


def _choice(rng: np.random.Generator, weights: Any) -> Any:
    pairs = list(weights.items()) if isinstance(weights, dict) else list(weights)
    p = np.array([w for _, w in pairs], dtype=np.float64)
    return pairs[int(rng.choice(len(pairs), p=p / p.sum()))][0]


def _loguniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


@dataclass(frozen=True)
class Acquisition:
    isotope: str
    collimator: str
    matrix: int
    fwhm_mm: float
    total_counts: float  # expected counts in the whole image
    septal_halo: float


def _acquisition(
    rng: np.random.Generator, spec: KindSpec, matrix: int | None, isotope: str | None, collimator: str | None
) -> Acquisition:
    iso = "I-131" if rng.random() < spec.i131_p else "Tc-99m"
    if isotope is not None:
        forced = normalise_isotope(isotope)
        if spec.i131_p >= 1.0 and forced != "I-131":
            raise ValueError("this kind requires isotope I-131")
        iso = forced
    im = IMAGING[iso]
    coll = "pinhole" if rng.random() < im.pinhole_p else "parallel"
    coll = normalise_collimator(collimator) if collimator is not None else coll
    n = int(_choice(rng, im.matrix_weights))
    if matrix is not None:
        if not 16 <= int(matrix) <= 2048:
            raise ValueError(f"matrix {matrix} out of range")
        n = int(matrix)
    fwhm = float(rng.uniform(*im.fwhm_mm[coll]))
    counts = _loguniform(rng, *spec.counts) * float(rng.uniform(*im.counts_factor))
    halo = float(rng.uniform(*im.septal_halo))
    return Acquisition(iso, coll, n, fwhm, float(np.clip(counts, *COUNTS_RANGE)), halo)


def _anatomy(rng: np.random.Generator, spec: KindSpec) -> tuple[Thyroid, float, float]:
    scale = float(rng.uniform(*spec.scale))
    hetero = float(rng.uniform(*spec.heterogeneity))
    isthmus = bool(rng.random() < spec.isthmus_p)
    pyramidal = bool(rng.random() < spec.pyramidal_p)
    ectopic = bool(rng.random() < spec.ectopic_p)
    orthotopic = bool(rng.random() < spec.orthotopic_p)
    thyroid = draw_thyroid(
        rng,
        scale=scale,
        isthmus=isthmus,
        pyramidal=pyramidal,
        hemi=spec.hemi,
        ectopic=ectopic,
        orthotopic=orthotopic,
        roughness=spec.roughness,
        profile_q=spec.profile_q,
    )
    return thyroid, scale, hetero


def _findings(
    rng: np.random.Generator, spec: KindSpec, thyroid: Thyroid, low_contrast: bool
) -> tuple[Thyroid, list[Nodule], list[Nodule], float]:
    n_cold = int(_choice(rng, spec.cold_count)) if rng.random() < spec.cold_p else 0
    has_hot = bool(rng.random() < spec.hot_p)
    suppression = _loguniform(rng, *spec.suppression) if has_hot else 1.0
    thyroid, hot = draw_nodules(rng, thyroid, int(has_hot), HOT)
    # a faint defect vanishes in I-131 or low-count noise: residual uptake kept lower there
    thyroid, cold = draw_nodules(rng, thyroid, n_cold, COLD, max_uptake=0.5 if low_contrast else 0.7, avoid=tuple(hot))
    return thyroid, cold, hot, suppression


@dataclass(frozen=True)
class Case:
    """A scan before counting: its layers (relative activity, gland peak 1) and its draws."""

    kind: str
    acquisition: Acquisition
    thyroid: Thyroid
    framing: Framing
    gland: GlandLayer
    hot: tuple[Nodule, ...]
    suppression: float
    extrathyroid: np.ndarray  # salivary glands, mouth, oesophagus, vessels (0 in the gland mask)
    sources: tuple[tuple[Source, float], ...]  # each source with its peak inside the image
    background: np.ndarray  # body background and its structure
    background_level: float
    salivary_level: float
    markers: tuple[dict[str, Any], ...]
    effects: dict[str, float]
    scale: float
    heterogeneity: float


def _streams(seed: int) -> dict[str, np.random.Generator]:
    children = np.random.SeedSequence(seed).spawn(len(_STREAMS))
    return {name: np.random.default_rng(s) for name, s in zip(_STREAMS, children, strict=True)}


def draw_kind(seed: int) -> str:
    """The case kind that ``generate_scan(seed)`` draws (cheap: the case mix without the scans)."""
    return str(_choice(_streams(seed)["kind"], KIND_WEIGHTS))


def build_case(
    seed: int,
    *,
    kind: str | None = None,
    matrix: int | None = None,
    isotope: str | None = None,
    collimator: str | None = None,
) -> tuple[Case, dict[str, np.random.Generator]]:
    """Every draw of scan ``seed`` up to the counting (see :func:`generate_scan`)."""
    rngs = _streams(seed)
    drawn_kind = str(_choice(rngs["kind"], KIND_WEIGHTS))
    kind = drawn_kind if kind is None else kind
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; expected one of {CASE_KINDS}")
    spec = KINDS[kind]
    acq = _acquisition(rngs["acquisition"], spec, matrix, isotope, collimator)
    im = IMAGING[acq.isotope]
    thyroid, scale, hetero = _anatomy(rngs["anatomy"], spec)
    low_contrast = acq.isotope == "I-131" or acq.total_counts < 3e4
    thyroid, cold, hot, suppression = _findings(rngs["findings"], spec, thyroid, low_contrast)
    fr = rngs["framing"]
    to_edge = bool(fr.random() < spec.to_edge_p)
    blobs = list(dict.fromkeys([*thyroid.frame_blobs, *(b for b, _ in thyroid.parts), *(x.blob for x in cold + hot)]))
    framing = frame(fr, blobs, acq.matrix, im.width_fraction[acq.collimator], to_edge=to_edge, max_fov_mm=MAX_FOV_MM)
    grid = framing.grid
    gland = render_gland(rngs["findings"], grid, thyroid, cold, hot, heterogeneity=hetero, suppression=suppression)

    ex = rngs["extrathyroid"]
    bg_level = float(ex.uniform(*spec.background)) * im.background_factor
    sal_level = _loguniform(ex, *spec.extrathyroid) * im.extrathyroid_factor
    sources = draw_sources(ex, thyroid, salivary=sal_level, background=bg_level, near_p=spec.near_salivary_p)
    uu, vv = grid.uv()
    extra, peaks = render_sources(grid, sources, gland.mask, uu)
    effects, effect_rng = draw_effects(rngs["detector"], acq.matrix)
    background = body_background(ex, thyroid, uu, vv, bg_level, wide=scale >= 1.3)
    background = background_effects(effect_rng, effects, background, bg_level)

    mk = rngs["markers"]
    n_markers = int(_choice(mk, spec.markers))
    markers = place_markers(mk, n_markers, thyroid, grid, gland.mask, acq.fwhm_mm)
    case = Case(
        kind,
        acq,
        thyroid,
        framing,
        gland,
        tuple(hot),
        suppression,
        extra,
        tuple(zip(sources, peaks, strict=True)),
        background,
        bg_level,
        sal_level,
        tuple(markers),
        effects,
        scale,
        hetero,
    )
    return case, {"detector": effect_rng, "noise": rngs["noise"], "metadata": rngs["metadata"]}


def _expected_counts(case: Case, rng: np.random.Generator) -> tuple[np.ndarray, float, float]:
    """Expected counts (blurred, halos, detector effects, scaled to the drawn total, room
    background), the gland's share of them and the counts per unit activity."""
    acq, grid = case.acquisition, case.framing.grid
    act = case.gland.activity + case.extrathyroid + case.background
    sigma_px = acq.fwhm_mm / 2.3548 / grid.sp
    for m in case.markers:  # a point whose blurred peak is `level` x the gland peak
        act[m["row"], m["col"]] += np.float32(m["level"] * max(2 * math.pi * sigma_px**2, 1.0))
    total_act = float(act.sum())
    lam = blur(act, acq.fwhm_mm, grid.sp)
    lam = expected_effects(rng, case.effects, lam, acq.fwhm_mm, grid.sp, acq.septal_halo)
    room = case.effects.get("room_background", 0.0)
    scale = acq.total_counts * (1.0 - room) / max(float(lam.sum()), 1e-9)
    lam = lam * np.float32(scale) + np.float32(acq.total_counts * room / grid.n**2)
    gland_share = float(case.gland.activity.sum()) / max(total_act, 1e-9)
    return lam, gland_share, scale


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
    case, rngs = build_case(seed, kind=kind, matrix=matrix, isotope=isotope, collimator=collimator)
    lam, gland_share, per_activity = _expected_counts(case, rngs["detector"])
    counts = stored_counts(case.effects, poisson_counts(rngs["noise"], pool_for_storage(case.effects, lam)))
    params = _params(seed, case, counts, gland_share, per_activity, rngs["metadata"])
    return Scan(
        counts=counts,
        gland=case.gland.mask,
        nodules=case.gland.labels > 0,
        pixel_spacing_mm=float(case.framing.grid.sp),
        kind=case.kind,
        params=params,
        nodule_labels=case.gland.labels,
    )


def _round(x: Any) -> Any:
    if isinstance(x, float):
        return round(x, 4)
    if isinstance(x, dict):
        return {k: _round(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_round(v) for v in x]
    return x


def _metadata(rng: np.random.Generator, isotope: str) -> dict[str, Any]:
    spec = ISOTOPE_SPECS[isotope]
    day = int(rng.integers(0, 6 * 365))
    year, doy = 2019 + day // 365, day % 365
    month, dom = 1 + doy // 31 % 12, 1 + doy % 28
    hh, mm, ss = int(rng.integers(8, 17)), int(rng.integers(0, 60)), int(rng.integers(0, 60))
    durations = [300, 600, 900] if isotope == "I-131" else [180, 300, 600]
    return {
        "acquisition_date": f"{year:04d}{month:02d}{dom:02d}",
        "acquisition_time": f"{hh:02d}{mm:02d}{ss:02d}",
        "frame_duration_s": int(rng.choice(durations)),
        "dose_mbq": round(float(rng.uniform(*spec.dose_mbq)), 1),
        "patient_sex": "F" if rng.random() < 0.78 else "M",
        "patient_age": int(rng.integers(18, 86)),
    }


def _params(
    seed: int, case: Case, counts: np.ndarray, gland_share: float, per_activity: float, rng: np.random.Generator
) -> dict[str, Any]:
    acq, fr, th, g = case.acquisition, case.framing, case.thyroid, case.gland
    visible = [
        {"name": s.name, "level": s.level, "gap_mm": s.gap_mm}
        for s, peak in case.sources
        if peak >= max(VISIBLE_LEVEL, 0.25 * case.background_level)
    ]
    mask = g.mask
    border = bool(mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())
    spec = ISOTOPE_SPECS[acq.isotope]
    params: dict[str, Any] = {
        "family": "thyroid",
        "seed": int(seed),
        "kind": case.kind,
        "isotope": acq.isotope,
        "radiopharmaceutical": spec.pharmaceutical,
        "collimator": acq.collimator,
        "collimator_model": "PINHOLE" if acq.collimator == "pinhole" else spec.parallel_collimator,
        "matrix": acq.matrix,
        "pixel_spacing_mm": fr.grid.sp,
        "fov_mm": fr.fov_mm,
        "fwhm_mm": acq.fwhm_mm,
        "septal_halo": acq.septal_halo,
        "rotation_deg": fr.rotation_deg,
        "offset_mm": list(fr.offset_mm),
        "virtual_width_fraction": fr.width_fraction,
        "gland_at_border": border,
        "to_edge": fr.to_edge,
        "scale": case.scale,
        "n_lobes": len(th.lobes),
        "removed_side": th.removed_side,
        "isthmus": th.isthmus is not None,
        "pyramidal": th.pyramidal is not None,
        "ectopic": th.ectopic_site,
        "heterogeneity": case.heterogeneity,
        "n_cold": len(g.cold),
        "cold_nodules": [
            {
                "diameter_mm": n.diameter_mm,
                "site": n.site,
                "relative_uptake": n.relative_uptake,
                "merged": n.merged,
                "contrast": n.relative_uptake,
            }
            for n in g.cold
        ],
        "n_hot": len(case.hot),
        "hot_nodules": [
            {"diameter_mm": n.diameter_mm, "site": n.site, "suppression": case.suppression} for n in case.hot
        ],
        "suppressed": bool(case.hot) and case.suppression <= SUPPRESSED_BELOW,
        "background_rel": case.background_level,
        "salivary_rel": case.salivary_level,
        "extrathyroid": bool(visible),
        "extrathyroid_sources": visible,
        "markers": len(case.markers),
        "marker_list": [dict(m, counts=round(m["level"] * per_activity)) for m in case.markers],
        "effects": dict(case.effects),
        "thyroid_counts": acq.total_counts * gland_share,
        "total_counts": int(np.asarray(counts, dtype=np.float64).sum())
        if counts.dtype.kind == "f"
        else int(counts.sum(dtype=np.int64)),
    }
    params.update(_metadata(rng, acq.isotope))
    return _round(params)
