"""One NM instance in, one DICOM-SEG and its measurements out.

This is the whole clinical job, free of Orthanc: the command line, the
benchmarks and the Orthanc worker all call :meth:`Pipeline.process`. The
models come from a registry snapshot (:class:`scintiseg.models.registry.ModelSet`):
the image's header chooses them (:meth:`ModelSet.plan`), they run in
dependency order, and their masks, measurements, SEG segments and preview
layers are keyed by label: a model with a new label needs no code here.

UIDs are derived from the source UIDs and the identities of the models that
made the SEG, so running the same models on the same image gives the same SEG
instance again (Orthanc then keeps one copy) and a model upgrade gives a new
series.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom

from scintiseg import __version__
from scintiseg.dicom.nm import SkippedImageError, nm_frames, pixel_spacing_mm
from scintiseg.dicom.seg import SegmentSpec, build_seg, deterministic_uid
from scintiseg.models.card import Label
from scintiseg.models.measurements import measure_frame
from scintiseg.models.registry import ModelSet, Plan, Registry, onnx_loader
from scintiseg.models.rules import ImageFacts
from scintiseg.models.runtime import DEFAULT_PROVIDERS, Segmenter
from scintiseg.pipeline.preview import Layer, preview_secondary_capture, render_preview_rgb
from scintiseg.pipeline.quality import check_counts, frame_flags, image_flags
from scintiseg.pipeline.shadow import AgreementLog, compare

#: The label the quality flags read (the gland outline).
GLAND_KEY = "gland"
DEFAULT_SERIES_NUMBER = 9901
DEFAULT_SERIES_DESCRIPTION = "ScintiSeg {models}"
DEFAULT_PREVIEW_SERIES_NUMBER = 9902
DEFAULT_PREVIEW_SERIES_DESCRIPTION = "ScintiSeg preview"


class NoModelApplies(SkippedImageError):
    """No active model applies to this image (its header rules); the image is skipped."""

    code = "no_model"


class ImplausibleOutline(SkippedImageError):
    """A label's outline measures what no image the model was made for shows (the card's
    ``outline``): the image is of another organ or exam; it is skipped, nothing stored."""

    code = "implausible_outline"


def outline_extent_mm(mask: np.ndarray, spacing: tuple[float, float]) -> tuple[float, float] | None:
    """(width, height) in mm of the bounding box of a frame's mask; ``None`` when it is empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return None
    return (float(cols[-1] - cols[0] + 1) * spacing[1], float(rows[-1] - rows[0] + 1) * spacing[0])


class ModelUnavailable(RuntimeError):
    """A model that served and would apply to this image is refused now (a file removed or
    corrupted in place): the image fails, and is retried, rather than lose its labels."""

    @classmethod
    def of(cls, unavailable: list[tuple[str, str]]) -> ModelUnavailable:
        ident, error = unavailable[0]
        return cls(f"model {ident} is refused now ({error}); restore its files or remove its folder")


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
    #: the labels of the SEG's segments, in segment order
    labels: list[Label] = field(default_factory=list)
    #: label key -> (frames, rows, cols) boolean mask on the source matrix
    masks: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    #: the identities of the models that made the SEG, in run order
    models: list[str] = field(default_factory=list)
    #: shadow model identity -> agreement with the active model (never shown)
    shadow: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: quality flags of the image: ``{"code", "message"}`` each
    flags: list[dict[str, str]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """JSON-ready description (no pixel data, no patient identity)."""
        out = {
            "source_sop_instance_uid": self.source_sop_instance_uid,
            "seg_sop_instance_uid": str(self.seg.SOPInstanceUID),
            "models": list(self.models),
            "labels": [label.key for label in self.labels],
            "frames": self.frames,
            "flags": [dict(f) for f in self.flags],
            "timings_ms": {k: round(v, 2) for k, v in self.timings_ms.items()},
        }
        if self.shadow:
            out["shadow"] = self.shadow
        return out


def segment_spec(label: Label, model: Any) -> SegmentSpec:
    """The SEG segment of a label, made by ``model`` (a :class:`scintiseg.models.runtime.LoadedModel`)."""
    return SegmentSpec(
        label=1,
        name=label.name,
        category=label.category,
        type=label.type,
        anatomic_region=label.anatomic_region,
        algorithm_name=model.card.name,
        algorithm_version=model.card.version,
        display_rgb=label.colour,
    )


class Pipeline:
    """Segment NM instances with the models of a registry snapshot and encode SEG."""

    def __init__(self, models: ModelSet, options: OutputOptions | None = None,
                 agreement: AgreementLog | None = None) -> None:
        self.model_set = models
        self.options = options or OutputOptions()
        self.agreement = agreement
        self._segmenters: dict[tuple[str, ...], Segmenter] = {}

    @classmethod
    def from_models_dir(
        cls, models_dir: Path, providers: Any = DEFAULT_PROVIDERS, threads: int = 0,
        options: OutputOptions | None = None,
    ) -> Pipeline:
        return cls(Registry(Path(models_dir), onnx_loader(providers, threads)).current, options)

    @property
    def models(self) -> list[str]:
        """The active models' identities (what may serve)."""
        return self.model_set.models

    def applies_to_series(self, modality: str, description: str) -> bool:
        return self.model_set.applies_to_series(modality, description)

    def unavailable(self, modality: str, description: str) -> list[tuple[str, str]]:
        return self.model_set.unavailable_for_series(modality, description)

    def outdated(self, idents: Any) -> list[str]:
        return self.model_set.outdated(list(idents))

    def plan(self, source: pydicom.Dataset) -> Plan:
        return self.model_set.plan(
            ImageFacts.of(source),
            modality=str(source.get("Modality", "") or ""),
            description=str(source.get("SeriesDescription", "") or ""),
            sop_class_uid=str(source.get("SOPClassUID", "") or ""),
        )

    def segmenter(self, plan: Plan) -> Segmenter:
        key = tuple(m.ident for m in plan.models) + tuple(sorted(plan.owners.items()))  # type: ignore[arg-type]
        seg = self._segmenters.get(key)
        if seg is None:
            seg = self._segmenters[key] = Segmenter(plan.models, plan.owners)
        return seg

    def seg_uids(self, source: pydicom.Dataset, models: list[str]) -> tuple[str, str]:
        """(series, instance) UIDs of the SEG made from ``source`` by ``models``."""
        series = deterministic_uid("scintiseg-series", str(source.SeriesInstanceUID), *models)
        instance = deterministic_uid("scintiseg-instance", str(source.SOPInstanceUID), *models)
        return series, instance

    def process(self, source: pydicom.Dataset) -> InstanceResult:
        """Segment every frame of ``source`` and build its SEG.

        Raises :class:`NoModelApplies` when no model applies to the image,
        :class:`scintiseg.dicom.nm.NotNMImageError`,
        :class:`scintiseg.pipeline.quality.NoCountsError` (all three skip the image) or
        :class:`scintiseg.dicom.nm.UnreadableImageError` for inputs it cannot use.
        """
        t0 = time.perf_counter()
        plan = self.plan(source)
        if plan.unavailable:
            raise ModelUnavailable.of(plan.unavailable)
        if not plan.models:
            raise NoModelApplies(plan.why_not)
        frames = nm_frames(source)
        check_counts(frames)  # an empty image is skipped (no_counts), not given a SEG saying "no thyroid"
        spacing = pixel_spacing_mm(source)
        iso = None if spacing is None else float(np.sqrt(spacing[0] * spacing[1]))
        t1 = time.perf_counter()
        segmenter = self.segmenter(plan)
        results = segmenter.segment_frames(frames, iso)
        labels = [lb for m in segmenter.models for lb in m.card.labels if plan.owners.get(lb.key) == m.ident]
        masks = {lb.key: np.stack([r.masks[lb.key] for r in results]) for lb in labels}
        self._check_outlines(segmenter, plan, labels, masks, spacing)
        specs = [m for model in segmenter.models for m in model.card.measurements if m.label in masks]
        measurements = []
        for i, (frame, r) in enumerate(zip(frames, results, strict=True)):
            m = measure_frame(frame, {k: r.masks[k] for k in masks}, specs, iso)
            measurements.append({"frame": i + 1, **m})
        t2 = time.perf_counter()
        models = segmenter.model_idents
        series_uid, sop_uid = self.seg_uids(source, models)
        owner = {m.ident: m for m in segmenter.models}
        seg = build_seg(
            source,
            np.stack([masks[lb.key] for lb in labels], axis=-1),
            [segment_spec(lb, owner[plan.owners[lb.key]]) for lb in labels],
            series_instance_uid=series_uid,
            sop_instance_uid=sop_uid,
            series_number=self.options.series_number,
            instance_number=int(getattr(source, "InstanceNumber", 1) or 1),
            series_description=self.options.series_description.format(models=", ".join(models))[:64],
            software_versions=f"ScintiSeg {__version__}",
        )
        t3 = time.perf_counter()
        flags = self._flags(frames, results, iso)
        t4 = time.perf_counter()
        timings = {"decode_ms": (t1 - t0) * 1e3}
        for key in results[0].timings_ms:
            timings[key] = sum(r.timings_ms[key] for r in results)
        timings["measure_ms"] = (t2 - t1) * 1e3 - sum(timings[k] for k in results[0].timings_ms)
        timings["seg_encode_ms"] = (t3 - t2) * 1e3
        timings["flags_ms"] = (t4 - t3) * 1e3
        timings["total_ms"] = (t4 - t0) * 1e3
        result = InstanceResult(
            source_sop_instance_uid=str(source.SOPInstanceUID),
            seg=seg,
            frames=measurements,
            timings_ms=timings,
            labels=labels,
            masks=masks,
            models=models,
            flags=flags,
        )
        if plan.shadows:
            t = time.perf_counter()
            result.shadow = self._shadows(plan, frames, iso, results, masks, source)
            timings["shadow_ms"] = (time.perf_counter() - t) * 1e3
        return result

    @staticmethod
    def _check_outlines(
        segmenter: Segmenter, plan: Plan, labels: list[Label], masks: dict[str, np.ndarray],
        spacing: tuple[float, float] | None,
    ) -> None:
        """:class:`ImplausibleOutline` when a label's outline breaks its model's card limits."""
        if spacing is None:
            return  # no size without a pixel spacing
        names = {lb.key: lb.name for lb in labels}
        for model in segmenter.models:
            for key, limits in model.card.outline.items():
                if key not in masks or plan.owners.get(key) != model.ident:
                    continue
                for i, frame in enumerate(masks[key], 1):
                    extent = outline_extent_mm(frame, spacing)
                    why = limits.why_not(*extent) if extent is not None else None
                    if why is not None:
                        raise ImplausibleOutline(
                            f"the {names[key]} outline of {model.ident} on frame {i} is {why}: "
                            "not an image this model was made for"
                        )

    @staticmethod
    def _flags(frames: np.ndarray, results: list[Any], iso: float | None) -> list[dict[str, str]]:
        """The image's quality flags (:mod:`scintiseg.pipeline.quality`), read on the gland label's mask."""
        if not results or GLAND_KEY not in results[0].masks:
            return []
        return image_flags(
            [
                frame_flags(f, r.masks[GLAND_KEY], iso, r.undecided.get(GLAND_KEY))
                for f, r in zip(frames, results, strict=True)
            ]
        )

    def _shadows(
        self, plan: Plan, frames: np.ndarray, iso: float | None, results: list[Any],
        masks: dict[str, np.ndarray], source: pydicom.Dataset,
    ) -> dict[str, dict[str, Any]]:
        """Run each shadow beside its active model and record how far they agree (never shown)."""
        from contextlib import nullcontext

        out = {}
        for shadow, active in plan.shadows:
            known = [dict(r.masks) for r in results]
            made = shadow.segment(frames, iso, known, lambda _stage: nullcontext())
            keys = [k for k in shadow.card.label_keys if k in masks and plan.owners.get(k) == active.ident]
            theirs = {k: np.stack([m[k] for m in made]) for k in keys}
            numbered = [lb.key for lb in shadow.card.labels if lb.numbered]
            record = {"against": active.ident, **compare({k: masks[k] for k in keys}, theirs, numbered)}
            out[shadow.ident] = record
            if self.agreement is not None:
                self.agreement.add(shadow.ident, {"image": str(source.SOPInstanceUID), **record})
        return out

    def preview(self, source: pydicom.Dataset, result: InstanceResult) -> pydicom.Dataset:
        """The preview picture of ``result`` as a Secondary Capture in ``source``'s study.

        Deterministic like the SEG: its UIDs derive from the source UIDs and
        the model identities, so a re-run stores the same instance again.
        """
        if not result.masks:
            raise ValueError("the result carries no masks to draw")
        models = result.models
        layers = [Layer(lb.name, lb.colour, result.masks[lb.key], lb.numbered) for lb in result.labels]
        rgb = render_preview_rgb(
            nm_frames(source), layers, models=models, flags=[f.get("code", "") for f in result.flags]
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


class PipelineSource:
    """The pipeline of the registry's current snapshot, one per snapshot (jobs call it once each).

    Before handing a snapshot out it looks whether a folder changed since the last scan
    (a few ``stat`` calls) and rescans first if so, so a job never starts on models
    whose files were removed or replaced after the last poll.
    """

    def __init__(self, registry: Any, options: OutputOptions | None = None,
                 agreement: AgreementLog | None = None) -> None:
        self.registry = registry
        self.options = options or OutputOptions()
        self.agreement = agreement if agreement is not None else AgreementLog()
        self._pipeline: Pipeline | None = None

    def __call__(self) -> Pipeline:
        # a folder changed since the last poll is taken in before the job starts on it
        current = self.registry.reload() if self.registry.changed() else self.registry.current
        pipeline = self._pipeline
        if pipeline is None or pipeline.model_set is not current:
            pipeline = self._pipeline = Pipeline(current, self.options, self.agreement)
        return pipeline
