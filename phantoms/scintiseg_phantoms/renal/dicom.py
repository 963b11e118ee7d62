"""A DMSA study's views as NM Image Storage instances, as gamma cameras write them.

One single-frame instance per view, in one series: Tc-99m succimer (DMSA) in the
Radiopharmaceutical Information Sequence (SNOMED CT codes of DICOM CID 25 and CID 18),
the view in the Detector Information's View Code Sequence (CID 26: posterior
399001007, anterior 399321004), with the matching Image Orientation (Patient) and
Patient Orientation, study description "Renal DMSA scan", body part KIDNEY.
"""

from __future__ import annotations

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

from ..dicom import add_supine_head_first, ds_text
from .study import RenalStudy

__all__ = ["VIEW_CODES", "renal_study_uids", "view_to_dataset", "write_renal_study"]

NM_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.20"
#: view -> (View Code Sequence code, meaning, Image Orientation (Patient), Patient Orientation)
VIEW_CODES: dict[str, tuple[str, str, list[str], list[str]]] = {
    # seen from behind: columns run to the patient's right, rows to the feet
    "posterior": ("399001007", "Posterior projection", ["-1", "0", "0", "0", "0", "-1"], ["R", "F"]),
    "anterior": ("399321004", "Anterior projection", ["1", "0", "0", "0", "0", "-1"], ["L", "F"]),
}
DMSA = ("24511001", "SCT", "Technetium Tc^99m^ succimer")
TC99M = ("72454006", "SCT", "^99m^Technetium")


def renal_study_uids(seed: int) -> tuple[str, str, dict[str, str]]:
    """Deterministic (study, series, {view: SOP instance}) UIDs of the DMSA study of ``seed``."""
    base = ("scintiseg-synthetic-dmsa", str(seed))
    return (deterministic_uid(*base, "study"), deterministic_uid(*base, "series"),
            {v: deterministic_uid(*base, "sop", v) for v in VIEW_CODES})


def view_to_dataset(
    study: RenalStudy, view: str, *, patient_id: str, patient_name: str, study_uid: str, series_uid: str,
    sop_uid: str, instance_number: int = 1,
) -> Dataset:
    """One view of ``study`` as an NM Image Storage dataset (uint16 pixels)."""
    code, meaning, orientation, patient_orientation = VIEW_CODES[view]
    image = study.view(view)
    p = study.params
    date, time = str(p["acquisition_date"]), str(p["acquisition_time"])
    ds = new_instance(NM_IMAGE_STORAGE, sop_uid, character_set="ISO_IR 100", created=(date, time))
    add_patient(ds, Patient(patient_name, patient_id, "20180101", "O"))
    add_study(ds, Study(study_uid, date, time, description="Renal DMSA scan"))
    add_series(ds, Series("NM", series_uid, 1, "DMSA static", date, time, body_part="KIDNEY"))
    ds.ImageLaterality = "B"  # a paired organ, both kidneys in the image (then no series Laterality)
    add_supine_head_first(ds)
    add_equipment(ds, Equipment("ScintiSeg synthetic", "scintiseg_phantoms", software_versions="1"))
    ds.AcquisitionDate, ds.AcquisitionTime = date, time
    add_general_image(ds, GeneralImage(instance_number, date, time, ["ORIGINAL", "PRIMARY", "STATIC", "EMISSION"],
                                       patient_orientation))
    ds.ImageComments = "Synthetic DMSA scintigraphy (ScintiSeg), not a patient"
    ds.CountsAccumulated = int(image.counts.sum(dtype=np.int64))
    ds.ActualFrameDuration = 600000
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = image.counts.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelSpacing = [ds_text(study.pixel_spacing_mm)] * 2
    ds.NumberOfFrames = 1
    ds.FrameIncrementPointer = [Tag(0x0054, 0x0010), Tag(0x0054, 0x0020)]
    ds.NumberOfEnergyWindows, ds.EnergyWindowVector = 1, [1]
    ds.NumberOfDetectors, ds.DetectorVector = 1, [1]
    window, limits = Dataset(), Dataset()
    limits.EnergyWindowLowerLimit, limits.EnergyWindowUpperLimit = "126", "154"
    window.EnergyWindowRangeSequence = DicomSequence([limits])
    window.EnergyWindowName = "Tc-99m 140 keV"
    ds.EnergyWindowInformationSequence = DicomSequence([window])
    pharm = Dataset()
    pharm.RadionuclideCodeSequence = DicomSequence([code_item(*TC99M)])
    pharm.RadiopharmaceuticalRoute = "Intravenous"
    pharm.RadionuclideTotalDose = "80"
    pharm.Radiopharmaceutical = "Tc99m DMSA"
    pharm.RadiopharmaceuticalCodeSequence = DicomSequence([code_item(*DMSA)])
    ds.RadiopharmaceuticalInformationSequence = DicomSequence([pharm])
    det = Dataset()
    det.CollimatorGridName, det.CollimatorType = "LEHR", "PARA"
    det.FieldOfViewShape, det.FieldOfViewDimensions = "RECTANGLE", [540, 400]
    det.ImageOrientationPatient = orientation
    n, px = image.counts.shape[1], study.pixel_spacing_mm
    det.ImagePositionPatient = [ds_text((n / 2 - 0.5) * px * (1 if view == "posterior" else -1)), "0",
                                ds_text((n / 2 - 0.5) * px)]
    det.ViewCodeSequence = DicomSequence([code_item(code, "SCT", meaning)])
    ds.DetectorInformationSequence = DicomSequence([det])
    ds.PixelData = image.counts.astype("<u2", copy=False).tobytes()
    return ds


def write_renal_study(study: RenalStudy, out_dir: str | Path, seed: int) -> list[Path]:
    """Write every view of ``study`` (one series) to ``out_dir``; returns the file paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    study_uid, series_uid, sops = renal_study_uids(seed)
    paths = []
    for i, view in enumerate(v.view for v in study.views):
        ds = view_to_dataset(study, view, patient_id=f"DMSA{seed:06d}", patient_name=f"SYNTHETIC^DMSA{seed}",
                             study_uid=study_uid, series_uid=series_uid, sop_uid=sops[view], instance_number=i + 1)
        path = out / f"DMSA_{seed}_{view}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
