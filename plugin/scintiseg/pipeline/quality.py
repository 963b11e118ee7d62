"""Quality flags: the artefact risks behind each result, in words a clinician reads.

Each image's result carries ``flags``, a list of ``{"code", "message"}``. The
checks look at the counts and at the masks the models produced; none of them
changes a mask. Every rule and threshold lives in :data:`RULES` (one row per
flag), so what a flag means is written once, here, and in ``docs/quality-flags.md``.

``no_counts`` is different from the others: an image with (near) zero counts
is not segmented at all. :func:`check_counts` raises :class:`NoCountsError`
(a :class:`scintiseg.dicom.nm.SkippedImageError`), so the job records the image as
*skipped* with that reason and stores no SEG, instead of a SEG that says
"no thyroid".

The rules were set on the training phantom family only (never on the held-out
family the models are evaluated on).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy import ndimage

from scintiseg.dicom.nm import SkippedImageError

#: An image with fewer counts than this in all, or whose brightest pixel holds fewer
#: than :data:`NO_COUNTS_MAX_PIXEL`, has nothing to segment.
NO_COUNTS_TOTAL = 500
NO_COUNTS_MAX_PIXEL = 3
#: Fewer counts than this inside the gland (or in the whole image when no gland is
#: found): Poisson noise dominates the outline.
LOW_COUNTS_GLAND = 15_000
#: Probability band that counts as "undecided", and the share of the gland's area
#: that band may cover before the result is flagged.
UNCERTAIN_BAND = (0.2, 0.8)
UNCERTAIN_SHARE = 0.35
#: A point marker: a compact spot, outside the gland, brighter than the gland.
MARKER_MAX_AREA_MM2 = 250.0
MARKER_MIN_RATIO = 1.3  # spot peak / gland's 99th percentile
#: Extra-thyroid uptake: outside the gland, within this distance of it, at least this
#: bright relative to the gland's mean, over at least this area.
EXTRA_NEAR_MM = 45.0
EXTRA_MIN_RATIO = 0.35
EXTRA_MIN_AREA_MM2 = 60.0
#: A suppressed gland: the 95th percentile of the (smoothed) gland counts is at least this
#: many times their 40th percentile (a hot nodule over barely visible tissue; a normal gland's
#: thickness profile gives 1.3-2.2).
SUPPRESSED_RATIO = 3.0
#: Pixel size assumed when an image has no PixelSpacing.
DEFAULT_SPACING_MM = 1.0


class NoCountsError(SkippedImageError):
    """The image holds (almost) no counts: it is skipped, and no SEG is stored."""

    code = "no_counts"


@dataclass(frozen=True)
class Flag:
    code: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


@dataclass(frozen=True)
class FrameView:
    """What the rules look at for one frame."""

    counts: np.ndarray  # (rows, cols) float64 counts
    gland: np.ndarray  # (rows, cols) bool, the served gland mask
    spacing_mm: float
    #: gland pixels (source matrix) whose model probability lies in :data:`UNCERTAIN_BAND`
    undecided_pixels: int | None = None

    @property
    def pixel_area_mm2(self) -> float:
        return self.spacing_mm * self.spacing_mm

    # what several rules read, computed once per frame
    @cached_property
    def distance_mm(self) -> np.ndarray:
        """Each pixel's distance to the gland (mm; 0 inside it); the gland must not be empty."""
        return np.asarray(ndimage.distance_transform_edt(~self.gland)) * self.spacing_mm

    def smoothed(self, fwhm_mm: float) -> np.ndarray:
        """The counts smoothed by a Gaussian of ``fwhm_mm``."""
        cache = self.__dict__.setdefault("_smoothed", {})
        if fwhm_mm not in cache:
            sigma = max(0.5, fwhm_mm / 2.355 / self.spacing_mm)
            cache[fwhm_mm] = np.asarray(ndimage.gaussian_filter(self.counts, sigma))
        return cache[fwhm_mm]  # type: ignore[no-any-return]

    @cached_property
    def markers(self) -> np.ndarray:
        """Label image of the point sources (:func:`_markers`)."""
        return _markers(self)


def check_counts(counts: np.ndarray) -> None:
    """Raise :class:`NoCountsError` for an image with nothing to segment."""
    total = float(np.asarray(counts, dtype=np.float64).sum())
    peak = float(np.max(counts)) if np.size(counts) else 0.0
    if total < NO_COUNTS_TOTAL or peak < NO_COUNTS_MAX_PIXEL:
        raise NoCountsError(
            f"no_counts: the image holds {total:.0f} counts (brightest pixel {peak:.0f}); "
            f"at least {NO_COUNTS_TOTAL} counts and a pixel of {NO_COUNTS_MAX_PIXEL} are needed to segment"
        )


def _low_counts(v: FrameView) -> str | None:
    where = v.gland if v.gland.any() else np.ones_like(v.gland)
    counts = float(v.counts[where].sum())
    if counts < LOW_COUNTS_GLAND:
        what = "in the gland" if v.gland.any() else "in the image"
        return (
            f"only {counts:.0f} counts {what} (< {LOW_COUNTS_GLAND}): statistical noise makes the outline "
            "and the nodule search unreliable"
        )
    return None


def _gland_reference(v: FrameView, smooth: np.ndarray) -> float | None:
    if not v.gland.any():
        return None
    return float(np.percentile(smooth[v.gland], 99))


def _outside(v: FrameView, margin_mm: float) -> np.ndarray:
    """Pixels farther than ``margin_mm`` from the gland."""
    if not v.gland.any():
        return np.ones_like(v.gland)
    return np.asarray(v.distance_mm > margin_mm)


def _markers(v: FrameView) -> np.ndarray:
    """Label image of the point sources: compact spots, outside the gland, brighter than it."""
    smooth = v.smoothed(4.0)
    ref = _gland_reference(v, smooth)
    if ref is None or ref <= 0:
        return np.zeros(v.gland.shape, dtype=np.int32)
    lab, n = ndimage.label((smooth > MARKER_MIN_RATIO * ref) & _outside(v, 4.0))
    if n == 0:
        return lab
    areas = ndimage.sum_labels(lab > 0, lab, range(1, n + 1)) * v.pixel_area_mm2
    keep = np.concatenate([[False], areas <= MARKER_MAX_AREA_MM2])
    lab[~keep[lab]] = 0
    return lab


def _marker(v: FrameView) -> str | None:
    n = len(np.unique(v.markers)) - 1
    if n > 0:
        return (
            f"{n} point source(s) brighter than the gland outside it (markers?): "
            "check that none is counted as thyroid and that the display window is not driven by them"
        )
    return None


def _extrathyroid(v: FrameView) -> str | None:
    if not v.gland.any():
        return None
    smooth = v.smoothed(6.0)
    mean = float(smooth[v.gland].mean())
    if mean <= 0:
        return None
    dist = v.distance_mm
    hot = (dist > 6.0) & (dist <= EXTRA_NEAR_MM) & (smooth > EXTRA_MIN_RATIO * mean)
    lab, n = ndimage.label(hot)
    if n == 0:
        return None
    areas = ndimage.sum_labels(hot, lab, range(1, n + 1)) * v.pixel_area_mm2
    # markers are reported on their own: a hot area that holds one is not uptake
    markers = np.unique(lab[v.markers > 0])
    big = [i + 1 for i, a in enumerate(areas) if a >= EXTRA_MIN_AREA_MM2 and i + 1 not in markers]
    if big:
        return (
            f"{len(big)} area(s) of uptake outside the outlined gland within {EXTRA_NEAR_MM:.0f} mm of it "
            "(salivary glands, oesophagus, vessels, ectopic tissue?): check that the outline neither takes "
            "nor misses them"
        )
    return None


def _suppressed(v: FrameView) -> str | None:
    if int(v.gland.sum()) < 16:
        return None
    p40, p95 = np.percentile(v.smoothed(4.0)[v.gland], [40, 95])
    if p40 <= 0 or p95 / p40 >= SUPPRESSED_RATIO:
        ratio = "" if p40 <= 0 else f" ({p95 / p40:.1f} times its typical tissue)"
        return (
            f"a hot area dominates the gland{ratio}: a hot nodule with suppressed surrounding tissue? "
            "The outline of the suppressed tissue is uncertain"
        )
    return None


def _at_border(v: FrameView) -> str | None:
    g = v.gland
    if g.any() and (g[0].any() or g[-1].any() or g[:, 0].any() or g[:, -1].any()):
        return "the gland touches the edge of the image: part of it may lie outside the field of view"
    return None


def undecided_pixels(probability: np.ndarray) -> int:
    """Pixels of a probability map inside :data:`UNCERTAIN_BAND`."""
    lo, hi = UNCERTAIN_BAND
    return int(((probability > lo) & (probability < hi)).sum())


def _low_confidence(v: FrameView) -> str | None:
    if v.undecided_pixels is None or not v.gland.any():
        return None
    lo, hi = UNCERTAIN_BAND
    share = v.undecided_pixels / max(1, int(v.gland.sum()))
    if share > UNCERTAIN_SHARE:
        return (
            f"the model is undecided over an area {100 * share:.0f} % of the gland's "
            f"(probability {lo}-{hi}): review the outline"
        )
    return None


#: One row per flag: code, check (None: no flag; else the message).
RULES: tuple[tuple[str, Callable[[FrameView], str | None]], ...] = (
    ("low_counts", _low_counts),
    ("marker", _marker),
    ("extrathyroid_uptake", _extrathyroid),
    ("suppressed_gland", _suppressed),
    ("gland_at_border", _at_border),
    ("low_confidence", _low_confidence),
)
#: Every flag an image entry may carry (``no_counts`` on skipped images).
FLAG_CODES = ("no_counts", *(code for code, _ in RULES))


def frame_flags(
    counts: np.ndarray,
    gland: np.ndarray,
    pixel_spacing_mm: float | None,
    undecided: int | None = None,
) -> list[Flag]:
    """The flags of one segmented frame, in :data:`RULES` order."""
    view = FrameView(
        counts=np.asarray(counts, dtype=np.float64),
        gland=np.asarray(gland, dtype=bool),
        spacing_mm=float(pixel_spacing_mm or DEFAULT_SPACING_MM),
        undecided_pixels=undecided,
    )
    flags = []
    for code, rule in RULES:
        message = rule(view)
        if message is not None:
            flags.append(Flag(code, message))
    return flags


def image_flags(per_frame: list[list[Flag]]) -> list[dict[str, str]]:
    """An image's flags: each code once, from its first frame (named when there are several)."""
    seen: dict[str, dict[str, str]] = {}
    for i, flags in enumerate(per_frame, 1):
        for f in flags:
            if f.code not in seen:
                where = f"frame {i}: " if len(per_frame) > 1 else ""
                seen[f.code] = {"code": f.code, "message": where + f.message}
    return [seen[c] for c in FLAG_CODES if c in seen]
