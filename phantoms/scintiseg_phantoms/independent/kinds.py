"""The one table of clinical presentations: every parameter that differs between kinds.

Each row of :data:`KIND_TABLE` is a :class:`KindSpec`; a kind is added or changed here and
nowhere else (the generator's functions read the fields, none tests a kind's name).
Ranges are ``(low, high)``, drawn uniformly unless the field says log-uniform.
``python -m scintiseg_phantoms.independent`` prints the table as Markdown, the form
``docs/independent-phantoms.md`` carries (a test checks that the two agree).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

__all__ = ["KIND_TABLE", "KINDS", "KindSpec", "markdown_table"]

Range = tuple[float, float]


@dataclass(frozen=True)
class KindSpec:
    """What one clinical presentation looks like (see the module docstring for the units)."""

    weight: float  # share of the kind when the seed chooses it
    lobe_length_mm: Range  # mean length of the two lobes
    width_ratio: Range  # lobe width / lobe length
    asymmetry: float  # largest relative difference between the two lobes' lengths
    isthmus_prob: float
    pyramidal_prob: float  # given an isthmus
    lobes: int  # 2, or 1 after a hemithyroidectomy
    cold_count: tuple[int, int]
    cold_diameter_mm: Range  # log-uniform
    cold_uptake: Range  # counts in a cold nodule / surrounding tissue
    hot_count: tuple[int, int]
    hot_diameter_mm: Range  # log-uniform
    hot_gain: Range  # hot (or warm) nodule / tissue, log-uniform
    tissue_level: Range  # tissue outside hot nodules / hottest nodule (suppression), 1 without
    heterogeneity: Range  # standard deviation of the log of the tissue's uptake texture
    gland_to_neck: Range  # thyroid tissue peak / neck soft-tissue background, log-uniform
    salivary_prob: float
    salivary_uptake: Range  # salivary gland peak / thyroid tissue peak, log-uniform
    salivary_near_prob: float  # submandibular glands just above the upper poles
    mouth_prob: float
    oesophagus_prob: float
    marker_prob: float
    counts: Range  # total Tc-99m counts, log-uniform (I-131 gets a fifth to a third)
    count_limits: Range  # final clip of the total whatever the isotope
    iodine_prob: float  # share of I-131 scans
    fov_margin: Range  # field of view / gland extent


_BASE = KindSpec(
    weight=0.14,
    lobe_length_mm=(40.0, 58.0),
    width_ratio=(0.32, 0.48),
    asymmetry=0.18,
    isthmus_prob=0.88,
    pyramidal_prob=0.1,
    lobes=2,
    cold_count=(0, 0),
    cold_diameter_mm=(5.0, 35.0),
    cold_uptake=(0.0, 0.7),
    hot_count=(0, 0),
    hot_diameter_mm=(12.0, 35.0),
    hot_gain=(1.0, 1.0),
    tissue_level=(1.0, 1.0),
    heterogeneity=(0.03, 0.1),
    gland_to_neck=(5.0, 30.0),
    salivary_prob=0.55,
    salivary_uptake=(0.05, 0.6),
    salivary_near_prob=0.25,
    mouth_prob=0.2,
    oesophagus_prob=0.1,
    marker_prob=0.08,
    counts=(30e3, 800e3),
    count_limits=(21e3, 1e6),
    iodine_prob=0.12,
    fov_margin=(1.35, 2.8),
)

KIND_TABLE: dict[str, KindSpec] = {
    "normal": _BASE,
    "cold": replace(_BASE, weight=0.16, cold_count=(1, 3)),
    "multinodular": replace(
        _BASE,
        weight=0.1,
        lobe_length_mm=(48.0, 68.0),
        width_ratio=(0.38, 0.58),
        asymmetry=0.25,
        cold_count=(2, 4),
        cold_diameter_mm=(5.0, 30.0),
        hot_count=(1, 3),
        hot_diameter_mm=(8.0, 22.0),
        hot_gain=(1.3, 2.2),
        heterogeneity=(0.12, 0.28),
    ),
    "hot_suppressed": replace(
        _BASE,
        weight=0.08,
        hot_count=(1, 1),
        hot_diameter_mm=(15.0, 38.0),
        tissue_level=(0.02, 0.15),
        gland_to_neck=(10.0, 60.0),
        salivary_uptake=(0.03, 0.4),
        iodine_prob=0.2,
    ),
    "graves": replace(
        _BASE,
        weight=0.08,
        lobe_length_mm=(45.0, 66.0),
        width_ratio=(0.42, 0.6),
        isthmus_prob=0.97,
        pyramidal_prob=0.4,
        heterogeneity=(0.01, 0.05),
        gland_to_neck=(25.0, 100.0),
        salivary_uptake=(0.02, 0.2),
        counts=(100e3, 800e3),
        iodine_prob=0.2,
    ),
    "thyroiditis": replace(
        _BASE,
        weight=0.06,
        heterogeneity=(0.1, 0.3),
        gland_to_neck=(0.25, 0.9),
        salivary_prob=0.95,
        salivary_uptake=(1.0, 6.0),
        mouth_prob=0.4,
        counts=(25e3, 250e3),
    ),
    "salivary": replace(
        _BASE,
        weight=0.08,
        salivary_prob=1.0,
        salivary_uptake=(0.3, 2.5),
        salivary_near_prob=0.6,
        mouth_prob=0.5,
        oesophagus_prob=0.3,
        fov_margin=(1.6, 3.0),
    ),
    "markers": replace(_BASE, weight=0.06, marker_prob=1.0, cold_count=(0, 1)),
    "low_count": replace(
        _BASE, weight=0.06, cold_count=(0, 1), counts=(5e3, 19e3), count_limits=(3e3, 19e3), iodine_prob=0.25
    ),
    "goitre": replace(
        _BASE,
        weight=0.06,
        lobe_length_mm=(58.0, 70.0),
        width_ratio=(0.42, 0.62),
        asymmetry=0.25,
        heterogeneity=(0.06, 0.18),
        gland_to_neck=(8.0, 40.0),
        fov_margin=(0.9, 1.6),
    ),
    "hemithyroidectomy": replace(
        _BASE, weight=0.05, lobes=1, isthmus_prob=0.0, lobe_length_mm=(40.0, 62.0), cold_count=(0, 1)
    ),
    "atrophic": replace(
        _BASE,
        weight=0.05,
        lobe_length_mm=(30.0, 38.0),
        width_ratio=(0.28, 0.4),
        isthmus_prob=0.6,
        heterogeneity=(0.05, 0.15),
        gland_to_neck=(1.5, 6.0),
        counts=(20e3, 150e3),
    ),
}

#: The kind names, in table order.
KINDS: tuple[str, ...] = tuple(KIND_TABLE)


def _cell(value: object) -> str:
    if isinstance(value, tuple):
        return "–".join(_cell(v) for v in value)
    if isinstance(value, float):
        if value >= 1e6:
            return f"{value / 1e6:g}M"
        return f"{value / 1e3:g}k" if value >= 1e3 else f"{value:g}"
    return str(value)


def markdown_table() -> str:
    """The kind table as Markdown: one row per field, one column per kind."""
    names = [f.name for f in fields(KindSpec)]
    lines = ["| field | " + " | ".join(KINDS) + " |", "| --- |" + " --- |" * len(KINDS)]
    for name in names:
        cells = [_cell(getattr(KIND_TABLE[k], name)) for k in KINDS]
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)
