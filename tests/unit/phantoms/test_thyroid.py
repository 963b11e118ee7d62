"""Unit tests of the training phantom family (``scintiseg_phantoms.thyroid``) and its DICOM export."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pydicom
import pytest
from scipy import ndimage
from support import ROOT
from support.dicom_tools import dciodvfy_errors

from scintiseg_phantoms.dicom import scan_to_dataset, study_uids, write_study
from scintiseg_phantoms.record import TRUTH_KEYS
from scintiseg_phantoms.thyroid import CASE_KINDS, IMAGING, KIND_WEIGHTS, KINDS, Scan, generate_scan
from scintiseg_phantoms.thyroid.detector import EFFECTS
from scintiseg_phantoms.thyroid.scan import build_case, draw_kind

N_SEEDS = 120
DOCS = ROOT / "docs" / "synthetic-data.md"
SITES = {"pole", "edge", "interior"}


@pytest.fixture(scope="module")
def mixed() -> list[Scan]:
    return [generate_scan(seed) for seed in range(N_SEEDS)]


def _n_components(mask: np.ndarray) -> int:
    return int(ndimage.label(mask, structure=np.ones((3, 3)))[1])


def _check_scan(s: Scan) -> None:
    """Everything every scan must satisfy, whatever its kind."""
    p = s.params
    n = p["matrix"]
    assert s.counts.shape == s.gland.shape == s.nodules.shape == (n, n)
    assert s.counts.dtype == np.uint16 and s.gland.dtype == bool and s.nodules.dtype == bool
    assert s.kind in CASE_KINDS and p["kind"] == s.kind
    assert set(TRUTH_KEYS) <= set(p) and p["family"] == "thyroid"
    json.dumps(p)
    assert not (s.nodules & ~s.gland).any(), "cold nodules outside the gland"
    labels = s.nodule_labels
    assert labels is not None and labels.dtype == np.int16 and labels.shape == (n, n)
    assert np.array_equal(labels > 0, s.nodules)
    assert len(p["cold_nodules"]) == p["n_cold"] == int(labels.max())
    for k, nod in enumerate(p["cold_nodules"], 1):
        assert (labels == k).sum() >= 3
        assert nod["site"] in SITES
        assert 4.5 <= nod["diameter_mm"] <= 35.5 and 0.0 <= nod["relative_uptake"] <= 0.7
    assert p["markers"] == len(p["marker_list"])
    assert isinstance(p["extrathyroid"], bool) and isinstance(p["suppressed"], bool)
    assert p["suppressed"] == (p["n_hot"] > 0 and p["hot_nodules"][0]["suppression"] <= 0.4)
    assert p["total_counts"] == int(s.counts.sum(dtype=np.int64))
    assert s.pixel_spacing_mm == pytest.approx(p["fov_mm"] / n, rel=1e-3)
    if p["n_lobes"] or p["ectopic"]:
        assert s.gland.sum() >= 20


def test_a_seed_gives_the_same_scan_and_another_seed_another() -> None:
    a, b = generate_scan(123), generate_scan(123)
    assert np.array_equal(a.counts, b.counts) and np.array_equal(a.gland, b.gland)
    assert np.array_equal(a.nodules, b.nodules) and np.array_equal(a.nodule_labels, b.nodule_labels)  # type: ignore[arg-type]
    assert a.params == b.params and a.kind == b.kind
    c = generate_scan(124)
    assert c.counts.shape != a.counts.shape or not np.array_equal(a.counts, c.counts)


def test_every_kind_generates() -> None:
    for kind in CASE_KINDS:
        for seed in range(3):
            s = generate_scan(seed, kind=kind)
            _check_scan(s)
            assert s.kind == kind


def test_mixed_sample(mixed: list[Scan]) -> None:
    for s in mixed:
        _check_scan(s)
    assert len({s.kind for s in mixed}) >= 11


def test_case_mix_follows_the_table() -> None:
    n = 4000
    counts = Counter(draw_kind(seed) for seed in range(n))
    assert set(counts) == set(CASE_KINDS)
    for kind, w in KIND_WEIGHTS.items():
        assert abs(counts[kind] / n - w) < 4 * math.sqrt(w * (1 - w) / n) + 0.005, kind
    assert sum(KIND_WEIGHTS.values()) == pytest.approx(1.0)


def test_parameters_stay_in_their_documented_ranges(mixed: list[Scan]) -> None:
    matrices, fwhm, counts = set(), [], []
    for s in mixed:
        p = s.params
        assert 64 <= p["matrix"] <= 512 and p["matrix"] in IMAGING[p["isotope"]].matrix_weights
        lo, hi = IMAGING[p["isotope"]].fwhm_mm[p["collimator"]]
        assert 4.0 <= lo <= p["fwhm_mm"] <= hi <= 14.0
        assert 2500 <= p["total_counts"] <= 1_050_000
        assert -20.0 <= p["rotation_deg"] <= 20.0
        assert 0.1 <= p["pixel_spacing_mm"] <= 8.0
        if not p["to_edge"] and p["fov_mm"] < 449.0:
            wlo, whi = IMAGING[p["isotope"]].width_fraction[p["collimator"]]
            assert p["virtual_width_fraction"] <= whi + 0.01
        matrices.add(p["matrix"])
        fwhm.append(p["fwhm_mm"])
        counts.append(p["total_counts"])
    assert len(matrices) >= 6 and {64, 128, 256, 512} <= matrices
    assert min(fwhm) < 6.0 and max(fwhm) > 11.0
    assert min(counts) < 2e4 and max(counts) > 3e5
    assert {s.params["collimator"] for s in mixed} == {"pinhole", "parallel"}


def test_gland_inside_image_unless_framed_to_the_edge(mixed: list[Scan]) -> None:
    for s in mixed:
        if s.params["gland_at_border"]:
            assert s.params["to_edge"], s.params["seed"]
    goitres = [generate_scan(seed, kind="goiter") for seed in range(20)]
    assert any(g.params["gland_at_border"] for g in goitres)
    for g in goitres:
        if g.params["to_edge"]:
            assert g.params["virtual_width_fraction"] >= 0.79  # framed 90-125 % of the FOV wide, then cut


def test_polar_and_edge_nodules_are_common_and_cross_the_outline() -> None:
    sites: Counter[str] = Counter()
    at_outline: Counter[str] = Counter()
    merged = 0
    for seed in range(40):
        s = generate_scan(seed, kind="cold_nodules")
        assert s.params["n_cold"] >= 1 and s.nodules.any()
        assert s.nodule_labels is not None
        outline = s.gland & ~ndimage.binary_erosion(s.gland)
        for k, nod in enumerate(s.params["cold_nodules"], 1):
            sites[nod["site"]] += 1
            merged += nod["merged"]
            at_outline[nod["site"]] += bool((outline & (s.nodule_labels == k)).any())
    total = sum(sites.values())
    assert (sites["pole"] + sites["edge"]) / total >= 0.4, sites
    # a pole or edge nodule is a defect in the outline; an interior one mostly is not
    assert at_outline["pole"] + at_outline["edge"] >= 0.8 * (sites["pole"] + sites["edge"])
    assert at_outline["interior"] <= 0.5 * sites["interior"]
    assert merged >= 3  # some continue to the background level


def test_extrathyroid_uptake_never_inside_the_gland_mask() -> None:
    near = 0
    for seed in range(40):
        kind = "salivary" if seed % 2 else None
        case, _ = build_case(seed, kind=kind)
        mask = case.gland.mask
        assert not case.extrathyroid[mask].any()
        assert not case.gland.activity[~mask].any()
        assert np.array_equal(case.gland.labels > 0, case.gland.labels.astype(bool) & mask)
        if kind == "salivary" and mask.any():
            dist_mm = ndimage.distance_transform_edt(~mask) * case.framing.grid.sp
            salivary = case.extrathyroid > 0.3 * case.salivary_level
            if salivary.any():
                gap = float(dist_mm[salivary].min())
                assert gap > 0.0
                near += gap <= 8.0
    assert near >= 12  # touching distance in most salivary cases (20 drawn)


def test_extrathyroid_levels_from_faint_to_brighter_than_the_gland(mixed: list[Scan]) -> None:
    levels = [x["level"] for s in mixed for x in s.params["extrathyroid_sources"] if x["name"].startswith("sub")]
    assert min(levels) < 0.2 and max(levels) > 1.0
    names = {x["name"].split("_")[0] for s in mixed for x in s.params["extrathyroid_sources"]}
    assert {"submandibular", "parotid", "mouth", "oesophagus", "vessels"} <= names


def test_kind_characteristics() -> None:
    for seed in range(4):
        hemi = generate_scan(seed, kind="hemithyroidectomy")
        assert hemi.params["n_lobes"] == 1 and _n_components(hemi.gland) == 1
        hot, _ = build_case(seed, kind="hot_nodule")
        assert len(hot.hot) == 1 and hot.suppression <= 0.35
        scan = generate_scan(seed, kind="hot_nodule")
        assert scan.params["n_hot"] == 1 and scan.params["suppressed"]
        # suppressed tissue is barely visible but still gland: the mask is the whole gland
        rest = hot.gland.mask & (hot.gland.activity < 0.5)
        assert rest.sum() > 0.3 * hot.gland.mask.sum()
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
        assert generate_scan(seed, kind="low_count").params["total_counts"] <= 22000
        thy = generate_scan(seed, kind="thyroiditis")
        assert thy.params["background_rel"] >= 0.4 and thy.params["salivary_rel"] >= 0.8
        graves = generate_scan(seed, kind="graves")
        assert graves.params["background_rel"] < 0.05 and graves.params["isthmus"]
        ect = generate_scan(seed, kind="ectopic")
        assert ect.params["ectopic"] in ("lingual", "thyroglossal") and ect.gland.any()
        sal = generate_scan(seed, kind="salivary")
        assert sal.params["extrathyroid"] and sal.params["salivary_rel"] >= 0.4
        assert any(x["gap_mm"] is not None and x["gap_mm"] <= 6.0 for x in sal.params["extrathyroid_sources"])
        multi = generate_scan(seed, kind="multinodular")
        assert multi.params["n_cold"] >= 1


def _contrast(seed: int, kind: str) -> float:
    """Median activity (before blur and noise) in the gland core over the median in a ring
    5-15 mm outside the gland."""
    case, _ = build_case(seed, kind=kind, matrix=256, isotope="Tc-99m")
    px = 1.0 / case.framing.grid.sp
    mask = case.gland.mask
    act = case.gland.activity + case.extrathyroid + case.background
    core = ndimage.binary_erosion(mask, iterations=max(1, int(2 * px))) & (case.gland.labels == 0)
    dist = ndimage.distance_transform_edt(~mask) / px
    ring = (dist > 5) & (dist < 15)
    return float(np.median(act[core]) / np.median(act[ring]))


def test_uptake_contrast_by_kind() -> None:
    thyroiditis = [_contrast(seed, "thyroiditis") for seed in range(6)]
    graves = [_contrast(seed, "graves") for seed in range(6)]
    normal = [_contrast(seed, "normal") for seed in range(6)]
    assert max(thyroiditis) < 3.5  # near the background
    assert min(graves) > 2 * max(thyroiditis) and np.median(graves) > np.median(normal)
    for seed in range(6):  # suppressed tissue: far below the hot nodule, still in the mask
        case, _ = build_case(seed, kind="hot_nodule")
        u, v = case.framing.grid.uv()
        rest = case.gland.mask & (case.hot[0].blob.rho(u, v) > 1.3)
        assert rest.sum() > 0.2 * case.gland.mask.sum()
        assert np.median(case.gland.activity[rest]) <= 0.35 * case.gland.activity.max()


def test_lingual_only_thyroid_is_the_gland() -> None:
    lingual = [c for c in (build_case(s, kind="ectopic")[0] for s in range(12)) if not c.thyroid.lobes]
    assert lingual
    for case in lingual:
        assert case.thyroid.ectopic is not None and case.gland.mask.any()
        assert _n_components(case.gland.mask) == 1


def test_noise_and_background_models_vary(mixed: list[Scan]) -> None:
    seen = Counter(name for s in mixed for name in s.params["effects"])
    assert set(seen) == set(EFFECTS), seen
    assert len({tuple(sorted(s.params["effects"])) for s in mixed}) >= 15


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


def test_overrides_keep_the_anatomy() -> None:
    for m in (64, 96, 128, 256, 288, 512):
        s = generate_scan(7, matrix=m)
        assert s.counts.shape == (m, m) and s.params["matrix"] == m
    a, b = build_case(7, matrix=128)[0], build_case(7, matrix=256)[0]
    assert a.thyroid == b.thyroid and a.kind == b.kind
    s = generate_scan(7, isotope="i131", collimator="pinhole")
    assert s.params["isotope"] == "I-131" and s.params["collimator"] == "pinhole"
    with pytest.raises(ValueError):
        generate_scan(7, kind="nope")
    with pytest.raises(ValueError):
        generate_scan(7, kind="i131", isotope="Tc-99m")


def test_dicom_single_frames(tmp_path: Path) -> None:
    scans = [generate_scan(3, kind="cold_nodules"), generate_scan(4, kind="i131", matrix=64)]
    paths = write_study(scans, tmp_path, seed=3)
    assert len(paths) == 2
    assert write_study(scans, tmp_path / "again", seed=3)[0].read_bytes() == paths[0].read_bytes()
    uids = set()
    for path, scan in zip(paths, scans, strict=True):
        assert dciodvfy_errors(path) == []
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
    ds = scan_to_dataset([a, a], patient_id="P", patient_name="A^B", study_uid=study, series_uid=series, sop_uid=sop)
    path = tmp_path / "multi.dcm"
    ds.save_as(path, enforce_file_format=True)
    assert dciodvfy_errors(path) == []
    back = pydicom.dcmread(path)
    assert back.NumberOfFrames == 2 and back.pixel_array.shape == (2, 128, 128)
    assert np.array_equal(back.pixel_array[1], a.counts)


# ---- the docs' tables, rendered from the code's tables (docs/synthetic-data.md must hold them verbatim)


def _r(r: tuple[float, float], fmt: str = "{:g}") -> str:
    lo, hi = (fmt.format(x) for x in r)
    return lo if lo == hi else f"{lo}-{hi}"


def _k(x: float) -> str:
    return f"{x / 1e6:g}M" if x >= 1e6 else f"{x / 1e3:g}k"


def _pct(x: float) -> str:
    return f"{round(100 * x):d} %"


def _w(pairs: tuple[tuple[int, float], ...]) -> str:
    return ", ".join(f"{v}: {_pct(w)}" for v, w in pairs)


def kinds_table() -> str:
    head = (
        "| kind | share | scale | heterogeneity | isthmus / pyramidal | cold nodules | hot nodule "
        "(rest of gland) | total counts | body background | salivary level | salivary touching | I-131 | "
        "markers | to image edge |\n" + "|---" * 14 + "|\n"
    )
    rows = []
    for name, s in KINDS.items():
        cold = "none" if s.cold_p == 0 else f"{_pct(s.cold_p)} ({_w(s.cold_count)})"
        hot = "none" if s.hot_p == 0 else f"{_pct(s.hot_p)} ({_r(s.suppression)})"
        lobes = "one lobe" if s.hemi else f"{_pct(s.isthmus_p)} / {_pct(s.pyramidal_p)}"
        if s.ectopic_p:
            lobes += f", ectopic {_pct(s.ectopic_p)}, neck gland {_pct(s.orthotopic_p)}"
        rows.append(
            f"| {name} | {_pct(s.weight)} | {_r(s.scale)} | {_r(s.heterogeneity)} | {lobes} | {cold} | {hot} | "
            f"{_k(s.counts[0])}-{_k(s.counts[1])} | {_r(s.background)} | {_r(s.extrathyroid)} | "
            f"{_pct(s.near_salivary_p)} | {_pct(s.i131_p)} | {_w(s.markers)} | {_pct(s.to_edge_p)} |"
        )
    return head + "\n".join(rows) + "\n"


def effects_table() -> str:
    head = "| effect | present | strength s | what s means |\n|---|---|---|---|\n"
    rows = [f"| {n} | {_pct(e.p)} | {_r(e.strength)} | {e.summary} |" for n, e in EFFECTS.items()]
    return head + "\n".join(rows) + "\n"


def imaging_table() -> str:
    head = "| | " + " | ".join(IMAGING) + " |\n|---" + "|---" * len(IMAGING) + "|\n"
    cols = list(IMAGING.values())
    lines = [
        ("pinhole share", [_pct(c.pinhole_p) for c in cols]),
        ("blur FWHM, pinhole (mm)", [_r(c.fwhm_mm["pinhole"]) for c in cols]),
        ("blur FWHM, parallel hole (mm)", [_r(c.fwhm_mm["parallel"]) for c in cols]),
        ("gland width / FOV, pinhole", [_r(c.width_fraction["pinhole"]) for c in cols]),
        ("gland width / FOV, parallel hole", [_r(c.width_fraction["parallel"]) for c in cols]),
        ("matrix", [", ".join(f"{m}: {_pct(w)}" for m, w in c.matrix_weights.items()) for c in cols]),
        ("x the kind's total counts", [_r(c.counts_factor) for c in cols]),
        ("x the kind's salivary level", [f"{c.extrathyroid_factor:g}" for c in cols]),
        ("x the kind's body background", [f"{c.background_factor:g}" for c in cols]),
        ("septal-penetration halo (share, 4x wider)", [_r(c.septal_halo) for c in cols]),
    ]
    return head + "\n".join(f"| {name} | " + " | ".join(vals) + " |" for name, vals in lines) + "\n"


def test_docs_tables_match_the_code() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for table in (kinds_table(), effects_table(), imaging_table()):
        assert table in text, table
    for name, spec in KINDS.items():
        assert f"| {name} | {_pct(spec.weight)} | {spec.summary} |" in text, name
