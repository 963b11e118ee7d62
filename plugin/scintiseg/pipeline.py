"""One NM instance in, one DICOM-SEG and its measurements out.

This is the whole clinical job, free of Orthanc: the command line, the
benchmarks and the Orthanc worker all call :meth:`Pipeline.process`.

UIDs are derived from the source UIDs and the model identities, so running
the same models on the same image gives the same SEG instance again (Orthanc
then keeps one copy) and a model upgrade gives a new series.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pydicom

from . import __version__
from .inference import Segmenter
from .measurements import measure_frame
from .modelcard import ModelCard
from .nm import nm_frames, pixel_spacing_mm
from .quality import check_counts
from .seg import DISPLAY_RGB, SegmentSpec, build_seg, deterministic_uid

DEFAULT_SERIES_NUMBER = 9901
DEFAULT_SERIES_DESCRIPTION = "ScintiSeg {models}"
DEFAULT_PREVIEW_SERIES_NUMBER = 9902
DEFAULT_PREVIEW_SERIES_DESCRIPTION = "ScintiSeg preview"


@dataclass(frozen=True)
class OutputOptions:
    """How the SEG series is labelled."""

    series_number: int = DEFAULT_SERIES_NUMBER
    #: ``{models}`` is replaced by the model identities, e.g. ``scintiseg-gland@1.0.0``.
    series_description: str = DEFAULT_SERIES_DESCRIPTION
    #: the preview Secondary Capture series (:meth:`Pipeline.preview`)
    preview_series_number: int = DEFAULT_PREVIEW_SERIES_NUMBER
    preview_series_description: str = DEFAULT_PREVIEW_SERIES_DESCRIPTION


@dataclass
class InstanceResult:
    """What the pipeline made of one source NM instance."""

    source_sop_instance_uid: str
    seg: pydicom.Dataset
    frames: list[dict[str, Any]]
    timings_ms: dict[str, float] = field(default_factory=dict)
    #: (frames, rows, cols, 2) boolean gland and nodule masks on the source matrix
    masks: np.ndarray | None = field(default=None, repr=False)

    def summary(self) -> dict[str, Any]:
        """JSON-ready description (no pixel data, no patient identity)."""
        return {
            "source_sop_instance_uid": self.source_sop_instance_uid,
            "seg_sop_instance_uid": str(self.seg.SOPInstanceUID),
            "frames": self.frames,
            "timings_ms": {k: round(v, 2) for k, v in self.timings_ms.items()},
        }


def segment_spec(card: ModelCard) -> SegmentSpec:
    """The SEG segment that a model card's label describes."""
    return SegmentSpec(
        label=1,
        name=card.label_name,
        category=card.category,
        type=card.type,
        anatomic_region=card.anatomic_region,
        algorithm_name=card.name,
        algorithm_version=card.version,
        display_rgb=DISPLAY_RGB.get(card.task),
    )


class Pipeline:
    """Segment NM instances with a loaded :class:`Segmenter` and encode SEG."""

    def __init__(self, segmenter: Segmenter, options: OutputOptions | None = None) -> None:
        self.segmenter = segmenter
        self.options = options or OutputOptions()
        self.segments = [segment_spec(segmenter.gland.card), segment_spec(segmenter.nodule.card)]
        self.models = ", ".join(segmenter.model_idents)

    def seg_uids(self, source: pydicom.Dataset) -> tuple[str, str]:
        """(series, instance) UIDs of the SEG made from ``source`` by these models."""
        models = self.segmenter.model_idents
        series = deterministic_uid("scintiseg-series", str(source.SeriesInstanceUID), *models)
        instance = deterministic_uid("scintiseg-instance", str(source.SOPInstanceUID), *models)
        return series, instance

    def process(self, source: pydicom.Dataset) -> InstanceResult:
        """Segment every frame of ``source`` and build its SEG.

        Raises :class:`scintiseg.nm.NotNMImageError`,
        :class:`scintiseg.quality.NoCountsError` (both skip the image) or
        :class:`scintiseg.nm.UnreadableImageError` for inputs it cannot use.
        """
        t0 = time.perf_counter()
        frames = nm_frames(source)
        check_counts(frames)  # an empty image is skipped (no_counts), not given a SEG saying "no thyroid"
        spacing = pixel_spacing_mm(source)
        iso = None if spacing is None else float(np.sqrt(spacing[0] * spacing[1]))
        t1 = time.perf_counter()
        results = self.segmenter.segment_frames(frames, iso)
        masks = np.stack(
            [np.stack([r.gland, r.nodules], axis=-1) for r in results], axis=0
        )  # (frames, rows, cols, 2)
        measurements = []
        for i, (frame, r) in enumerate(zip(frames, results, strict=True)):
            m = measure_frame(frame, r.gland, r.nodules, iso)
            m["frame"] = i + 1
            measurements.append(m)
        t2 = time.perf_counter()
        series_uid, sop_uid = self.seg_uids(source)
        seg = build_seg(
            source,
            masks,
            self.segments,
            series_instance_uid=series_uid,
            sop_instance_uid=sop_uid,
            series_number=self.options.series_number,
            instance_number=int(getattr(source, "InstanceNumber", 1) or 1),
            series_description=self.options.series_description.format(models=self.models)[:64],
            software_versions=f"ScintiSeg {__version__}",
        )
        t3 = time.perf_counter()
        timings = {"decode_ms": (t1 - t0) * 1e3}
        for key in results[0].timings_ms:
            timings[key] = sum(r.timings_ms[key] for r in results)
        timings["measure_ms"] = (t2 - t1) * 1e3 - sum(
            timings[k] for k in results[0].timings_ms
        )
        timings["seg_encode_ms"] = (t3 - t2) * 1e3
        timings["total_ms"] = (t3 - t0) * 1e3
        return InstanceResult(
            source_sop_instance_uid=str(source.SOPInstanceUID),
            seg=seg,
            frames=measurements,
            timings_ms=timings,
            masks=masks,
        )

    def preview(self, source: pydicom.Dataset, result: InstanceResult) -> pydicom.Dataset:
        """The preview picture of ``result`` as a Secondary Capture in ``source``'s study.

        Deterministic like the SEG: its UIDs derive from the source UIDs and
        the model identities, so a re-run stores the same instance again.
        """
        from .preview import preview_secondary_capture, render_preview_rgb

        if result.masks is None:
            raise ValueError("the result carries no masks to draw")
        models = self.segmenter.model_idents
        rgb = render_preview_rgb(
            nm_frames(source), result.masks[..., 0], result.masks[..., 1], models=models
        )
        return preview_secondary_capture(
            source,
            rgb,
            series_uid=deterministic_uid("scintiseg-preview-series", str(source.SeriesInstanceUID), *models),
            sop_uid=deterministic_uid("scintiseg-preview-instance", str(source.SOPInstanceUID), *models),
            series_number=self.options.preview_series_number,
            series_description=self.options.preview_series_description[:64],
            instance_number=int(getattr(source, "InstanceNumber", 1) or 1),
        )
