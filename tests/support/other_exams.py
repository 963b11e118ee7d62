"""NM headers of the exams a department's Orthanc receives besides thyroid scans.

:func:`as_exam` rewrites an NM dataset's descriptions, body part and radiopharmaceutical
as a camera writes them for that exam (the codes are SNOMED CT, the texts as departments
type them, in several languages); the pixels stay what they were, so a model's refusal
can only come from the header.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydicom import Dataset
from pydicom.sequence import Sequence as DicomSequence

from scintiseg.dicom.builder import code_item


@dataclass(frozen=True)
class Exam:
    study_description: str
    series_description: str
    radiopharmaceutical: str
    radionuclide: tuple[str, str]  # code value, meaning
    body_part: str | None = None


TC99M = ("72454006", "^99m^Technetium")

#: exams that are not thyroid scans, by name
OTHER_EXAMS: dict[str, Exam] = {
    "renal DMSA": Exam("Renal DMSA scan", "POST", "Tc99m DMSA", TC99M, "KIDNEY"),
    "renal DMSA (fr)": Exam("Scintigraphie rénale", "DMSA post", "Succimer Tc99m", TC99M),
    "renal MAG3": Exam("NM Renogram", "Dynamic", "Tc-99m mertiatide (MAG3)", TC99M, "ABDOMEN"),
    "bone": Exam("Whole body bone scan", "ANT", "Tc99m MDP", TC99M, "WHOLEBODY"),
    "bone (de)": Exam("Knochenszintigraphie", "Statik Thorax", "Tc-99m HDP", TC99M),
    "cardiac": Exam("Myocardial perfusion stress", "Planar ANT", "Tc99m sestamibi", TC99M, "HEART"),
    "cardiac thallium": Exam("NM Heart", "Rest", "Thallous chloride", ("79277006", "^201^Thallium")),
    "lung perfusion": Exam("Lung V/Q", "Perfusion POST", "Tc99m MAA", TC99M, "CHEST"),
    "lung perfusion (fr)": Exam("Scintigraphie pulmonaire", "Q POST", "Macroagrégats Tc99m", TC99M),
    "lung ventilation": Exam("NM Lung", "Ventilation", "Technegas", TC99M, "CHEST"),
    "parathyroid": Exam("Parathyroid scan", "Early ANT", "Tc99m sestamibi", TC99M, "NECK"),
}

#: thyroid scans as departments write them (each must still get the thyroid models)
THYROID_EXAMS: dict[str, Exam] = {
    "pertechnetate": Exam("Thyroid scintigraphy", "THYROID ANT", "Tc-99m pertechnetate", TC99M, "NECK"),
    "iodine-123": Exam("NM Thyroid", "Pinhole ANT", "Sodium iodide I-123", ("21572004", "^123^Iodine"), "THYROID"),
    "iodine-131": Exam("Thyroid I-131", "ANT", "Sodium iodide I-131", ("1368003", "^131^Iodine")),
    "french": Exam("Scintigraphie thyroïdienne", "Thyroïde face", "Pertechnétate de sodium", TC99M),
    "german": Exam("Schilddrüsenszintigraphie", "Hals ventral", "Tc-99m Pertechnetat", TC99M, "NECK"),
}


def as_exam(ds: Dataset, exam: Exam) -> Dataset:
    """``ds`` with the header of ``exam`` (in place; returned for chaining)."""
    ds.SpecificCharacterSet = "ISO_IR 192"  # the descriptions are not all ASCII
    ds.StudyDescription = exam.study_description
    ds.SeriesDescription = exam.series_description
    if exam.body_part is None:
        ds.pop("BodyPartExamined", None)
    else:
        ds.BodyPartExamined = exam.body_part
    item = Dataset()
    item.Radiopharmaceutical = exam.radiopharmaceutical
    item.RadionuclideCodeSequence = DicomSequence([code_item(exam.radionuclide[0], "SCT", exam.radionuclide[1])])
    ds.RadiopharmaceuticalInformationSequence = DicomSequence([item])
    return ds


def silent(ds: Dataset) -> Dataset:
    """``ds`` with a header that says nothing of its exam (no tracer, no body part, plain words)."""
    ds.StudyDescription, ds.SeriesDescription = "NM", "STATIC"
    for keyword in ("BodyPartExamined", "RadiopharmaceuticalInformationSequence", "ProtocolName"):
        ds.pop(keyword, None)
    return ds
