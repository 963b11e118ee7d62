"""The independent phantom family: determinism, ground truth, kinds, ranges, DICOM, speed."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pydicom
import pytest
from scipy import ndimage
from support import ROOT
from support.dicom_tools import dciodvfy_errors

from scintiseg_phantoms.dicom import write_study
from scintiseg_phantoms.independent import KIND_TABLE, KINDS, generate, pick_kind
from scintiseg_phantoms.independent import camera as camera_module
from scintiseg_phantoms.independent.generator import ALLOCATION, KIND_BLOCK, build_scene
from scintiseg_phantoms.independent.kinds import markdown_table
from scintiseg_phantoms.independent.montage import main as montage_main
from scintiseg_phantoms.independent.surroundings import CLEARANCE_MM
from scintiseg_phantoms.record import TRUTH_KEYS, Scan

SAMPLE_SEEDS = range(1000, 1048)


@pytest.fixture(scope="module")
def sample() -> list[Scan]:
    """48 scans as the seeds choose them, plus two of every kind."""
    return [generate(s) for s in SAMPLE_SEEDS] + [generate(s, kind=k) for k in KINDS for s in (7, 8)]


def _same(a: Scan, b: Scan) -> bool:
    return (
        a.kind == b.kind
        and np.array_equal(a.counts, b.counts)
        and np.array_equal(a.gland, b.gland)
        and np.array_equal(a.nodules, b.nodules)
        and np.array_equal(a.nodule_labels, b.nodule_labels)
        and json.dumps(a.params, sort_keys=True) == json.dumps(b.params, sort_keys=True)
    )


def test_the_same_seed_gives_the_same_scan() -> None:
    for seed in (0, 3, 11):
        first = generate(seed)
        assert _same(first, generate(seed))
        assert _same(first, generate(seed, kind=first.kind))
    assert not np.array_equal(generate(0).counts, generate(1).counts)


def test_every_kind_is_produced_and_named_kinds_are_kept() -> None:
    assert KINDS == tuple(KIND_TABLE) and len(set(KINDS)) == len(KINDS)
    for block in (0, 3):
        mix = Counter(pick_kind(s) for s in range(block * KIND_BLOCK, (block + 1) * KIND_BLOCK))
        assert set(mix) == set(KINDS) and mix == Counter(ALLOCATION)
    for kind in KINDS:
        assert generate(5, kind=kind).kind == kind
    with pytest.raises(ValueError, match="unknown kind"):
        generate(0, kind="ellipse")


def test_truth_keys_are_present_and_json_serialisable(sample: list[Scan]) -> None:
    for scan in sample:
        p = scan.params
        assert set(TRUTH_KEYS) <= set(p)
        assert p["family"] == "independent" and p["kind"] == scan.kind
        json.dumps(p)
        assert p["total_counts"] == int(scan.counts.sum())
        assert p["markers"] == len(p["marker_positions"])
        assert isinstance(p["extrathyroid"], bool) and isinstance(p["suppressed"], bool)


def test_masks_are_nested_and_labels_match_the_nodule_list(sample: list[Scan]) -> None:
    for scan in sample:
        assert scan.counts.dtype == np.uint16 and scan.gland.dtype == bool
        assert scan.counts.shape == scan.gland.shape == scan.nodules.shape == scan.nodule_labels.shape
        assert scan.gland.any()
        assert not (scan.nodules & ~scan.gland).any()
        labels = scan.nodule_labels
        nodules = scan.params["cold_nodules"]
        assert np.array_equal(labels > 0, scan.nodules)
        assert set(np.unique(labels[labels > 0]).tolist()) == set(range(1, len(nodules) + 1))
        assert scan.params["n_cold"] == len(nodules)
        for k, nodule in enumerate(nodules, start=1):
            assert nodule["area_px"] == int((labels == k).sum())
            assert nodule["site"] in {"pole", "edge", "interior"}
            assert nodule["lobe"] in {"right", "left"}


def test_cold_nodules_cover_sizes_sites_and_uptakes_of_the_brief() -> None:
    nodules = [n for s in range(40) for n in generate(s, kind="cold").params["cold_nodules"]]
    nodules += [n for s in range(15) for n in generate(s, kind="multinodular").params["cold_nodules"]]
    diameters = np.array([n["diameter_mm"] for n in nodules])
    uptakes = np.array([n["relative_uptake"] for n in nodules])
    assert diameters.min() >= 4.0 and diameters.max() <= 40.0
    assert diameters.min() < 10.0 and diameters.max() > 25.0
    assert uptakes.min() >= 0.0 and uptakes.max() <= 0.7 and uptakes.min() < 0.15
    assert {n["site"] for n in nodules} == {"pole", "edge", "interior"}
    counts = [generate(s, kind="cold").params["n_cold"] for s in range(40)]
    assert min(counts) >= 1 and max(counts) <= 4


def test_an_interior_nodule_lies_inside_its_lobe_and_edge_nodules_may_open_onto_the_background() -> None:
    """The gland mask includes every nodule, also the part that bulges out of the lobe."""
    opened = 0
    for seed in range(30):
        scene = build_scene(seed, "cold")
        g = scene.image
        for k, site in enumerate(g.sites, start=1):
            nodule = g.labels == k
            lobes = np.zeros_like(nodule)
            for lobe in scene.gland.lobes:
                lobes |= scene.frame.mask(lobe.outline)
            outside = nodule & ~lobes
            if site == "interior":
                assert not outside.any()
            opened += bool(outside.any())
            assert not (nodule & ~g.gland).any()
    assert opened > 0


def test_uptake_outside_the_gland_never_touches_the_gland_mask() -> None:
    """Salivary glands, mouth, oesophagus, vessels and markers keep their clearance."""
    seen: set[str] = set()
    for seed in range(24):
        for kind in ("salivary", "thyroiditis", "markers", "normal"):
            scene = build_scene(seed, kind)
            gland = scene.image.gland
            distance = ndimage.distance_transform_edt(~gland) * scene.frame.spacing_mm
            for source in scene.surroundings.sources:
                if source.focal and source.activity.any():
                    seen.add(source.name)
                    assert distance[source.activity > 0].min() >= CLEARANCE_MM * 0.99, (seed, kind, source.name)
    assert {"submandibular", "parotid", "mouth", "oesophagus", "vessels", "markers"} <= seen


def test_near_salivary_glands_sit_close_to_the_upper_poles() -> None:
    gaps = []
    for seed in range(30):
        scene = build_scene(seed, "salivary")
        if not any(m["near"] for m in scene.surroundings.salivary):
            continue
        sub = next(s for s in scene.surroundings.sources if s.name == "submandibular")
        distance = ndimage.distance_transform_edt(~scene.image.gland) * scene.frame.spacing_mm
        gaps.append(float(distance[sub.activity > 0].min()))
    assert len(gaps) >= 8
    assert min(gaps) < 10.0


def test_presentations_look_like_their_kind() -> None:
    def contrast(scan: Scan) -> float:
        ring = ndimage.binary_dilation(scan.gland, iterations=max(2, int(8 / scan.pixel_spacing_mm))) & ~scan.gland
        return float(scan.counts[scan.gland].mean() / max(scan.counts[ring].mean(), 1e-3))

    thyroiditis = [contrast(generate(s, kind="thyroiditis")) for s in range(8)]
    graves = [contrast(generate(s, kind="graves")) for s in range(8)]
    assert max(thyroiditis) < 2.5 < min(graves)
    for s in range(6):
        hot = generate(s, kind="hot_suppressed")
        assert hot.params["suppressed"] and hot.params["n_hot"] == 1 and hot.params["n_cold"] == 0
        smooth = ndimage.gaussian_filter(hot.counts.astype(float), 2)
        assert hot.gland[np.unravel_index(np.argmax(smooth), smooth.shape)]
        assert not generate(s, kind="normal").params["suppressed"]
    hemi = [generate(s, kind="hemithyroidectomy").params for s in range(5)]
    assert all(len(p["lobes"]) == 1 and not p["isthmus"] for p in hemi)
    markers = [generate(s, kind="markers").params["markers"] for s in range(10)]
    assert sum(m > 0 for m in markers) >= 9
    salivary = [generate(s, kind="salivary").params["extrathyroid"] for s in range(10)]
    assert sum(salivary) >= 5


def test_lobe_lengths_stay_within_30_to_70_mm_and_vary_by_kind() -> None:
    lengths = {k: [lb["length_mm"] for s in range(12) for lb in generate(s, kind=k).params["lobes"]] for k in KINDS}
    every = [v for values in lengths.values() for v in values]
    assert min(every) >= 30.0 and max(every) <= 70.0
    assert max(lengths["atrophic"]) < min(lengths["goitre"])


def test_counts_matrices_and_blur_cover_the_documented_ranges(sample: list[Scan]) -> None:
    matrices = {s.params["matrix"] for s in sample}
    assert matrices <= set(camera_module.MATRICES) and min(matrices) >= 64 and max(matrices) <= 512
    assert len(matrices) >= 4
    totals = {iso: [s.params["total_counts"] for s in sample if s.params["isotope"] == iso] for iso in ISOTOPES}
    assert min(totals["Tc-99m"]) >= 4_500 and max(totals["Tc-99m"]) <= 850_000
    assert totals["I-131"] and max(totals["I-131"]) <= 300_000
    assert np.median(totals["I-131"]) < np.median(totals["Tc-99m"])
    for scan in sample:
        p = scan.params
        assert p["low_count"] == (p["total_counts"] < 20_000)
        assert p["low_count"] == (scan.kind == "low_count")
        assert 4.0 <= p["fwhm_mm"] <= 14.0
        assert p["fov_mm"] == pytest.approx(scan.pixel_spacing_mm * p["matrix"], rel=1e-3)
        assert int(scan.counts.max()) < 65535
    assert {s.params["collimator"] for s in sample} == {"pinhole", "parallel"}
    assert any(abs(s.params["rotation_deg"]) > 5 for s in sample)
    assert all(not s.params["gland_at_border"] for s in sample if KIND_TABLE[s.kind].fov_margin[0] >= 1.3)


ISOTOPES = ("Tc-99m", "I-131")


def test_dicom_export_reads_back_and_passes_dciodvfy(tmp_path: Path) -> None:
    chosen = {}
    for seed in range(60):
        scan = generate(seed)
        key = (scan.params["isotope"], scan.params["collimator"])
        chosen.setdefault(key, (seed, scan))
    assert len(chosen) == 4
    for seed, scan in chosen.values():
        (path,) = write_study(scan, tmp_path / str(seed), seed)
        ds = pydicom.dcmread(path)
        assert ds.Modality == "NM" and ds.Rows == scan.counts.shape[0]
        assert np.array_equal(ds.pixel_array, scan.counts)
        assert float(ds.PixelSpacing[0]) == pytest.approx(scan.pixel_spacing_mm, rel=1e-4)
        assert ds.DetectorInformationSequence[0].CollimatorGridName == scan.params["collimator_model"]
        assert dciodvfy_errors(path, "-new") == []


def test_docs_carry_the_kind_table() -> None:
    text = (ROOT / "docs" / "independent-phantoms.md").read_text()
    assert markdown_table() in text


def test_montage_script_writes_a_picture(tmp_path: Path) -> None:
    from PIL import Image

    out = tmp_path / "m.png"
    assert montage_main([str(out), "4", "3"]) == 0
    assert Image.open(out).size == (4 * 256, 256)
