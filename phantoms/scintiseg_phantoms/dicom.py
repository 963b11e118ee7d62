"""Synthetic scans as DICOM NM Image Storage instances (validated with dciodvfy).

One :class:`Scan` gives a single-frame NM image; several scans of equal matrix, pixel
spacing and isotope give a static multi-frame NM image, one frame per detector/view
(``FrameIncrementPointer`` = Energy Window Vector, Detector Vector). Output is
deterministic: dates, times and demographics come from ``scan.params``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import Tag

from scintiseg.core.uids import deterministic_uid
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

from .record import Scan
from .thyroid.acquisition import ISOTOPE_SPECS

__all__ = ["NM_IMAGE_STORAGE", "deterministic_uid", "scan_to_dataset", "study_uids", "write_study"]

NM_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.20"
_MANUFACTURER = "ScintiSeg synthetic"


def add_supine_head_first(ds: Dataset) -> None:
    """The NM/PET Patient Orientation module of a patient lying supine, head first."""
    orient = code_item("102538003", "SCT", "recumbent")
    orient.PatientOrientationModifierCodeSequence = DicomSequence([code_item("40199007", "SCT", "supine")])
    ds.PatientOrientationCodeSequence = DicomSequence([orient])
    ds.PatientGantryRelationshipCodeSequence = DicomSequence([code_item("102540008", "SCT", "headfirst")])


def _birth_date(acq_date: str, age: int) -> str:
    year, month, day = int(acq_date[:4]), int(acq_date[4:6]), int(acq_date[6:8])
    born = date(year - age, month, min(day, 28))
    return born.strftime("%Y%m%d")


def ds_text(value: float) -> str:
    """A DS string of at most 16 characters."""
    text = f"{value:.6g}"
    return text if len(text) <= 16 else f"{value:.8e}"[:16]


def scan_to_dataset(
    scans: Scan | Sequence[Scan],
    *,
    patient_id: str,
    patient_name: str,
    study_uid: str,
    series_uid: str,
    sop_uid: str,
    study_description: str = "Thyroid scintigraphy",
    series_description: str = "Thyroid anterior static",
    instance_number: int = 1,
) -> Dataset:
    """Build an NM Image Storage dataset (explicit VR little endian, uint16 pixels)."""
    frames = [scans] if isinstance(scans, Scan) else list(scans)
    if not frames:
        raise ValueError("no scan given")
    first = frames[0]
    p = first.params
    shape = first.counts.shape
    for s in frames[1:]:
        if s.counts.shape != shape:
            raise ValueError("all frames must share the same matrix")
        if abs(s.pixel_spacing_mm - first.pixel_spacing_mm) > 1e-6 * first.pixel_spacing_mm:
            raise ValueError("all frames must share the same pixel spacing")
        if s.params["isotope"] != p["isotope"]:
            raise ValueError("all frames must share the same isotope")
    spec = ISOTOPE_SPECS[p["isotope"]]
    acq_date, acq_time = str(p["acquisition_date"]), str(p["acquisition_time"])
    n_frames = len(frames)

    ds = new_instance(NM_IMAGE_STORAGE, sop_uid, character_set="ISO_IR 100", created=(acq_date, acq_time))
    add_patient(ds, Patient(patient_name, patient_id, _birth_date(acq_date, int(p.get("patient_age", 50))),
                            str(p.get("patient_sex", "O"))))
    # General Study / Patient Study
    add_study(ds, Study(study_uid, acq_date, acq_time, description=study_description))
    ds.PatientAge = f"{int(p.get('patient_age', 50)):03d}Y"
    add_series(ds, Series("NM", series_uid, 1, series_description, acq_date, acq_time, body_part="NECK"))
    add_supine_head_first(ds)
    add_equipment(ds, Equipment(_MANUFACTURER, "scintiseg_phantoms", software_versions="1"))
    # General Acquisition / General Image / NM Image; anterior view: the patient's right on the image left
    ds.AcquisitionDate = acq_date
    ds.AcquisitionTime = acq_time
    image_type = ["ORIGINAL", "PRIMARY", "STATIC", "EMISSION"]
    add_general_image(ds, GeneralImage(instance_number, acq_date, acq_time, image_type, ["L", "F"]))
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    ds.ImageComments = "Synthetic scintigraphy (ScintiSeg), not a patient"
    # NM Image
    ds.CountsAccumulated = int(sum(int(s.counts.sum(dtype=np.int64)) for s in frames))
    ds.AcquisitionTerminationCondition = "TIME"
    ds.ActualFrameDuration = int(p.get("frame_duration_s", 300)) * 1000
    # Image Pixel / NM Image Pixel
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = int(shape[0]), int(shape[1])
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelSpacing = [ds_text(first.pixel_spacing_mm), ds_text(first.pixel_spacing_mm)]
    # Multi-frame / NM Multi-frame
    ds.NumberOfFrames = n_frames
    ds.FrameIncrementPointer = [Tag(0x0054, 0x0010), Tag(0x0054, 0x0020)]
    ds.NumberOfEnergyWindows = 1
    ds.EnergyWindowVector = [1] * n_frames
    ds.NumberOfDetectors = n_frames
    ds.DetectorVector = list(range(1, n_frames + 1))
    # NM Isotope
    window = Dataset()
    half = spec.photopeak_kev * spec.window_pct / 200.0
    rng_item = Dataset()
    rng_item.EnergyWindowLowerLimit = ds_text(spec.photopeak_kev - half)
    rng_item.EnergyWindowUpperLimit = ds_text(spec.photopeak_kev + half)
    window.EnergyWindowRangeSequence = DicomSequence([rng_item])
    window.EnergyWindowName = f"{spec.name} {spec.photopeak_kev:g} keV"
    ds.EnergyWindowInformationSequence = DicomSequence([window])
    pharm = Dataset()
    pharm.RadionuclideCodeSequence = DicomSequence([code_item(*spec.radionuclide_code)])
    oral = spec.name == "I-131"
    pharm.RadiopharmaceuticalRoute = "Oral" if oral else "Intravenous"
    pharm.AdministrationRouteCodeSequence = DicomSequence(
        [code_item("26643006", "SCT", "Oral") if oral else code_item("47625008", "SCT", "Intravenous")]
    )
    pharm.RadionuclideTotalDose = ds_text(float(p.get("dose_mbq", 100.0)))
    pharm.Radiopharmaceutical = spec.pharmaceutical
    pharm.RadiopharmaceuticalCodeSequence = DicomSequence([code_item(*spec.pharmaceutical_code)])
    ds.RadiopharmaceuticalInformationSequence = DicomSequence([pharm])
    # NM Detector
    detectors = []
    for s in frames:
        sp_ = s.params
        det = Dataset()
        pinhole = sp_["collimator"] == "pinhole"
        det.CollimatorGridName = str(sp_.get("collimator_model", "PINHOLE"))
        det.CollimatorType = "PINH" if pinhole else "PARA"
        det.FieldOfViewShape = "RECTANGLE"
        det.FieldOfViewDimensions = [540, 400]
        det.FocalDistance = 230 if pinhole else None
        det.XFocusCenter = "0" if pinhole else None
        det.YFocusCenter = "0" if pinhole else None
        zoom = 400.0 / (float(sp_["fov_mm"]) if not pinhole else 400.0)
        det.ZoomFactor = [ds_text(max(zoom, 1.0)), ds_text(max(zoom, 1.0))]
        # anterior view, supine head first: rows run to the patient's left (+x),
        # columns to the feet (-z); position of the first pixel centre (mm)
        n_, sp = s.counts.shape[1], s.pixel_spacing_mm
        det.ImageOrientationPatient = ["1", "0", "0", "0", "0", "-1"]
        det.ImagePositionPatient = [ds_text(-(n_ / 2 - 0.5) * sp), "0", ds_text((n_ / 2 - 0.5) * sp)]
        det.ViewCodeSequence = DicomSequence([code_item("399321004", "SCT", "Anterior projection")])
        detectors.append(det)
    ds.DetectorInformationSequence = DicomSequence(detectors)

    pixels = np.stack([s.counts.astype("<u2", copy=False) for s in frames])
    ds.PixelData = (pixels[0] if n_frames == 1 else pixels).tobytes()
    return ds


def study_uids(seed: int, n_instances: int) -> tuple[str, str, list[str]]:
    """Deterministic (study, series, [sop...]) UIDs for a synthetic study of ``seed``."""
    base = ("scintiseg-synthetic", str(seed))
    study = deterministic_uid(*base, "study")
    series = deterministic_uid(*base, "series")
    sops = [deterministic_uid(*base, "sop", str(i)) for i in range(n_instances)]
    return study, series, sops


def write_study(scans: Scan | Sequence[Scan], out_dir: str | Path, seed: int) -> list[Path]:
    """Write one study (one series, one single-frame NM instance per scan) to ``out_dir``.

    Patient ID ``SYN<seed>``; UIDs derived from ``seed`` (see :func:`study_uids`).
    Returns the written file paths (``NM_<seed>_<index>.dcm``).
    """
    items = [scans] if isinstance(scans, Scan) else list(scans)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    study, series, sops = study_uids(seed, len(items))
    paths = []
    for i, (scan, sop) in enumerate(zip(items, sops, strict=True)):
        ds = scan_to_dataset(
            scan,
            patient_id=f"SYN{seed:08d}",
            patient_name=f"SYNTHETIC^CASE{seed}",
            study_uid=study,
            series_uid=series,
            sop_uid=sop,
            instance_number=i + 1,
        )
        path = out / f"NM_{seed}_{i + 1:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
