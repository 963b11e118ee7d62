"""DICOM plumbing shared by every object ScintiSeg writes (SEG, preview Secondary Capture).

A derived object joins its source's study: :func:`copy_patient_and_study`
copies the Patient and Study modules, and :func:`file_meta` gives the Part-10
header. Pure pydicom.
"""

from __future__ import annotations

import copy

from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian

from scintiseg import __version__

__all__ = [
    "PATIENT_ATTRIBUTES",
    "REQUIRED_EMPTY_ATTRIBUTES",
    "STUDY_ATTRIBUTES",
    "copy_patient_and_study",
    "file_meta",
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
