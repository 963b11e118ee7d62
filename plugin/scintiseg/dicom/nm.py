"""Reading nuclear-medicine (NM) sources: which instances, which pixels, what spacing.

What counts as an NM image (:func:`is_nm_image`):

* any instance of the NM Image Storage SOP class
  (``1.2.840.10008.5.1.4.1.1.20``), the IOD gamma cameras use for planar
  scintigraphies, single- or multi-frame; or
* any other instance whose Modality is ``NM`` *and* which carries pixel data:
  old archives hold thyroid scans as retired Nuclear Medicine Image Storage
  (``1.2.840.10008.5.1.4.1.1.5``) or as Secondary Capture with Modality NM.
  Such objects are read the same way; whether they are greyscale count images
  is checked when the pixels are read (:func:`nm_frames`).

Segmentations, structured reports and other non-image NM-modality objects have
no pixel data and are therefore not NM images here.

Pixels (:func:`nm_frames`) are always returned as a float32 stack
``(frames, rows, cols)``, frame ``i`` being source frame number ``i + 1``, with
the Modality LUT rescale (Rescale Slope/Intercept) applied when the source has
one; NM Image Storage normally has none, in which case the values are the
stored counts.

Errors are :class:`NotNMImageError` (this is not a scintigraphy, skip it),
:class:`OutOfScopeImageError` (an NM image outside what ScintiSeg segments,
skip it) and :class:`UnreadableImageError` (it is one, but its pixels cannot
be used); all are ``ValueError`` subclasses with a message meant for a user's
log.

Limits, checked from the header before any pixel is decoded, so that one
image never costs unbounded memory (the models see all frames of an image in
one batch):

* at most :data:`MAX_FRAMES` frames: a dynamic acquisition (e.g. 120 frames
  of a thyroid uptake curve) is skipped, code ``dynamic``;
* a matrix of at least :data:`MIN_MATRIX` pixels a side (a 1x1 image is no
  scintigraphy), code ``matrix``, and at most :data:`MAX_PIXELS` pixels in
  all frames together;
* a greyscale photometric interpretation (``MONOCHROME1/2``): colour and
  palette images are unreadable as counts.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydicom import Dataset
from pydicom.uid import UID

NM_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.20"
#: Retired "Nuclear Medicine Image Storage" (ACR-NEMA era); accepted through Modality NM.
NM_IMAGE_STORAGE_RETIRED = "1.2.840.10008.5.1.4.1.1.5"

_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")

#: Most frames in one image: static thyroid views have 1 to a few; dynamic series are skipped.
MAX_FRAMES = 32
#: Smallest matrix side (pixels) of a scintigraphy.
MIN_MATRIX = 8
#: Most pixels of one image, all frames together (32 frames of 1024 x 1024).
MAX_PIXELS = 32 * 1024 * 1024
#: Photometric interpretations whose values are counts.
GREYSCALE = ("MONOCHROME2", "MONOCHROME1", "")


class SkippedImageError(ValueError):
    """An image that is not segmented, for a reason a user reads (``code`` names it)."""

    code = "skipped"


class NotNMImageError(SkippedImageError):
    """The instance is not a nuclear-medicine image (wrong SOP class / modality)."""

    code = "not_nm"


class OutOfScopeImageError(SkippedImageError):
    """An NM image outside what ScintiSeg segments (dynamic, too small a matrix)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class UnreadableImageError(ValueError):
    """The instance is an NM image, but its pixel data cannot be decoded or used."""


def _describe(ds: Dataset) -> str:
    sop_class = ds.get("SOPClassUID")
    name = UID(str(sop_class)).name if sop_class else "no SOP Class UID"
    uid = ds.get("SOPInstanceUID", "?")
    return f"instance {uid} ({name}, Modality {ds.get('Modality') or '?'})"


def _has_pixel_data(ds: Dataset) -> bool:
    return any(keyword in ds for keyword in _PIXEL_KEYWORDS)


def is_nm_image(ds: Dataset) -> bool:
    """Whether ``ds`` is a nuclear-medicine image that ScintiSeg may segment.

    True for the NM Image Storage SOP class (pixel data loaded or not: metadata
    alone answers the question), and for any other instance with Modality
    ``NM`` that has pixel data (retired NM storage, Secondary Capture).
    """
    if str(ds.get("SOPClassUID", "")) == NM_IMAGE_STORAGE:
        return True
    return str(ds.get("Modality", "")).strip().upper() == "NM" and _has_pixel_data(ds)


def _number(value: Any, default: float) -> float:
    if value is None or value == "":
        return default
    try:
        result = float(value)
    except (TypeError, ValueError):
        return default
    return result if math.isfinite(result) else default


def nm_frames(ds: Dataset) -> np.ndarray:
    """All frames of an NM image as float32 ``(frames, rows, cols)``.

    Rescale Slope/Intercept are applied when present. Raises
    :class:`NotNMImageError` if ``ds`` is not an NM image and
    :class:`UnreadableImageError` if its pixels are absent, colour, or cannot
    be decoded (e.g. a compressed transfer syntax without a decoder).
    """
    if not is_nm_image(ds):
        raise NotNMImageError(
            f"{_describe(ds)} is not a nuclear-medicine image; ScintiSeg segments "
            "NM Image Storage scintigraphies only"
        )
    if not _has_pixel_data(ds):
        raise UnreadableImageError(
            f"{_describe(ds)} has no pixel data (was it retrieved without its pixels?)"
        )
    samples = int(ds.get("SamplesPerPixel") or 1)
    if samples != 1:
        raise UnreadableImageError(
            f"{_describe(ds)} has {samples} samples per pixel (a colour image); "
            "a scintigraphy must be a greyscale count image"
        )
    photometric = str(ds.get("PhotometricInterpretation") or "").strip().upper()
    if photometric not in GREYSCALE:
        raise UnreadableImageError(
            f"{_describe(ds)} has the photometric interpretation {photometric} (its values index "
            "colours, they are not counts); a scintigraphy must be a greyscale count image"
        )
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        n_frames = int(ds.get("NumberOfFrames") or 1)
    except (AttributeError, TypeError, ValueError) as exc:
        raise UnreadableImageError(
            f"{_describe(ds)} has no usable Rows/Columns/Number of Frames ({exc})"
        ) from exc
    if rows < 1 or cols < 1 or n_frames < 1:
        raise UnreadableImageError(
            f"{_describe(ds)} has an empty matrix ({n_frames} frames of {rows}x{cols})"
        )
    _check_limits(ds, n_frames, rows, cols)
    try:
        pixels = np.asarray(ds.pixel_array)
    except Exception as exc:  # decoder boundary: pydicom raises many types
        ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        ts_name = UID(str(ts)).name if ts else "unknown transfer syntax"
        raise UnreadableImageError(
            f"cannot decode the pixel data of {_describe(ds)} ({ts_name}): {exc}"
        ) from exc
    if pixels.size != n_frames * rows * cols:
        raise UnreadableImageError(
            f"{_describe(ds)}: decoded {pixels.size} pixels, expected "
            f"{n_frames} frames of {rows}x{cols}"
        )
    frames = pixels.reshape(n_frames, rows, cols).astype(np.float32)
    slope = _number(ds.get("RescaleSlope"), 1.0)
    intercept = _number(ds.get("RescaleIntercept"), 0.0)
    if slope != 1.0:
        frames *= np.float32(slope)
    if intercept != 0.0:
        frames += np.float32(intercept)
    return frames


def _check_limits(ds: Dataset, n_frames: int, rows: int, cols: int) -> None:
    """The header's matrix against :data:`MAX_FRAMES`, :data:`MIN_MATRIX`, :data:`MAX_PIXELS`."""
    if n_frames > MAX_FRAMES:
        raise OutOfScopeImageError(
            "dynamic",
            f"{_describe(ds)} has {n_frames} frames; ScintiSeg segments static views of at most "
            f"{MAX_FRAMES} frames (a dynamic acquisition is not segmented)",
        )
    if min(rows, cols) < MIN_MATRIX:
        raise OutOfScopeImageError(
            "matrix", f"{_describe(ds)} has a {rows}x{cols} matrix, smaller than {MIN_MATRIX}x{MIN_MATRIX}"
        )
    if n_frames * rows * cols > MAX_PIXELS:
        raise OutOfScopeImageError(
            "matrix",
            f"{_describe(ds)} has {n_frames} frames of {rows}x{cols}, more than {MAX_PIXELS} pixels in all",
        )


def pixel_spacing_mm(ds: Dataset) -> tuple[float, float] | None:
    """(row spacing, column spacing) in mm, from Pixel Spacing (0028,0030).

    NM Image Storage carries Pixel Spacing at the top level (NM Image Pixel
    module, type 2, so it may be empty). ``None`` when it is absent, empty,
    malformed or not strictly positive: callers then work in pixels.
    """
    spacing = ds.get("PixelSpacing")
    if spacing is None:
        return None
    try:
        values = [float(v) for v in spacing]
    except (TypeError, ValueError):
        return None
    if len(values) != 2 or not all(math.isfinite(v) and v > 0 for v in values):
        return None
    return values[0], values[1]
