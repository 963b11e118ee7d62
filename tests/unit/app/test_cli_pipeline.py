"""The offline pipeline and the ``scintiseg`` command line, with stand-in models."""

import subprocess
import sys

import numpy as np
import pydicom
import pytest

from scintiseg.app.cli import main
from scintiseg.models.registry import load_segmenter
from scintiseg.pipeline.image import Pipeline
from scintiseg.pipeline.preview import masks_from_seg
from scintiseg_phantoms.dicom import scan_to_dataset, study_uids
from scintiseg_phantoms.thyroid import generate_scan


def nm_dataset(seed, frames=1, **kw):
    scan = generate_scan(seed, **kw)
    study, series, (sop,) = study_uids(seed, 1)
    ds = scan_to_dataset(
        [scan] * frames if frames > 1 else scan,
        patient_id="P", patient_name="T^P", study_uid=study, series_uid=series, sop_uid=sop,
    )
    return scan, ds


@pytest.fixture(scope="module")
def pipeline(fake_models_dir):
    return Pipeline.from_models_dir(fake_models_dir)


def test_segmenter_uses_cpu_here_and_logs_it(fake_models_dir, caplog):
    caplog.set_level("INFO")
    seg = load_segmenter(fake_models_dir)
    assert seg.providers == ["CPUExecutionProvider"]
    assert "CPUExecutionProvider" in caplog.text


@pytest.mark.parametrize("matrix", [64, 128, 256, 512])
def test_pipeline_any_matrix(pipeline, matrix):
    scan, ds = nm_dataset(11, matrix=matrix)
    result = pipeline.process(ds)
    seg = result.seg
    assert seg.StudyInstanceUID == ds.StudyInstanceUID
    assert seg.Rows == matrix and seg.Columns == matrix
    assert len(result.frames) == 1 and result.frames[0]["labels"]["gland"]["pixels"] > 0
    assert result.models == ["scintiseg-gland@0.0.0-test", "scintiseg-nodule@0.0.0-test"]
    for key in ("decode_ms", "preprocess_ms", "gland_inference_ms", "flags_ms", "seg_encode_ms", "total_ms"):
        assert result.timings_ms[key] >= 0
    # the stand-in gland model (bright pixels) overlaps the true gland
    gland = segread_masks(seg, ds)[0][..., 0]
    assert (gland & scan.gland).sum() > 0.5 * scan.gland.sum()


def segread_masks(seg_ds, source):
    """(frames, rows, cols, segments) masks read back from the written file.

    By the SEG's own frame references (scintiseg.pipeline.preview.masks_from_seg):
    highdicom's segread refuses the Pixel Measures of a planar NM without
    slice thickness (see test_seg_writer.py).
    """
    import io

    buf = io.BytesIO()
    seg_ds.save_as(buf, enforce_file_format=True)
    layers = masks_from_seg(pydicom.dcmread(io.BytesIO(buf.getvalue())), source)
    return np.stack([layer.mask for layer in layers], axis=-1)


def test_multiframe_every_frame_segmented(pipeline):
    _, ds = nm_dataset(12, frames=3, matrix=128)
    result = pipeline.process(ds)
    assert [f["frame"] for f in result.frames] == [1, 2, 3]
    assert int(result.seg.NumberOfFrames) == 3 * 2  # frames x segments


def test_same_models_same_uids_new_models_new_series(pipeline, fake_models_dir, tmp_path):
    _, ds = nm_dataset(13)
    a, b = pipeline.process(ds), pipeline.process(ds)
    assert a.seg.SOPInstanceUID == b.seg.SOPInstanceUID
    assert a.seg.SeriesInstanceUID == b.seg.SeriesInstanceUID
    from support.fake_models import write_fake_models

    other = Pipeline.from_models_dir(write_fake_models(tmp_path / "m", version="9.9.9"))
    c = other.process(ds)
    assert c.seg.SeriesInstanceUID != a.seg.SeriesInstanceUID
    assert "9.9.9" in c.seg.SeriesDescription


def test_cli_segment_summary_skip_and_exit_code(fake_models_dir, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    for seed in (21, 22):
        _, ds = nm_dataset(seed, matrix=128)
        ds.save_as(src / f"{seed}.dcm", enforce_file_format=True)
    (src / "notes.txt").write_text("not DICOM")
    ct = pydicom.dcmread(src / "21.dcm")
    ct.Modality = "CT"
    ct.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ct.save_as(tmp_path / "ct.dcm", enforce_file_format=True)
    out = tmp_path / "out"
    rc = main(["segment", str(src), str(tmp_path / "ct.dcm"), "--out", str(out),
               "--models", str(fake_models_dir)])
    captured = capsys.readouterr()
    assert rc == 1
    lines = [line for line in captured.out.splitlines() if "mm²" in line]
    assert len(lines) == 2 and all("gland " in line and "nodule " in line and " ms " in line for line in lines)
    assert "SKIP" in captured.err and "notes.txt" in captured.err
    assert "not an NM image" in captured.err and "ct.dcm" in captured.err
    segs = sorted(out.glob("SEG_*.dcm"))
    assert len(segs) == 2
    assert all(pydicom.dcmread(p).Modality == "SEG" for p in segs)


def test_cli_all_good_exits_zero(fake_models_dir, tmp_path, capsys):
    _, ds = nm_dataset(31)
    ds.save_as(tmp_path / "a.dcm", enforce_file_format=True)
    assert main(["segment", str(tmp_path / "a.dcm"), "--out", str(tmp_path / "o"),
                 "--models", str(fake_models_dir)]) == 0


def test_cli_missing_models_is_a_clear_error(tmp_path):
    _, ds = nm_dataset(32)
    ds.save_as(tmp_path / "a.dcm", enforce_file_format=True)
    proc = subprocess.run(
        [sys.executable, "-m", "scintiseg.app.cli", "segment", str(tmp_path / "a.dcm"),
         "--out", str(tmp_path / "o"), "--models", str(tmp_path / "nowhere")],
        capture_output=True, text=True,
    )
    assert proc.returncode == 2
    assert "cannot load the models" in proc.stderr and "does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_generate(tmp_path, capsys):
    assert main(["generate", "--out", str(tmp_path), "--count", "2", "--frames", "2"]) == 0
    files = sorted(tmp_path.glob("NM_*.dcm"))
    assert len(files) == 2
    ds = pydicom.dcmread(files[0])
    assert ds.Modality == "NM" and int(ds.NumberOfFrames) == 2
    assert np.asarray(ds.pixel_array).shape[0] == 2


def test_gland_refine_pass_outlines_the_gland_again(tmp_path):
    from support.fake_models import write_fake_models

    from scintiseg.models import postprocess
    from scintiseg.models.preprocess import Normalisation, gland_window, logits_to_source, model_input

    plain = load_segmenter(write_fake_models(tmp_path / "plain"))
    # the second stage keeps only the brightest part of the window: a smaller gland
    refined = load_segmenter(write_fake_models(tmp_path / "refined", refine=(40.0, 0.7)))
    assert len(plain.model("gland").stages) == 1 and len(refined.model("gland").stages) == 2
    assert refined.model_idents == plain.model_idents  # one model, one version
    scan = generate_scan(11, matrix=128, kind="normal")
    counts = np.asarray(scan.counts, np.float32)
    first = plain.segment_frame(counts, scan.pixel_spacing_mm).masks
    second = refined.segment_frame(counts, scan.pixel_spacing_mm).masks
    assert first["gland"].any() and 0 < second["gland"].sum() < first["gland"].sum()
    # what the second stage computes: the first stage's window, its model, the same cleaning
    stage = refined.model("gland").stages[1]
    win = gland_window(first["gland"])
    x = model_input(counts, win, stage.stage.size, Normalisation(99.0, 1.5))
    expect = postprocess.clean_gland(
        logits_to_source(stage.run(x[None])[0, 0], win, counts.shape) > 0, scan.pixel_spacing_mm, 20.0,
    )
    assert np.array_equal(second["gland"], expect)
    assert not (second["nodule"] & ~second["gland"]).any()
    # a second stage that finds nothing keeps the first stage's gland
    blind = load_segmenter(write_fake_models(tmp_path / "blind", refine=(40.0, 2.0)))
    assert np.array_equal(blind.segment_frame(counts, scan.pixel_spacing_mm).masks["gland"], first["gland"])
    # a frame without a gland skips the second stage and stays empty
    empty = refined.segment_frames(np.stack([np.zeros_like(counts), counts]), scan.pixel_spacing_mm)
    assert not empty[0].masks["gland"].any() and np.array_equal(empty[1].masks["gland"], second["gland"])
