"""Physician label objects for tests: a MANUAL SEG as OHIF/Slicer write one, and an RTSTRUCT.

:func:`manual_seg` reuses ScintiSeg's SEG writer for the frame structure (Derivation Image >
Source Image references per frame, segment identification), then makes it a physician's
object: Segment Algorithm Type ``MANUAL`` without algorithm identification, the viewer as
manufacturer, a Content Creator's Name, its own UIDs. :func:`labelmap_seg` turns one into the
Label Map SEG that OHIF 3.11+ writes by default (each pixel its segment's number, no segment
identification per frame). :func:`rtstruct` writes closed planar
contours given in pixel coordinates, converted to patient coordinates with the NM image's
detector position/orientation and pixel spacing (the inverse of what ScintiSeg reads).
:func:`source` is the synthetic NM image (with its phantom scan) that the label tests draw on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from scintiseg.core.uids import deterministic_uid
from scintiseg.dicom.builder import copy_patient_and_study, file_meta
from scintiseg.dicom.seg import COLD_NODULE, GLAND, build_seg
from scintiseg_phantoms.dicom import scan_to_dataset
from scintiseg_phantoms.thyroid import generate_scan

RTSTRUCT_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
PHYSICIAN = "DR^LABEL"


def manual_seg(source: Dataset, gland: np.ndarray, nodules: np.ndarray | None = None, *, tag: str = "manual",
               names: tuple[str, str] = ("Thyroid", "Cold nodule"), other: np.ndarray | None = None) -> Dataset:
    """A MANUAL SEG of ``source`` (masks ``(frames, rows, cols)`` or ``(rows, cols)``)."""
    gland = np.asarray(gland, dtype=bool)
    layers = [gland]
    specs = [dataclasses.replace(GLAND.with_algorithm("x", "1"), name=names[0])]
    if nodules is not None:
        layers.append(np.asarray(nodules, dtype=bool))
        specs.append(dataclasses.replace(COLD_NODULE.with_algorithm("x", "1"), name=names[1]))
    if other is not None:
        layers.append(np.asarray(other, dtype=bool))
        specs.append(dataclasses.replace(GLAND.with_algorithm("x", "1"), name="Salivary gland",
                                         type=("SCT", "385294005", "Salivary gland")))
    masks = np.stack(layers, axis=-1)
    if masks.ndim == 3:
        masks = masks[None]
    seg = build_seg(
        source, masks, specs,
        series_instance_uid=deterministic_uid("test-label-series", tag, str(source.SOPInstanceUID)),
        sop_instance_uid=deterministic_uid("test-label", tag, str(source.SOPInstanceUID)),
        series_number=300, instance_number=1, series_description="OHIF Segmentation",
        manufacturer="OHIF", manufacturer_model_name="OHIF Viewer", software_versions="3.9",
        content_label="PHYSICIAN", content_creator=PHYSICIAN,
    )
    for item in seg.SegmentSequence:
        item.SegmentAlgorithmType = "MANUAL"
        for keyword in ("SegmentAlgorithmName", "SegmentationAlgorithmIdentificationSequence"):
            if keyword in item:
                delattr(item, keyword)
    seg.ContentCreatorName = PHYSICIAN
    return seg


def labelmap_seg(source: Dataset, gland: np.ndarray, nodules: np.ndarray) -> Dataset:
    """A Label Map SEG of a single-frame ``source``: pixel 1 gland, 2 nodule (nodules win), 0 none."""
    seg = manual_seg(source, gland, nodules, tag="labelmap")
    values = np.where(np.asarray(nodules, bool), 2, np.where(np.asarray(gland, bool), 1, 0)).astype(np.uint8)
    seg.SOPClassUID = seg.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.66.7"
    seg.SegmentationType = "LABELMAP"
    seg.BitsAllocated, seg.BitsStored, seg.HighBit = 8, 8, 7
    seg.NumberOfFrames = 1
    group = seg.PerFrameFunctionalGroupsSequence[0]
    del group.SegmentIdentificationSequence
    seg.PerFrameFunctionalGroupsSequence = DicomSequence([group])
    seg.PixelData = values.tobytes()
    return seg


def _patient_points(source: Dataset, polygon: np.ndarray, frame: int = 1, viewer: bool = False) -> list[float]:
    if viewer:  # as OHIF places a single-frame NM image: the top level, else the anterior defaults
        ipp = np.array([float(v) for v in source.get("ImagePositionPatient") or [0, 0, 0]])
        iop = np.array([float(v) for v in source.get("ImageOrientationPatient") or [1, 0, 0, 0, 1, 0]])
    else:
        detectors = source.get("DetectorInformationSequence") or [source]
        holder = detectors[min(frame, len(detectors)) - 1]
        ipp = np.array([float(v) for v in holder.ImagePositionPatient])
        iop = np.array([float(v) for v in holder.ImageOrientationPatient])
    dr, dc = (float(v) for v in source.PixelSpacing)
    cols, rows = polygon[:, 0], polygon[:, 1]
    pts = ipp + np.outer(cols * dc, iop[:3]) + np.outer(rows * dr, iop[3:])
    return [round(float(v), 4) for v in pts.reshape(-1)]


def ellipse(centre_col: float, centre_row: float, half_width: float, half_height: float, n: int = 48) -> np.ndarray:
    """A closed polygon (n, 2) of (column, row) pixel coordinates."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([centre_col + half_width * np.cos(t), centre_row + half_height * np.sin(t)], axis=1)


def rtstruct(source: Dataset, rois: Mapping[str, Sequence[np.ndarray]], *, tag: str = "rt", viewer: bool = False,
             image_uid: str | None = None) -> Dataset:
    """An RT Structure Set with one ROI per name, each a list of (column, row) polygons on ``source``."""
    uid = deterministic_uid("test-rtstruct", tag, str(source.SOPInstanceUID))
    ds = Dataset()
    ds.file_meta = file_meta(RTSTRUCT_STORAGE, uid)
    ds.SOPClassUID, ds.SOPInstanceUID = RTSTRUCT_STORAGE, uid
    copy_patient_and_study(ds, source)
    ds.Modality = "RTSTRUCT"
    ds.SeriesInstanceUID = deterministic_uid("test-rtstruct-series", tag, str(source.SOPInstanceUID))
    ds.SeriesNumber, ds.InstanceNumber = 301, 1
    ds.SeriesDescription = "Physician ROIs"
    ds.Manufacturer, ds.ManufacturerModelName, ds.SoftwareVersions = "3D Slicer", "SlicerRT", "5.6"
    ds.OperatorsName = PHYSICIAN
    ds.StructureSetLabel = "THYROID"
    ds.StructureSetDate, ds.StructureSetTime = "20260101", "120000"
    frame_of_reference = deterministic_uid("test-for", str(source.StudyInstanceUID))
    referenced = image_uid or str(source.SOPInstanceUID)
    image_ref = Dataset()
    image_ref.ReferencedSOPClassUID = source.SOPClassUID
    image_ref.ReferencedSOPInstanceUID = referenced
    series_ref = Dataset()
    series_ref.SeriesInstanceUID = source.SeriesInstanceUID
    series_ref.ContourImageSequence = DicomSequence([image_ref])
    study_ref = Dataset()
    study_ref.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
    study_ref.ReferencedSOPInstanceUID = source.StudyInstanceUID
    study_ref.RTReferencedSeriesSequence = DicomSequence([series_ref])
    for_ref = Dataset()
    for_ref.FrameOfReferenceUID = frame_of_reference
    for_ref.RTReferencedStudySequence = DicomSequence([study_ref])
    ds.ReferencedFrameOfReferenceSequence = DicomSequence([for_ref])
    roi_items, contour_items, observations = [], [], []
    for number, (name, polygons) in enumerate(rois.items(), 1):
        roi = Dataset()
        roi.ROINumber, roi.ReferencedFrameOfReferenceUID, roi.ROIName = number, frame_of_reference, name
        roi.ROIGenerationAlgorithm = "MANUAL"
        roi_items.append(roi)
        contours = []
        for polygon in polygons:
            contour = Dataset()
            ref = Dataset()
            ref.ReferencedSOPClassUID = source.SOPClassUID
            ref.ReferencedSOPInstanceUID = referenced
            contour.ContourImageSequence = DicomSequence([ref])
            contour.ContourGeometricType = "CLOSED_PLANAR"
            points = _patient_points(source, np.asarray(polygon, dtype=float), viewer=viewer)
            contour.NumberOfContourPoints = len(points) // 3
            contour.ContourData = points
            contours.append(contour)
        item = Dataset()
        item.ReferencedROINumber = number
        item.ROIDisplayColor = [255, 0, 255]
        item.ContourSequence = DicomSequence(contours)
        contour_items.append(item)
        obs = Dataset()
        obs.ObservationNumber, obs.ReferencedROINumber = number, number
        obs.RTROIInterpretedType, obs.ROIInterpreter = "ORGAN", PHYSICIAN
        observations.append(obs)
    ds.StructureSetROISequence = DicomSequence(roi_items)
    ds.ROIContourSequence = DicomSequence(contour_items)
    ds.RTROIObservationsSequence = DicomSequence(observations)
    return ds


def source(seed: int = 3, matrix: int = 64, uid: str = "1.2.826.0.1.3680043.10.99.1"):  # type: ignore[no-untyped-def]
    """A synthetic NM source with cold nodules and its phantom scan (ground truth): ``(ds, scan)``."""
    scan = generate_scan(seed, kind="cold_nodules", matrix=matrix)
    ds = scan_to_dataset(scan, patient_id="ID_0123456789ab", patient_name="Th_0123456789ab", study_uid=uid,
                         series_uid=uid + ".1", sop_uid=uid + ".1.1")
    return ds, scan
