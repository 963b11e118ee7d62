"""From a scintigraphy of any matrix and count level to a model input, and back.

Both models see a square ``size x size`` window of the image (``size`` comes
from the model card, 128 for the shipped models):

* the gland model sees the whole field of view (:func:`full_window`);
* the nodule model sees a square window around the gland
  (:func:`gland_window`), so that a 10 mm nodule spans many model pixels even
  on a 64 matrix.

Intensities are divided by a high percentile of the window and clipped
(:func:`normalise`), which makes the input independent of the count level and
keeps a few saturated markers or a hot nodule from squashing the gland into
the dark end of the range.

Training (``training/``) calls these very functions, so the ONNX model and the
server agree on the input by construction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

#: Logit written where a source pixel lies outside the model window.
OUTSIDE_LOGIT = -20.0


@dataclass(frozen=True)
class Window:
    """A square window in source pixel coordinates.

    ``top`` and ``left`` are the source coordinates of the window's corner
    (pixel edges, so the first pixel's centre is at 0.5) and ``side`` its side
    in source pixels. The window may extend past the image; outside is zero.
    """

    top: float
    left: float
    side: float

    def __post_init__(self) -> None:
        if not self.side > 0:
            raise ValueError(f"window side must be positive, got {self.side}")


@dataclass(frozen=True)
class Normalisation:
    """Percentile normalisation: ``clip(x / percentile(x, p), 0, clip)``."""

    percentile: float = 99.0
    clip: float = 1.5

    def __post_init__(self) -> None:
        if not 50.0 <= self.percentile <= 100.0:
            raise ValueError(f"percentile must lie in [50, 100], got {self.percentile}")
        if not self.clip > 0:
            raise ValueError(f"clip must be positive, got {self.clip}")


def full_window(shape: tuple[int, int]) -> Window:
    """The square window that holds the whole image, centred."""
    rows, cols = shape
    side = float(max(rows, cols))
    return Window(top=(rows - side) / 2.0, left=(cols - side) / 2.0, side=side)


def gland_window(mask: np.ndarray, margin: float = 0.25, min_side: float = 16.0) -> Window:
    """A square window around the ``True`` pixels of ``mask``.

    ``margin`` is added on each side as a fraction of the bounding box's longer
    side. An empty mask gives the full window, so a missed gland still lets the
    nodule model look at the whole image.
    """
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    rows_any = np.flatnonzero(mask.any(axis=1))
    cols_any = np.flatnonzero(mask.any(axis=0))
    if rows_any.size == 0:
        return full_window((mask.shape[0], mask.shape[1]))
    r0, r1 = float(rows_any[0]), float(rows_any[-1] + 1)
    c0, c1 = float(cols_any[0]), float(cols_any[-1] + 1)
    side = max(r1 - r0, c1 - c0)
    side = max(side * (1.0 + 2.0 * margin), min_side)
    return Window(top=(r0 + r1 - side) / 2.0, left=(c0 + c1 - side) / 2.0, side=side)


def _source_grid(window: Window, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Source coordinates (pixel-centre convention) of the model pixel centres."""
    step = window.side / size
    centres = (np.arange(size, dtype=np.float64) + 0.5) * step - 0.5
    return window.top + centres, window.left + centres


def resample_to_window(image: np.ndarray, window: Window, size: int, order: int = 1) -> np.ndarray:
    """Resample a 2-D image into the ``size x size`` window (zero outside).

    When the window is larger than ``size`` source pixels the image is first
    smoothed (``sigma = (scale - 1) / 2`` source pixels) so that shrinking does
    not alias noise into the model input.
    """
    if image.ndim != 2:
        raise ValueError(f"image must be 2-D, got shape {image.shape}")
    img = np.asarray(image, dtype=np.float32)
    scale = window.side / size
    if order > 0 and scale > 1.0:
        img = ndimage.gaussian_filter(img, sigma=(scale - 1.0) / 2.0, mode="constant")
    ys, xs = _source_grid(window, size)
    if order == 1:
        return _bilinear(img, ys, xs, outside=0.0)
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    out = ndimage.map_coordinates(img, [yy, xx], order=order, mode="constant", cval=0.0)
    return out.astype(np.float32, copy=False)


def _bilinear(img: np.ndarray, ys: np.ndarray, xs: np.ndarray, outside: float) -> np.ndarray:
    """Separable bilinear sampling on a rectilinear grid; ``outside`` beyond the edge.

    Pixels within half a pixel of the edge repeat the edge value, as the
    pixel-centre convention implies; beyond that the value is ``outside``.
    """
    rows, cols = img.shape

    def weights(coords: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        c = np.clip(coords, 0.0, n - 1.0)
        i0 = np.floor(c).astype(np.intp)
        i1 = np.minimum(i0 + 1, n - 1)
        w1 = (c - i0).astype(np.float32)
        inside = (coords >= -0.5) & (coords <= n - 0.5)
        return i0, i1, w1, inside

    y0, y1, wy, iny = weights(ys, rows)
    x0, x1, wx, inx = weights(xs, cols)
    top = img[y0][:, x0] * (1 - wx) + img[y0][:, x1] * wx
    bottom = img[y1][:, x0] * (1 - wx) + img[y1][:, x1] * wx
    out = top * (1 - wy)[:, None] + bottom * wy[:, None]
    out[~iny, :] = outside
    out[:, ~inx] = outside
    return out.astype(np.float32, copy=False)


def normalise(window_image: np.ndarray, spec: Normalisation) -> np.ndarray:
    """Scale by the ``spec.percentile`` of the window and clip to ``[0, spec.clip]``."""
    x = np.asarray(window_image, dtype=np.float32)
    ref = float(np.percentile(x, spec.percentile))
    if not ref > 0:
        ref = float(x.max())
    if not ref > 0:
        return np.zeros_like(x)
    return np.clip(x / ref, 0.0, spec.clip).astype(np.float32, copy=False)


def model_input(image: np.ndarray, window: Window, size: int, spec: Normalisation) -> np.ndarray:
    """The ``(size, size)`` float32 model input for ``image`` seen through ``window``."""
    return normalise(resample_to_window(image, window, size), spec)


def logits_to_source(logits: np.ndarray, window: Window, shape: tuple[int, int]) -> np.ndarray:
    """Bilinearly map ``(size, size)`` model logits back onto the source matrix.

    Interpolating logits (not thresholded masks) keeps sub-pixel boundaries
    when the model grid is coarser than the source. Source pixels outside the
    window get :data:`OUTSIDE_LOGIT`.
    """
    if logits.ndim != 2 or logits.shape[0] != logits.shape[1]:
        raise ValueError(f"logits must be square 2-D, got shape {logits.shape}")
    size = logits.shape[0]
    rows, cols = shape
    step = size / window.side
    ys = (np.arange(rows, dtype=np.float64) + 0.5 - window.top) * step - 0.5
    xs = (np.arange(cols, dtype=np.float64) + 0.5 - window.left) * step - 0.5
    return _bilinear(np.asarray(logits, dtype=np.float32), ys, xs, outside=OUTSIDE_LOGIT)


def mask_to_window(mask: np.ndarray, window: Window, size: int) -> np.ndarray:
    """A source mask as the fraction of each model pixel it covers (training targets)."""
    return resample_to_window(mask.astype(np.float32), window, size, order=1)
