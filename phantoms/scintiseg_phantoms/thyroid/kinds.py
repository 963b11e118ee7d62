"""The case kinds of the training family: one table, one row per kind.

Every way in which one kind of case differs from another lives in :data:`KINDS`; the
generator (:mod:`.scan`) reads a row and never tests a kind's name. Adding a kind means
adding a row here (and a line in ``docs/synthetic-data.md``, which a test compares).

Ranges are ``(low, high)`` drawn uniformly unless the field says log-uniform; levels are
relative to the gland's peak activity (the hot nodule's on a suppressed gland).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CASE_KINDS", "KINDS", "KIND_WEIGHTS", "KindSpec"]

Range = tuple[float, float]
#: (value, weight) pairs of a discrete distribution
Weights = tuple[tuple[int, float], ...]


@dataclass(frozen=True)
class KindSpec:
    """What one case kind draws; defaults are the normal gland's."""

    weight: float  # share of the case mix when ``kind=None``
    summary: str  # one line for the docs
    # ---- anatomy
    scale: Range = (0.85, 1.15)  # gland size factor: width x scale, height x sqrt(scale)
    roughness: float = 0.06  # amplitude of the outline's radial harmonics
    heterogeneity: Range = (0.02, 0.08)  # amplitude of the multiplicative uptake pattern
    profile_q: Range = (0.35, 0.6)  # exponent of the thickness profile (1 - rho^2)^q
    isthmus_p: float = 0.85
    pyramidal_p: float = 0.12
    hemi: bool = False  # one lobe removed
    ectopic_p: float = 0.0  # ectopic (lingual or thyroglossal) tissue present
    orthotopic_p: float = 1.0  # the neck gland is present (ectopic kinds: lingual-only otherwise)
    # ---- findings
    cold_p: float = 0.0  # probability of carrying cold nodules
    cold_count: Weights = ((1, 0.6), (2, 0.25), (3, 0.15))
    hot_p: float = 0.0  # probability of one hot nodule
    suppression: Range = (0.02, 0.35)  # rest of the gland / hot nodule, log-uniform
    # ---- imaging
    counts: Range = (3e4, 1e6)  # total expected image counts (Tc-99m), log-uniform
    background: Range = (0.03, 0.15)  # body background level
    extrathyroid: Range = (0.05, 2.0)  # salivary-gland level, log-uniform
    near_salivary_p: float = 0.25  # a submandibular gland within touching distance (0-6 mm) of an upper pole
    i131_p: float = 0.05  # acquired with I-131 (1.0: the kind requires it)
    markers: Weights = ((0, 0.92), (1, 0.08))
    to_edge_p: float = 0.0  # the gland is wider than the field of view (cut by the image edge)


KINDS: dict[str, KindSpec] = {
    "normal": KindSpec(0.12, "two lobes, no nodule"),
    "cold_nodules": KindSpec(
        0.20,
        "1-4 cold nodules anywhere in the gland, poles and edges included",
        cold_p=1.0,
        cold_count=((1, 0.5), (2, 0.28), (3, 0.14), (4, 0.08)),
    ),
    "multinodular": KindSpec(
        0.07,
        "enlarged, patchy gland with 2-6 cold nodules; an autonomous hot nodule 25 %",
        scale=(1.1, 1.8),
        roughness=0.10,
        heterogeneity=(0.08, 0.16),
        cold_p=1.0,
        cold_count=((2, 0.35), (3, 0.3), (4, 0.2), (5, 0.1), (6, 0.05)),
        hot_p=0.25,
        suppression=(0.3, 0.9),
    ),
    "hot_nodule": KindSpec(
        0.09,
        "one hot nodule, the rest of the gland suppressed to 2-35 % (mask: the whole gland)",
        hot_p=1.0,
        cold_p=0.1,
        cold_count=((1, 1.0),),
        background=(0.01, 0.08),
        extrathyroid=(0.02, 0.8),
    ),
    "goiter": KindSpec(
        0.06,
        "enlarged x1.3-2.2, rough and patchy; reaches the image edge 35 %",
        scale=(1.3, 2.2),
        roughness=0.12,
        heterogeneity=(0.06, 0.14),
        isthmus_p=0.95,
        cold_p=0.4,
        to_edge_p=0.35,
    ),
    "graves": KindSpec(
        0.06,
        "enlarged, intense uniform uptake, faint background and salivary glands",
        scale=(1.15, 1.6),
        heterogeneity=(0.0, 0.04),
        profile_q=(0.3, 0.45),
        isthmus_p=1.0,
        pyramidal_p=0.45,
        cold_p=0.1,
        counts=(1e5, 1e6),
        background=(0.01, 0.04),
        extrathyroid=(0.02, 0.2),
    ),
    "thyroiditis": KindSpec(
        0.05,
        "uptake near the background (gland peak 1.1-2.5x), salivary glands brighter than the gland",
        scale=(0.9, 1.2),
        heterogeneity=(0.06, 0.14),
        counts=(5e3, 8e4),
        background=(0.4, 0.9),
        extrathyroid=(0.8, 4.0),
    ),
    "hemithyroidectomy": KindSpec(
        0.05,
        "a single lobe, no isthmus; cold nodules 30 %",
        hemi=True,
        cold_p=0.3,
        counts=(1.5e4, 5e5),
    ),
    "ectopic": KindSpec(
        0.03,
        "lingual or thyroglossal ectopic tissue (in the gland mask); no neck gland 50 %",
        ectopic_p=1.0,
        orthotopic_p=0.5,
        counts=(1e4, 3e5),
    ),
    "salivary": KindSpec(
        0.08,
        "bright salivary glands (0.4-3x the gland), a submandibular gland touching an upper pole",
        cold_p=0.4,
        extrathyroid=(0.4, 3.0),
        near_salivary_p=1.0,
    ),
    "low_count": KindSpec(
        0.06,
        "3k-20k counts in the whole image; cold nodules 30 %",
        cold_p=0.3,
        counts=(3e3, 2e4),
    ),
    "markers": KindSpec(
        0.05,
        "1-3 hot point markers (sternal notch, chin, lateral, anywhere); cold nodules 30 %",
        cold_p=0.3,
        markers=((1, 0.5), (2, 0.3), (3, 0.2)),
    ),
    "i131": KindSpec(
        0.08,
        "I-131: cold nodules 50 %, hot nodule 15 %",
        cold_p=0.5,
        hot_p=0.15,
        i131_p=1.0,
    ),
}

CASE_KINDS: tuple[str, ...] = tuple(KINDS)
KIND_WEIGHTS: dict[str, float] = {name: spec.weight for name, spec in KINDS.items()}
