"""The common DICOM modules, built in one place for every dataset ScintiSeg writes.

The SEG writer (:mod:`scintiseg.dicom.seg.writer`), the preview Secondary Capture
(:mod:`scintiseg.pipeline.preview`) and the synthetic NM images of the phantoms build
their datasets from these pieces; each piece sets the attributes of one PS3.3 module
and nothing else:

* :func:`new_instance`: the Part-10 header (:func:`file_meta`) and SOP Common;
* :func:`derived_instance`: a new instance in its source's study (its Patient and Study
  modules copied by :func:`copy_patient_and_study`);
* :func:`add_patient`, :func:`add_study`: the Patient and General Study modules of an
  original (:class:`Patient`, :class:`Study`);
* :func:`add_series`, :func:`add_equipment`, :func:`add_general_image`: General Series,
  General Equipment and General Image (:class:`Series`, :class:`Equipment`,
  :class:`GeneralImage`);
* :func:`image_reference`: a reference to a source image (SOP class and instance);
* :func:`code_item`: a coded item (Code Value, Coding Scheme Designator, Code Meaning).

Values are taken as given (never from the clock), so the same arguments give the same
bytes. Pure pydicom.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian

from scintiseg import __version__

__all__ = [
    "PATIENT_ATTRIBUTES",
    "REQUIRED_EMPTY_ATTRIBUTES",
    "STUDY_ATTRIBUTES",
    "Equipment",
    "GeneralImage",
    "Patient",
    "Series",
    "Study",
    "add_equipment",
    "add_general_image",
    "add_patient",
    "add_series",
    "add_study",
    "code_item",
    "copy_patient_and_study",
    "derived_instance",
    "file_meta",
    "image_reference",
    "new_instance",
]

# Root-level attributes of the Patient and Study information entities that a
# derived object copies from its source (PS3.3 Patient, Clinical Trial Subject,
# General Study, Patient Study and Clinical Trial Study modules). Generated
# from highdicom 0.28.2's module tables (``highdicom._standard_utils``), frozen
# here so that the writer does not depend on a private highdicom API.
PATIENT_ATTRIBUTES: tuple[str, ...] = (
    # Patient
    "ReferencedPatientSequence", "PatientName", "PatientID", "IssuerOfPatientID",
    "TypeOfPatientID", "IssuerOfPatientIDQualifiersSequence",
    "SourcePatientGroupIdentificationSequence", "GroupOfPatientsIdentificationSequence",
    "PatientBirthDate", "PatientBirthTime", "PatientBirthDateInAlternativeCalendar",
    "PatientDeathDateInAlternativeCalendar", "PatientAlternativeCalendar", "PatientSex",
    "QualityControlSubject", "StrainDescription", "StrainNomenclature", "StrainStockSequence",
    "StrainAdditionalInformation", "StrainCodeSequence", "GeneticModificationsSequence",
    "OtherPatientNames", "OtherPatientIDsSequence", "ReferencedPatientPhotoSequence",
    "EthnicGroupCodeSequence", "PatientSpeciesDescription", "PatientSpeciesCodeSequence",
    "PatientBreedDescription", "PatientBreedCodeSequence", "BreedRegistrationSequence",
    "ResponsiblePerson", "ResponsiblePersonRole", "ResponsibleOrganization",
    "PatientComments", "PatientIdentityRemoved", "DeidentificationMethod",
    "DeidentificationMethodCodeSequence",
    # Clinical Trial Subject
    "ClinicalTrialSponsorName", "ClinicalTrialProtocolID", "ClinicalTrialProtocolName",
    "IssuerOfClinicalTrialProtocolID", "OtherClinicalTrialProtocolIDsSequence",
    "ClinicalTrialSiteID", "ClinicalTrialSiteName", "IssuerOfClinicalTrialSiteID",
    "ClinicalTrialSubjectID", "IssuerOfClinicalTrialSubjectID",
    "ClinicalTrialSubjectReadingID", "IssuerOfClinicalTrialSubjectReadingID",
    "ClinicalTrialProtocolEthicsCommitteeName",
    "ClinicalTrialProtocolEthicsCommitteeApprovalNumber",
)

STUDY_ATTRIBUTES: tuple[str, ...] = (
    # General Study
    "StudyDate", "StudyTime", "AccessionNumber", "IssuerOfAccessionNumberSequence",
    "ReferringPhysicianName", "ReferringPhysicianIdentificationSequence",
    "ConsultingPhysicianName", "ConsultingPhysicianIdentificationSequence",
    "StudyDescription", "ProcedureCodeSequence", "PhysiciansOfRecord",
    "PhysiciansOfRecordIdentificationSequence", "NameOfPhysiciansReadingStudy",
    "PhysiciansReadingStudyIdentificationSequence", "ReferencedStudySequence",
    "StudyInstanceUID", "StudyID", "RequestingService", "RequestingServiceCodeSequence",
    "ReasonForPerformedProcedureCodeSequence",
    # Patient Study
    "AdmittingDiagnosesDescription", "AdmittingDiagnosesCodeSequence", "PatientAge",
    "PatientSize", "PatientSizeCodeSequence", "PatientBodyMassIndex",
    "MeasuredAPDimension", "MeasuredLateralDimension", "PatientWeight", "MedicalAlerts",
    "Allergies", "Occupation", "SmokingStatus", "AdditionalPatientHistory",
    "PregnancyStatus", "LastMenstrualDate", "PatientSexNeutered", "ReasonForVisit",
    "ReasonForVisitCodeSequence", "AdmissionID", "IssuerOfAdmissionIDSequence",
    "ServiceEpisodeID", "ServiceEpisodeDescription", "IssuerOfServiceEpisodeIDSequence",
    "PatientState",
    # Clinical Trial Study
    "ClinicalTrialTimePointID", "ClinicalTrialTimePointDescription",
    "LongitudinalTemporalOffsetFromEvent", "LongitudinalTemporalEventType",
    "ClinicalTrialTimePointTypeCodeSequence", "IssuerOfClinicalTrialTimePointID",
    "ConsentForClinicalTrialUseSequence",
)

#: Type 2 attributes of those modules: present (possibly empty) in every derived object.
REQUIRED_EMPTY_ATTRIBUTES: tuple[str, ...] = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex",
    "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber",
)


def copy_patient_and_study(target: Dataset, source: Dataset) -> None:
    """Copy the source's Patient and Study modules; add their type-2 attributes, empty, if missing."""
    for keyword in (*PATIENT_ATTRIBUTES, *STUDY_ATTRIBUTES):
        if keyword in source:
            target.add(copy.deepcopy(source[keyword]))
    for keyword in REQUIRED_EMPTY_ATTRIBUTES:
        if keyword not in target:
            setattr(target, keyword, None)


def file_meta(sop_class_uid: str, sop_instance_uid: str) -> FileMetaDataset:
    """The Part-10 header of an object ScintiSeg writes (Explicit VR Little Endian)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class_uid)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = f"SCINTISEG_{__version__}"[:16]
    return meta


def new_instance(
    sop_class_uid: str,
    sop_instance_uid: str,
    character_set: str | None = None,
    created: tuple[str, str] | None = None,
) -> Dataset:
    """A dataset with its Part-10 header and SOP Common module (``created``: date, time)."""
    ds = Dataset()
    ds.file_meta = file_meta(sop_class_uid, sop_instance_uid)
    if character_set:
        ds.SpecificCharacterSet = character_set
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = sop_instance_uid
    if created is not None:
        ds.InstanceCreationDate, ds.InstanceCreationTime = created
    return ds


def derived_instance(source: Dataset, sop_class_uid: str, sop_instance_uid: str) -> Dataset:
    """:func:`new_instance` in ``source``'s study: its Patient and Study modules copied."""
    ds = new_instance(sop_class_uid, sop_instance_uid)
    copy_patient_and_study(ds, source)
    return ds


@dataclass(frozen=True)
class Patient:
    """The Patient module of an original image."""

    name: str
    id: str
    birth_date: str = ""
    sex: str = ""


def add_patient(ds: Dataset, patient: Patient) -> None:
    ds.PatientName = patient.name
    ds.PatientID = patient.id
    ds.PatientBirthDate = patient.birth_date
    ds.PatientSex = patient.sex


@dataclass(frozen=True)
class Study:
    """The General Study module of an original image."""

    instance_uid: str
    date: str
    time: str
    id: str = "1"
    accession_number: str = ""
    description: str | None = None
    referring_physician_name: str = ""


def add_study(ds: Dataset, study: Study) -> None:
    ds.StudyInstanceUID = study.instance_uid
    ds.StudyDate = study.date
    ds.StudyTime = study.time
    ds.ReferringPhysicianName = study.referring_physician_name
    ds.StudyID = study.id
    ds.AccessionNumber = study.accession_number
    if study.description is not None:
        ds.StudyDescription = study.description


@dataclass(frozen=True)
class Series:
    """The General Series module."""

    modality: str
    instance_uid: str
    number: int
    description: str
    date: str
    time: str
    body_part: str | None = None


def add_series(ds: Dataset, series: Series) -> None:
    ds.Modality = series.modality
    ds.SeriesInstanceUID = series.instance_uid
    ds.SeriesNumber = series.number
    ds.SeriesDescription = series.description
    ds.SeriesDate = series.date
    ds.SeriesTime = series.time
    if series.body_part is not None:
        ds.BodyPartExamined = series.body_part


@dataclass(frozen=True)
class Equipment:
    """The General Equipment module (the Enhanced one needs all four values)."""

    manufacturer: str
    model_name: str | None = None
    serial_number: str | None = None
    software_versions: str | None = None
    station_name: str | None = None


def add_equipment(ds: Dataset, equipment: Equipment) -> None:
    ds.Manufacturer = equipment.manufacturer
    for keyword, value in (
        ("ManufacturerModelName", equipment.model_name),
        ("DeviceSerialNumber", equipment.serial_number),
        ("SoftwareVersions", equipment.software_versions),
        ("StationName", equipment.station_name),
    ):
        if value is not None:
            setattr(ds, keyword, value)


@dataclass(frozen=True)
class GeneralImage:
    """The General Image module's values that every written image carries."""

    instance_number: int
    date: str
    time: str
    image_type: Sequence[str]
    #: type 2C: ``None`` writes it empty
    patient_orientation: Any = None


def add_general_image(ds: Dataset, image: GeneralImage) -> None:
    ds.InstanceNumber = image.instance_number
    ds.ContentDate = image.date
    ds.ContentTime = image.time
    ds.ImageType = list(image.image_type)
    ds.PatientOrientation = image.patient_orientation


def image_reference(source: Dataset) -> Dataset:
    """An item referencing ``source`` (Referenced SOP Class and Instance UIDs)."""
    item = Dataset()
    item.ReferencedSOPClassUID = source.SOPClassUID
    item.ReferencedSOPInstanceUID = source.SOPInstanceUID
    return item


def code_item(value: str, scheme: str, meaning: str) -> Dataset:
    """A coded item of a code sequence."""
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item
