"""Bad input on the real Orthanc: each case gets a recorded reason, Orthanc stays up, nothing is lost.

One Orthanc for the module; every case is its own study, made here with pydicom from a
synthetic thyroid scan, and sent with storescu (REST only where no DICOM client would send
it: a truncated file). All go in first, then each test checks its case's result.

Compressed transfer syntaxes are decoded by maintained decoders pinned in
constraints.txt: pydicom's own RLE and deflate support, pyjpegls (CharLS) for JPEG-LS,
pylibjpeg-libjpeg for JPEG baseline and pylibjpeg-openjpeg for JPEG 2000.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)
from support.orthanc_harness import STABLE_AGE, OrthancServer, ct_file, make_study, wait_for

pytestmark = pytest.mark.integration

SEED0 = 5000


def _eight_bit_jpeg(ds: Dataset) -> None:
    """JPEG baseline (8-bit): counts scaled to 0..255, encoded by Pillow, encapsulated."""
    from PIL import Image
    from pydicom.encaps import encapsulate

    counts = ds.pixel_array.astype(np.float64)
    grey = np.clip(counts / max(1.0, float(counts.max())) * 255.0, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(grey).save(buf, format="JPEG", quality=95)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = encapsulate([buf.getvalue()])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit


def _matrix(n: int, frames: int = 1) -> Callable[[Dataset], None]:
    def change(ds: Dataset) -> None:
        rng = np.random.default_rng(n)
        ds.Rows = ds.Columns = n
        ds.NumberOfFrames = frames
        ds.PixelData = rng.poisson(40, (frames, n, n)).astype("<u2").tobytes()
        if frames > 1:
            for keyword in ("EnergyWindowVector", "DetectorVector"):
                if keyword in ds:
                    ds[keyword].value = [1] * frames
            ds.NumberOfDetectors = frames

    return change


def _rgb(ds: Dataset) -> None:
    counts = np.asarray(ds.pixel_array, dtype=np.uint16)
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.PixelData = np.repeat(counts[..., None], 3, axis=-1).astype("<u2").tobytes()


def _palette(ds: Dataset) -> None:
    ds.PhotometricInterpretation = "PALETTE COLOR"
    for n, colour in enumerate(("Red", "Green", "Blue")):
        ds.add_new(0x00281101 + n, "US", [256, 0, 16])  # the LUT descriptors (US or SS: say which)
        setattr(ds, f"{colour}PaletteColorLookupTableData", np.arange(256, dtype="<u2").tobytes())


def _private_tags(ds: Dataset) -> None:
    block = ds.private_block(0x0019, "SCINTISEG TEST", create=True)
    block.add_new(0x10, "OB", bytes(8 * 1024 * 1024))  # an 8 MiB private blob
    for i in range(0x11, 0x60):
        block.add_new(i, "LO", f"vendor value {i}")


def _compress(syntax: Any) -> Callable[[Dataset], None]:
    return lambda ds: ds.compress(syntax)


def _deflate(ds: Dataset) -> None:
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian


def _del(*keywords: str) -> Callable[[Dataset], None]:
    def change(ds: Dataset) -> None:
        for keyword in keywords:
            delattr(ds, keyword)

    return change


def _short_pixels(ds: Dataset) -> None:
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]


@dataclass(frozen=True)
class Case:
    """One bad input: how the scan is changed, and the result it must get."""

    change: Callable[[Dataset], None] | None
    status: str
    reason: str  # a substring of the study's (or image's) reason
    segs: int = 0
    #: storescu options: propose the file's own transfer syntax
    scu: tuple[str, ...] = ()


CASES: dict[str, Case] = {
    "no_pixel_data": Case(_del("PixelData"), "failed", "has no pixel data"),
    "rgb": Case(_rgb, "failed", "samples per pixel"),
    "palette": Case(_palette, "failed", "photometric interpretation PALETTE COLOR"),
    "jpeg_baseline": Case(_eight_bit_jpeg, "done", "1 image(s) segmented", 1, ("-xy",)),
    "jpeg_ls": Case(_compress(JPEGLSLossless), "done", "1 image(s) segmented", 1, ("-xt",)),
    "jpeg_2000": Case(_compress(JPEG2000Lossless), "done", "1 image(s) segmented", 1, ("-xv",)),
    "rle": Case(_compress(RLELossless), "done", "1 image(s) segmented", 1, ("-xr",)),
    "deflate": Case(_deflate, "done", "1 image(s) segmented", 1, ("-xd",)),
    "matrix_1x1": Case(_matrix(1), "skipped", "matrix: "),
    # read and segmented, but 2048 pixels of noise at the phantom's pixel size draw an outline
    # metres wide: no thyroid's (the gland card's outline limits), so nothing is stored
    "matrix_2048": Case(_matrix(2048), "skipped", "not an image this model was made for"),
    "dynamic_120_frames": Case(_matrix(64, frames=120), "skipped", "dynamic: "),
    "pixel_data_too_short": Case(_short_pixels, "failed", "cannot decode the pixel data"),
    "no_pixel_spacing": Case(_del("PixelSpacing"), "done", "1 image(s) segmented", 1),
    "large_private_tags": Case(_private_tags, "done", "1 image(s) segmented", 1),
}


def _study_file(out: Path, seed: int, change: Callable[[Dataset], None] | None) -> tuple[str, Path]:
    study = make_study(out, seed=seed)
    ds = pydicom.dcmread(study.files[0])
    if change is not None:
        change(ds)
    path = out / "case.dcm"
    ds.save_as(path, enforce_file_format=True)
    return study.study_uid, path


@pytest.fixture(scope="module")
def sent(orthanc: OrthancServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every case sent, plus a truncated file, a mixed NM + CT study, and a baseline run count."""
    root = tmp_path_factory.mktemp("bad-input")
    uids: dict[str, str] = {}
    for n, (name, case) in enumerate(CASES.items()):
        uid, path = _study_file(root / name, SEED0 + n, case.change)
        orthanc.storescu([path], *case.scu)
        uids[name] = uid
    # a truncated file: no DICOM client sends one, a web upload may; Orthanc answers, stays up
    _, whole = _study_file(root / "truncated", SEED0 + 90, None)
    data = whole.read_bytes()
    truncated: dict[str, Any] = {}
    try:
        truncated = orthanc.upload(data[: len(data) * 2 // 3])
    except OSError as exc:  # urllib's HTTPError: Orthanc refused the file
        truncated = {"refused": str(exc)}
    truncated["study_uid"] = str(pydicom.dcmread(whole, stop_before_pixels=True).StudyInstanceUID)
    # one study holding an NM and a CT series
    mixed = make_study(root / "mixed", seed=SEED0 + 91)
    _, ct_path = ct_file(root / "mixed-ct", seed=SEED0 + 91)
    _into_study(ct_path, mixed.files[0])
    orthanc.storescu([*mixed.files, ct_path])
    return {"uids": uids, "truncated": truncated, "mixed": mixed.study_uid, "root": root}


def _into_study(path: Path, of: Path) -> None:
    """Rewrite the file at ``path`` into the study (and patient) of the file ``of``."""
    ds, ref = pydicom.dcmread(path), pydicom.dcmread(of, stop_before_pixels=True)
    for keyword in ("StudyInstanceUID", "PatientID", "PatientName"):
        setattr(ds, keyword, getattr(ref, keyword))
    ds.save_as(path, enforce_file_format=True)


def _reasons(result: dict[str, Any]) -> str:
    return " | ".join([str(result.get("reason"))] + [str(e.get("reason")) for e in result["images"].values()])


@pytest.mark.parametrize("name", list(CASES))
def test_each_bad_input_gets_its_reason(orthanc: OrthancServer, sent: dict[str, Any], name: str) -> None:
    case = CASES[name]
    result = orthanc.wait_result(sent["uids"][name], timeout=STABLE_AGE + 90, statuses=(case.status,))
    assert case.reason in _reasons(result), _reasons(result)
    sid = orthanc.study_id(sent["uids"][name])
    assert sid is not None
    assert len(orthanc.series_by_modality(sid).get("SEG", [])) == case.segs
    if case.status == "failed":
        assert result["retriable"] is False, "bad input must not be retried"
    if name == "no_pixel_spacing":
        (image,) = result["images"].values()
        gland = image["frames"][0]["labels"]["gland"]
        assert gland["pixels"] > 0 and gland["area_mm2"] is None


def test_a_truncated_file_is_refused_or_recorded_and_orthanc_serves_on(
    orthanc: OrthancServer, sent: dict[str, Any]
) -> None:
    truncated = sent["truncated"]
    if "refused" in truncated:  # Orthanc did not store it: nothing to process, nothing lost
        assert orthanc.study_id(truncated["study_uid"]) is None
    else:  # stored as far as it goes: the job records why it cannot segment it
        result = orthanc.wait_result(truncated["study_uid"], timeout=STABLE_AGE + 60,
                                     statuses=("failed", "skipped"))
        assert result["reason"] and result["seg_instance_ids"] == []
    assert orthanc.get("/system")["Version"]
    assert orthanc.get("/scintiseg/status")["state"] == "running"


def test_a_study_mixing_nm_and_ct_segments_the_nm_only(orthanc: OrthancServer, sent: dict[str, Any]) -> None:
    result = orthanc.wait_result(sent["mixed"], timeout=STABLE_AGE + 60)
    sid = orthanc.study_id(sent["mixed"])
    assert sid is not None
    series = orthanc.series_by_modality(sid)
    assert len(series["NM"]) == 1 and len(series["CT"]) == 1 and len(series["SEG"]) == 1
    assert len(result["images"]) == 1


def test_a_seg_or_an_unrelated_object_sent_into_a_processed_study_changes_nothing(
    orthanc: OrthancServer, sent: dict[str, Any]
) -> None:
    uid = sent["uids"]["rle"]
    before = orthanc.wait_result(uid, timeout=STABLE_AGE + 90)
    sid = orthanc.study_id(uid)
    assert sid is not None
    orthanc.wait_idle()
    runs = orthanc.get("/scintiseg/status")["pipeline_runs"]
    # a SEG from elsewhere (our SEG under new UIDs) and a CT image, into the same study
    foreign = orthanc.instance(before["seg_instance_ids"][0])
    foreign.SOPInstanceUID = generate_uid(entropy_srcs=["foreign-seg"])
    foreign.file_meta.MediaStorageSOPInstanceUID = foreign.SOPInstanceUID
    foreign.SeriesInstanceUID = generate_uid(entropy_srcs=["foreign-seg-series"])
    root: Path = sent["root"]
    seg_path = root / "foreign-seg.dcm"
    foreign.save_as(seg_path, enforce_file_format=True)
    _, ct_path = ct_file(root / "foreign-ct", seed=SEED0 + 92)
    nm_id = orthanc.series_by_modality(sid)["NM"][0]
    nm_path = root / "nm-of-rle.dcm"
    nm_path.write_bytes(orthanc.request("GET", f"/instances/{nm_id}/file"))
    _into_study(ct_path, nm_path)
    orthanc.storescu([seg_path, ct_path], "-R")  # -R: a context for each file's SOP class (SEG)

    def settled() -> dict[str, Any] | None:
        r = orthanc.result(sid)
        return r if r and r["study_last_update"] != before["study_last_update"] else None

    after = wait_for("the study to settle after the new objects", settled, STABLE_AGE + 30)
    orthanc.wait_idle()
    assert orthanc.get("/scintiseg/status")["pipeline_runs"] == runs, "a model ran again"
    assert after["images"] == before["images"] and after["status"] == "done"
    assert len(orthanc.series_by_modality(sid)["SEG"]) == 2  # ours and the foreign one, no new one


def test_orthanc_and_the_plugin_are_up_after_all_cases(orthanc: OrthancServer, sent: dict[str, Any]) -> None:
    for name, case in CASES.items():
        orthanc.wait_result(sent["uids"][name], timeout=STABLE_AGE + 90, statuses=(case.status,))
    orthanc.wait_idle()
    status = orthanc.get("/scintiseg/status")
    assert status["state"] == "running" and orthanc.get("/system")["DicomAet"]
    assert copy.deepcopy(status["worker"]["running"]) == []
