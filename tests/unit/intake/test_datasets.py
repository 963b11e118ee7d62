"""Dataset export: NIfTI round trip, the fixed split, case names, and the export of a fake database."""

from __future__ import annotations

import gzip
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from support.fake_gateway import FakeGateway
from support.label_objects import manual_seg, source

from scintiseg.dicom.nifti import read_nifti, write_nifti
from scintiseg.intake.datasets import ExportOptions, case_name, export, export_zip, split_of
from scintiseg.intake.labels import LabelIntake


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "float32"])
def test_nifti_round_trip_and_header(dtype: str) -> None:
    image = (np.arange(12 * 7).reshape(12, 7) % 200).astype(dtype)
    data = write_nifti(image, (2.5, 1.25))
    back, spacing = read_nifti(data)
    assert back.dtype == image.dtype and np.array_equal(back, image) and spacing == (2.5, 1.25)
    raw = gzip.decompress(data)
    assert raw[344:348] == b"n+1\0" and int.from_bytes(raw[:4], "little") == 348
    assert write_nifti(image, (2.5, 1.25)) == data  # deterministic (no time stamp)


def test_split_is_a_function_of_the_patient_only() -> None:
    patients = [f"ID_{i:012x}" for i in range(400)]
    sides = [split_of(p, 0.2) for p in patients]
    assert 40 < sides.count("test") < 120
    assert [split_of(p, 0.2) for p in reversed(patients)] == list(reversed(sides))
    assert case_name("ID_0123456789ab", "1.2.3", 1) == case_name("ID_0123456789ab", "1.2.3", 1)
    assert case_name("ID_0123456789ab", "1.2.3", 1) != case_name("ID_0123456789ab", "1.2.3", 2)


def test_export_writes_couples_mirrors_and_the_manifest(tmp_path: Path) -> None:
    gw = FakeGateway()
    ds, scan = source()
    gw.add(ds)
    sid = gw.study_id(ds)
    gw.add(manual_seg(ds, scan.gland, scan.nodules))
    intake = LabelIntake(gw, "ScintiSegLabels")
    intake.run(sid, None)
    files: dict[str, bytes] = {}
    calls: list[tuple[int, int]] = []
    dataset = export(intake, gw, files.__setitem__, ExportOptions(), progress=lambda d, t: calls.append((d, t)))
    assert calls == [(1, 1)] and dataset["numTraining"] == 2
    manifest = json.loads(files["manifest.json"])
    (plain, mirror) = sorted(manifest["cases"], key=lambda c: c["flipped"])
    assert mirror["case"] == plain["case"] + "_lr" and plain["patient"] == "ID_0123456789ab"
    assert plain["label"]["provenance"]["who"] == "DR^LABEL" and plain["label"]["sop_instance_uid"]
    label, _ = read_nifti(files[f"labelsTr/{plain['case']}.nii.gz"])
    assert np.array_equal(label >= 1, scan.gland) and np.array_equal(label == 2, scan.nodules)
    flipped, _ = read_nifti(files[f"labelsTr/{mirror['case']}.nii.gz"])
    assert np.array_equal(flipped, label[:, ::-1])
    image, _ = read_nifti(files[f"imagesTr/{plain['case']}_0000.nii.gz"])
    assert image.dtype == np.float32 and np.array_equal(image, ds.pixel_array.astype(np.float32))
    with zipfile.ZipFile(io.BytesIO(export_zip(intake, gw, ExportOptions(flip=False)))) as zf:
        assert json.loads(zf.read("dataset.json"))["numTraining"] == 1
