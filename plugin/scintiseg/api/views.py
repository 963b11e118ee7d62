"""The JSON views of the ``/scintiseg/`` API, drawn from the typed study result.

:func:`study_view` answers ``GET /scintiseg/studies/{id}`` from the
:class:`~scintiseg.core.result.StudyResult` recorded on the study and the
queue; the view's fields are documented in ``docs/openapi.yaml``. Pure
functions: no I/O, no route.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from scintiseg.core.result import ImageEntry, Status, StudyResult

#: Figures a label may carry (from :data:`scintiseg.models.measurements.KINDS`), in answer order.
LABEL_FIGURES = ("pixels", "area_mm2", "counts", "right_lobe_share_pct", "left_lobe_share_pct", "count")

#: Label key -> ``{"name", "colour", "numbered"}`` (the registry's labels).
LabelInfo = Mapping[str, Mapping[str, Any]]


def model_view(ident: object) -> dict[str, str]:
    """``name@version`` as ``{"ident", "name", "version"}``."""
    text = str(ident)
    name, _, version = text.partition("@")
    return {"ident": text, "name": name, "version": version}


def _component(number: int, raw: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "number": number,
        "area_mm2": raw.get("area_mm2"),
        "pixels": raw.get("pixels"),
        "lobe": raw.get("lobe"),
        "pole": raw.get("pole"),
        "count_ratio": raw.get("count_ratio"),
        "centre_px": raw.get("centre_px"),
    }


def _legacy_labels(raw: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The figures of a frame recorded before results were keyed by label (schema 1)."""
    nodules = list(raw.get("nodules") or [])
    return {
        "gland": {
            "pixels": raw.get("gland_pixels"), "area_mm2": raw.get("gland_area_mm2"),
            "counts": raw.get("gland_counts"), "right_lobe_share_pct": raw.get("right_lobe_share_pct"),
            "left_lobe_share_pct": raw.get("left_lobe_share_pct"),
        },
        "nodule": {"count": raw.get("nodule_count", len(nodules)), "components": nodules},
    }


def frame_labels(raw: Mapping[str, Any], info: LabelInfo) -> list[dict[str, Any]]:
    """A recorded frame's figures as a list of labels, each with its name and colour."""
    labels = raw.get("labels")
    if not isinstance(labels, Mapping):
        labels = _legacy_labels(raw)
    out = []
    for key, figures in labels.items():
        if not isinstance(figures, Mapping):
            continue
        meta = info.get(str(key)) or {}
        entry: dict[str, Any] = {
            "key": str(key),
            "name": meta.get("name") or str(key),
            "colour": list(meta["colour"]) if meta.get("colour") else None,
            "numbered": bool(meta.get("numbered", "components" in figures)),
        }
        for name in LABEL_FIGURES:
            if name in figures:
                entry[name] = figures[name]
        if "components" in figures:
            entry["components"] = [
                _component(i, c) for i, c in enumerate(figures.get("components") or [], 1) if isinstance(c, Mapping)
            ]
        out.append(entry)
    return out


def _flags(entry: ImageEntry) -> list[dict[str, str]]:
    """Quality flags of an image, ``{"code", "message"}`` each (others are dropped)."""
    return [
        {"code": str(f["code"]), "message": str(f.get("message") or "")}
        for f in entry.flags or [] if isinstance(f, Mapping) and f.get("code")
    ]


def image_view(sop_uid: str, entry: ImageEntry, info: LabelInfo) -> dict[str, Any]:
    """One image of ``GET /scintiseg/studies/{id}``."""
    frames = entry.frames or []
    return {
        "sop_instance_uid": entry.source_sop_instance_uid or sop_uid,
        "instance_id": entry.source_instance_id or None,
        "status": str(entry.status),
        "reason": entry.reason or "",
        "seg_instance_id": entry.seg_instance_id,
        "seg_sop_instance_uid": entry.seg_sop_instance_uid,
        "seg_series_instance_uid": entry.seg_series_instance_uid,
        "models": [model_view(m) for m in entry.models],
        "frames": [
            {"frame": f.get("frame", i), "labels": frame_labels(f, info)}
            for i, f in enumerate(frames, 1) if isinstance(f, Mapping)
        ],
        "flags": _flags(entry),
        "timings_ms": dict(entry.timings_ms or {}),
    }


def study_links(study_id: str) -> dict[str, str]:
    return {
        "self": f"/scintiseg/studies/{study_id}",
        "preview": f"/scintiseg/studies/{study_id}/preview.png",
        "process": f"/scintiseg/studies/{study_id}/process",
    }


def study_view(
    study_id: str,
    result: StudyResult | None,
    queue: Mapping[str, Any],
    labels: LabelInfo | None = None,
) -> dict[str, Any]:
    """The answer of ``GET /scintiseg/studies/{id}`` from the recorded result and the queue.

    ``labels`` (key -> name, colour, numbered) names the labels of the recorded figures.
    """
    info = labels or {}
    running = study_id in (queue.get("running") or [])
    pending = study_id in (queue.get("pending") or [])
    if result is None:
        if running:
            status, reason = Status.PROCESSING, "a worker is segmenting the study"
        elif pending:
            status, reason = Status.PENDING, "queued"
        else:
            status, reason = Status.PENDING, "not processed yet (the study is not stable yet, or ScintiSeg is off)"
        return {
            "study": study_id, "status": str(status), "reason": reason, "updated": None,
            "models": [], "software": None, "seg_instance_ids": [], "images": [],
            "timings_ms": {}, "links": study_links(study_id),
        }
    status = result.status
    if running and status is not Status.PROCESSING:
        status, reason = Status.PROCESSING, "a worker is segmenting the study again"
    else:
        reason = result.reason
    return {
        "study": study_id,
        "status": str(status),
        "reason": reason,
        "updated": result.updated,
        "models": [model_view(m) for m in result.models],
        "software": result.software,
        "seg_instance_ids": list(result.seg_instance_ids),
        "images": [image_view(uid, entry, info) for uid, entry in result.images.items()],
        "timings_ms": dict(result.timings_ms),
        "links": study_links(study_id),
    }


def queue_view(snap: Mapping[str, Any]) -> dict[str, Any]:
    """The answer of ``GET /scintiseg/queue`` from the service's queue snapshot."""
    failed = []
    for item in snap.get("failed") or []:
        if isinstance(item, Mapping):
            entry = {"study": str(item.get("study")), "reason": str(item.get("reason") or ""),
                     "updated": item.get("updated"), "attempts": int(item.get("attempts") or 1),
                     "retry_at": item.get("retry_at")}
            if "node" in item:  # a cluster: the node that ran it
                entry["node"] = item.get("node")
            failed.append(entry)
    retrying = [
        {"study": str(i.get("study")), "attempts": int(i.get("attempts") or 0), "retry_at": i.get("retry_at"),
         "reason": str(i.get("reason") or "")}
        for i in snap.get("retrying") or [] if isinstance(i, Mapping)
    ]
    body: dict[str, Any] = {
        "state": snap.get("state"),
        "pending": [str(s) for s in snap.get("pending") or []],
        "running": [str(s) for s in snap.get("running") or []],
        "retrying": retrying,
        "failed": failed,
    }
    if isinstance(snap.get("cluster"), Mapping):  # several nodes on one PostgreSQL (docs/cluster.md)
        body["cluster"] = snap["cluster"]
    return body


def health_view(health: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """The answer of ``GET /scintiseg/health``, and whether the service is running."""
    ok = health.get("state") == "running"
    body = {
        "status": "ok" if ok else "unavailable",
        "state": health.get("state"),
        "error": health.get("error"),
        "models": [str(m) for m in health.get("models") or []],
        "providers": [str(p) for p in health.get("providers") or []],
        "software": health.get("software"),
    }
    return body, ok
