"""The ``/scintiseg/`` REST API, as pure functions of a small backend interface.

Routes (documented in ``docs/openapi.yaml``, which a unit test checks against
these functions' answers)::

    GET  /scintiseg/health                      200 running, 503 not (models missing, stopped)
    GET  /scintiseg/models                      every model folder: stage, error, labels, rules
    POST /scintiseg/models/reload               rescan the models folder now
    GET  /scintiseg/models/{name}/{version}/agreement   a shadow model's agreement summary
    GET  /scintiseg/queue                       pending, running and failed studies
    GET  /scintiseg/studies/{id}                status, per-image measurements by label, flags
    GET  /scintiseg/studies/{id}/preview.png    the scan with the outlines (PNG)
    POST /scintiseg/studies/{id}/process        queue the study again (images made by a
                                                superseded version too); body {"force": bool}
    GET  /scintiseg/studies/{id}/labels         physician labels (scintiseg.api.data)
    GET  /scintiseg/stats                       AI-vs-physician agreement (scintiseg.api.data)
    POST /scintiseg/datasets/export             nnU-Net raw dataset zip (scintiseg.api.data)

``{id}`` is Orthanc's study identifier. :func:`dispatch` is the only entry
point: it takes the method, the URI and the body, and returns a
:class:`Response` ``(status, body, content_type)``; it never raises. Errors
are JSON ``{"error": "...", "status": N}``: 404 unknown route or study, 400
bad body, 405 wrong method (then :func:`allowed_methods` gives the ``Allow``
header), 503 ScintiSeg not running, 500 anything unexpected (logged with its
traceback). Nothing here imports ``orthanc``: the entry script registers
:data:`ORTHANC_ROUTES` and forwards to :func:`dispatch`, and tests use a fake
:class:`Backend`. Orthanc's HTTP authentication applies to these routes like
to its own, since they are REST callbacks of Orthanc's server.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, Protocol

from scintiseg.core.store import NotFoundError

log = logging.getLogger(__name__)

__all__ = [
    "FALLBACK_ROUTE",
    "ORTHANC_ROUTES",
    "Backend",
    "Response",
    "allowed_methods",
    "dispatch",
    "frame_labels",
    "study_view",
]

JSON = "application/json"
PNG = "image/png"
STATUSES = ("pending", "processing", "done", "failed", "skipped")

_ID = r"[0-9a-f]{8}(?:-[0-9a-f]{8}){4}"

#: Regexes to register with ``orthanc.RegisterRestCallback`` (full-URI matches).
ORTHANC_ROUTES: tuple[str, ...] = (
    r"/scintiseg/health",
    r"/scintiseg/models",
    r"/scintiseg/models/reload",
    r"/scintiseg/models/([^/]+)/([^/]+)/agreement",
    r"/scintiseg/queue",
    r"/scintiseg/studies/([^/]+)",
    r"/scintiseg/studies/([^/]+)/preview\.png",
    r"/scintiseg/studies/([^/]+)/process",
    # physician labels, agreement and datasets (scintiseg.api.data)
    r"/scintiseg/studies/([^/]+)/labels",
    r"/scintiseg/stats",
    r"/scintiseg/datasets/export",
)

#: Registered after :data:`ORTHANC_ROUTES` (Orthanc takes the first callback whose regex
#: matches): any other URI under ``/scintiseg/`` is answered by :func:`dispatch` too, so that
#: an unknown path, or an id that Orthanc splits (it reads ``\`` as ``/``), gets this API's
#: JSON 404 rather than Orthanc's own error object.
FALLBACK_ROUTE = r"/scintiseg/(.*)"


class Backend(Protocol):
    """What the routes need from the running plugin (the adapter implements it)."""

    def study_exists(self, study_id: str) -> bool:
        """Whether Orthanc holds the study."""
        ...

    def get_study_result(self, study_id: str) -> dict[str, Any] | None:
        """The result recorded on the study (:func:`scintiseg.work.jobs.summary`), ``None`` if none."""
        ...

    def render_preview(self, study_id: str) -> bytes | None:
        """The study's preview PNG, ``None`` when it has no segmented image."""
        ...

    def list_models(self) -> list[dict[str, Any]]:
        """Every model folder (:meth:`scintiseg.models.registry.ModelEntry.describe`)."""
        ...

    def reload_models(self) -> list[dict[str, Any]] | None:
        """Rescan the models folder now and list it; ``None`` when ScintiSeg is not running."""
        ...

    def agreement(self, name: str, version: str) -> dict[str, Any] | None:
        """A model's shadow agreement summary; ``None`` when no folder holds that model."""
        ...

    def label_info(self) -> dict[str, dict[str, Any]]:
        """Name and display colour of each label key the registry knows."""
        ...

    def queue_snapshot(self) -> dict[str, Any]:
        """``{"state", "pending": [ids], "running": [ids], "failed": [{"study", "reason", "updated"}]}``."""
        ...

    def enqueue(self, study_id: str, force: bool) -> bool:
        """Queue the study; ``force`` redoes the images already done. False if not running."""
        ...

    def health(self) -> dict[str, Any]:
        """``{"state", "error", "models", "providers", "software"}`` of the service."""
        ...


class Response(NamedTuple):
    """An HTTP answer: status code, body and its content type."""

    status: int
    body: bytes
    content_type: str


class HttpError(Exception):
    """An error answer, raised inside a route and turned into JSON by :func:`dispatch`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def json_response(value: Any, status: int = 200) -> Response:
    # ASCII only: Orthanc's SendHttpStatus takes a str whose length is the byte count
    text = json.dumps(value, ensure_ascii=True, indent=2, sort_keys=False)
    return Response(status, (text + "\n").encode("ascii"), JSON)


def error_response(status: int, message: str) -> Response:
    return json_response({"error": message, "status": status}, status)


# -- views ---------------------------------------------------------------------------------
def _model(ident: Any) -> dict[str, str]:
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


#: Figures a label may carry (from :data:`scintiseg.models.measurements.KINDS`), in answer order.
LABEL_FIGURES = ("pixels", "area_mm2", "counts", "right_lobe_share_pct", "left_lobe_share_pct", "count")


def frame_labels(raw: Mapping[str, Any], info: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
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


def _frame(raw: Mapping[str, Any], index: int, info: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    return {"frame": raw.get("frame", index), "labels": frame_labels(raw, info)}


def _flags(raw: Any) -> list[dict[str, str]]:
    """Quality flags of an image, ``{"code", "message"}`` each (others are dropped)."""
    out = []
    for f in raw if isinstance(raw, list) else []:
        if isinstance(f, Mapping) and f.get("code"):
            out.append({"code": str(f["code"]), "message": str(f.get("message") or "")})
    return out


def _image(sop_uid: str, raw: Mapping[str, Any], info: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    frames = raw.get("frames") or []
    status = raw.get("status") if raw.get("status") in STATUSES else "failed"
    return {
        "sop_instance_uid": raw.get("source_sop_instance_uid") or sop_uid,
        "instance_id": raw.get("source_instance_id"),
        "status": status,
        "reason": raw.get("reason") or "",
        "seg_instance_id": raw.get("seg_instance_id"),
        "seg_sop_instance_uid": raw.get("seg_sop_instance_uid"),
        "seg_series_instance_uid": raw.get("seg_series_instance_uid"),
        "models": [_model(m) for m in raw.get("models") or []],
        "frames": [_frame(f, i, info) for i, f in enumerate(frames, 1) if isinstance(f, Mapping)],
        "flags": _flags(raw.get("flags")),
        "timings_ms": dict(raw.get("timings_ms") or {}),
    }


def study_view(
    study_id: str,
    result: Mapping[str, Any] | None,
    queue: Mapping[str, Any],
    labels: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The answer of ``GET /scintiseg/studies/{id}`` from the recorded result and the queue.

    ``labels`` (key -> name, colour, numbered) names the labels of the recorded figures.
    """
    info = labels or {}
    links = {
        "self": f"/scintiseg/studies/{study_id}",
        "preview": f"/scintiseg/studies/{study_id}/preview.png",
        "process": f"/scintiseg/studies/{study_id}/process",
    }
    running = study_id in (queue.get("running") or [])
    pending = study_id in (queue.get("pending") or [])
    if result is None:
        if running:
            status, reason = "processing", "a worker is segmenting the study"
        elif pending:
            status, reason = "pending", "queued"
        else:
            status, reason = "pending", "not processed yet (the study is not stable yet, or ScintiSeg is off)"
        return {
            "study": study_id, "status": status, "reason": reason, "updated": None,
            "models": [], "software": None, "seg_instance_ids": [], "images": [],
            "timings_ms": {}, "links": links,
        }
    status = str(result.get("status"))
    if status not in STATUSES:
        status = "failed"
    if running and status != "processing":
        status, reason = "processing", "a worker is segmenting the study again"
    else:
        reason = str(result.get("reason") or "")
    raw_images = result.get("images") or {}
    images = [_image(str(k), v, info) for k, v in raw_images.items() if isinstance(v, Mapping)]
    return {
        "study": study_id,
        "status": status,
        "reason": reason,
        "updated": result.get("updated"),
        "models": [_model(m) for m in result.get("models") or []],
        "software": result.get("software"),
        "seg_instance_ids": [str(s) for s in result.get("seg_instance_ids") or []],
        "images": images,
        "timings_ms": dict(result.get("timings_ms") or {}),
        "links": links,
    }


# -- routes --------------------------------------------------------------------------------
def _known_study(backend: Backend, study_id: str) -> None:
    if not re.fullmatch(_ID, study_id) or not backend.study_exists(study_id):
        raise HttpError(404, f"unknown study {study_id!r}")


known_study = _known_study  # for the routes of scintiseg.api.data


def get_health(backend: Backend) -> Response:
    health = dict(backend.health())
    ok = health.get("state") == "running"
    body = {
        "status": "ok" if ok else "unavailable",
        "state": health.get("state"),
        "error": health.get("error"),
        "models": [str(m) for m in health.get("models") or []],
        "providers": [str(p) for p in health.get("providers") or []],
        "software": health.get("software"),
    }
    return json_response(body, 200 if ok else 503)


def get_models(backend: Backend) -> Response:
    return json_response({"models": backend.list_models()})


def post_reload(backend: Backend, body: bytes | None) -> Response:
    models = backend.reload_models()
    if models is None:
        state = backend.health().get("state")
        raise HttpError(503, f"ScintiSeg is not running (state: {state}); nothing to reload")
    return json_response({"models": models})


def get_agreement(backend: Backend, name: str, version: str) -> Response:
    summary = backend.agreement(name, version)
    if summary is None:
        raise HttpError(404, f"no model folder holds {name}@{version}")
    return json_response(summary)


def get_queue(backend: Backend) -> Response:
    snap = backend.queue_snapshot()
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
    return json_response(body)


def get_study(backend: Backend, study_id: str) -> Response:
    _known_study(backend, study_id)
    result = backend.get_study_result(study_id)
    return json_response(study_view(study_id, result, backend.queue_snapshot(), backend.label_info()))


def get_preview(backend: Backend, study_id: str) -> Response:
    _known_study(backend, study_id)
    png = backend.render_preview(study_id)
    if not png:
        raise HttpError(404, f"study {study_id} has no segmented image to show yet")
    return Response(200, png, PNG)


def parse_process_body(body: bytes | None) -> bool:
    """The ``force`` flag of a ``POST .../process`` body; :class:`HttpError` 400 if malformed."""
    if body is None or not body.strip():
        return False
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HttpError(400, f"the body must be JSON, e.g. {{\"force\": true}} ({exc})") from exc
    if not isinstance(value, dict):
        raise HttpError(400, "the body must be a JSON object, e.g. {\"force\": true}")
    unknown = sorted(set(value) - {"force"})
    if unknown:
        raise HttpError(400, f"unknown field(s) {', '.join(unknown)}; only \"force\" is accepted")
    force = value.get("force", False)
    if not isinstance(force, bool):
        raise HttpError(400, "\"force\" must be true or false")
    return force


def post_process(backend: Backend, study_id: str, body: bytes | None) -> Response:
    force = parse_process_body(body)
    _known_study(backend, study_id)
    if not backend.enqueue(study_id, force):
        state = backend.health().get("state")
        raise HttpError(503, f"ScintiSeg is not running (state: {state}); the study was not queued")
    return json_response(
        {"study": study_id, "queued": True, "force": force,
         "links": {"study": f"/scintiseg/studies/{study_id}"}},
        202,
    )


Handler = Callable[[Backend, tuple[str, ...], bytes | None], Response]

_ROUTES: tuple[tuple[re.Pattern[str], str, Handler], ...] = (
    (re.compile(r"/scintiseg/health"), "GET", lambda b, g, _: get_health(b)),
    (re.compile(r"/scintiseg/models"), "GET", lambda b, g, _: get_models(b)),
    (re.compile(r"/scintiseg/models/reload"), "POST", lambda b, g, body: post_reload(b, body)),
    (re.compile(r"/scintiseg/models/([^/]+)/([^/]+)/agreement"), "GET",
     lambda b, g, _: get_agreement(b, g[0], g[1])),
    (re.compile(r"/scintiseg/queue"), "GET", lambda b, g, _: get_queue(b)),
    (re.compile(r"/scintiseg/studies/([^/]+)"), "GET", lambda b, g, _: get_study(b, g[0])),
    (re.compile(r"/scintiseg/studies/([^/]+)/preview\.png"), "GET",
     lambda b, g, _: get_preview(b, g[0])),
    (re.compile(r"/scintiseg/studies/([^/]+)/process"), "POST",
     lambda b, g, body: post_process(b, g[0], body)),
    (re.compile(r"/scintiseg/studies/([^/]+)/labels"), "GET",
     lambda b, g, _: _data().get_study_labels(b, g[0])),  # type: ignore[arg-type]
    (re.compile(r"/scintiseg/stats"), "GET", lambda b, g, _: _data().get_stats(b)),  # type: ignore[arg-type]
    (re.compile(r"/scintiseg/datasets/export"), "POST",
     lambda b, g, body: _data().post_export(b, body)),  # type: ignore[arg-type]
)


def _data() -> Any:
    """:mod:`scintiseg.api.data`, imported when first used (it imports this module)."""
    from scintiseg.api import data as datarest

    return datarest


def _match(path: str) -> list[tuple[str, Handler, tuple[str, ...]]]:
    path = path.split("?", 1)[0].rstrip("/") or "/"
    found = []
    for pattern, method, handler in _ROUTES:
        m = pattern.fullmatch(path)
        if m:
            found.append((method, handler, m.groups()))
    return found


def allowed_methods(path: str) -> list[str]:
    """The methods ``path`` answers (for the ``Allow`` header of a 405)."""
    return sorted({method for method, _, _ in _match(path)})


def dispatch(backend: Backend, method: str, path: str, body: bytes | None = None) -> Response:
    """Answer one request; the API's error boundary (never raises)."""
    try:
        routes = _match(path)
        if not routes:
            raise HttpError(404, f"no such ScintiSeg route: {path}")
        for route_method, handler, groups in routes:
            if route_method == method.upper():
                return handler(backend, groups, body)
        allowed = ", ".join(allowed_methods(path))
        raise HttpError(405, f"{method.upper()} is not allowed on {path}; use {allowed}")
    except HttpError as exc:
        return error_response(exc.status, exc.message)
    except NotFoundError as exc:  # the study was deleted while we looked at it
        return error_response(404, str(exc))
    except Exception as exc:  # the route's error boundary: log it, answer 500, keep serving
        log.exception("%s %s failed", method, path)
        return error_response(500, f"internal error: {type(exc).__name__}: {exc}")
