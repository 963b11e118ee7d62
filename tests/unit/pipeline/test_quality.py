"""Quality flags on generated cases that have the artefact and on cases that have not.

The cases come from the training phantom family, whose truth says what each scan
holds (markers, extra-thyroid uptake, suppression, gland at the border); the flags
are computed from the counts and the TRUE gland, so a test checks the rule, not a
model.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

import numpy as np
import pytest
from support.fake_gateway import FakeGateway, FakePipeline
from support.nm_fixtures import make_nm

from scintiseg.core.result import Status
from scintiseg.pipeline import quality
from scintiseg.pipeline.quality import NoCountsError, check_counts, frame_flags
from scintiseg.work.jobs import StudyJobs
from scintiseg.work.selection import Selection
from scintiseg_phantoms.record import Scan
from scintiseg_phantoms.thyroid import generate_scan


@cache
def _scan(seed: int, kind: str | None) -> Scan:
    return generate_scan(seed, kind=kind)


def first_scan(kind: str | None, where: Callable[[Scan], bool], start: int = 0, tries: int = 40) -> Scan:
    """The first generated scan of ``kind`` (from seed ``start``) that ``where`` accepts."""
    for seed in range(start, start + tries):
        scan = _scan(seed, kind)
        if where(scan):
            return scan
    raise AssertionError(f"no {kind} scan in {tries} seeds from {start} matches")


def codes(scan: Scan, probability: np.ndarray | None = None) -> set[str]:
    undecided = None if probability is None else quality.undecided_pixels(probability)
    return {f.code for f in frame_flags(scan.counts, scan.gland, scan.pixel_spacing_mm, undecided)}


def _p(scan: Scan, key: str) -> Any:
    return scan.params[key]


def _plain(scan: Scan) -> bool:
    """A normal scan without markers, extra uptake, suppression or border contact."""
    p = scan.params
    return not (p["markers"] or p["extrathyroid"] or p["suppressed"] or p["gland_at_border"]) and (
        float(scan.counts[scan.gland].sum()) > 3 * quality.LOW_COUNTS_GLAND
    )


CASES: list[tuple[str, str, Callable[[Scan], bool]]] = [
    ("low_counts", "low_count", lambda s: float(s.counts[s.gland].sum()) < 0.5 * quality.LOW_COUNTS_GLAND),
    ("marker", "markers", lambda s: _p(s, "markers") > 0),
    ("extrathyroid_uptake", "salivary", lambda s: bool(_p(s, "extrathyroid"))),
    ("suppressed_gland", "hot_nodule", lambda s: bool(_p(s, "suppressed"))),
    ("gland_at_border", "goiter", lambda s: bool(_p(s, "gland_at_border"))),
]


@pytest.mark.parametrize(("code", "kind", "has_it"), CASES, ids=[c[0] for c in CASES])
def test_flag_on_a_case_that_has_it(code: str, kind: str, has_it: Callable[[Scan], bool]) -> None:
    scan = first_scan(kind, has_it)
    assert code in codes(scan), (scan.params["seed"], codes(scan))


@pytest.mark.parametrize("code", [c[0] for c in CASES])
def test_no_flag_on_a_case_that_has_not(code: str) -> None:
    scan = first_scan("normal", _plain)
    assert code not in codes(scan), (scan.params["seed"], codes(scan))


def test_every_flag_has_a_rule_and_a_message() -> None:
    assert quality.FLAG_CODES[0] == "no_counts"
    assert len(set(quality.FLAG_CODES)) == len(quality.FLAG_CODES) == 7
    scan = first_scan("hot_nodule", lambda s: bool(_p(s, "suppressed")))
    for flag in frame_flags(scan.counts, scan.gland, scan.pixel_spacing_mm):
        assert flag.code in quality.FLAG_CODES and len(flag.message) > 30
        assert flag.as_dict() == {"code": flag.code, "message": flag.message}


def test_low_confidence_from_a_wide_band_of_undecided_probability() -> None:
    scan = first_scan("normal", _plain)
    sharp = scan.gland.astype(np.float32) * 0.98 + 0.01
    assert "low_confidence" not in codes(scan, sharp)
    # the same gland, its probability blurred into a wide undecided band
    from scipy import ndimage

    wide = ndimage.gaussian_filter(scan.gland.astype(np.float32), 6.0 / scan.pixel_spacing_mm)
    assert "low_confidence" in codes(scan, wide)
    # without a probability map the rule says nothing
    assert "low_confidence" not in codes(scan, None)


def test_no_counts_raises_a_skip_and_real_counts_do_not() -> None:
    with pytest.raises(NoCountsError, match="no_counts"):
        check_counts(np.zeros((2, 64, 64), np.uint16))
    with pytest.raises(NoCountsError):
        check_counts(np.full((128, 128), 0.02))  # 330 counts spread thin, no pixel reaches 3
    check_counts(first_scan("normal", _plain).counts)  # no exception


def test_pipeline_skips_an_empty_image_before_the_models(fake_models_dir) -> None:
    from scintiseg.pipeline.image import Pipeline

    pipeline = Pipeline.from_models_dir(fake_models_dir)
    ds = make_nm(seed=3)
    ds.PixelData = np.zeros((ds.Rows, ds.Columns), np.uint16).tobytes()
    with pytest.raises(NoCountsError):
        pipeline.process(ds)


class _EmptyPipeline(FakePipeline):
    """Raises what the real pipeline raises for an image whose pixels are all zero."""

    def process(self, source):  # type: ignore[no-untyped-def]
        if not np.asarray(source.pixel_array).any():
            check_counts(source.pixel_array)
        return super().process(source)


def test_job_skips_an_empty_image_with_its_reason_and_stores_no_seg() -> None:
    gw = FakeGateway()
    full = make_nm(seed=1)
    empty = make_nm(seed=1, rows=64)
    empty.StudyInstanceUID, empty.SeriesInstanceUID = full.StudyInstanceUID, full.SeriesInstanceUID
    empty.PixelData = np.zeros((empty.Rows, empty.Columns), np.uint16).tobytes()
    full_id, empty_id = gw.add(full), gw.add(empty)
    pipe = _EmptyPipeline()
    jobs = StudyJobs(gw, lambda: pipe, Selection(), ["CPUExecutionProvider"])
    result = jobs.run(gw.study_id(full))
    assert result is not None and result.status == Status.DONE
    entries = {e.source_instance_id: e for e in result.images.values()}
    assert entries[full_id].status == Status.DONE
    skipped = entries[empty_id]
    assert skipped.status == Status.SKIPPED and "no_counts" in (skipped.reason or "")
    assert skipped.flag_codes()[0] == "no_counts"
    assert gw.count("store_instance") == 1  # the SEG of the image with counts only
