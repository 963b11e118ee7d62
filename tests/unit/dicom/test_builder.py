"""The common DICOM modules: each piece sets its module's attributes, as given."""

from __future__ import annotations

from support.nm_fixtures import make_nm

from scintiseg.dicom.builder import (
    Equipment,
    GeneralImage,
    Series,
    add_equipment,
    add_general_image,
    add_series,
    derived_instance,
    image_reference,
    new_instance,
)

SC = "1.2.840.10008.5.1.4.1.1.7"


def test_a_new_instance_has_a_header_that_names_it() -> None:
    ds = new_instance(SC, "1.2.3", character_set="ISO_IR 192", created=("20260101", "101500"))
    assert (ds.SOPClassUID, ds.SOPInstanceUID) == (SC, "1.2.3")
    assert (ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID) == (SC, "1.2.3")
    assert ds.file_meta.ImplementationVersionName.startswith("SCINTISEG_")
    assert ds.SpecificCharacterSet == "ISO_IR 192" and ds.InstanceCreationTime == "101500"
    assert "InstanceCreationDate" not in new_instance(SC, "1.2.4")


def test_a_derived_instance_joins_its_source_study_and_keeps_its_type_2_attributes() -> None:
    source = make_nm(64)
    del source.AccessionNumber
    ds = derived_instance(source, SC, "1.2.5")
    assert ds.StudyInstanceUID == source.StudyInstanceUID and ds.PatientID == source.PatientID
    assert "AccessionNumber" in ds and not ds.AccessionNumber  # type 2: present, empty
    assert "SeriesInstanceUID" not in ds  # a new series is the caller's


def test_series_equipment_and_image_modules_set_only_what_is_given() -> None:
    ds = new_instance(SC, "1.2.6")
    add_series(ds, Series("OT", "1.2.7", 9902, "Preview", "20260101", "101500"))
    add_equipment(ds, Equipment("ScintiSeg"))
    add_general_image(ds, GeneralImage(3, "20260101", "101501", ("DERIVED", "SECONDARY")))
    assert (ds.Modality, ds.SeriesNumber, ds.SeriesDescription) == ("OT", 9902, "Preview")
    assert "BodyPartExamined" not in ds and "ManufacturerModelName" not in ds and "SoftwareVersions" not in ds
    assert ds.InstanceNumber == 3 and list(ds.ImageType) == ["DERIVED", "SECONDARY"]
    assert "PatientOrientation" in ds and not ds.PatientOrientation


def test_an_image_reference_names_the_source() -> None:
    source = make_nm(64)
    item = image_reference(source)
    assert (item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID) == (source.SOPClassUID, source.SOPInstanceUID)
