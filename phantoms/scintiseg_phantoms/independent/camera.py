"""The gamma camera: acquisition draw, depth-dependent two-component PSF, scatter, flood
non-uniformity, pinhole vignetting, room background and Poisson counts.

Imaging model, applied in the frequency domain on a padded grid (so activity just
outside the field still blurs into it):

* transfer function ``(1 - w) core(f) + w (1 + (2 pi lambda f)^2)^(-3/2)``: the core is a
  Gaussian or a Butterworth response ``1 / (1 + (f / fc)^(2n))`` with the same half-value
  frequency, the second term the 2-D Fourier transform of an exponential tail
  ``exp(-r / lambda)`` (septal or aperture-edge penetration, heavier for I-131);
* the core's FWHM grows linearly with a source's depth (``fwhm + slope * depth``), and a
  pinhole also magnifies each depth by ``a / (a + depth)`` (:class:`.geometry.Frame`);
* energy-window scatter: a fraction of every source's counts spread by a broad Gaussian;
* detector flood: a smooth low-frequency field plus a hexagonal photomultiplier pattern
  at the detector's tube pitch; pinholes add the ``cos^3`` off-axis sensitivity fall-off
  and, sometimes, the circular field of the cone;
* a uniform room background; then Poisson counts scaled to the drawn total.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import fft

from .anatomy import log_uniform
from .kinds import KindSpec

__all__ = [
    "COLLIMATORS",
    "ISOTOPES",
    "MATRICES",
    "Acquisition",
    "Collimator",
    "Optics",
    "draw_acquisition",
    "padded_margin",
]


@dataclass(frozen=True)
class Collimator:
    isotope: str
    kind: str  # "pinhole" or "parallel"
    weight: float  # share among the isotope's collimators
    fwhm_mm: tuple[float, float]  # system resolution at the thyroid
    depth_slope: float  # FWHM mm gained per mm of depth
    tail_weight: tuple[float, float]
    tail_mm: tuple[float, float]
    pinhole_distance_mm: tuple[float, float] | None  # aperture to thyroid
    fov_factor: float  # pinholes are set closer on the gland than zoomed parallel holes


#: Collimators by model name (the DICOM CollimatorGridName).
COLLIMATORS: dict[str, Collimator] = {
    "LEHR": Collimator("Tc-99m", "parallel", 0.4, (6.0, 9.0), 0.06, (0.005, 0.03), (3.0, 6.0), None, 1.15),
    "LEAP": Collimator("Tc-99m", "parallel", 0.15, (8.0, 11.0), 0.08, (0.01, 0.05), (4.0, 8.0), None, 1.15),
    "PINHOLE-4": Collimator("Tc-99m", "pinhole", 0.45, (4.0, 7.0), 0.04, (0.01, 0.04), (3.0, 6.0), (60.0, 120.0), 0.85),
    "HEGP": Collimator("I-131", "parallel", 0.7, (10.0, 14.0), 0.1, (0.04, 0.15), (6.0, 15.0), None, 1.15),
    "PINHOLE-6HE": Collimator(
        "I-131", "pinhole", 0.3, (6.0, 11.0), 0.05, (0.06, 0.2), (5.0, 12.0), (70.0, 120.0), 0.85
    ),
}


@dataclass(frozen=True)
class Isotope:
    count_scale: tuple[float, float]  # total counts relative to a Tc-99m scan of the same kind
    scatter_fraction: tuple[float, float]
    dose_mbq: tuple[float, float]
    frame_s: tuple[int, int]


ISOTOPES: dict[str, Isotope] = {
    "Tc-99m": Isotope((1.0, 1.0), (0.04, 0.2), (37.0, 185.0), (120, 600)),
    "I-131": Isotope((0.2, 0.33), (0.12, 0.35), (1.0, 4.0), (300, 1200)),
}

#: Matrix sizes and their shares.
MATRICES: dict[int, float] = {
    64: 0.08,
    96: 0.03,
    128: 0.3,
    160: 0.03,
    192: 0.04,
    256: 0.35,
    320: 0.04,
    384: 0.04,
    512: 0.09,
}
PMT_PITCH_MM = (55.0, 80.0)
PINHOLE_FOCAL_MM = 230.0  # aperture to crystal


@dataclass(frozen=True)
class Acquisition:
    """One scan's camera settings (all that :func:`expected_counts` needs)."""

    isotope: str
    collimator_model: str
    collimator: Collimator
    matrix: int
    fwhm_mm: float
    core: str  # "gaussian" or "butterworth"
    butterworth_order: int
    tail_weight: float
    tail_mm: float
    scatter_fraction: float
    scatter_sigma_mm: float
    pinhole_distance_mm: float | None
    total_counts: float  # target of the Poisson draw
    room_fraction: float  # share of the counts that is uniform room background
    flood_lf: float  # amplitude of the smooth flood non-uniformity
    flood_pmt: float  # amplitude of the tube pattern
    pmt_pitch_mm: float
    circular_field: bool  # pinhole cone visible as a circular field
    dose_mbq: float
    frame_duration_s: int


def _choice(rng: np.random.Generator, table: dict, weights: list[float]) -> object:
    keys = list(table)
    w = np.asarray(weights, dtype=float)
    return keys[int(rng.choice(len(keys), p=w / w.sum()))]


def draw_acquisition(rng: np.random.Generator, spec: KindSpec) -> Acquisition:
    isotope = "I-131" if rng.random() < spec.iodine_prob else "Tc-99m"
    iso = ISOTOPES[isotope]
    names = [n for n, c in COLLIMATORS.items() if c.isotope == isotope]
    model = str(_choice(rng, {n: COLLIMATORS[n] for n in names}, [COLLIMATORS[n].weight for n in names]))
    col = COLLIMATORS[model]
    matrix = int(_choice(rng, MATRICES, list(MATRICES.values())))  # type: ignore[call-overload]
    counts = log_uniform(rng, spec.counts) * rng.uniform(*iso.count_scale)
    pinhole = col.pinhole_distance_mm is not None
    return Acquisition(
        isotope=isotope,
        collimator_model=model,
        collimator=col,
        matrix=matrix,
        fwhm_mm=rng.uniform(*col.fwhm_mm),
        core="gaussian" if rng.random() < 0.5 else "butterworth",
        butterworth_order=int(rng.integers(2, 6)),
        tail_weight=rng.uniform(*col.tail_weight),
        tail_mm=rng.uniform(*col.tail_mm),
        scatter_fraction=rng.uniform(*iso.scatter_fraction),
        scatter_sigma_mm=rng.uniform(12.0, 30.0),
        pinhole_distance_mm=rng.uniform(*col.pinhole_distance_mm) if col.pinhole_distance_mm else None,
        total_counts=float(np.clip(counts, *spec.count_limits)),
        room_fraction=rng.uniform(0.002, 0.03),
        flood_lf=rng.uniform(0.005, 0.03),
        flood_pmt=rng.uniform(0.0, 0.025),
        pmt_pitch_mm=rng.uniform(*PMT_PITCH_MM),
        circular_field=bool(pinhole and rng.random() < 0.5),
        dose_mbq=rng.uniform(*iso.dose_mbq),
        frame_duration_s=int(rng.integers(iso.frame_s[0], iso.frame_s[1] + 1)),
    )


def padded_margin(acq: Acquisition, spacing_mm: float) -> int:
    """Padding (pixels a side) that holds the scatter kernel, at most a third of the matrix,
    rounded so the padded side is a fast FFT length."""
    n = acq.matrix
    want = int(np.clip(np.ceil(2.0 * acq.scatter_sigma_mm / spacing_mm), 8, max(8, n // 3)))
    side = fft.next_fast_len(n + 2 * want)
    while (side - n) % 2:
        side = fft.next_fast_len(side + 1)
    return (side - n) // 2


def _frequencies(shape: tuple[int, int], spacing_mm: float) -> np.ndarray:
    """|f| (cycles/mm) of the rfft2 grid."""
    fy = np.fft.fftfreq(shape[0], d=spacing_mm).astype(np.float32)
    fx = np.fft.rfftfreq(shape[1], d=spacing_mm).astype(np.float32)
    return np.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)


def _core(acq: Acquisition, f: np.ndarray, depth_mm: float) -> np.ndarray:
    fwhm = max(2.5, acq.fwhm_mm + acq.collimator.depth_slope * depth_mm)
    if acq.core == "gaussian":
        return np.exp(np.float32(-2.0 * (np.pi * fwhm / 2.3548) ** 2) * f * f)
    # Butterworth, half value at the Gaussian's half-value frequency 0.441 / FWHM
    return 1.0 / (1.0 + (f * np.float32(fwhm / 0.441)) ** (2 * acq.butterworth_order))


class Optics:
    """The blur of one scan on its padded grid, for sources at any depth.

    The transfer function of a depth is ``(1 - s) [(1 - w) core + w tail] + s scatter``;
    the tail and scatter terms do not depend on depth and are computed once per scan,
    the core once per depth.
    """

    def __init__(self, acq: Acquisition, shape: tuple[int, int], spacing_mm: float) -> None:
        self.acq, self.shape = acq, shape
        self.f = _frequencies(shape, spacing_mm)
        f, w, sf = self.f, acq.tail_weight, acq.scatter_fraction
        tail = (1.0 + (np.float32(2.0 * np.pi * acq.tail_mm) * f) ** 2) ** -1.5
        scatter = np.exp(np.float32(-2.0 * (np.pi * acq.scatter_sigma_mm) ** 2) * f * f)
        self.fixed = np.float32((1 - sf) * w) * tail + np.float32(sf) * scatter
        self._otf: dict[float, np.ndarray] = {}

    def otf(self, depth_mm: float) -> np.ndarray:
        if depth_mm not in self._otf:
            a = self.acq
            gain = np.float32((1 - a.scatter_fraction) * (1 - a.tail_weight))
            self._otf[depth_mm] = gain * _core(a, self.f, depth_mm) + self.fixed
        return self._otf[depth_mm]

    def blur(self, layers: list[tuple[np.ndarray, float]]) -> np.ndarray:
        """Sum of the layers (activity, depth), each blurred for its depth (one inverse FFT)."""
        spectrum = np.zeros(self.f.shape, dtype=np.complex64)
        for activity, depth in layers:
            spectrum += fft.rfft2(activity, workers=1) * self.otf(depth)
        return np.asarray(fft.irfft2(spectrum, s=self.shape, workers=1), dtype=np.float32)


def _plane_wave(k: float, angle: float, phase: float, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """cos(k (x cos a + y sin a) + phase) on the grid of the 1-D axes x, y, as two outer products."""
    ax, ay = k * np.cos(angle) * x, k * np.sin(angle) * y + phase
    return np.outer(np.cos(ay), np.cos(ax)) - np.outer(np.sin(ay), np.sin(ax))


def sensitivity(rng: np.random.Generator, acq: Acquisition, spacing_mm: float) -> np.ndarray:
    """Relative sensitivity of each image pixel: flood non-uniformity and pinhole fall-off.

    The flood is a hexagonal tube pattern (three plane waves 60 degrees apart at the tube
    pitch) plus a few random plane waves longer than 80 mm, both on the crystal's scale.
    """
    n = acq.matrix
    a = acq.pinhole_distance_mm
    det_px = spacing_mm * (PINHOLE_FOCAL_MM / a if a else 1.0)  # image pixel at the crystal
    axis = ((np.arange(n) - (n - 1) / 2.0) * det_px).astype(np.float32)
    k = 4.0 * np.pi / (np.sqrt(3.0) * acq.pmt_pitch_mm)
    turn = rng.uniform(0, np.pi / 3)
    hexes = sum(_plane_wave(k, turn + j * np.pi / 3, rng.uniform(0, 2 * np.pi), axis, axis) for j in range(3))
    slow = sum(
        rng.normal()
        * _plane_wave(2 * np.pi / rng.uniform(80, 400), rng.uniform(0, np.pi), rng.uniform(0, 2 * np.pi), axis, axis)
        for _ in range(3)
    )
    flood = 1.0 + acq.flood_pmt * hexes / 3.0 + acq.flood_lf * slow / np.sqrt(1.5)
    if a:  # cos^3 of the angle off the pinhole's axis, seen from the thyroid plane
        plane = axis * np.float32(spacing_mm / det_px)
        flood = flood * (1.0 + (plane[None, :] ** 2 + plane[:, None] ** 2) / a**2) ** -1.5
    return np.asarray(np.clip(flood, 0.0, None), dtype=np.float32)


def circular_field(n: int, radius_px: float) -> np.ndarray:
    axis = np.arange(n) - (n - 1) / 2.0
    return np.asarray(axis[None, :] ** 2 + axis[:, None] ** 2 <= radius_px**2)


def poisson_counts(rng: np.random.Generator, expected: np.ndarray, acq: Acquisition) -> np.ndarray:
    """Counts: ``expected`` plus the room background, scaled to the drawn total, Poisson."""
    expected = np.clip(expected, 0.0, None)
    total = float(expected.sum())
    if total <= 0:
        return np.zeros(expected.shape, dtype=np.uint16)
    lam = expected * ((1.0 - acq.room_fraction) * acq.total_counts / total)
    lam += acq.room_fraction * acq.total_counts / lam.size
    return np.clip(rng.poisson(lam), 0, 65535).astype(np.uint16)
