"""scintiseg.dicom.seg: DICOM-SEG of NM scintigraphies, checked with dciodvfy and highdicom."""

from __future__ import annotations

import io
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.sr.codedict import codes
from support.nm_fixtures import error_lines, make_nm, make_sc_nm, run_dciodvfy, to_bytes

from scintiseg.dicom.nm import NotNMImageError
from scintiseg.dicom.seg import (
    ANATOMICAL_STRUCTURE,
    ARTIFICIAL_INTELLIGENCE,
    COLD_NODULE,
    GLAND,
    GLAND_RGB,
    MORPHOLOGICALLY_ALTERED_STRUCTURE,
    NODULE,
    NODULE_RGB,
    SEGMENTATION_STORAGE,
    THYROID,
    SegmentSpec,
    build_seg,
    deterministic_uid,
)
from scintiseg.pipeline.preview import masks_from_seg

SPECS = [
    GLAND.with_algorithm("scintiseg-gland", "1.0.0"),
    COLD_NODULE.with_algorithm("scintiseg-nodule", "1.2.0"),
]

# (rows, frames): frames None is the usual single-frame NM encoding
CASES = [(64, None), (128, None), (256, None), (512, None), (128, 3)]
CASE_IDS = [f"{r}x{r}-{'1f' if f is None else f'{f}f'}" for r, f in CASES]


def thyroid_masks(n_frames: int, size: int, nodule: bool = True) -> np.ndarray:
    """(frames, size, size, 2) bool: two lobes, plus a nodule inside the right lobe."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    masks = np.zeros((n_frames, size, size, 2), dtype=bool)
    for f in range(n_frames):
        r = 0.10 + 0.01 * f  # frames differ, so a frame mix-up is caught
        left = ((yy - 0.5) / (2 * r)) ** 2 + ((xx - 0.40) / r) ** 2 < 1
        right = ((yy - 0.5) / (2 * r)) ** 2 + ((xx - 0.62) / r) ** 2 < 1
        masks[f, :, :, 0] = left | right
        if nodule:
            masks[f, :, :, 1] = ((yy - 0.48) ** 2 + (xx - (0.62 + 0.005 * f)) ** 2) < 0.03**2
    return masks


def build(source: pydicom.Dataset, masks: np.ndarray, **overrides: object) -> pydicom.Dataset:
    kwargs: dict[str, object] = dict(
        series_instance_uid=deterministic_uid("test-series", source.SeriesInstanceUID),
        sop_instance_uid=deterministic_uid("test-sop", source.SOPInstanceUID),
        series_number=9901,
        instance_number=1,
        series_description="ScintiSeg test",
        software_versions="ScintiSeg 0.1.0",
    )
    kwargs.update(overrides)
    return build_seg(source, masks, SPECS, **kwargs)  # type: ignore[arg-type]


def assert_dciodvfy_clean(seg: pydicom.Dataset, tmp_path: Path) -> str:
    output = run_dciodvfy(to_bytes(seg), tmp_path, "seg.dcm")
    print(output)  # shown by pytest on failure
    assert "Segmentation" in [line.strip() for line in output.splitlines()], output
    assert error_lines(output) == [], output
    return output


def read_back(seg: pydicom.Dataset) -> tuple[pydicom.Dataset, hd.seg.Segmentation | None]:
    """The SEG read back by pydicom, and by highdicom's ``segread`` where that reader can.

    highdicom 0.28.2's reader refuses a Pixel Measures item without Slice
    Thickness (see test_highdicom_reader_refuses_its_own_planar_pixel_measures),
    which a planar NM without one gives: then only pydicom reads it here.
    """
    data = to_bytes(seg)
    ds = pydicom.dcmread(io.BytesIO(data))
    measures = ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    hseg = hd.seg.segread(io.BytesIO(data)) if "SliceThickness" in measures else None
    return ds, hseg


def seg_masks(ds: pydicom.Dataset, source: pydicom.Dataset) -> np.ndarray:
    """(frames, rows, cols, 2) gland and nodule masks placed by the SEG's own frame references."""
    gland, nodules = masks_from_seg(ds, source)
    return np.stack([gland.mask, nodules.mask], axis=-1)


# ------------------------------------------------------------ conformance


@pytest.mark.parametrize(("size", "frames"), CASES, ids=CASE_IDS)
def test_seg_is_valid_and_round_trips(size: int, frames: int | None, tmp_path: Path) -> None:
    source = make_nm(size, frames=frames)
    n = int(source.NumberOfFrames)
    masks = thyroid_masks(n, size)
    seg = build(source, masks)

    assert_dciodvfy_clean(seg, tmp_path)
    ds, _ = read_back(seg)

    # the SEG frames map back onto the NM frames through their references
    uid = str(source.SOPInstanceUID)
    assert ds.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == uid
    pixels = seg_masks(ds, source)
    assert pixels.shape == masks.shape
    np.testing.assert_array_equal(pixels, masks)

    # highdicom's reader does the same when the source gives a slice thickness
    thick = make_nm(size, frames=frames, slice_thickness=10.0)
    _, hseg = read_back(build(thick, masks))
    assert hseg is not None
    assert hseg.get_source_image_uids() == [
        (thick.StudyInstanceUID, thick.SeriesInstanceUID, str(thick.SOPInstanceUID))
    ]
    hpixels = hseg.get_pixels_by_source_frame(
        str(thick.SOPInstanceUID), source_frame_numbers=list(range(1, n + 1)), segment_numbers=[1, 2]
    )
    np.testing.assert_array_equal(hpixels.astype(bool), masks)

    # and so do the raw per-frame references with the raw pixel array
    assert ds.NumberOfFrames == 2 * n
    raw = ds.pixel_array.reshape(2 * n, size, size)
    for k, item in enumerate(ds.PerFrameFunctionalGroupsSequence):
        segment, frame = divmod(k, n)
        ref = item.DerivationImageSequence[0].SourceImageSequence[0]
        assert ref.ReferencedSOPInstanceUID == uid
        assert ref.ReferencedSOPClassUID == source.SOPClassUID
        assert ref.ReferencedFrameNumber == frame + 1
        assert ref.SpatialLocationsPreserved == "YES"
        assert item.SegmentIdentificationSequence[0].ReferencedSegmentNumber == segment + 1
        assert item.FrameContentSequence[0].DimensionIndexValues == [segment + 1, frame + 1]
        np.testing.assert_array_equal(raw[k].astype(bool), masks[frame, :, :, segment])


def test_structure_has_no_patient_coordinate_system() -> None:
    source = make_nm(128, frames=3, frame_of_reference=True)
    seg = build(source, thyroid_masks(3, 128))
    assert seg.SOPClassUID == SEGMENTATION_STORAGE
    assert seg.Modality == "SEG"
    assert seg.SegmentationType == "BINARY"
    assert (seg.Rows, seg.Columns, seg.BitsAllocated) == (128, 128, 1)
    # pixel-matrix referencing only: no Frame of Reference, no plane positions
    assert "FrameOfReferenceUID" not in seg
    assert "DimensionOrganizationType" not in seg
    shared = seg.SharedFunctionalGroupsSequence[0]
    for item in [shared, *seg.PerFrameFunctionalGroupsSequence]:
        assert "PlanePositionSequence" not in item
    # only a shared orientation, for viewers that compare it with the NM's (OHIF)
    for item in seg.PerFrameFunctionalGroupsSequence:
        assert "PlaneOrientationSequence" not in item
    assert len(shared.PlaneOrientationSequence) == 1
    pointers = [
        (int(i.DimensionIndexPointer), int(i.FunctionalGroupPointer))
        for i in seg.DimensionIndexSequence
    ]
    assert pointers == [(0x0062000B, 0x0062000A), (0x00209453, 0x00209111)]
    labels = [
        i.FrameContentSequence[0].FrameLabel for i in seg.PerFrameFunctionalGroupsSequence
    ]
    assert labels == ["NM frame 1", "NM frame 2", "NM frame 3"] * 2
    assert len({i.DimensionOrganizationUID for i in seg.DimensionIndexSequence}) == 1
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source.SeriesInstanceUID
    assert seg.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID


def test_same_study_and_patient() -> None:
    source = make_nm(64)
    seg = build(source, thyroid_masks(1, 64))
    for keyword in (
        "StudyInstanceUID", "StudyDate", "StudyTime", "StudyID", "AccessionNumber",
        "StudyDescription", "ReferringPhysicianName", "PatientName", "PatientID",
        "PatientBirthDate", "PatientSex", "SpecificCharacterSet",
    ):
        assert seg[keyword].value == source[keyword].value, keyword
    assert seg.SeriesInstanceUID == deterministic_uid("test-series", source.SeriesInstanceUID)
    assert seg.SeriesInstanceUID != source.SeriesInstanceUID
    # dates come from the source, never from the clock
    assert (seg.ContentDate, seg.ContentTime) == (source.ContentDate, source.ContentTime)
    assert (seg.SeriesDate, seg.SeriesTime) == (source.ContentDate, source.ContentTime)
    assert "InstanceCreationDate" not in seg


def test_segment_codes_and_algorithm_identification() -> None:
    source = make_nm(128)
    ds, _ = read_back(build(source, thyroid_masks(1, 128)))
    assert [int(item.SegmentNumber) for item in ds.SegmentSequence] == [1, 2]
    for number, spec in enumerate(SPECS, 1):
        desc = hd.seg.SegmentDescription.from_dataset(ds.SegmentSequence[number - 1])
        assert desc.segment_label == spec.name
        assert desc.algorithm_type == hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC
        for got, want in (
            (desc.segmented_property_category, spec.category),
            (desc.segmented_property_type, spec.type),
        ):
            assert (got.scheme_designator, got.value, got.meaning) == want
        regions = [(c.scheme_designator, c.value, c.meaning) for c in desc.anatomic_regions]
        assert regions == ([] if spec.anatomic_region is None else [spec.anatomic_region])
        algo = desc.algorithm_identification
        assert algo is not None
        assert algo[0].AlgorithmName == spec.algorithm_name
        assert algo[0].AlgorithmVersion == spec.algorithm_version
        family = algo[0].AlgorithmFamilyCodeSequence[0]
        assert (family.CodingSchemeDesignator, family.CodeValue, family.CodeMeaning) == (
            spec.algorithm_family
        )
        assert desc.SegmentAlgorithmName == spec.algorithm_name


def test_default_codes_are_the_specified_ones() -> None:
    def as_tuple(code: object) -> tuple[str, str, str]:
        return (code.scheme_designator, code.value, code.meaning)  # type: ignore[attr-defined]

    # the category codes ScintiSeg's output is specified with (see seg/content.py for CID 7150)
    assert ANATOMICAL_STRUCTURE == ("SCT", "123037004", "Anatomical Structure")
    assert MORPHOLOGICALLY_ALTERED_STRUCTURE == ("SCT", "49755003", "Morphologically Altered Structure")
    # type, region and family codes are the context groups' own
    assert THYROID == as_tuple(codes.SCT.Thyroid)
    assert NODULE == as_tuple(codes.SCT.Nodule)
    assert ARTIFICIAL_INTELLIGENCE == as_tuple(codes.cid7162.ArtificialIntelligence)
    assert GLAND.category == ANATOMICAL_STRUCTURE and GLAND.type == THYROID
    assert GLAND.anatomic_region is None
    assert COLD_NODULE.category == MORPHOLOGICALLY_ALTERED_STRUCTURE and COLD_NODULE.type == NODULE
    assert COLD_NODULE.anatomic_region == THYROID


def test_segments_carry_their_display_colour() -> None:
    seg = build(make_nm(64), thyroid_masks(1, 64))
    for item, rgb in zip(seg.SegmentSequence, (GLAND_RGB, NODULE_RGB), strict=True):
        lab = hd.color.CIELabColor.from_dicom_value(list(item.RecommendedDisplayCIELabValue))
        assert tuple(round(v) for v in lab.to_rgb()) == rgb


# ------------------------------------------------------------ determinism


def test_deterministic_byte_identical() -> None:
    masks = thyroid_masks(3, 128)
    first = to_bytes(build(make_nm(128, frames=3), masks))
    second = to_bytes(build(make_nm(128, frames=3), masks.copy()))
    assert first == second
    # ... and the same bytes after a trip of the source through a file
    reread = pydicom.dcmread(io.BytesIO(to_bytes(make_nm(128, frames=3))))
    assert to_bytes(build(reread, masks)) == first


def test_deterministic_uid() -> None:
    a = deterministic_uid("scintiseg-series", "1.2.3", "gland@1")
    assert a == deterministic_uid("scintiseg-series", "1.2.3", "gland@1")
    assert a != deterministic_uid("scintiseg-series", "1.2.3", "gland@2")
    assert len(a) <= 64 and all(part.isdigit() for part in a.split("."))
    with pytest.raises(ValueError):
        deterministic_uid()


# --------------------------------------------------------- empty segments


@pytest.mark.parametrize("frames", [None, 3])
def test_empty_nodule_segment_is_valid(frames: int | None, tmp_path: Path) -> None:
    source = make_nm(128, frames=frames)
    n = int(source.NumberOfFrames)
    masks = thyroid_masks(n, 128, nodule=False)
    seg = build(source, masks)
    assert_dciodvfy_clean(seg, tmp_path)
    ds, _ = read_back(seg)
    assert ds.NumberOfFrames == 2 * n  # empty frames are kept: "looked, found nothing"
    assert ds.SegmentsOverlap == "NO"
    pixels = seg_masks(ds, source)
    np.testing.assert_array_equal(pixels, masks)
    assert not pixels[..., 1].any()


def test_all_empty_seg_is_valid(tmp_path: Path) -> None:
    source = make_nm(64, frames=3)
    masks = np.zeros((3, 64, 64, 2), dtype=bool)
    seg = build(source, masks)
    assert_dciodvfy_clean(seg, tmp_path)
    ds, _ = read_back(seg)
    pixels = seg_masks(ds, source)
    assert pixels.shape == (3, 64, 64, 2) and not pixels.any()


def test_overlap_flag() -> None:
    masks = thyroid_masks(1, 64)
    assert build(make_nm(64), masks).SegmentsOverlap == "YES"  # nodule inside gland
    masks[..., 0] &= ~masks[..., 1]
    assert build(make_nm(64), masks).SegmentsOverlap == "NO"


# ------------------------------------------------------ source variations


def test_single_frame_masks_without_frame_axis(tmp_path: Path) -> None:
    source = make_nm(64)
    masks = thyroid_masks(1, 64)
    seg = build(source, masks[0].astype(np.uint8))
    assert to_bytes(seg) == to_bytes(build(source, masks))


def test_metadata_only_source() -> None:
    source = make_nm(64, frames=3)
    with_pixels = to_bytes(build(source, thyroid_masks(3, 64)))
    del source.PixelData
    assert to_bytes(build(source, thyroid_masks(3, 64))) == with_pixels


def test_pixel_measures_always_shared(tmp_path: Path) -> None:
    plain = build(make_nm(64), thyroid_masks(1, 64))
    measures = plain.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    assert "SliceThickness" not in measures  # a planar view has none: never invented
    assert [float(v) for v in measures.PixelSpacing] == [2.2, 2.2]  # make_nm's default
    assert_dciodvfy_clean(plain, tmp_path)

    source = make_nm(64, pixel_spacing=(1.8, 2.4), slice_thickness=9.5)
    seg = build(source, thyroid_masks(1, 64))
    measures = seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    assert [float(v) for v in measures.PixelSpacing] == [1.8, 2.4]
    assert float(measures.SliceThickness) == 9.5
    assert_dciodvfy_clean(seg, tmp_path)
    _, hseg = read_back(seg)
    assert hseg is not None and hseg.number_of_frames == 2


def test_highdicom_reader_refuses_its_own_planar_pixel_measures() -> None:
    """Why read_back cannot always use highdicom: its writer and reader disagree.

    For a 2D source with Pixel Spacing and no Frame of Reference or Slice
    Thickness, highdicom 0.28.2's own ``Segmentation`` writes a Pixel Measures
    item with Pixel Spacing only (as ours does, and as the standard allows),
    and its ``segread`` refuses that item. If this test starts failing,
    highdicom fixed it: read_back can then use segread everywhere.
    """
    source = make_sc_nm(64)  # a single-frame IOD: highdicom's constructor accepts it
    source.PixelSpacing = [2.0, 2.0]
    desc = hd.seg.SegmentDescription(
        segment_number=1, segment_label="Thyroid gland",
        segmented_property_category=codes.cid7150.AnatomicalStructure,
        segmented_property_type=codes.SCT.Thyroid, algorithm_type="MANUAL",
    )
    theirs = hd.seg.Segmentation(
        source_images=[source], pixel_array=thyroid_masks(1, 64)[0, ..., 0],
        segmentation_type="BINARY", segment_descriptions=[desc],
        series_instance_uid=deterministic_uid("t-series"), series_number=1,
        sop_instance_uid=deterministic_uid("t-instance"), instance_number=1,
        manufacturer="test", manufacturer_model_name="test", software_versions="1",
        device_serial_number="1",
    )
    measures = theirs.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    assert "PixelSpacing" in measures and "SliceThickness" not in measures
    with pytest.raises(AttributeError, match="Pixel Measures"):
        hd.seg.segread(io.BytesIO(to_bytes(theirs)))


@pytest.mark.parametrize("frames", [None, 3])
def test_orientation_is_the_one_viewers_assume_for_the_nm(frames: int | None) -> None:
    source = make_nm(64, frames=frames)
    n = int(source.NumberOfFrames)
    if frames:  # one detector item per frame, as the NM Detector module has them
        detectors = []
        for _ in range(n):
            item = pydicom.Dataset()
            item.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
            detectors.append(item)
        source.DetectorInformationSequence = detectors
    seg = build(source, thyroid_masks(n, 64))
    iop = [float(v) for v in seg.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0].ImageOrientationPatient]
    # multi-frame: the detector's orientation; single frame: anterior (OHIF ignores the detector's)
    assert iop == ([0.0, 1.0, 0.0, 0.0, 0.0, -1.0] if frames else [1.0, 0.0, 0.0, 0.0, 1.0, 0.0])


def test_source_without_pixel_spacing_or_dates(tmp_path: Path) -> None:
    source = make_nm(64, pixel_spacing=None)
    for keyword in (
        "ContentDate", "ContentTime", "AcquisitionDate", "AcquisitionTime",
        "SeriesDate", "SeriesTime",
    ):
        delattr(source, keyword)
    source.StudyDate = ""
    seg = build(source, thyroid_masks(1, 64))
    assert (seg.ContentDate, seg.ContentTime) == ("19700101", "000000")
    assert_dciodvfy_clean(seg, tmp_path)


def test_secondary_capture_nm_source(tmp_path: Path) -> None:
    source = make_sc_nm(64)
    seg = build(source, thyroid_masks(1, 64))
    ref = seg.PerFrameFunctionalGroupsSequence[0].DerivationImageSequence[0]
    # a single-frame IOD is referenced without frame numbers
    assert "ReferencedFrameNumber" not in ref.SourceImageSequence[0]
    assert_dciodvfy_clean(seg, tmp_path)
    ds, _ = read_back(seg)
    np.testing.assert_array_equal(seg_masks(ds, source), thyroid_masks(1, 64))


def test_non_ascii_text_switches_to_utf8(tmp_path: Path) -> None:
    source = make_nm(64)
    source.PatientName = "Müller^Zoë"
    seg = build(source, thyroid_masks(1, 64), content_creator="Ærø^Søren",
                series_description="Schilddrüse ScintiSeg")
    assert seg.SpecificCharacterSet == "ISO_IR 192"
    assert_dciodvfy_clean(seg, tmp_path)
    ds, _ = read_back(seg)
    assert str(ds.PatientName) == "Müller^Zoë"
    assert ds.SeriesDescription == "Schilddrüse ScintiSeg"


def test_model_card_style_segment_spec(tmp_path: Path) -> None:
    """The exact call of scintiseg.pipeline.image: specs built field by field."""
    spec = SegmentSpec(
        label=1,
        name="Thyroid gland",
        category=("SCT", "91723000", "Anatomical Structure"),
        type=("SCT", "69748006", "Thyroid"),
        anatomic_region=None,
        algorithm_name="scintiseg-gland",
        algorithm_version="1.0.0",
    )
    source = make_nm(128)
    seg = build_seg(
        source,
        thyroid_masks(1, 128)[..., :1],
        [spec],
        series_instance_uid=deterministic_uid("s"),
        sop_instance_uid=deterministic_uid("i"),
        series_number=9901,
        instance_number=int(source.InstanceNumber),
        series_description="ScintiSeg scintiseg-gland@1.0.0",
        software_versions="ScintiSeg 0.1.0",
    )
    assert seg.NumberOfFrames == 1
    assert_dciodvfy_clean(seg, tmp_path)
    target = tmp_path / "out.dcm"
    seg.save_as(target, enforce_file_format=True)  # as the CLI writes it
    assert len(pydicom.dcmread(target).SegmentSequence) == 1


# ------------------------------------------------------------------ errors


def test_rejects_non_nm_source() -> None:
    source = make_nm(64)
    source.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"  # CT Image Storage
    source.Modality = "CT"
    with pytest.raises(NotNMImageError, match="not an NM image"):
        build(source, thyroid_masks(1, 64))


@pytest.mark.parametrize(
    ("masks", "error", "match"),
    [
        (np.zeros((2, 64, 64, 2), bool), ValueError, r"expected \(3, 64, 64, 2\)"),
        (np.zeros((3, 64, 64, 1), bool), ValueError, "2 segment"),
        (np.zeros((3, 64, 32, 2), bool), ValueError, "3 frame"),
        (np.full((3, 64, 64, 2), 2, np.uint8), ValueError, "only 0 and 1"),
        (np.zeros((3, 64, 64, 2), np.float32), TypeError, "boolean or integer"),
    ],
)
def test_rejects_bad_masks(masks: np.ndarray, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        build(make_nm(64, frames=3), masks)


def test_rejects_template_without_algorithm() -> None:
    with pytest.raises(ValueError, match="with_algorithm"):
        build_seg(
            make_nm(64), thyroid_masks(1, 64), [GLAND, COLD_NODULE],
            series_instance_uid="1.2.3", sop_instance_uid="1.2.4", series_number=1,
            instance_number=1, series_description="x",
        )


def test_rejects_bad_text() -> None:
    with pytest.raises(ValueError, match="content_label"):
        build(make_nm(64), thyroid_masks(1, 64), content_label="lower case")
    with pytest.raises(ValueError, match="series_description"):
        build(make_nm(64), thyroid_masks(1, 64), series_description="x" * 65)


# ------------------------------------------------------ upstream limitation


def _plain_highdicom(source: pydicom.Dataset) -> hd.seg.Segmentation:
    n = int(source.NumberOfFrames)
    description = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label="Thyroid gland",
        segmented_property_category=codes.cid7150.AnatomicalStructure,
        segmented_property_type=codes.SCT.Thyroid,
        algorithm_type="AUTOMATIC",
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name="scintiseg-gland", family=codes.cid7162.ArtificialIntelligence, version="1"
        ),
    )
    return hd.seg.Segmentation(
        source_images=[source],
        pixel_array=thyroid_masks(n, int(source.Rows))[..., 0],
        segmentation_type="BINARY",
        segment_descriptions=[description],
        series_instance_uid=hd.UID(),
        series_number=1,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="x",
        manufacturer_model_name="x",
        software_versions="1",
        device_serial_number="0",
    )


def test_plain_highdicom_fails_on_nm() -> None:
    """Documents why scintiseg.dicom.seg does not call highdicom.seg.Segmentation.

    If this test fails, highdicom learnt to segment NM sources: re-evaluate
    the writer (see the docstring of scintiseg.dicom.seg.writer, docs/dicom-seg.md).
    """
    assert hd.__version__ == "0.28.2"
    # single frame: the NM IOD is multi-frame, so highdicom looks for the
    # functional groups of an enhanced image
    with pytest.raises(AttributeError, match="SharedFunctionalGroupsSequence"):
        _plain_highdicom(make_nm(64))
    # several frames: refused outright without a patient coordinate system
    with pytest.raises(ValueError, match="Only a single frame is supported"):
        _plain_highdicom(make_nm(64, frames=3))
    with pytest.raises(ValueError, match="Only a single frame is supported"):
        _plain_highdicom(make_nm(64, frames=3, frame_of_reference=True))


def test_dciodvfy_harness_sees_errors_in_any_frame(tmp_path: Path) -> None:
    """Guards the checks above: a defect in the 5th per-frame item is reported."""
    seg = build(make_nm(64, frames=3), thyroid_masks(3, 64))
    del seg.PerFrameFunctionalGroupsSequence[4].DerivationImageSequence[0].DerivationCodeSequence
    output = run_dciodvfy(to_bytes(seg), tmp_path, "broken.dcm")
    assert any("DerivationCodeSequence" in line for line in error_lines(output)), output


def test_copied_non_ascii_without_charset_becomes_utf8(tmp_path: Path) -> None:
    source = make_nm(64)
    del source.SpecificCharacterSet
    source.StudyDescription = "Szintigraphie Schilddrüse"
    seg = build(source, thyroid_masks(1, 64))
    assert seg.SpecificCharacterSet == "ISO_IR 192"
    ds, _ = read_back(seg)
    assert ds.StudyDescription == "Szintigraphie Schilddrüse"
    ascii_only = make_nm(64)
    del ascii_only.SpecificCharacterSet
    assert "SpecificCharacterSet" not in build(ascii_only, thyroid_masks(1, 64))


def test_patient_orientation_copied_when_valid() -> None:
    source = make_nm(64)
    source.PatientOrientation = ["R", "F"]
    assert list(build(source, thyroid_masks(1, 64)).PatientOrientation) == ["R", "F"]
    source.PatientOrientation = "ANTERIOR"
    assert build(source, thyroid_masks(1, 64)).PatientOrientation is None
