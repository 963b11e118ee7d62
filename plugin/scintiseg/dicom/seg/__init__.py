"""DICOM Segmentation output of ScintiSeg (pure: pydicom + highdicom, no Orthanc).

:func:`build_seg` turns per-frame binary masks of an NM scintigraphy into one
BINARY Segmentation instance in the same study; :class:`SegmentSpec` describes
each segment (codes, algorithm). See :mod:`scintiseg.dicom.seg.writer` for why the SEG
is assembled without ``highdicom.seg.Segmentation`` (it cannot take NM sources).
"""

from scintiseg.dicom.seg.content import (
    ANATOMICAL_STRUCTURE,
    ARTIFICIAL_INTELLIGENCE,
    COLD_NODULE,
    DISPLAY_RGB,
    GLAND,
    GLAND_RGB,
    LABELS,
    MORPHOLOGICALLY_ALTERED_STRUCTURE,
    NODULE,
    NODULE_RGB,
    RGB,
    THYROID,
    Code,
    SegmentSpec,
)
from scintiseg.dicom.seg.writer import SEGMENTATION_STORAGE, build_seg, deterministic_uid, source_content_datetime

__all__ = [
    "ANATOMICAL_STRUCTURE",
    "ARTIFICIAL_INTELLIGENCE",
    "COLD_NODULE",
    "GLAND",
    "DISPLAY_RGB",
    "GLAND_RGB",
    "LABELS",
    "MORPHOLOGICALLY_ALTERED_STRUCTURE",
    "NODULE_RGB",
    "NODULE",
    "SEGMENTATION_STORAGE",
    "THYROID",
    "RGB",
    "Code",
    "SegmentSpec",
    "build_seg",
    "deterministic_uid",
    "source_content_datetime",
]
