"""What goes into a ScintiSeg segment: coded concepts and the segment spec.

Codes are ``(coding scheme designator, code value, code meaning)`` tuples, the
order used by the model cards (``["SCT", "69748006", "Thyroid"]``).

The defaults below are checked against the DICOM context groups that constrain
them (PS3.16, as shipped with pydicom 3.0):

* Segmented Property Category, CID 7150: ``SCT 91723000 "Anatomical
  Structure"`` and ``SCT 49755003 "Morphologically Abnormal Structure"``.
  Note that ``SCT 123037004`` is *not* in CID 7150: it is SNOMED's "Body
  structure" top concept, which older DICOM editions used under the meaning
  "Anatomical Structure" before CID 7150 switched to ``91723000``. Likewise
  ``49755003`` is now called "Morphologically Abnormal Structure" (formerly
  "... Altered ...").
* Segmented Property Type, CID 7151: ``SCT 69748006 "Thyroid"``, ``SCT
  27925004 "Nodule"``.
* Anatomic Region, CID 4: ``SCT 69748006 "Thyroid"``.
* Algorithm Family, CID 7162: ``DCM 123110 "Artificial Intelligence"``
  (``codes.cid7162.ArtificialIntelligence``).

A :class:`SegmentSpec` holds whatever code its caller gives it (model cards
are the source of truth); the writer checks only that codes are well formed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

Code = tuple[str, str, str]

ANATOMICAL_STRUCTURE: Code = ("SCT", "91723000", "Anatomical Structure")
MORPHOLOGICALLY_ABNORMAL_STRUCTURE: Code = ("SCT", "49755003", "Morphologically Abnormal Structure")
THYROID: Code = ("SCT", "69748006", "Thyroid")
NODULE: Code = ("SCT", "27925004", "Nodule")
ARTIFICIAL_INTELLIGENCE: Code = ("DCM", "123110", "Artificial Intelligence")


@dataclass(frozen=True)
class SegmentSpec:
    """One segment of the SEG, as described by a model card label.

    ``label`` is the model's label value (informative; the SEG numbers its
    segments 1..n in the order they are given to :func:`build_seg`).
    ``algorithm_family`` is a code of CID 7162 (default: Artificial
    Intelligence). The segment algorithm type is always ``AUTOMATIC``.
    """

    label: int
    name: str
    category: Code
    type: Code
    anatomic_region: Code | None
    algorithm_name: str
    algorithm_version: str
    algorithm_family: Code = ARTIFICIAL_INTELLIGENCE

    def with_algorithm(
        self, name: str, version: str, family: Code = ARTIFICIAL_INTELLIGENCE
    ) -> SegmentSpec:
        """This segment as produced by algorithm ``name`` ``version``."""
        return dataclasses.replace(
            self, algorithm_name=name, algorithm_version=version, algorithm_family=family
        )


#: Template for the whole thyroid gland; complete it with :meth:`SegmentSpec.with_algorithm`.
GLAND = SegmentSpec(
    label=1,
    name="Thyroid gland",
    category=ANATOMICAL_STRUCTURE,
    type=THYROID,
    anatomic_region=None,
    algorithm_name="",
    algorithm_version="",
)

#: Template for hypo-fixating ("cold") nodules inside the gland.
COLD_NODULE = SegmentSpec(
    label=1,
    name="Cold nodule",
    category=MORPHOLOGICALLY_ABNORMAL_STRUCTURE,
    type=NODULE,
    anatomic_region=THYROID,
    algorithm_name="",
    algorithm_version="",
)


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

#: Type 2 attributes of those modules: present (possibly empty) in every SEG.
REQUIRED_EMPTY_ATTRIBUTES: tuple[str, ...] = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex",
    "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber",
)
