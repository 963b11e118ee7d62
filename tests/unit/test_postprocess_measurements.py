"""Post-processing rules and measurements on hand-made masks."""

import numpy as np
import pytest

from scintiseg.measurements import measure_frame, midline_column
from scintiseg.postprocess import clean_gland, clean_nodules, min_pixels


def two_lobes(n=128):
    g = np.zeros((n, n), bool)
    g[30:100, 30:55] = True  # patient's right lobe (image left)
    g[30:100, 73:98] = True  # patient's left lobe
    g[70:80, 55:73] = True  # isthmus
    return g


def test_min_pixels_from_spacing():
    assert min_pixels(0.5, 20.0) == 80
    assert min_pixels(None, 20.0) > 0


def test_clean_gland_drops_specks_and_fills_holes():
    g = two_lobes()
    g[60:66, 40:46] = False  # a hole where a cold nodule sits
    g[5:7, 5:7] = True  # a speck (a marker)
    out = clean_gland(g, 1.0, 20.0)
    assert out[62, 42] and not out[5, 5]


def test_nodules_only_inside_the_gland():
    g = two_lobes()
    n = np.zeros_like(g)
    n[40:50, 35:45] = True
    n[5:15, 5:15] = True  # outside the gland
    out = clean_nodules(n, g, 1.0, 10.0)
    assert out[45, 40] and not out[10, 10]


def test_midline_finds_isthmus():
    assert 55 <= midline_column(two_lobes()) <= 73


def test_measure_frame_reports_lobes_and_nodules():
    g = two_lobes()
    counts = np.where(g, 100.0, 5.0)
    counts[:, 64:] *= np.where(g[:, 64:], 0.5, 1.0)  # left lobe at half uptake
    nod = np.zeros_like(g)
    nod[35:45, 35:45] = True  # right lobe, upper pole
    counts[nod] = 20.0
    m = measure_frame(counts, g, nod, pixel_spacing_mm=2.0)
    assert m["gland_area_mm2"] == pytest.approx(g.sum() * 4.0)
    assert m["right_lobe_share_pct"] > m["left_lobe_share_pct"]
    assert m["right_lobe_share_pct"] + m["left_lobe_share_pct"] == pytest.approx(100.0, abs=0.2)
    assert m["nodule_count"] == 1
    (item,) = m["nodules"]
    assert item["lobe"] == "right" and item["pole"] == "upper"
    assert item["area_mm2"] == pytest.approx(400.0)
    assert item["count_ratio"] == pytest.approx(0.2, abs=0.01)


def test_measure_frame_without_spacing_or_gland():
    m = measure_frame(np.zeros((32, 32)), np.zeros((32, 32), bool), np.zeros((32, 32), bool), None)
    assert m["gland_area_mm2"] is None and m["nodule_count"] == 0
    assert m["right_lobe_share_pct"] is None
