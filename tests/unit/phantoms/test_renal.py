"""The renal DMSA phantom family: deterministic, every kind drawn with its truth, the split
function's physics (the geometric mean cancels depth, the posterior view alone does not),
and NM instances written as cameras write them (dciodvfy-clean, view codes, DMSA codes)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pydicom
import pytest
from scipy import ndimage
from support import ROOT
from support.dicom_tools import dciodvfy_errors

from scintiseg.models.card import THYROID_APPLIES_TO
from scintiseg.models.rules import ImageFacts, parse_applies_to
from scintiseg_phantoms.renal import KINDS, VIEWS, RenalStudy, generate_study, write_renal_study


def test_a_seed_gives_the_same_study_and_another_seed_another() -> None:
    a, b, c = generate_study(7), generate_study(7), generate_study(8)
    assert a.params == b.params and a.kind == b.kind
    for va, vb in zip(a.views, b.views, strict=True):
        assert np.array_equal(va.counts, vb.counts) and np.array_equal(va.left, vb.left)
    assert a.params != c.params


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_has_both_views_and_consistent_truth(kind: str) -> None:
    s = generate_study(31, kind=kind)
    assert s.kind == kind and tuple(v.view for v in s.views) == VIEWS
    post, ant = s.view("posterior"), s.view("anterior")
    n = s.params["matrix"]
    assert post.counts.shape == (n, n) and post.counts.dtype == np.uint16
    assert 1e5 * 0.9 <= s.params["counts"]["posterior"] <= 1e6 * 1.1
    # the anterior view is the mirror image of the posterior one (seen from the front)
    for name in ("left", "right", "scars"):
        assert np.array_equal(getattr(ant, name), getattr(post, name)[:, ::-1])
    assert not (post.left & post.right).any()
    assert not (post.scars & ~(post.left | post.right)).any()
    left, right = s.params["split_left_pct"], s.params["split_right_pct"]
    assert 0 <= left <= 100 and abs(left + right - 100) < 1e-6
    # posterior view: the patient's left kidney on the image's left
    if post.left.any() and post.right.any() and kind not in ("ectopic", "horseshoe"):
        assert np.nonzero(post.left)[1].mean() < np.nonzero(post.right)[1].mean()


def test_kinds_draw_what_they_say() -> None:
    absent = generate_study(5, kind="absent_kidney")
    assert len(absent.params["kidneys"]) == 1 and absent.params["split_left_pct"] in (0.0, 100.0)
    assert generate_study(5, kind="scarred").view("posterior").scars.sum() > 0
    assert generate_study(5, kind="normal").view("posterior").scars.sum() == 0
    assert any(k["duplex"] for k in generate_study(5, kind="duplex").params["kidneys"])
    small = generate_study(5, kind="small_kidney").params
    assert min(small["split_left_pct"], small["split_right_pct"]) < 45
    ectopic = generate_study(5, kind="ectopic").params["kidneys"]
    assert max(k["y_mm"] for k in ectopic) >= 110  # in the pelvis
    horseshoe = generate_study(5, kind="horseshoe")
    post = horseshoe.view("posterior")
    joined = ndimage.label(post.left | post.right)[1]
    assert joined == 1  # one piece across the midline


def kidney_counts(counts: np.ndarray, mask: np.ndarray, other: np.ndarray, grow: int) -> float:
    """Counts in the kidney's region (grown by the camera's blur) less its perirenal background."""
    roi = ndimage.binary_dilation(mask, iterations=grow) & ~other
    ring = ndimage.binary_dilation(roi, iterations=2) & ~roi & ~ndimage.binary_dilation(other, iterations=grow)
    background = counts[ring].mean() if ring.any() else 0.0
    return max(float(counts[roi].sum() - background * roi.sum()), 0.0)


def measured_splits(s: RenalStudy) -> tuple[float, float]:
    """(posterior-only, geometric-mean) left split in %, from the truth outlines."""
    grow = max(1, round(s.params["fwhm_mm"] / s.pixel_spacing_mm))
    found = {}
    for v in s.views:
        c = v.counts.astype(float)
        found[v.view] = (kidney_counts(c, v.left, v.right, grow), kidney_counts(c, v.right, v.left, grow))
    (lp, rp), (la, ra) = found["posterior"], found["anterior"]
    gl, gr = np.sqrt(lp * la), np.sqrt(rp * ra)
    return 100 * lp / (lp + rp), 100 * gl / (gl + gr)


def test_the_geometric_mean_recovers_the_true_split_and_the_posterior_view_alone_does_not() -> None:
    gm_errors, post_errors = [], []
    for seed in range(40):
        s = generate_study(1000 + seed)
        if len(s.params["kidneys"]) < 2:
            continue
        post, gm = measured_splits(s)
        truth = s.params["split_left_pct"]
        gm_errors.append(abs(gm - truth))
        post_errors.append(abs(post - truth))
    assert len(gm_errors) >= 30
    assert np.mean(gm_errors) < 1.0 and np.percentile(gm_errors, 95) < 2.0, gm_errors
    assert np.mean(post_errors) > 2 * np.mean(gm_errors)  # depth biases the posterior view


def test_views_are_written_as_cameras_write_them(tmp_path: Path) -> None:
    s = generate_study(12, kind="scarred")
    paths = write_renal_study(s, tmp_path, seed=12)
    assert write_renal_study(s, tmp_path / "again", seed=12)[0].read_bytes() == paths[0].read_bytes()
    views = {}
    for path in paths:
        assert dciodvfy_errors(path) == []
        ds = pydicom.dcmread(path)
        (det,) = ds.DetectorInformationSequence
        views[det.ViewCodeSequence[0].CodeMeaning] = ds
        (pharm,) = ds.RadiopharmaceuticalInformationSequence
        assert pharm.RadiopharmaceuticalCodeSequence[0].CodeValue == "24511001"  # Tc-99m succimer
        assert ds.StudyDescription == "Renal DMSA scan" and ds.BodyPartExamined == "KIDNEY"
        # the thyroid models are not for it
        assert "another exam" in (parse_applies_to(THYROID_APPLIES_TO).matches_image(ImageFacts.of(ds)) or "")
    assert set(views) == {"Posterior projection", "Anterior projection"}
    assert list(views["Posterior projection"].PatientOrientation) == ["R", "F"]
    assert np.array_equal(views["Anterior projection"].pixel_array, s.view("anterior").counts)


def test_the_docs_list_every_kind() -> None:
    text = (ROOT / "docs" / "synthetic-data.md").read_text()
    section = text[text.index("## Renal DMSA family"):]
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", section, re.M))
    assert documented == set(KINDS)
