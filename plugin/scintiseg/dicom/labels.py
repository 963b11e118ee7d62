"""Physician labels: DICOM SEG (MANUAL) and RTSTRUCT objects read into masks on their image.

A *label object* is what a physician sends back from a viewer: a DICOM Segmentation whose
segments are drawn by hand (Segment Algorithm Type ``MANUAL`` or ``SEMIAUTOMATIC``, as OHIF
and 3D Slicer write them) or an RT Structure Set (closed planar contours). :func:`read_label_object`
turns one into :class:`ImageLabels`, one per source image it references: the masks of each
label on the source image's matrix (frames, rows, cols), and which model label each maps to.

* SEG frames are placed by their Derivation Image > Source Image reference (Referenced SOP
  Instance UID and Referenced Frame Number), else by the SEG's Referenced Series Sequence
  when it names a single image. FRACTIONAL segments are thresholded at half their maximum;
  in a LABELMAP SEG (Label Map Segmentation Storage, OHIF's default) each pixel holds its
  segment's number. A frame number above 1 on a single-frame image (dcmjs numbers a series
  of single-frame NM images by their place in it) is taken as the image itself.
* RTSTRUCT contours (patient coordinates, mm) go to pixel coordinates with the NM image's
  Image Position/Orientation (Patient) (the Detector Information Sequence item of the frame,
  or the top level; or, when the contour does not lie on that plane, the plane OHIF
  displays the image on: :func:`_geometries`) and Pixel Spacing, then are filled at pixel centres (even-odd rule;
  several contours of one ROI on one frame are united) by :mod:`scintiseg.dicom.contours`. A planar
  NM without position/orientation is taken as viewers display it: orientation
  ``[1,0,0,0,1,0]``, first pixel centre at the origin.

Labels map to the models' labels by code (Segmented Property Type: SCT 69748006 Thyroid ->
gland; SCT 27925004 Nodule or 237495005 Thyroid nodule -> nodule, the codes of
:mod:`scintiseg.dicom.seg.content`) or by name (:data:`NAME_RULES`); a "hot"/"warm" nodule is not a
cold nodule. Other labels are kept and reported unmapped.

A label object that cannot be used raises :class:`LabelRefused` with a code
(:data:`REFUSALS`) and a reason a user can read. ScintiSeg's own AUTOMATIC SEGs, and any SEG
all of whose segments are AUTOMATIC, are not label objects (:func:`label_kind` is ``None``).
Pure: pydicom and numpy, no Orthanc.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydicom import Dataset
from pydicom.multival import MultiValue

from scintiseg.dicom.contours import ContourError, polygon_mask
from scintiseg.dicom.seg.content import NODULE, THYROID

__all__ = [
    "REFUSALS",
    "ImageLabels",
    "Label",
    "LabelRefused",
    "label_kind",
    "map_label",
    "provenance",
    "read_label_object",
    "referenced_images",
]

SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
#: Label Map Segmentation Storage: one frame per source frame, each pixel the segment number
#: (what OHIF 3.11+ writes by default)
LABELMAP_SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.7"
RTSTRUCT_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
#: Segment Algorithm Types that a physician's hand made (CID-free defined terms of the SEG IOD).
HUMAN_ALGORITHM_TYPES = ("MANUAL", "SEMIAUTOMATIC")

#: Refusal codes and what they mean (the ``reason`` adds the details).
REFUSALS: dict[str, str] = {
    "corrupt": "not a readable DICOM label object",
    "no_reference": "the object does not say which image it labels",
    "unknown_image": "it references an image that is not in the database",
    "not_an_image": "the referenced instance is not an image ScintiSeg reads",
    "matrix": "its matrix is not the source image's",
    "empty": "a label or contour is empty",
    "self_intersecting": "a contour crosses itself",
}

#: Codes of the models' labels (coding scheme, code value) -> model label.
CODE_MAP: dict[tuple[str, str], str] = {
    (THYROID[0], THYROID[1]): "gland",
    (NODULE[0], NODULE[1]): "nodule",
    ("SCT", "237495005"): "nodule",  # Thyroid nodule
}
#: Name rules, first match wins; ``None`` means "not one of the models' labels".
NAME_RULES: tuple[tuple[re.Pattern[str], str | None], ...] = (
    (re.compile(r"(?i)\b(hot|warm|hyper|chaud|heiss|hei\u00df)"), None),
    # the glands a thyroid scan also shows are not the thyroid gland
    (re.compile(r"(?i)saliv|parotid|parotis|submandib|sublingu|speichel"), None),
    (re.compile(r"(?i)nod|knoten|cold|froid|kalt"), "nodule"),
    (re.compile(r"(?i)thyr|gland|schild|tiro|lobe"), "gland"),
)


class LabelRefused(ValueError):
    """A label object ScintiSeg cannot use; ``code`` is one of :data:`REFUSALS`."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass
class Label:
    """One label (SEG segment or RTSTRUCT ROI) on one source image."""

    name: str
    code: tuple[str, str, str] | None
    maps_to: str | None
    mask: np.ndarray  # bool (frames, rows, cols) on the source matrix

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "code": list(self.code) if self.code else None,
            "maps_to": self.maps_to,
            "pixels": int(self.mask.sum()),
            "frames_drawn": [int(f) + 1 for f in np.flatnonzero(self.mask.any(axis=(1, 2)))],
        }


@dataclass
class ImageLabels:
    """What a label object says about one source image."""

    source_sop_instance_uid: str
    labels: list[Label] = field(default_factory=list)

    def model_masks(self) -> dict[str, np.ndarray]:
        """Union of the masks mapped to each model label (``gland``, ``nodule``)."""
        out: dict[str, np.ndarray] = {}
        for label in self.labels:
            if label.maps_to is not None:
                out[label.maps_to] = out[label.maps_to] | label.mask if label.maps_to in out else label.mask.copy()
        return out


def _text(ds: Dataset, keyword: str) -> str:
    return str(ds.get(keyword, "") or "").strip()


def label_kind(ds: Dataset) -> str | None:
    """``"SEG"`` for a hand-drawn SEG, ``"RTSTRUCT"`` for a structure set, else ``None``."""
    sop_class = _text(ds, "SOPClassUID")
    if sop_class == RTSTRUCT_STORAGE or _text(ds, "Modality").upper() == "RTSTRUCT":
        return "RTSTRUCT"
    if sop_class in (SEGMENTATION_STORAGE, LABELMAP_SEGMENTATION_STORAGE) or _text(ds, "Modality").upper() == "SEG":
        types = {_text(item, "SegmentAlgorithmType").upper() for item in ds.get("SegmentSequence", None) or []}
        return "SEG" if types & set(HUMAN_ALGORITHM_TYPES) else None
    return None


def map_label(name: str, code: tuple[str, str, str] | None) -> str | None:
    """The model label (``gland``/``nodule``) a label's code or name identifies, else ``None``."""
    for pattern, target in NAME_RULES:
        if target is None and pattern.search(name):
            return None
    if code is not None and (code[0], code[1]) in CODE_MAP:
        return CODE_MAP[(code[0], code[1])]
    for pattern, target in NAME_RULES:
        if pattern.search(name):
            return target
    return None


def provenance(ds: Dataset, kind: str) -> dict[str, Any]:
    """Who drew it, with what, when (as the object says)."""
    if kind == "RTSTRUCT":
        who = _text(ds, "OperatorsName") or _text(ds, "StructureSetLabel")
        when_date, when_time = _text(ds, "StructureSetDate"), _text(ds, "StructureSetTime")
    else:
        who = _text(ds, "ContentCreatorName") or _text(ds, "OperatorsName")
        when_date, when_time = _text(ds, "ContentDate"), _text(ds, "ContentTime")
    software = " ".join(
        v for v in (_text(ds, "Manufacturer"), _text(ds, "ManufacturerModelName"), _text(ds, "SoftwareVersions")) if v
    )
    algorithms = sorted({
        f"{_text(item, 'SegmentAlgorithmType')} {_text(item, 'SegmentAlgorithmName')}".strip()
        for item in ds.get("SegmentSequence", None) or []
    })
    return {
        "who": who or None,
        "what": kind + (f" ({', '.join(algorithms)})" if algorithms else "") + (f", {software}" if software else ""),
        "when": (when_date + ("T" + when_time if when_time else "")) or None,
        "series_description": _text(ds, "SeriesDescription") or None,
    }


def _code(item: Dataset, keyword: str) -> tuple[str, str, str] | None:
    for code in item.get(keyword, None) or []:
        return (_text(code, "CodingSchemeDesignator"), _text(code, "CodeValue"), _text(code, "CodeMeaning"))
    return None


# -- references ------------------------------------------------------------------------------
def _seg_frame_refs(seg: Dataset) -> list[tuple[str, int] | None]:
    """(source SOP Instance UID, source frame) of each SEG frame, ``None`` where unknown."""
    n = int(seg.get("NumberOfFrames") or 1)
    groups = list(seg.get("PerFrameFunctionalGroupsSequence", None) or [])
    refs: list[tuple[str, int] | None] = []
    for i in range(n):
        found = None
        group = groups[i] if i < len(groups) else Dataset()
        for derivation in group.get("DerivationImageSequence", None) or []:
            for src in derivation.get("SourceImageSequence", None) or []:
                uid = _text(src, "ReferencedSOPInstanceUID")
                if uid:
                    frame = src.get("ReferencedFrameNumber")
                    if isinstance(frame, MultiValue | list):
                        frame = frame[0] if len(frame) else None
                    found = (uid, int(frame or 1))
        refs.append(found)
    return refs


def _series_refs(ds: Dataset) -> list[str]:
    """Images listed by a SEG's Referenced Series Sequence or an RTSTRUCT's frame-of-reference tree."""
    uids: list[str] = []
    for series in ds.get("ReferencedSeriesSequence", None) or []:
        uids += [_text(i, "ReferencedSOPInstanceUID") for i in series.get("ReferencedInstanceSequence", None) or []]
    for frame_ref in ds.get("ReferencedFrameOfReferenceSequence", None) or []:
        for study in frame_ref.get("RTReferencedStudySequence", None) or []:
            for series in study.get("RTReferencedSeriesSequence", None) or []:
                uids += [_text(i, "ReferencedSOPInstanceUID") for i in series.get("ContourImageSequence", None) or []]
    return list(dict.fromkeys(u for u in uids if u))


def referenced_images(ds: Dataset) -> list[str]:
    """Every image SOP Instance UID the label object refers to (frames, contours, series lists)."""
    uids: list[str] = []
    if label_kind(ds) == "SEG":
        uids += [r[0] for r in _seg_frame_refs(ds) if r is not None]
    for roi in ds.get("ROIContourSequence", None) or []:
        for contour in roi.get("ContourSequence", None) or []:
            uids += [_text(i, "ReferencedSOPInstanceUID") for i in contour.get("ContourImageSequence", None) or []]
    uids += _series_refs(ds)
    return list(dict.fromkeys(u for u in uids if u))


# -- conversion --------------------------------------------------------------------------------
SourceReader = Callable[[str], Dataset | None]


def _shape(source: Dataset) -> tuple[int, int, int]:
    return int(source.get("NumberOfFrames") or 1), int(source.Rows), int(source.Columns)


def read_label_object(ds: Dataset, sources: SourceReader) -> list[ImageLabels]:
    """The labels of a label object per source image; :class:`LabelRefused` when unusable.

    ``sources(sop_instance_uid)`` returns the source image's dataset (pixels not needed),
    ``None`` when the database does not hold it.
    """
    kind = label_kind(ds)
    if kind is None:
        raise LabelRefused("corrupt", "not a physician label object (neither a MANUAL SEG nor an RTSTRUCT)")
    uids = referenced_images(ds)
    if not uids:
        raise LabelRefused("no_reference", "the object references no image (no Referenced SOP Instance UID)")
    found: dict[str, Dataset] = {}
    for uid in uids:
        source = sources(uid)
        if source is None:
            raise LabelRefused("unknown_image", f"it references image {uid}, which is not in the database")
        if "Rows" not in source or "Columns" not in source:
            raise LabelRefused("not_an_image", f"the referenced instance {uid} has no pixel matrix")
        found[uid] = source
    reader = _read_seg if kind == "SEG" else _read_rtstruct
    images = reader(ds, found)
    if not any(label.mask.any() for image in images for label in image.labels):
        raise LabelRefused("empty", "every label of the object is empty (nothing drawn)")
    return images


def _read_seg(seg: Dataset, sources: Mapping[str, Dataset]) -> list[ImageLabels]:
    rows, cols = int(seg.Rows), int(seg.Columns)
    for uid, source in sources.items():
        if (int(source.Rows), int(source.Columns)) != (rows, cols):
            raise LabelRefused(
                "matrix",
                f"the SEG matrix {rows}x{cols} is not the matrix {source.Rows}x{source.Columns} of image {uid}",
            )
    try:
        pixels = np.asarray(seg.pixel_array)
    except Exception as exc:  # decoder boundary: pydicom raises many types
        raise LabelRefused("corrupt", f"the SEG pixel data cannot be decoded: {exc}") from exc
    pixels = pixels.reshape(-1, rows, cols)
    kind = _text(seg, "SegmentationType").upper()
    labelmap = kind == "LABELMAP" or _text(seg, "SOPClassUID") == LABELMAP_SEGMENTATION_STORAGE
    if kind == "FRACTIONAL":
        pixels = pixels > int(seg.get("MaximumFractionalValue") or 255) / 2
    elif not labelmap:
        pixels = pixels.astype(bool)
    refs = _seg_frame_refs(seg)
    if any(r is None for r in refs):
        listed = list(sources)
        only = listed[0] if len(listed) == 1 else None
        if only is None or _shape(sources[only])[0] != 1:
            raise LabelRefused("no_reference", "SEG frames without a source image reference (Derivation Image "
                                               "Sequence) and no single single-frame image to place them on")
        refs = [r if r is not None else (only, 1) for r in refs]
    shared = (seg.get("SharedFunctionalGroupsSequence", None) or [Dataset()])[0]
    groups = list(seg.get("PerFrameFunctionalGroupsSequence", None) or [])
    segments = {int(item.SegmentNumber): item for item in seg.get("SegmentSequence", None) or []}
    masks: dict[tuple[str, int], np.ndarray] = {}
    for i, ref in enumerate(refs):
        assert ref is not None
        uid, frame = ref
        if uid not in sources:
            continue
        group = groups[i] if i < len(groups) else Dataset()
        n_frames = _shape(sources[uid])[0]
        if n_frames == 1 and frame > 1:
            # dcmjs numbers the frames of a series of single-frame NM images by their place in
            # the series (it takes NM for a multi-frame class): the image itself is meant
            frame = 1
        if not 1 <= frame <= n_frames:
            raise LabelRefused("matrix", f"SEG frame {i + 1} references frame {frame} of image {uid}, "
                                         f"which has {n_frames} frame(s)")
        if labelmap:
            # each pixel holds the number of its segment (0: none)
            layers = [(number, pixels[i] == number) for number in segments]
        else:
            ident = (group.get("SegmentIdentificationSequence", None)
                     or shared.get("SegmentIdentificationSequence", None) or [Dataset()])[0]
            layers = [(int(ident.get("ReferencedSegmentNumber") or 1), pixels[i])]
        for number, layer in layers:
            key = (uid, number)
            if labelmap and key not in masks and not layer.any():
                continue  # a label map lists every segment on every frame: keep the drawn ones
            if key not in masks:
                masks[key] = np.zeros(_shape(sources[uid]), dtype=bool)
            masks[key][frame - 1] |= layer
    out = []
    for uid in sources:
        image = ImageLabels(uid)
        for number, item in sorted(segments.items()):
            name = _text(item, "SegmentLabel") or _text(item, "SegmentDescription") or f"segment {number}"
            code = _code(item, "SegmentedPropertyTypeCodeSequence")
            mask = masks.get((uid, number))
            if mask is None:
                continue
            image.labels.append(Label(name, code, map_label(name, code), mask))
        out.append(image)
    return out


Geometry = tuple[np.ndarray, np.ndarray, np.ndarray, tuple[float, float]]


def _geometry_of(position_value: Any, orientation_value: Any, source: Dataset) -> Geometry:
    """(position, row direction, column direction, (row spacing, column spacing))."""
    spacing = source.get("PixelSpacing") or [1.0, 1.0]
    try:
        position = np.array([float(v) for v in position_value], dtype=float)
        orientation = np.array([float(v) for v in orientation_value], dtype=float)
        dr, dc = (float(spacing[0]), float(spacing[1]))
    except (TypeError, ValueError) as exc:
        raise LabelRefused("not_an_image", f"the image geometry cannot be read: {exc}") from exc
    if position.shape != (3,) or orientation.shape != (6,) or dr <= 0 or dc <= 0:
        raise LabelRefused("not_an_image", "the image has no usable position, orientation or pixel spacing")
    return position, orientation[:3], orientation[3:], (dr, dc)


def _geometries(source: Dataset, frame: int) -> list[Geometry]:
    """The planes a frame may have been drawn on, the standard's first.

    1. The frame's Detector Information item (NM keeps its geometry there), else the top
       level, else the anterior defaults.
    2. The one OHIF (cornerstone) displays: for a single frame, the top-level tags or the
       defaults (it ignores the detector items); for several frames, the first detector
       item's.
    """
    detectors = list(source.get("DetectorInformationSequence", None) or [])
    holder = detectors[frame - 1] if frame - 1 < len(detectors) else (detectors[0] if detectors else source)
    top_ipp, top_iop = source.get("ImagePositionPatient"), source.get("ImageOrientationPatient")
    standard = _geometry_of(holder.get("ImagePositionPatient") or top_ipp or [0.0, 0.0, 0.0],
                            holder.get("ImageOrientationPatient") or top_iop or [1, 0, 0, 0, 1, 0], source)
    viewer_holder = detectors[0] if detectors and int(source.get("NumberOfFrames") or 1) > 1 else source
    try:
        viewer = _geometry_of(viewer_holder.get("ImagePositionPatient") or [0.0, 0.0, 0.0],
                              viewer_holder.get("ImageOrientationPatient") or [1, 0, 0, 0, 1, 0], source)
    except LabelRefused:
        return [standard]
    return [standard, viewer]


def _on_plane(points: np.ndarray, geometry: Geometry) -> bool:
    """Whether every point lies on the geometry's plane (within half a pixel, at least 1 mm)."""
    position, row_dir, col_dir, (dr, dc) = geometry
    normal = np.cross(row_dir, col_dir)
    length = float(np.linalg.norm(normal))
    if length == 0:
        return False
    distance = np.abs((points - position) @ (normal / length))
    return bool(distance.max() <= max(1.0, 0.5 * min(dr, dc)))


def _read_rtstruct(rt: Dataset, sources: Mapping[str, Dataset]) -> list[ImageLabels]:
    names = {int(r.ROINumber): _text(r, "ROIName") or f"ROI {r.ROINumber}"
             for r in rt.get("StructureSetROISequence", None) or []}
    codes: dict[int, tuple[str, str, str] | None] = {}
    for obs in rt.get("RTROIObservationsSequence", None) or []:
        if "ReferencedROINumber" in obs:
            codes[int(obs.ReferencedROINumber)] = _code(obs, "RTROIIdentificationCodeSequence")
    listed = _series_refs(rt)
    masks: dict[tuple[str, int], np.ndarray] = {}
    for roi in rt.get("ROIContourSequence", None) or []:
        number = int(roi.get("ReferencedROINumber") or 0)
        for k, contour in enumerate(roi.get("ContourSequence", None) or []):
            if _text(contour, "ContourGeometricType").upper() not in ("CLOSED_PLANAR", ""):
                continue
            refs = list(contour.get("ContourImageSequence", None) or [])
            uid = _text(refs[0], "ReferencedSOPInstanceUID") if refs else (listed[0] if len(listed) == 1 else "")
            if not uid:
                raise LabelRefused("no_reference",
                                   f"contour {k + 1} of ROI {names.get(number, number)!r} names no image")
            frame = int((refs[0].get("ReferencedFrameNumber") if refs else None) or 1)
            source = sources[uid]
            shape = _shape(source)
            points = np.asarray([float(v) for v in contour.get("ContourData") or []], dtype=float)
            if points.size < 9 or points.size % 3:
                raise LabelRefused("empty", f"contour {k + 1} of ROI {names.get(number, number)!r} has fewer than "
                                            "3 points")
            points = points.reshape(-1, 3)
            # the plane the contour lies on (the standard's, else the one OHIF drew on); none:
            # the standard's, onto which the points are projected
            candidates = _geometries(source, frame)
            position, row_dir, col_dir, (dr, dc) = next(
                (g for g in candidates if _on_plane(points, g)), candidates[0])
            rel = points - position
            cols_px, rows_px = rel @ row_dir / dc, rel @ col_dir / dr
            try:
                mask = polygon_mask(np.stack([cols_px, rows_px], axis=1), shape[1], shape[2])
            except ContourError as exc:
                raise LabelRefused(exc.code, f"contour {k + 1} of ROI {names.get(number, number)!r}: {exc}") from exc
            key = (uid, number)
            if key not in masks:
                masks[key] = np.zeros(shape, dtype=bool)
            masks[key][frame - 1] |= mask
    out = []
    for uid in sources:
        image = ImageLabels(uid)
        for number in sorted(names):
            if (uid, number) in masks:
                name, code = names[number], codes.get(number)
                image.labels.append(Label(name, code, map_label(name, code), masks[(uid, number)]))
        out.append(image)
    return out
