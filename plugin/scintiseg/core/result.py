"""The study result: what ScintiSeg records on a study, typed, with one JSON form.

A job (:mod:`scintiseg.work.jobs`) records a :class:`StudyResult` on the study as
Orthanc metadata (``ResultMetadata``, default ``ScintiSegResult``); the service, the
REST views, the Explorer backend, the cluster worker and the label intake read it
back with :meth:`StudyResult.from_json`. No other module reads or writes its JSON.

The JSON form (``schema`` :data:`RESULT_SCHEMA`)::

    {"schema": 2, "status": "done", "reason": "...", "models": ["name@version", ...],
     "providers": [...], "software": "ScintiSeg x.y.z", "job_started": "...", "updated": "...",
     "study_last_update": "...", "seg_instance_ids": [...], "timings_ms": {...},
     "retriable": true,                       # failed results only
     "images": {"<SOP Instance UID>": {"status": "done", "source_instance_id": "...", ...}}}

Reading is lenient, as the text may come from an older ScintiSeg or from elsewhere:
schema 1 recorded the models per study only (each segmented image then gets the
study's models), an image entry that is not an object or has an unknown status is
dropped (its image is segmented again), and keys this version does not know are
kept as they were and written back unchanged. A text that is not a result at all
reads as ``None``, as if nothing were recorded.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any

#: 2: frames keyed by label (``{"frame", "labels": {key: {...}}}``), models per image
RESULT_SCHEMA = 2


class Status(StrEnum):
    """The status of a study result, and of each image entry in it.

    ``processing``  a worker is on it;
    ``pending``     images remain (the job was interrupted by Orthanc stopping);
    ``done``        every accepted image has a SEG (some may be skipped);
    ``failed``      at least one image (or the job) failed, ``reason`` says why;
    ``skipped``     nothing to segment, ``reason`` says why.

    An image entry is ``done``, ``failed`` or ``skipped``.
    """

    PENDING = "pending"
    PROCESSING = "processing"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"

    @property
    def unfinished(self) -> bool:
        """Work is left: the start-up scan queues the study again."""
        return self in (Status.PENDING, Status.PROCESSING)


def _status(value: object) -> Status | None:
    try:
        return Status(str(value))
    except ValueError:
        return None


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)


def _strs(value: object) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def _opt_list(value: object) -> list[Any] | None:
    return list(value) if isinstance(value, list) else None


def _timings(value: object) -> dict[str, float]:
    if not isinstance(value, Mapping):
        return {}
    out: dict[str, float] = {}
    for key, v in value.items():
        try:
            out[str(key)] = float(v)
        except (TypeError, ValueError):
            continue
    return out


@dataclass
class ImageEntry:
    """What a job recorded of one image (by SOP Instance UID in :attr:`StudyResult.images`).

    A ``done`` entry names the SEG (and preview) stored for the image, the models that
    made it, its labels, per-frame measurements, quality flags and timings; a ``failed``
    or ``skipped`` one says why, and a failed one whether trying again may help
    (``transient``). Optional fields left ``None`` are absent from the JSON.
    """

    status: Status
    source_instance_id: str = ""
    updated: str = ""
    reason: str | None = None
    #: failed for a reason outside the image (models, Orthanc): retrying may help
    transient: bool = False
    #: the models that made the SEG (``name@version``)
    models: list[str] = field(default_factory=list)
    source_sop_instance_uid: str | None = None
    seg_sop_instance_uid: str | None = None
    seg_series_instance_uid: str | None = None
    seg_instance_id: str | None = None
    store_status: str | None = None
    preview_instance_id: str | None = None
    preview_error: str | None = None
    #: label keys segmented (``gland``, ``nodule``...)
    labels: list[str] | None = None
    #: per frame: ``{"frame": n, "labels": {key: {measurement: value}}}``
    frames: list[dict[str, Any]] | None = None
    #: quality flags (``{"code", "severity", "message", ...}``)
    flags: list[dict[str, Any]] | None = None
    #: the shadow models' figures (:mod:`scintiseg.pipeline.shadow`)
    shadow: dict[str, Any] | None = None
    timings_ms: dict[str, float] | None = None
    #: keys of the stored entry this version does not know, written back as they were
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return self.status is Status.DONE

    @property
    def failed(self) -> bool:
        return self.status is Status.FAILED

    def flag_codes(self) -> list[str]:
        """The codes of the entry's quality flags."""
        return [str(f["code"]) for f in self.flags or [] if isinstance(f, Mapping) and f.get("code")]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.extra)
        for f in fields(self):
            if f.name == "extra":
                continue
            value = getattr(self, f.name)
            if f.name == "transient":
                if value:
                    out["transient"] = True
            elif f.name == "models":
                if value:
                    out["models"] = list(value)
            elif f.name == "status":
                out["status"] = str(value)
            elif value is not None:
                out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], study_models: list[str] | None = None) -> ImageEntry | None:
        """The entry of a stored object; ``None`` if it has no known status.

        ``study_models`` fill the models of a segmented entry that records none (schema 1).
        """
        status = _status(data.get("status"))
        if status is None:
            return None
        known = {f.name for f in fields(cls)}
        models = _strs(data.get("models"))
        if not models and status is Status.DONE and "models" not in data:
            models = list(study_models or [])
        return cls(
            status=status,
            source_instance_id=str(data.get("source_instance_id") or ""),
            updated=str(data.get("updated") or ""),
            reason=_opt_str(data.get("reason")),
            transient=bool(data.get("transient")),
            models=models,
            source_sop_instance_uid=_opt_str(data.get("source_sop_instance_uid")),
            seg_sop_instance_uid=_opt_str(data.get("seg_sop_instance_uid")),
            seg_series_instance_uid=_opt_str(data.get("seg_series_instance_uid")),
            seg_instance_id=_opt_str(data.get("seg_instance_id")),
            store_status=_opt_str(data.get("store_status")),
            preview_instance_id=_opt_str(data.get("preview_instance_id")),
            preview_error=_opt_str(data.get("preview_error")),
            labels=_opt_list(data.get("labels")),
            frames=_opt_list(data.get("frames")),
            flags=_opt_list(data.get("flags")),
            shadow=dict(data["shadow"]) if isinstance(data.get("shadow"), Mapping) else None,
            timings_ms=_timings(data["timings_ms"]) if "timings_ms" in data else None,
            extra={k: v for k, v in data.items() if k not in known},
        )


@dataclass
class StudyResult:
    """The result recorded on a study (see the module doc for its JSON form)."""

    status: Status
    reason: str = ""
    schema: int = RESULT_SCHEMA
    #: the models that made the study's SEGs (sorted ``name@version``)
    models: list[str] = field(default_factory=list)
    #: the onnxruntime execution providers in use
    providers: list[str] | None = None
    software: str | None = None
    job_started: str | None = None
    updated: str | None = None
    #: Orthanc's ``LastUpdate`` of the study when the result was recorded
    study_last_update: str | None = None
    seg_instance_ids: list[str] = field(default_factory=list)
    images: dict[str, ImageEntry] = field(default_factory=dict)
    timings_ms: dict[str, float] = field(default_factory=dict)
    #: failed results only: whether trying again may help
    retriable: bool | None = None
    #: on an original kept beside its pseudonymized copy: the copy's Orthanc id
    pseudonymized_study: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def unfinished(self) -> bool:
        return self.status.unfinished

    def done_images(self) -> list[ImageEntry]:
        """The entries of the images with a SEG, in SOP Instance UID order."""
        return [self.images[k] for k in sorted(self.images) if self.images[k].done]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.extra)
        out.update(
            schema=self.schema,
            status=str(self.status),
            reason=self.reason,
            models=list(self.models),
            study_last_update=self.study_last_update,
            seg_instance_ids=list(self.seg_instance_ids),
            images={k: e.to_dict() for k, e in self.images.items()},
            timings_ms=dict(self.timings_ms),
        )
        for name in ("providers", "software", "job_started", "updated", "retriable", "pseudonymized_study"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out

    def to_json(self) -> str:
        """The stored text: compact, keys sorted (the same result always gives the same text)."""
        return json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StudyResult | None:
        """The result of a stored object; ``None`` if it has no known status."""
        status = _status(data.get("status"))
        if status is None:
            return None
        known = {f.name for f in fields(cls)}
        models = _strs(data.get("models"))
        raw_images = data.get("images")
        images: dict[str, ImageEntry] = {}
        if isinstance(raw_images, Mapping):
            for uid, raw in raw_images.items():
                entry = ImageEntry.from_dict(raw, models) if isinstance(raw, Mapping) else None
                if entry is not None:
                    images[str(uid)] = entry
        try:
            schema = int(data.get("schema") or 1)
        except (TypeError, ValueError):
            schema = 1
        retriable = data.get("retriable")
        return cls(
            status=status,
            reason=str(data.get("reason") or ""),
            schema=schema,
            models=models,
            providers=_strs(data["providers"]) if "providers" in data else None,
            software=_opt_str(data.get("software")),
            job_started=_opt_str(data.get("job_started")),
            updated=_opt_str(data.get("updated")),
            study_last_update=_opt_str(data.get("study_last_update")),
            seg_instance_ids=_strs(data.get("seg_instance_ids")),
            images=images,
            timings_ms=_timings(data.get("timings_ms")),
            retriable=None if retriable is None else bool(retriable),
            pseudonymized_study=_opt_str(data.get("pseudonymized_study")),
            extra={k: v for k, v in data.items() if k not in known},
        )

    @classmethod
    def from_json(cls, text: str | bytes | None) -> StudyResult | None:
        """The result of a stored text; ``None`` when absent, not JSON, or not a result."""
        if not text:
            return None
        try:
            value = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None
        return cls.from_dict(value) if isinstance(value, Mapping) else None
