"""The department's whole loop on a small synthetic database, on the real Orthanc:

arrivals pseudonymized -> segmented -> physician labels sent (MANUAL SEG by DICOMweb, one
RTSTRUCT) -> ``scintiseg export --url`` (nnU-Net v2 raw layout, manifest, fixed split, no
identifying value) -> ``scintiseg_training.dataset --export`` -> a few training steps of a
tiny U-Net per task on the CPU -> ``scintiseg_training.export`` -> a models folder that the
plugin's model loader accepts. The REST export (zip) of the grown database keeps every
earlier case on its side of the split.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from support.anonymization import pseudonym, scintiseg_section, wait_pseudonymized, with_identity
from support.identity_scan import identifying_values, leaks_in_bytes
from support.label_objects import ellipse, manual_seg, rtstruct
from support.orthanc_harness import STABLE_AGE, VENV, OrthancServer, Study, make_study, missing_tools, wait_for
from support.physician_labels import labels, stow

from scintiseg.dicom.nifti import read_nifti
from scintiseg.intake.datasets import split_of

PYTHON = str(VENV / "bin" / "python")
SCINTISEG = str(VENV / "bin" / "scintiseg")
SEEDS = (51, 52, 53, 54)


def send_and_label(orthanc: OrthancServer, tmp: Path, seed: int, rt: bool = False) -> tuple[Study, str]:
    """One patient's study in, pseudonymized and segmented, then its physician label in."""
    study = make_study(tmp / f"in{seed}", seed=seed, kind="cold_nodules")
    with_identity(study.files[0], seed)
    orthanc.storescu(study.files)
    sid, _ = wait_pseudonymized(orthanc, f"INT{seed:06d}", STABLE_AGE + 60)
    (nm_id,) = orthanc.series_by_modality(sid)["NM"]
    nm = orthanc.instance(nm_id)
    if rt:
        path = tmp / f"rt{seed}.dcm"
        rtstruct(nm, {"Thyroid": [ellipse(64.3, 62.2, 22.0, 15.0)]}).save_as(path, enforce_file_format=True)
        orthanc.storescu([path])
    else:
        stow(orthanc, manual_seg(nm, study.glands[0][0], study.nodules[0][0]))
    wait_for(f"the label of patient {seed}", lambda: [r for r in labels(orthanc, sid) if r["status"] == "accepted"],
             STABLE_AGE + 60)
    return study, sid


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    proc = subprocess.run(list(args), capture_output=True, text=True, timeout=600, cwd=cwd, env=env, check=False)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.mark.slow
@pytest.mark.training
def test_pseudonymized_labelled_database_exports_and_trains_a_loadable_model(tmp_path: Path,
                                                                             models_dir: Path) -> None:
    missing = missing_tools()
    if missing:
        pytest.fail(missing)
    orthanc = OrthancServer(data=tmp_path / "orthanc", models=models_dir,
                            extra_config={"ScintiSeg": scintiseg_section()})
    orthanc.start()
    try:
        studies = [send_and_label(orthanc, tmp_path, seed, rt=seed == SEEDS[-1]) for seed in SEEDS]
        sources = [pydicom.dcmread(s.files[0]) for s, _ in studies]
        values = identifying_values(sources)

        # the command line export, with its progress bar
        out = tmp_path / "export"
        proc = run(SCINTISEG, "export", "--url", orthanc.url, "--out", str(out),
                   cwd=tmp_path)
        assert f"{len(SEEDS)}/{len(SEEDS)} images" in proc.stderr
        dataset = json.loads((out / "dataset.json").read_text())
        assert dataset["channel_names"] == {"0": "NM"} and dataset["file_ending"] == ".nii.gz"
        assert dataset["labels"] == {"background": 0, "gland": 1, "nodule": 2}
        cases = json.loads((out / "manifest.json").read_text())["cases"]
        assert dataset["numTraining"] == len(cases) == 2 * len(SEEDS)  # each couple and its mirror
        assert sorted(p.name for p in (out / "labelsTr").iterdir()) == sorted(f"{c['case']}.nii.gz" for c in cases)
        assert sorted(p.name for p in (out / "imagesTr").iterdir()) == sorted(
            f"{c['case']}_0000.nii.gz" for c in cases)

        # the couples are the images and the physicians' masks, mirrored for the _lr cases
        by_patient = {c["patient"]: c for c in cases if not c["flipped"]}
        for (study, sid), seed in zip(studies[:-1], SEEDS[:-1], strict=True):
            case = by_patient[pseudonym("ID_", f"INT{seed:06d}")]
            assert case["split"] == split_of(case["patient"], 0.2) and case["study"] == sid
            assert case["label"]["kind"] == "SEG" and case["label"]["provenance"]["who"] == "DR^LABEL"
            assert case["models_at_label_time"] == orthanc.result(sid)["models"]  # type: ignore[index]
            label, spacing = read_nifti((out / "labelsTr" / f"{case['case']}.nii.gz").read_bytes())
            assert np.array_equal(label >= 1, study.glands[0][0]) and np.array_equal(label == 2, study.nodules[0][0])
            image, _ = read_nifti((out / "imagesTr" / f"{case['case']}_0000.nii.gz").read_bytes())
            assert np.array_equal(image, pydicom.dcmread(study.files[0]).pixel_array.astype(np.float32))
            mirror, _ = read_nifti((out / "labelsTr" / f"{case['case']}_lr.nii.gz").read_bytes())
            assert np.array_equal(mirror, label[:, ::-1])
            assert spacing[0] == pytest.approx(float(pydicom.dcmread(study.files[0]).PixelSpacing[0]), rel=1e-5)

        # no identifying value anywhere in the export (NIfTI decompressed)
        leaks = []
        for path in sorted(p for p in out.rglob("*") if p.is_file()):
            data = path.read_bytes()
            data = gzip.decompress(data) if path.suffix == ".gz" else data
            leaks += [f"{path.relative_to(out)}: {v!r}" for v in leaks_in_bytes(data, values)]
        assert leaks == []

        # ScintiSeg's own training on the export, a models folder the plugin loads
        datasets = tmp_path / "datasets"
        run(PYTHON, "-m", "scintiseg_training.dataset", "--export", str(out), "--name", "loop",
            "--datasets", str(datasets), cwd=tmp_path)
        models = tmp_path / "models"
        for task in ("gland", "nodule"):
            run(PYTHON, "-m", "scintiseg_training.train", "--task", task, "--data", str(datasets / "loop.npz"),
                "--out", str(tmp_path / "runs" / task), "--steps", "3", "--base", "4", "--depth", "2",
                "--batch-size", "4", "--threads", "1", "--device", "cpu", "--val-fraction", "0.3", cwd=tmp_path)
            run(PYTHON, "-m", "scintiseg_training.export", "--run", str(tmp_path / "runs" / task), "--task", task,
                "--models", str(models), "--version", "0.0.1-loop", cwd=tmp_path)
        from scintiseg.models.registry import load_segmenter

        segmenter = load_segmenter(models, ["CPUExecutionProvider"])
        assert sorted(segmenter.model_idents) == ["scintiseg-gland@0.0.1-loop", "scintiseg-nodule@0.0.1-loop"]

        # the database grows; the REST export keeps every earlier case, on the same side
        send_and_label(orthanc, tmp_path, 55)
        zipped = orthanc.request("POST", "/scintiseg/datasets/export", b'{"flip": false}')
        with zipfile.ZipFile(io.BytesIO(zipped)) as zf:
            grown = json.loads(zf.read("manifest.json"))["cases"]
            assert len([n for n in zf.namelist() if n.startswith("labelsTr/")]) == len(SEEDS) + 1
        before = {c["case"]: c["split"] for c in cases if not c["flipped"]}
        after = {c["case"]: c["split"] for c in grown}
        assert set(before) < set(after) and all(after[k] == v for k, v in before.items())
        assert leaks_in_bytes(zipped, values) == []
    finally:
        orthanc.stop()


def test_command_line_export_signs_in_when_orthanc_authentication_is_on(tmp_path: Path, models_dir: Path) -> None:
    missing = missing_tools()
    if missing:
        pytest.fail(missing)
    orthanc = OrthancServer(data=tmp_path / "orthanc", models=models_dir, auth=("nurse", "s3cret-pass"),
                            extra_config={"AuthenticationEnabled": True, "RegisteredUsers": {"nurse": "s3cret-pass"}})
    orthanc.start()
    try:
        refused = subprocess.run([SCINTISEG, "export", "--url", orthanc.url, "--out", str(tmp_path / "no")],
                                 capture_output=True, text=True, timeout=120, check=False)
        assert refused.returncode == 1 and "401" in refused.stderr, refused.stderr
        env = {**os.environ, "SCINTISEG_ORTHANC_USER": "nurse", "SCINTISEG_ORTHANC_PASSWORD": "s3cret-pass"}
        proc = subprocess.run([SCINTISEG, "export", "--url", orthanc.url, "--out", str(tmp_path / "yes")],
                              capture_output=True, text=True, timeout=120, env=env, check=False)
        assert proc.returncode == 0, proc.stderr
        assert json.loads((tmp_path / "yes" / "dataset.json").read_text())["numTraining"] == 0
        with_flags = run(SCINTISEG, "export", "--url", orthanc.url, "--out", str(tmp_path / "flags"),
                         "--user", "nurse", "--password", "s3cret-pass", cwd=tmp_path)
        assert "0 couples" in with_flags.stdout
    finally:
        orthanc.stop()
