"""Gamma-camera acquisition model: isotopes, collimators, matrices, system blur, Poisson noise.

:data:`ISOTOPE_SPECS` holds what the DICOM writer needs; :data:`IMAGING` holds, per
isotope, what the generator draws (one row per isotope: one place to change). System blur
is an isotropic Gaussian whose FWHM (mm, at the thyroid plane) is drawn per scan from the
isotope's row and the collimator; counts are Poisson draws of the expected image, clipped
to uint16.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = [
    "COLLIMATORS",
    "COUNTS_RANGE",
    "IMAGING",
    "ISOTOPES",
    "ISOTOPE_SPECS",
    "MATRIX_WEIGHTS",
    "MAX_FOV_MM",
    "Imaging",
    "IsotopeSpec",
    "blur",
    "upsample",
    "normalise_collimator",
    "normalise_isotope",
    "poisson_counts",
]

ISOTOPES: tuple[str, ...] = ("Tc-99m", "I-131")
COLLIMATORS: tuple[str, ...] = ("pinhole", "parallel")


@dataclass(frozen=True)
class IsotopeSpec:
    name: str
    photopeak_kev: float
    window_pct: float  # symmetric energy window width, % of photopeak
    radionuclide_code: tuple[str, str, str]  # (value, scheme, meaning), SNOMED CT
    pharmaceutical_code: tuple[str, str, str]
    pharmaceutical: str
    half_life_s: float
    dose_mbq: tuple[float, float]
    parallel_collimator: str  # collimator model name for parallel-hole acquisitions


ISOTOPE_SPECS: dict[str, IsotopeSpec] = {
    "Tc-99m": IsotopeSpec(
        name="Tc-99m",
        photopeak_kev=140.5,
        window_pct=20.0,
        radionuclide_code=("72454006", "SCT", "^99m^Technetium"),
        pharmaceutical_code=("19495007", "SCT", "Sodium pertechnetate Tc^99m^"),
        pharmaceutical="Tc-99m pertechnetate",
        half_life_s=21624.0,
        dose_mbq=(74.0, 185.0),
        parallel_collimator="LEHR",
    ),
    "I-131": IsotopeSpec(
        name="I-131",
        photopeak_kev=364.5,
        window_pct=20.0,
        radionuclide_code=("1368003", "SCT", "^131^Iodine"),
        pharmaceutical_code=("111160004", "SCT", "Sodium iodide I^131^"),
        pharmaceutical="Sodium iodide I-131",
        half_life_s=692928.0,
        dose_mbq=(1.8, 10.0),
        parallel_collimator="HEGP",
    ),
}

_ISOTOPE_ALIASES = {
    "tc-99m": "Tc-99m",
    "tc99m": "Tc-99m",
    "99mtc": "Tc-99m",
    "tc": "Tc-99m",
    "i-131": "I-131",
    "i131": "I-131",
    "131i": "I-131",
}


def normalise_isotope(name: str) -> str:
    """Canonical isotope name ("Tc-99m" or "I-131") from a loose spelling."""
    key = name.strip().lower().replace("_", "-").replace(" ", "")
    if key in _ISOTOPE_ALIASES:
        return _ISOTOPE_ALIASES[key]
    raise ValueError(f"unknown isotope {name!r}; expected one of {ISOTOPES}")


def normalise_collimator(name: str) -> str:
    """Canonical collimator family ("pinhole" or "parallel")."""
    key = name.strip().lower()
    if key in ("pinhole", "pin", "ph"):
        return "pinhole"
    if key in ("parallel", "parallel-hole", "lehr", "legp", "hegp", "megp", "para"):
        return "parallel"
    raise ValueError(f"unknown collimator {name!r}; expected one of {COLLIMATORS}")


@dataclass(frozen=True)
class Imaging:
    """What one isotope's acquisitions draw (ranges uniform)."""

    pinhole_p: float  # share of pinhole acquisitions (else parallel-hole)
    fwhm_mm: dict[str, tuple[float, float]]  # per collimator, at the thyroid plane
    width_fraction: dict[str, tuple[float, float]]  # gland width / FOV width, per collimator
    matrix_weights: dict[int, float]
    counts_factor: tuple[float, float]  # x the kind's total counts
    extrathyroid_factor: float  # x the kind's salivary level
    background_factor: float  # x the kind's body background
    septal_halo: tuple[float, float]  # share of the counts in a 4x wider halo (0: none)


MATRIX_WEIGHTS: dict[int, float] = {
    64: 0.06,
    96: 0.03,
    128: 0.28,
    192: 0.04,
    256: 0.40,
    288: 0.05,
    320: 0.03,
    384: 0.04,
    512: 0.07,
}
IMAGING: dict[str, Imaging] = {
    "Tc-99m": Imaging(
        pinhole_p=0.6,
        fwhm_mm={"pinhole": (4.0, 9.0), "parallel": (6.0, 12.0)},
        width_fraction={"pinhole": (0.3, 0.8), "parallel": (0.15, 0.5)},
        matrix_weights=MATRIX_WEIGHTS,
        counts_factor=(1.0, 1.0),
        extrathyroid_factor=1.0,
        background_factor=1.0,
        septal_halo=(0.0, 0.0),
    ),
    "I-131": Imaging(
        pinhole_p=0.4,
        fwhm_mm={"pinhole": (7.0, 12.0), "parallel": (9.0, 14.0)},
        width_fraction={"pinhole": (0.3, 0.7), "parallel": (0.15, 0.45)},
        matrix_weights={64: 0.10, 128: 0.50, 256: 0.35, 512: 0.05},
        counts_factor=(0.1, 0.3),
        extrathyroid_factor=0.15,
        background_factor=0.4,
        septal_halo=(0.05, 0.12),
    ),
}
#: the field of view never exceeds a large parallel-hole detector
MAX_FOV_MM = 450.0
#: total image counts are kept in this range whatever the kind and isotope
COUNTS_RANGE = (3e3, 1e6)


def blur(image: np.ndarray, fwhm_mm: float, spacing_mm: float) -> np.ndarray:
    """Gaussian blur with a FWHM given in mm (mode ``constant``: no activity outside).

    A wide kernel (sigma of 6 pixels or more) runs on a pooled copy and is interpolated
    back: the same blur within a few % of its width, several times faster on large matrices.
    """
    sigma = fwhm_mm / (2.0 * math.sqrt(2.0 * math.log(2.0))) / spacing_mm
    if sigma < 0.3:
        return image
    n = image.shape[0]
    f = 1
    while sigma / (2 * f) >= 3.0 and n % (2 * f) == 0 and n // (2 * f) >= 16:
        f *= 2
    if f == 1:
        return ndimage.gaussian_filter(image, sigma, mode="constant", truncate=3.0)
    small = image.reshape(n // f, f, n // f, f).mean(axis=(1, 3))
    small = ndimage.gaussian_filter(small, sigma / f, mode="constant", truncate=3.0)
    return upsample(small, f)


@functools.lru_cache(maxsize=32)
def _interpolation(n: int, f: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    m = n // f
    pos = np.clip((np.arange(n) + 0.5) / f - 0.5, 0.0, m - 1.0)
    lo = np.minimum(np.floor(pos).astype(np.intp), max(m - 2, 0))
    hi = np.minimum(lo + 1, m - 1)
    return lo, hi, (pos - lo).astype(np.float32)


def upsample(small: np.ndarray, f: int) -> np.ndarray:
    """Linear interpolation of a pooled image from its pixel centres back to ``f`` x its size.

    Separable gathers rather than a matrix product: no BLAS threads, which would fight for
    the cores with the other generator processes.
    """
    lo, hi, w = _interpolation(small.shape[0] * f, f)
    a = small[lo] * (1.0 - w)[:, None] + small[hi] * w[:, None]
    return np.asarray(a[:, lo] * (1.0 - w)[None, :] + a[:, hi] * w[None, :], dtype=np.float32)


def poisson_counts(rng: np.random.Generator, expected: np.ndarray) -> np.ndarray:
    """Poisson counts of an expected-counts image, as uint16 (saturating at 65535)."""
    lam = np.clip(expected, 0.0, 65000.0).astype(np.float64, copy=False)
    return np.minimum(rng.poisson(lam), 65535).astype(np.uint16)
