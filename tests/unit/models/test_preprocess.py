"""Windows, normalisation and the round trip source -> model grid -> source."""

import numpy as np
import pytest

from scintiseg.models.preprocess import (
    OUTSIDE_LOGIT,
    Normalisation,
    Window,
    full_window,
    gland_window,
    logits_to_source,
    mask_to_window,
    model_input,
    normalise,
    resample_to_window,
)


def disc(shape, centre, radius):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy + 0.5 - centre[0]) ** 2 + (xx + 0.5 - centre[1]) ** 2 <= radius**2


def test_full_window_is_centred_square():
    w = full_window((100, 60))
    assert (w.top, w.left, w.side) == (0.0, -20.0, 100.0)


def test_gland_window_bounds_mask_with_margin():
    m = np.zeros((200, 200), bool)
    m[50:90, 60:140] = True
    w = gland_window(m, margin=0.25)
    assert w.side == pytest.approx(80 * 1.5)
    assert w.top + w.side / 2 == pytest.approx(70)
    assert w.left + w.side / 2 == pytest.approx(100)


def test_gland_window_of_empty_mask_is_full_window():
    assert gland_window(np.zeros((64, 64), bool)) == full_window((64, 64))


def test_window_rejects_non_positive_side():
    with pytest.raises(ValueError):
        Window(0, 0, 0)


@pytest.mark.parametrize("n", [64, 128, 256, 512])
def test_round_trip_keeps_a_disc(n):
    mask = disc((n, n), (n * 0.45, n * 0.55), n * 0.2)
    w = full_window((n, n))
    target = mask_to_window(mask, w, 128)
    assert target.shape == (128, 128)
    logits = (target - 0.5) * 10
    back = logits_to_source(logits, w, (n, n)) > 0
    dice = 2 * (back & mask).sum() / (back.sum() + mask.sum())
    assert dice > 0.98


def test_resampling_identity_on_same_grid():
    img = np.random.default_rng(0).random((128, 128)).astype(np.float32)
    out = resample_to_window(img, full_window((128, 128)), 128)
    np.testing.assert_allclose(out, img, atol=1e-6)


def test_outside_window_gets_outside_logit():
    w = Window(top=10, left=10, side=20)
    back = logits_to_source(np.zeros((16, 16), np.float32), w, (64, 64))
    assert back[0, 0] == OUTSIDE_LOGIT
    assert back[20, 20] == 0.0


def test_normalise_is_count_level_invariant_and_robust_to_a_marker():
    rng = np.random.default_rng(1)
    base = rng.poisson(50 * disc((128, 128), (64, 64), 30)).astype(np.float32) + 1
    a = normalise(base, Normalisation())
    b = normalise(base * 37.0, Normalisation())
    np.testing.assert_allclose(a, b, rtol=1e-5)
    marked = base.copy()
    marked[5:7, 5:7] = 1e6  # a point marker, far hotter than the gland
    c = normalise(marked, Normalisation())
    assert c[64, 64] == pytest.approx(a[64, 64], rel=0.05)
    assert c.max() == pytest.approx(1.5)


def test_normalise_of_empty_image_is_zero():
    assert not normalise(np.zeros((8, 8)), Normalisation()).any()


def test_model_input_shape_and_dtype():
    x = model_input(np.ones((300, 200)), full_window((300, 200)), 128, Normalisation())
    assert x.shape == (128, 128) and x.dtype == np.float32


@pytest.mark.parametrize("kw", [{"percentile": 10}, {"clip": 0}])
def test_normalisation_validates(kw):
    with pytest.raises(ValueError):
        Normalisation(**kw)
