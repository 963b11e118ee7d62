"""Post-processing rules and measurements on hand-made masks."""

import numpy as np
import pytest

from scintiseg.models.card import Measurement
from scintiseg.models.measurements import measure_frame, midline_column
from scintiseg.models.postprocess import clean_gland, clean_nodules, min_pixels

#: What the shipped gland and nodule cards ask for.
SHIPPED = [
    Measurement("region", "gland"),
    Measurement("lobes", "gland"),
    Measurement("region", "nodule"),
    Measurement("lesions", "nodule", {"within": "gland"}),
]


def measure(counts, gland, nodules, spacing):
    return measure_frame(counts, {"gland": gland, "nodule": nodules}, SHIPPED, spacing)["labels"]


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
    m = measure(counts, g, nod, 2.0)
    assert m["gland"]["area_mm2"] == pytest.approx(g.sum() * 4.0)
    assert m["gland"]["counts"] == pytest.approx(counts[g].sum(), abs=0.1)
    assert m["gland"]["right_lobe_share_pct"] > m["gland"]["left_lobe_share_pct"]
    assert m["gland"]["right_lobe_share_pct"] + m["gland"]["left_lobe_share_pct"] == pytest.approx(100.0, abs=0.2)
    assert m["nodule"]["count"] == 1 and m["nodule"]["area_mm2"] == pytest.approx(400.0)
    (item,) = m["nodule"]["components"]
    assert item["lobe"] == "right" and item["pole"] == "upper"
    assert item["area_mm2"] == pytest.approx(400.0)
    assert item["count_ratio"] == pytest.approx(0.2, abs=0.01)


def test_measure_frame_without_spacing_or_gland():
    m = measure(np.zeros((32, 32)), np.zeros((32, 32), bool), np.zeros((32, 32), bool), None)
    assert m["gland"]["area_mm2"] is None and m["nodule"]["count"] == 0
    assert m["gland"]["right_lobe_share_pct"] is None


def test_a_third_label_is_measured_as_its_card_says():
    g = two_lobes()
    hot = np.zeros_like(g)
    hot[40:44, 80:84] = True
    counts = np.where(g, 100.0, 5.0)
    specs = [*SHIPPED, Measurement("region", "hot"), Measurement("lesions", "hot", {"within": "gland"})]
    m = measure_frame(counts, {"gland": g, "nodule": np.zeros_like(g), "hot": hot}, specs, 1.0)["labels"]
    assert m["hot"]["pixels"] == 16 and m["hot"]["count"] == 1
    assert m["hot"]["components"][0]["lobe"] == "left"
    assert measure_frame(counts, {"other": hot}, [], 1.0)["labels"] == {"other": {}}


def _reference_remove_small(mask, min_size):
    from scipy import ndimage

    labels, n = ndimage.label(mask, structure=np.ones((3, 3), bool))
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    keep = sizes >= min_size
    keep[0] = False
    return keep[labels]


def test_box_limited_morphology_equals_the_whole_image_one():
    """remove_small and fill_holes work on the mask's bounding box: same result as on the image."""
    from scipy import ndimage

    from scintiseg.models.postprocess import bounding_box, fill_holes, remove_small

    rng = np.random.default_rng(0)
    for k in range(300):
        shape = tuple(int(v) for v in rng.integers(6, 60, 2))
        mask = rng.random(shape) < rng.uniform(0.05, 0.7)
        if k % 4 == 0:  # large blocks touching the image edges, with holes
            mask[: rng.integers(1, shape[0]), rng.integers(0, shape[1]) :] = True
            mask[rng.integers(0, shape[0]), :] = False
        for min_size in (1, 4, 15):
            assert np.array_equal(remove_small(mask, min_size), _reference_remove_small(mask, min_size))
        assert np.array_equal(fill_holes(mask), ndimage.binary_fill_holes(mask))
    empty = np.zeros((5, 7), bool)
    assert bounding_box(empty) is None
    assert not remove_small(empty, 1).any() and not fill_holes(empty).any()
    ring = np.zeros((9, 9), bool)
    ring[0:5, 0:5] = True
    ring[1:4, 1:4] = False  # a hole in a ring touching the corner of the image
    assert fill_holes(ring)[2, 2] and bounding_box(ring) == (slice(0, 5), slice(0, 5))


def test_nodule_ring_at_the_image_edge():
    g = np.zeros((40, 40), bool)
    g[:, :20] = True
    nod = np.zeros_like(g)
    nod[0:4, 0:4] = True  # a nodule in the image corner: its ring is clipped by the edge
    counts = np.full(g.shape, 10.0)
    counts[nod] = 2.0
    m = measure(counts, g, nod, 1.0)
    (item,) = m["nodule"]["components"]
    assert item["pixels"] == 16 and item["count_ratio"] == 0.2
    assert item["centre_px"] == [1.5, 1.5]
