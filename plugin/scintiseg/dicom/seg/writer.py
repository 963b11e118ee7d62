"""DICOM Segmentation (SEG) of planar NM scintigraphies.

Why not ``highdicom.seg.Segmentation``?
=======================================

highdicom 0.28.2 cannot build a SEG whose source is an NM Image Storage
instance. NM is a *multi-frame IOD without functional groups*: Number of
Frames, Frame Increment Pointer and the NM vectors describe the frames, and a
planar acquisition has no patient coordinate system (Image Position/Orientation
(Patient) live, empty, in the Detector Information Sequence; the Frame of
Reference module is optional and normally absent). highdicom's constructor
(``_Image._init_multiframe_image`` in ``highdicom/image.py``) assumes every
multi-frame source is an *enhanced* image:

1. ``is_multiframe_image(src)`` is true because the NM IOD contains Number of
   Frames, so ``_prepare_spatial_metadata`` calls
   ``_get_pixel_measures_sequence(is_multiframe=True)``, which reads
   ``source_image.SharedFunctionalGroupsSequence[0]`` unconditionally:
   ``AttributeError: ... SharedFunctionalGroupsSequence`` for every NM source
   with one frame.
2. Before that, a source without a patient/slide coordinate system
   (``get_image_coordinate_system(src) is None``, which is every planar NM,
   even one with a Frame of Reference UID) is refused if it has more than one
   frame: ``ValueError: Only a single frame is supported when the source image
   has no Frame of Reference UID``. Several single-frame "views" of the frames
   are refused for the same reason (``len(source_images) > 1``).
3. In that no-coordinate-system path the derivation reference is written
   without Referenced Frame Number, so even a patched highdicom would not say
   which NM frame a SEG frame came from.
4. The output is not reproducible: ``SOPClass.__init__`` stamps Instance
   Creation Date/Time with ``datetime.now()`` and the Dimension Organization
   UID is a random ``UID()``.

Patching highdicom at a seam (overriding ``_get_pixel_measures_sequence``)
fixes only (1); faking a Frame of Reference and Image Position (Patient) on
per-frame proxies to get past (2) would write a patient coordinate system the
acquisition never had, and then need every reference rewritten. So this module
assembles the Segmentation IOD itself with pydicom, module by module, and uses
highdicom where it is right: :class:`highdicom.seg.SegmentDescription` and
:class:`highdicom.AlgorithmIdentificationSequence` for the coded segment
content, and ``highdicom.seg.segread`` (in the tests) as an independent reader.

What the SEG looks like
=======================

* One BINARY Segmentation instance per NM instance, in the NM's study (patient
  and study modules copied), in its own series.
* No Frame of Reference, no Plane Position/Orientation: a planar scintigraphy
  has no patient coordinate system, so the SEG is tied to its source purely by
  pixel matrix. This is what the Segmentation IOD prescribes when the
  Derivation Image functional group is present (the Frame of Reference module
  is required only when it is not).
* Every (segment, source frame) pair is one SEG frame, empty or not: the SEG
  says "nothing found" explicitly (an all-empty nodule segment is a valid,
  complete SEG). Frames are ordered segment-major: SEG frame ``s * F + f + 1``
  is segment ``s + 1`` of source frame ``f + 1``.
* Each frame's Derivation Image Sequence > Source Image Sequence references
  the NM instance (Referenced SOP Class/Instance UID) and, because NM is a
  multi-frame IOD, the Referenced Frame Number, with Spatial Locations
  Preserved YES and purpose "Source image for image processing operation".
* Multi-frame Dimension: Referenced Segment Number (Segment Identification
  Sequence) then Frame Label (Frame Content Sequence), whose value names the
  source frame ("NM frame 2"); Frame Label exists for exactly this use, an
  application-defined dimension. Dimension Organization Type (type 3) is
  omitted: none of its defined terms (3D, 3D_TEMPORAL, TILED_*) describes
  projection frames.
* Pixel Measures go to the shared functional groups only when the NM has both
  Pixel Spacing and Slice Thickness (planar NM normally has no slice
  thickness; see :func:`_pixel_measures` for why none is invented).
* Deterministic: no clock, no random UID. Content and Series Date/Time are the
  source's content date/time (else acquisition, series, study; else
  1970-01-01), i.e. the date of the segmented data; the Dimension Organization
  UID is derived from the SEG's SOP Instance UID. Same inputs give a
  byte-identical file.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Sequence

import highdicom as hd
import numpy as np
from pydicom import Dataset
from pydicom.dataelem import DataElement
from pydicom.pixels import pack_bits
from pydicom.tag import BaseTag, Tag
from pydicom.valuerep import DA, TM, DSfloat

from scintiseg import __version__
from scintiseg.core.uids import deterministic_uid
from scintiseg.dicom.builder import (
    Equipment,
    GeneralImage,
    Series,
    add_equipment,
    add_general_image,
    add_series,
    code_item,
    derived_instance,
    image_reference,
)
from scintiseg.dicom.nm import NM_IMAGE_STORAGE, NotNMImageError, is_nm_image, pixel_spacing_mm
from scintiseg.dicom.seg.content import (
    Code,
    SegmentSpec,
)

SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"

#: CID 7203 "Image Derivation": how every SEG frame was derived.
DERIVATION_SEGMENTATION: Code = ("DCM", "113076", "Segmentation")
#: CID 7202 "Source Image Purposes of Reference".
PURPOSE_SOURCE_FOR_PROCESSING: Code = (
    "DCM", "121322", "Source image for image processing operation",
)

#: Used when the source has no valid date at all (never the clock: determinism).
FALLBACK_DATE = "19700101"
FALLBACK_TIME = "000000"

_CS_PATTERN = re.compile(r"^[A-Z0-9_ ]{1,16}$")
_TAG_REFERENCED_SEGMENT_NUMBER = Tag(0x0062, 0x000B)
_TAG_SEGMENT_IDENTIFICATION_SEQUENCE = Tag(0x0062, 0x000A)
_TAG_FRAME_LABEL = Tag(0x0020, 0x9453)
_TAG_FRAME_CONTENT_SEQUENCE = Tag(0x0020, 0x9111)


# ---------------------------------------------------------------- validation


def _check_code(code: object, what: str) -> Code:
    if not (
        isinstance(code, tuple)
        and len(code) == 3
        and all(isinstance(v, str) and v.strip() for v in code)
    ):
        raise ValueError(
            f"{what} must be a (scheme, value, meaning) tuple of strings, got {code!r}"
        )
    return (code[0], code[1], code[2])


def _check_lo(value: str, what: str) -> str:
    if not isinstance(value, str) or len(value) > 64 or "\\" in value:
        raise ValueError(
            f"{what} must be a string of at most 64 characters without '\\': {value!r}"
        )
    return value


def _check_segments(segments: Sequence[SegmentSpec]) -> list[SegmentSpec]:
    specs = list(segments)
    if not specs:
        raise ValueError("build_seg needs at least one segment")
    for i, spec in enumerate(specs, 1):
        if not isinstance(spec, SegmentSpec):
            raise TypeError(f"segment {i} is a {type(spec).__name__}, not a SegmentSpec")
        where = f"segment {i} ({spec.name!r})"
        if not spec.name.strip():
            raise ValueError(f"segment {i} has an empty name")
        _check_lo(spec.name, f"{where} name")
        if not spec.algorithm_name.strip() or not spec.algorithm_version.strip():
            raise ValueError(
                f"{where} has no algorithm name/version (AUTOMATIC segments must identify "
                "their algorithm; complete templates with SegmentSpec.with_algorithm)"
            )
        _check_lo(spec.algorithm_name, f"{where} algorithm_name")
        _check_lo(spec.algorithm_version, f"{where} algorithm_version")
        _check_code(spec.category, f"{where} category")
        _check_code(spec.type, f"{where} type")
        _check_code(spec.algorithm_family, f"{where} algorithm_family")
        if spec.anatomic_region is not None:
            _check_code(spec.anatomic_region, f"{where} anatomic_region")
        rgb = spec.display_rgb
        if rgb is not None and not (
            len(rgb) == 3 and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in rgb)
        ):
            raise ValueError(f"{where} display_rgb must be three integers 0-255, got {rgb!r}")
    return specs


def _check_masks(masks: np.ndarray, n_frames: int, rows: int, cols: int, n_seg: int) -> np.ndarray:
    arr = np.asarray(masks)
    expected = (n_frames, rows, cols, n_seg)
    if arr.ndim == 3 and n_frames == 1:
        arr = arr[np.newaxis]
    if arr.shape != expected:
        single = f" or {expected[1:]}" if n_frames == 1 else ""
        raise ValueError(
            f"masks have shape {tuple(np.shape(masks))}; the source has {n_frames} frame(s) of "
            f"{rows}x{cols} and {n_seg} segment(s) were described, so expected {expected}{single}"
        )
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8)
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"masks must be boolean or integer 0/1, got dtype {arr.dtype}")
    if arr.size and (arr.min() < 0 or arr.max() > 1):
        raise ValueError("masks must contain only 0 and 1 (one binary mask per segment)")
    return arr.astype(np.uint8)


# ------------------------------------------------------------------ helpers


def _code_item(code: Code) -> Dataset:
    scheme, value, meaning = code
    return code_item(value, scheme, meaning)


def _concept(code: Code) -> hd.sr.CodedConcept:
    return hd.sr.CodedConcept(value=code[1], scheme_designator=code[0], meaning=code[2])


def _valid_date(value: object) -> str | None:
    if value is None or str(value).strip() == "":
        return None
    try:
        parsed = DA(str(value).strip())
    except (TypeError, ValueError):
        return None
    return None if parsed is None else parsed.strftime("%Y%m%d")


def _valid_time(value: object) -> str | None:
    if value is None or str(value).strip() == "":
        return None
    try:
        parsed = TM(str(value).strip())
    except (TypeError, ValueError):
        return None
    if parsed is None:
        return None
    text = parsed.strftime("%H%M%S")
    return f"{text}.{parsed.microsecond:06d}" if parsed.microsecond else text


def source_content_datetime(source: Dataset) -> tuple[str, str]:
    """(DA, TM) of the segmented data: content, else acquisition, series, study date/time."""
    for date_kw, time_kw in (
        ("ContentDate", "ContentTime"),
        ("AcquisitionDate", "AcquisitionTime"),
        ("SeriesDate", "SeriesTime"),
        ("StudyDate", "StudyTime"),
    ):
        date = _valid_date(source.get(date_kw))
        if date is not None:
            return date, _valid_time(source.get(time_kw)) or FALLBACK_TIME
    return FALLBACK_DATE, FALLBACK_TIME


def _patient_orientation(source: Dataset) -> list[str] | None:
    value = source.get("PatientOrientation")
    if not value:
        return None
    values = [str(v) for v in value] if not isinstance(value, str) else value.split("\\")
    if len(values) != 2 or not all(re.fullmatch(r"[AFHLPR]{1,3}", v) for v in values):
        return None  # malformed in the source: leave empty rather than copy junk
    return values


def _pixel_measures(source: Dataset) -> Dataset:
    """The shared Pixel Measures item: the source's Pixel Spacing, and Slice Thickness if it has one.

    Without a Frame of Reference the macro is optional in a SEG, but OHIF's
    SEG loader reads it unconditionally, and it carries the spacing that the
    areas were measured with. A planar projection has no slice thickness: it
    is copied when the source gives one, never invented. A source without
    Pixel Spacing gives an empty item (every attribute of the macro is type 1C).
    """
    measures = Dataset()
    spacing = pixel_spacing_mm(source)
    if spacing is not None:
        measures.PixelSpacing = [DSfloat(spacing[0], auto_format=True),
                                 DSfloat(spacing[1], auto_format=True)]
    try:
        thickness = float(source.get("SliceThickness"))
    except (TypeError, ValueError):
        thickness = math.nan
    if math.isfinite(thickness) and thickness > 0:
        measures.SliceThickness = DSfloat(thickness, auto_format=True)
    return measures


#: The orientation OHIF (cornerstone) assumes for an image that declares none.
DEFAULT_VIEWER_ORIENTATION = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def plane_orientation(source: Dataset) -> list[float]:
    """The Image Orientation (Patient) the SEG declares for its frames.

    NM Image Storage has no per-image orientation; viewers that place a SEG
    over its source (OHIF's cornerstone adapter) compare the SEG's orientation
    with the one they assume for the NM: the first Detector Information item's
    Image Orientation (Patient) for a multi-frame NM, the anterior orientation
    ``[1, 0, 0, 0, 1, 0]`` for a single frame. The SEG repeats that, so the
    two are always parallel.
    """
    frames = int(source.get("NumberOfFrames") or 1)
    detectors = source.get("DetectorInformationSequence", None) or []
    if frames > 1 and detectors:
        value = detectors[0].get("ImageOrientationPatient")
        try:
            iop = [float(v) for v in value] if value is not None else []
        except (TypeError, ValueError):
            iop = []
        if len(iop) == 6 and all(math.isfinite(v) for v in iop) and any(iop[:3]) and any(iop[3:]):
            return iop
    return list(DEFAULT_VIEWER_ORIENTATION)


def _is_multiframe_iod(source: Dataset) -> bool:
    # NM Image Storage always has Number of Frames (Multi-frame module, type 1);
    # single-frame IODs (e.g. Secondary Capture with Modality NM) never do.
    return str(source.get("SOPClassUID", "")) == NM_IMAGE_STORAGE or "NumberOfFrames" in source


_TEXT_VRS = frozenset({"PN", "LO", "SH", "ST", "LT", "UT", "UC"})


def _character_set(seg: Dataset, source: Dataset, own_text: Sequence[str]) -> object:
    """The source's Specific Character Set, or UTF-8 (ISO_IR 192) where needed.

    UTF-8 when our own text is not ASCII, or when copied text is not ASCII
    and the source declares no character set. Copied values are decoded
    ``str`` (pydicom decodes with the source's character set on access), so
    they re-encode correctly in UTF-8.
    """
    charset = source.get("SpecificCharacterSet") or None
    if not all(text.isascii() for text in own_text):
        return "ISO_IR 192"
    if charset is None:
        for element in seg.iterall():
            if element.VR in _TEXT_VRS and element.value is not None:
                values = element.value if element.VM > 1 else [element.value]
                if not all(str(v).isascii() for v in values):
                    return "ISO_IR 192"
    return charset


def _segment_description(number: int, spec: SegmentSpec) -> Dataset:
    description = hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=spec.name,
        segmented_property_category=_concept(spec.category),
        segmented_property_type=_concept(spec.type),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name=spec.algorithm_name,
            family=_concept(spec.algorithm_family),
            version=spec.algorithm_version,
        ),
        anatomic_regions=(
            [_concept(spec.anatomic_region)] if spec.anatomic_region is not None else None
        ),
        display_color=(
            hd.color.CIELabColor.from_rgb(*spec.display_rgb) if spec.display_rgb is not None else None
        ),
    )
    return description


def _frame_label(frame_number: int) -> str:
    return f"NM frame {frame_number}"


def _per_frame_item(
    source: Dataset, segment_number: int, frame_number: int, multiframe_source: bool
) -> Dataset:
    item = Dataset()

    frame_content = Dataset()
    frame_content.DimensionIndexValues = [segment_number, frame_number]
    frame_content.FrameLabel = _frame_label(frame_number)
    item.FrameContentSequence = [frame_content]

    reference = image_reference(source)
    if multiframe_source:
        reference.ReferencedFrameNumber = frame_number
    reference.PurposeOfReferenceCodeSequence = [_code_item(PURPOSE_SOURCE_FOR_PROCESSING)]
    reference.SpatialLocationsPreserved = "YES"
    derivation = Dataset()
    derivation.DerivationCodeSequence = [_code_item(DERIVATION_SEGMENTATION)]
    derivation.SourceImageSequence = [reference]
    item.DerivationImageSequence = [derivation]

    identification = Dataset()
    identification.ReferencedSegmentNumber = segment_number
    item.SegmentIdentificationSequence = [identification]
    return item


def _dimension_index(
    pointer: BaseTag, group: BaseTag, organization_uid: str, label: str
) -> Dataset:
    item = Dataset()
    item.DimensionIndexPointer = pointer
    item.FunctionalGroupPointer = group
    item.DimensionOrganizationUID = organization_uid
    item.DimensionDescriptionLabel = label
    return item


# ------------------------------------------------------------------- writer


def build_seg(
    source: Dataset,
    masks: np.ndarray,
    segments: Sequence[SegmentSpec],
    *,
    series_instance_uid: str,
    sop_instance_uid: str,
    series_number: int,
    instance_number: int,
    series_description: str,
    manufacturer: str = "ScintiSeg",
    manufacturer_model_name: str = "ScintiSeg",
    software_versions: str = f"ScintiSeg {__version__}",
    device_serial_number: str = "0",
    content_label: str = "SCINTISEG",
    content_creator: str | None = None,
) -> Dataset:
    """A BINARY DICOM Segmentation of every frame of the NM image ``source``.

    ``masks`` is boolean (or 0/1 integer) of shape ``(frames, rows, cols,
    n_segments)``, or ``(rows, cols, n_segments)`` for a single-frame source;
    ``masks[..., i]`` is segment ``i + 1``, described by ``segments[i]``.
    ``source`` needs its metadata only (pixel data is not read). The result is
    a pydicom Dataset with file meta (Explicit VR Little Endian), ready for
    ``save_as(..., enforce_file_format=True)``. See the module docstring for
    the structure and why it is built without ``highdicom.seg.Segmentation``.
    """
    if not is_nm_image(source):
        raise NotNMImageError(
            f"cannot build a SEG: source {source.get('SOPInstanceUID', '?')} is not an NM image"
        )
    for keyword in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
        if not source.get(keyword):
            raise ValueError(f"cannot build a SEG: the source has no {keyword}")
    try:
        rows, cols = int(source.Rows), int(source.Columns)
        n_frames = int(source.get("NumberOfFrames") or 1)
    except (AttributeError, TypeError, ValueError) as exc:
        raise ValueError(
            f"cannot build a SEG: the source has no usable matrix size ({exc})"
        ) from exc

    specs = _check_segments(segments)
    pixels = _check_masks(masks, n_frames, rows, cols, len(specs))
    _check_lo(series_description, "series_description")
    for name, value in (
        ("manufacturer", manufacturer),
        ("manufacturer_model_name", manufacturer_model_name),
        ("software_versions", software_versions),
        ("device_serial_number", device_serial_number),
    ):
        if not value:
            raise ValueError(f"{name} must not be empty (Enhanced General Equipment, type 1)")
        _check_lo(value, name)
    if not _CS_PATTERN.match(content_label):
        raise ValueError(
            f"content_label must be 1-16 upper-case letters, digits, '_' or ' ': {content_label!r}"
        )
    if series_number < 1 or instance_number < 1:
        raise ValueError("series_number and instance_number must be positive integers")
    content_description = ", ".join(spec.name for spec in specs)[:64]

    content_date, content_time = source_content_datetime(source)
    multiframe_source = _is_multiframe_iod(source)
    # SOP Common (Specific Character Set: at the end, once all text is in); Patient,
    # Clinical Trial Subject, General Study, Patient Study, Clinical Trial Study
    seg = derived_instance(source, SEGMENTATION_STORAGE, sop_instance_uid)
    # General Series + Segmentation Series
    add_series(seg, Series("SEG", series_instance_uid, series_number, series_description, content_date, content_time))
    # General Equipment + Enhanced General Equipment
    add_equipment(seg, Equipment(manufacturer, manufacturer_model_name, device_serial_number, software_versions))
    # General Image + Segmentation Image. Patient Orientation is type 2C, required when
    # there is no Image Position/Orientation (Patient): the SEG frames keep the source's
    # pixel matrix, hence its orientation.
    add_general_image(seg, GeneralImage(instance_number, content_date, content_time, ["DERIVED", "PRIMARY"],
                                        _patient_orientation(source)))
    seg.ContentLabel = content_label
    seg.ContentDescription = content_description
    seg.ContentCreatorName = content_creator
    lossy = str(source.get("LossyImageCompression") or "00")
    seg.LossyImageCompression = lossy if lossy in ("00", "01") else "00"
    if seg.LossyImageCompression == "01":
        for keyword in ("LossyImageCompressionRatio", "LossyImageCompressionMethod"):
            if keyword in source:
                seg.add(copy.deepcopy(source[keyword]))
    seg.SegmentationType = "BINARY"
    overlap = len(specs) > 1 and bool((pixels.sum(axis=-1, dtype=np.int64) > 1).any())
    seg.SegmentsOverlap = "YES" if overlap else "NO"
    seg.SegmentSequence = [_segment_description(i, spec) for i, spec in enumerate(specs, 1)]

    # Image Pixel (1-bit, packed, no padding between frames)
    seg.SamplesPerPixel = 1
    seg.PhotometricInterpretation = "MONOCHROME2"
    seg.Rows = rows
    seg.Columns = cols
    seg.BitsAllocated = 1
    seg.BitsStored = 1
    seg.HighBit = 0
    seg.PixelRepresentation = 0

    # Multi-frame Functional Groups
    shared = Dataset()
    shared.PixelMeasuresSequence = [_pixel_measures(source)]
    orientation = Dataset()
    orientation.ImageOrientationPatient = [DSfloat(v, auto_format=True) for v in plane_orientation(source)]
    shared.PlaneOrientationSequence = [orientation]
    seg.SharedFunctionalGroupsSequence = [shared]
    seg.PerFrameFunctionalGroupsSequence = [
        _per_frame_item(source, s, f, multiframe_source)
        for s in range(1, len(specs) + 1)
        for f in range(1, n_frames + 1)
    ]
    seg.NumberOfFrames = len(specs) * n_frames

    # Multi-frame Dimension
    organization_uid = deterministic_uid("scintiseg-dimension-organization", sop_instance_uid)
    organization = Dataset()
    organization.DimensionOrganizationUID = organization_uid
    seg.DimensionOrganizationSequence = [organization]
    seg.DimensionIndexSequence = [
        _dimension_index(
            _TAG_REFERENCED_SEGMENT_NUMBER,
            _TAG_SEGMENT_IDENTIFICATION_SEQUENCE,
            organization_uid,
            "Segment Number",
        ),
        _dimension_index(
            _TAG_FRAME_LABEL, _TAG_FRAME_CONTENT_SEQUENCE, organization_uid, "Source NM Frame"
        ),
    ]

    # General Reference + Common Instance Reference
    seg.SourceImageSequence = [image_reference(source)]
    instance_reference = image_reference(source)
    series_reference = Dataset()
    series_reference.SeriesInstanceUID = source.SeriesInstanceUID
    series_reference.ReferencedInstanceSequence = [instance_reference]
    seg.ReferencedSeriesSequence = [series_reference]

    # Pixel Data: SEG frame s*F + f is segment s+1 of source frame f+1
    ordered = np.ascontiguousarray(pixels.transpose(3, 0, 1, 2))
    seg.add(DataElement(0x7FE00010, "OB", pack_bits(ordered.ravel(), pad=True)))

    charset = _character_set(
        seg,
        source,
        [series_description, manufacturer, manufacturer_model_name, software_versions,
         content_creator or "", *(spec.name for spec in specs)],
    )
    if charset:
        seg.SpecificCharacterSet = charset

    return seg
