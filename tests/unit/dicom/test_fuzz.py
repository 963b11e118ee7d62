"""Fuzzing the DICOM reading path with hypothesis: mutated NM files never escape the job.

Each example is a valid NM file (the integration studies' synthetic scan) with its
header attributes set to hostile values, or its bytes overwritten or cut, run
through the real :class:`~scintiseg.work.jobs.StudyJobs` and :class:`~scintiseg.pipeline.image.Pipeline`
(with the tiny fake models) on an in-memory store. The job must record a result
with a known status, and an image that fails because of its *input* must say so
without being called an internal error (which would be retried as a transient
fault). About 150 examples, a few seconds.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.fake_gateway import FakeGateway

from scintiseg.core.result import Status
from scintiseg.pipeline.image import Pipeline
from scintiseg.work.jobs import StudyJobs
from scintiseg.work.selection import Selection

STATUSES = {str(s) for s in Status}
ATTRIBUTES = (
    "Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation", "SamplesPerPixel",
    "NumberOfFrames", "PhotometricInterpretation", "PixelSpacing", "RescaleSlope", "RescaleIntercept",
    "Modality", "SOPClassUID", "PlanarConfiguration",
)
VALUES = st.one_of(
    st.integers(min_value=-(2**31), max_value=2**32),
    st.sampled_from([0, 1, 2, 3, 7, 8, 12, 16, 32, 64, 65535]),
    st.text(max_size=12),
    st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=False),
    st.none(),
    st.lists(st.sampled_from(["0", "-1", "1e308", "x", "2.2"]), max_size=3).map("\\".join),
)


@pytest.fixture(scope="module")
def base_file(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    from scintiseg_phantoms.dicom import scan_to_dataset
    from scintiseg_phantoms.thyroid import generate_scan

    ds = scan_to_dataset(
        [generate_scan(1, kind="normal", matrix=64)], patient_id="FUZZ", patient_name="FUZZ^X",
        study_uid="2.25.1001", series_uid="2.25.1002", sop_uid="2.25.1003",
    )
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


@pytest.fixture(scope="module")
def pipeline(fake_models_dir: Path) -> Pipeline:
    return Pipeline.from_models_dir(fake_models_dir)


def run_job(pipeline: Pipeline, data: bytes) -> dict[str, Any]:
    gw = FakeGateway()
    try:
        iid = gw._put(data)  # the store files an instance by its header, as Orthanc does
    except Exception:  # noqa: BLE001  (a header Orthanc could not index is never stored)
        return {}
    study = gw.study_of[iid]
    jobs = StudyJobs(gw, lambda: pipeline, Selection())
    result = jobs.run(study)
    assert result is not None
    return result.to_dict()


def check(result: dict[str, Any]) -> None:
    for entry in result.get("images", {}).values():
        assert entry["status"] in STATUSES
        if entry["status"] != "done":
            assert entry["reason"], entry
            assert not entry.get("transient"), f"bad input called an internal error: {entry['reason']}"


def mutated_header(base: bytes, changes: dict[str, Any]) -> bytes | None:
    ds = pydicom.dcmread(io.BytesIO(base))
    for keyword, value in changes.items():
        try:
            if value is None:
                if keyword in ds:
                    delattr(ds, keyword)
            else:
                setattr(ds, keyword, value)
        except (ValueError, TypeError, OverflowError):
            return None  # pydicom refuses the value itself: no such file can be written
    buf = io.BytesIO()
    try:
        ds.save_as(buf, enforce_file_format=True)
    except (ValueError, TypeError, OverflowError, KeyError, AttributeError, Exception):  # noqa: BLE001
        return None
    return buf.getvalue()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(changes=st.dictionaries(st.sampled_from(ATTRIBUTES), VALUES, min_size=1, max_size=3))
def test_hostile_header_values_are_recorded_not_raised(
    base_file: bytes, pipeline: Pipeline, changes: dict[str, Any]
) -> None:
    data = mutated_header(base_file, changes)
    if data is None:
        return
    check(run_job(pipeline, data))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(
    cut=st.one_of(st.none(), st.floats(min_value=0.3, max_value=0.999, allow_subnormal=False)),
    flips=st.lists(
        st.tuples(st.floats(min_value=0.2, max_value=1.0, allow_subnormal=False), st.integers(0, 255)), max_size=8
    ),
)
def test_damaged_bytes_are_recorded_not_raised(
    base_file: bytes, pipeline: Pipeline, cut: float | None, flips: list[tuple[float, int]]
) -> None:
    data = bytearray(base_file)
    for where, byte in flips:  # past the preamble and file meta, mostly into the dataset
        data[min(len(data) - 1, int(where * (len(data) - 1)))] = byte
    if cut is not None:
        data = data[: int(cut * len(data))]
    try:
        pydicom.dcmread(io.BytesIO(bytes(data)), stop_before_pixels=True)
    except Exception:  # noqa: BLE001  (Orthanc would refuse a file without a readable header)
        return
    check(run_job(pipeline, bytes(data)))


def test_the_fuzzed_file_is_segmented_unchanged(base_file: bytes, pipeline: Pipeline) -> None:
    result = run_job(pipeline, base_file)
    assert result["status"] == "done" and np.isfinite(result["timings_ms"]["job_ms"])
