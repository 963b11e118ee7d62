"""Background and detector models beside Poisson noise: one table, drawn per scan.

Each effect of :data:`EFFECTS` is present with its probability and a strength drawn in its
range; every draw happens whether or not the effect is present (fixed order, so changing
one row moves no other draw). Poisson noise is always applied, by the caller, between
:func:`expected_effects` and :func:`stored_counts`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .acquisition import blur, upsample

__all__ = ["EFFECTS", "Effect", "background_effects", "draw_effects", "expected_effects", "stored_counts"]


@dataclass(frozen=True)
class Effect:
    p: float  # probability of being present
    strength: tuple[float, float]  # uniform range of its strength s
    summary: str  # what s means (the docs' table)


EFFECTS: dict[str, Effect] = {
    "structured_background": Effect(0.6, (0.1, 0.5), "body background x (1 + s x smooth random field)"),
    "chest_gradient": Effect(0.5, (0.2, 1.0), "body background rising by s x its level towards the chest"),
    "scatter_halo": Effect(0.6, (0.05, 0.25), "share s of the counts blurred 3-6x wider than the system"),
    "gain_nonuniformity": Effect(0.5, (0.02, 0.08), "detector sensitivity 1 + s x smooth random field"),
    "tube_pattern": Effect(0.1, (0.02, 0.06), "photomultiplier ripple of amplitude s, pitch 12-20 % of the matrix"),
    "room_background": Effect(0.7, (0.0, 0.1), "flat background holding a share s of the image counts"),
    "interpolated": Effect(
        0.12, (2.0, 2.0), "acquired at matrix / s, interpolated to the matrix and rounded (matrix >= 128)"
    ),
}


def draw_effects(rng: np.random.Generator, n: int) -> tuple[dict[str, float], np.random.Generator]:
    """Strength of each present effect (absent ones omitted) and a generator for their fields."""
    drawn: dict[str, float] = {}
    for name, eff in EFFECTS.items():
        present = rng.random() < eff.p
        s = float(rng.uniform(*eff.strength))
        if present:
            drawn[name] = s
    if "interpolated" in drawn and (n < 128 or n % int(drawn["interpolated"])):
        del drawn["interpolated"]
    return drawn, np.random.default_rng(rng.integers(1 << 32))


def _smooth_field(rng: np.random.Generator, n: int, cycles: tuple[float, float]) -> np.ndarray:
    """A smooth zero-mean field of std ~1: three separable products of cosines."""
    x = np.linspace(0.0, 1.0, n, dtype=np.float32)
    field = np.zeros((n, n), dtype=np.float32)
    for _ in range(3):
        kx, ky = rng.uniform(*cycles, size=2) * 2 * math.pi
        px, py = rng.uniform(0, 2 * math.pi, size=2)
        field += (
            np.cos(np.float32(ky) * x + np.float32(py))[:, None] * np.cos(np.float32(kx) * x + np.float32(px))[None, :]
        )
    return field * np.float32(2.0 / math.sqrt(3.0))


def background_effects(rng: np.random.Generator, drawn: dict[str, float], bg: np.ndarray, level: float) -> np.ndarray:
    """Structure and chest gradient on the body background layer (activity units)."""
    n = bg.shape[0]
    field = _smooth_field(rng, n, (0.5, 2.5))
    if "structured_background" in drawn:
        bg = bg * np.clip(1.0 + np.float32(drawn["structured_background"]) * field, 0.2, None)
    if "chest_gradient" in drawn:
        ramp = np.clip(np.linspace(-0.5, 1.0, n, dtype=np.float32), 0.0, None)
        bg = bg + np.float32(drawn["chest_gradient"]) * ramp[:, None] * bg
    return bg


def _tube_pattern(rng: np.random.Generator, n: int) -> np.ndarray:
    pitch = n * rng.uniform(0.12, 0.2)
    k = 2 * math.pi / pitch
    ang = rng.uniform(0, math.pi / 3)
    y, x = np.mgrid[0:n, 0:n].astype(np.float32)
    out = np.zeros((n, n), dtype=np.float32)
    for j in range(3):
        a = ang + j * math.pi / 3
        out += np.cos(np.float32(k * math.cos(a)) * x + np.float32(k * math.sin(a)) * y)
    return out / np.float32(3.0)


def expected_effects(
    rng: np.random.Generator,
    drawn: dict[str, float],
    lam: np.ndarray,
    fwhm_mm: float,
    spacing_mm: float,
    septal: float,
) -> np.ndarray:
    """Halos (scatter; I-131 septal penetration, 4x wider) and detector non-uniformity."""
    n = lam.shape[0]
    widen = float(rng.uniform(3.0, 6.0))
    gain = _smooth_field(rng, n, (0.3, 1.5))
    tubes = _tube_pattern(rng, n) if "tube_pattern" in drawn else None
    for share, factor in ((drawn.get("scatter_halo", 0.0), widen), (septal, 4.0)):
        if share > 0:
            lam = (1.0 - np.float32(share)) * lam + np.float32(share) * blur(lam, fwhm_mm * factor, spacing_mm)
    if "gain_nonuniformity" in drawn:
        lam = lam * (1.0 + np.float32(drawn["gain_nonuniformity"]) * gain)
    if tubes is not None:
        lam = lam * (1.0 + np.float32(drawn["tube_pattern"]) * tubes)
    return np.clip(lam, 0.0, None)


def pool_for_storage(drawn: dict[str, float], lam: np.ndarray) -> np.ndarray:
    """The expected counts at the acquired matrix: when interpolated, a coarser acquisition
    whose pixel holds the mean of the stored pixels it covers (so the stored image, its
    interpolation, keeps the drawn total)."""
    f = int(drawn.get("interpolated", 1))
    if f == 1:
        return lam
    n = lam.shape[0]
    return lam.reshape(n // f, f, n // f, f).mean(axis=(1, 3))


def stored_counts(drawn: dict[str, float], counts: np.ndarray) -> np.ndarray:
    """Counts as stored: interpolated back to the stored matrix (and rounded) when acquired
    coarser. Expected counts (float, a noise-free diagnosis) stay unrounded."""
    f = int(drawn.get("interpolated", 1))
    if f == 1:
        return counts
    up = upsample(counts.astype(np.float32), f)
    if np.issubdtype(counts.dtype, np.integer):
        return np.minimum(np.rint(up), 65535).astype(np.uint16)
    return up.astype(np.float32)
