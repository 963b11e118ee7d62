"""scintiseg.dicom.nm: which instances are NM images, their frames and pixel spacing."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import JPEG2000Lossless
from support.nm_fixtures import (
    SIZES,
    counts_image,
    error_lines,
    make_nm,
    make_sc_nm,
    run_dciodvfy,
    to_bytes,
)

from scintiseg.dicom.nm import (
    NM_IMAGE_STORAGE,
    NM_IMAGE_STORAGE_RETIRED,
    NotNMImageError,
    UnreadableImageError,
    is_nm_image,
    nm_frames,
    pixel_spacing_mm,
)


def reread(ds: pydicom.Dataset) -> pydicom.Dataset:
    return pydicom.dcmread(io.BytesIO(to_bytes(ds)))


@pytest.mark.parametrize(
    ("size", "frames"), [(size, None) for size in SIZES] + [(64, 3), (128, 3)]
)
def test_fixture_is_valid_nm(size: int, frames: int | None, tmp_path: Path) -> None:
    """The test sources are themselves conformant NM Image Storage objects."""
    output = run_dciodvfy(to_bytes(make_nm(size, frames=frames)), tmp_path)
    print(output)
    assert "NMImage" in [line.strip() for line in output.splitlines()], output
    assert error_lines(output) == [], output


# ------------------------------------------------------------- is_nm_image


def test_is_nm_image() -> None:
    nm = make_nm(64)
    assert nm.SOPClassUID == NM_IMAGE_STORAGE and is_nm_image(nm)
    assert is_nm_image(make_nm(64, frames=3))

    del nm.PixelData  # metadata only (e.g. an Orthanc tags query): still NM
    assert is_nm_image(nm)

    ct = make_nm(64)
    ct.SOPClassUID, ct.Modality = "1.2.840.10008.5.1.4.1.1.2", "CT"
    assert not is_nm_image(ct)

    seg = pydicom.Dataset()
    seg.SOPClassUID, seg.Modality = "1.2.840.10008.5.1.4.1.1.66.4", "SEG"
    assert not is_nm_image(seg)
    assert not is_nm_image(pydicom.Dataset())


def test_is_nm_image_by_modality_needs_pixels() -> None:
    sc = make_sc_nm(64)
    assert is_nm_image(sc)  # Secondary Capture, Modality NM, with pixels
    retired = make_nm(64)
    retired.SOPClassUID = NM_IMAGE_STORAGE_RETIRED
    assert is_nm_image(retired)
    del sc.PixelData
    assert not is_nm_image(sc)  # e.g. an NM-modality report: no pixels
    sc.PixelData = b"\0\0"
    sc.Modality = "OT"
    assert not is_nm_image(sc)


# --------------------------------------------------------------- nm_frames


@pytest.mark.parametrize("size", SIZES)
def test_frames_single(size: int) -> None:
    ds = reread(make_nm(size))
    frames = nm_frames(ds)
    assert frames.shape == (1, size, size) and frames.dtype == np.float32
    np.testing.assert_array_equal(frames[0], counts_image(size, size, 0))


def test_frames_multi_in_order() -> None:
    ds = reread(make_nm(128, frames=3, seed=7))
    frames = nm_frames(ds)
    assert frames.shape == (3, 128, 128) and frames.dtype == np.float32
    for f in range(3):
        np.testing.assert_array_equal(frames[f], counts_image(128, 128, f, seed=7))


def test_frames_non_square() -> None:
    pixels = np.arange(2 * 64 * 128, dtype=np.uint16).reshape(2, 64, 128)
    frames = nm_frames(reread(make_nm(64, 128, frames=2, pixels=pixels)))
    np.testing.assert_array_equal(frames, pixels.astype(np.float32))


def test_frames_rescale_applied() -> None:
    ds = reread(make_nm(64, rescale=(0.5, -3.0)))
    np.testing.assert_allclose(nm_frames(ds)[0], counts_image(64, 64) * 0.5 - 3.0)


def test_frames_rejects_non_nm() -> None:
    ds = make_nm(64)
    ds.SOPClassUID, ds.Modality = "1.2.840.10008.5.1.4.1.1.2", "CT"
    with pytest.raises(NotNMImageError, match="not a nuclear-medicine image") as info:
        nm_frames(ds)
    assert "CT Image Storage" in str(info.value) and "Modality CT" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_frames_without_pixel_data() -> None:
    ds = make_nm(64)
    del ds.PixelData
    with pytest.raises(UnreadableImageError, match="has no pixel data"):
        nm_frames(ds)


def test_frames_colour_refused() -> None:
    ds = make_nm(64)
    ds.SamplesPerPixel = 3
    with pytest.raises(UnreadableImageError, match="colour"):
        nm_frames(ds)


def test_frames_undecodable() -> None:
    ds = make_nm(64)
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    ds.PixelData = b"\xff\x4f\xff\x51" + b"\0" * 60  # not a real codestream
    with pytest.raises(UnreadableImageError, match="cannot decode the pixel data") as info:
        nm_frames(ds)
    assert "JPEG 2000" in str(info.value)


def test_frames_truncated_pixel_data() -> None:
    ds = make_nm(64, frames=3)
    ds.PixelData = ds.PixelData[: 64 * 64 * 2]
    with pytest.raises(UnreadableImageError):
        nm_frames(ds)


# ------------------------------------------------------------ pixel spacing


def test_pixel_spacing() -> None:
    assert pixel_spacing_mm(make_nm(64)) == (2.2, 2.2)
    assert pixel_spacing_mm(reread(make_nm(64, pixel_spacing=(1.5, 2.0)))) == (1.5, 2.0)
    assert pixel_spacing_mm(make_nm(64, pixel_spacing=None)) is None  # type 2, empty
    ds = make_nm(64)
    del ds.PixelSpacing
    assert pixel_spacing_mm(ds) is None
    for bad in ([0.0, 2.0], [-1.0, 1.0], [2.0]):
        ds.PixelSpacing = bad
        assert pixel_spacing_mm(ds) is None, bad


def test_limits_are_checked_from_the_header_before_decoding() -> None:
    from scintiseg.dicom.nm import MAX_FRAMES, OutOfScopeImageError

    dynamic = make_nm(rows=16, frames=MAX_FRAMES + 1)
    with pytest.raises(OutOfScopeImageError, match=r"^dynamic: .* has 33 frames"):
        nm_frames(dynamic)
    tiny = make_nm(rows=4)
    with pytest.raises(OutOfScopeImageError, match=r"^matrix: .* 4x4 matrix"):
        nm_frames(tiny)
    assert nm_frames(make_nm(rows=16, frames=MAX_FRAMES)).shape == (MAX_FRAMES, 16, 16)


def test_palette_images_are_not_counts() -> None:
    ds = make_nm(rows=16)
    ds.PhotometricInterpretation = "PALETTE COLOR"
    with pytest.raises(UnreadableImageError, match="PALETTE COLOR"):
        nm_frames(ds)
