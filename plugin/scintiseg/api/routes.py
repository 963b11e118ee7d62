"""The ``/scintiseg/`` REST API: one route table, the routes, the dispatcher.

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

``{id}`` is Orthanc's study identifier. :data:`ROUTES` is the one table of
paths, methods and handlers: the Orthanc registrations (:data:`ORTHANC_ROUTES`),
:func:`allowed_methods` and :func:`dispatch` are drawn from it. The answers'
JSON comes from :mod:`scintiseg.api.views` and :mod:`scintiseg.api.data`, the
HTTP primitives from :mod:`scintiseg.api.http`. :func:`dispatch` is the only entry
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

import dataclasses
import logging
import re
from collections.abc import Callable
from typing import Any, Protocol

from scintiseg.api import data
from scintiseg.api.http import (
    JSON,
    PNG,
    HttpError,
    Response,
    error_response,
    json_response,
    known_study,
    parse_json_object,
)
from scintiseg.api.views import health_view, queue_view, study_view
from scintiseg.core.result import StudyResult
from scintiseg.core.store import NotFoundError

log = logging.getLogger(__name__)

__all__ = [
    "FALLBACK_ROUTE",
    "JSON",
    "ORTHANC_ROUTES",
    "ROUTES",
    "Backend",
    "Response",
    "allowed_methods",
    "dispatch",
]


class Backend(data.DataBackend, Protocol):
    """What the routes need from the running plugin (:class:`scintiseg.app.backend.PluginBackend`):
    the labels' intake, the store and the study check of :class:`scintiseg.api.data.DataBackend`,
    and the following."""

    def get_study_result(self, study_id: str) -> StudyResult | None:
        """The result recorded on the study, ``None`` if none."""
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


# -- the routes ----------------------------------------------------------------------------
def get_health(backend: Backend) -> Response:
    body, ok = health_view(backend.health())
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
    return json_response(queue_view(backend.queue_snapshot()))


def get_study(backend: Backend, study_id: str) -> Response:
    known_study(backend, study_id)
    result = backend.get_study_result(study_id)
    return json_response(study_view(study_id, result, backend.queue_snapshot(), backend.label_info()))


def get_preview(backend: Backend, study_id: str) -> Response:
    known_study(backend, study_id)
    png = backend.render_preview(study_id)
    if not png:
        raise HttpError(404, f"study {study_id} has no segmented image to show yet")
    return Response(200, png, PNG)


def parse_process_body(body: bytes | None) -> bool:
    """The ``force`` flag of a ``POST .../process`` body; :class:`HttpError` 400 if malformed."""
    value = parse_json_object(body, '{"force": true}')
    unknown = sorted(set(value) - {"force"})
    if unknown:
        raise HttpError(400, f"unknown field(s) {', '.join(unknown)}; only \"force\" is accepted")
    force = value.get("force", False)
    if not isinstance(force, bool):
        raise HttpError(400, "\"force\" must be true or false")
    return force


def post_process(backend: Backend, study_id: str, body: bytes | None) -> Response:
    force = parse_process_body(body)
    known_study(backend, study_id)
    if not backend.enqueue(study_id, force):
        state = backend.health().get("state")
        raise HttpError(503, f"ScintiSeg is not running (state: {state}); the study was not queued")
    return json_response(
        {"study": study_id, "queued": True, "force": force,
         "links": {"study": f"/scintiseg/studies/{study_id}"}},
        202,
    )


#: A route's handler: ``handler(backend, path groups, body)``.
Handler = Callable[[Backend, tuple[str, ...], bytes | None], Response]


@dataclasses.dataclass(frozen=True)
class Route:
    """One path pattern (a full-URI regex, as Orthanc matches it) and one method."""

    pattern: str
    method: str
    handler: Handler

    def match(self, path: str) -> tuple[str, ...] | None:
        m = re.fullmatch(self.pattern, path)
        return m.groups() if m else None


#: The API: every path, method and handler, once.
ROUTES: tuple[Route, ...] = (
    Route(r"/scintiseg/health", "GET", lambda b, g, _: get_health(b)),
    Route(r"/scintiseg/models", "GET", lambda b, g, _: get_models(b)),
    Route(r"/scintiseg/models/reload", "POST", lambda b, g, body: post_reload(b, body)),
    Route(r"/scintiseg/models/([^/]+)/([^/]+)/agreement", "GET", lambda b, g, _: get_agreement(b, g[0], g[1])),
    Route(r"/scintiseg/queue", "GET", lambda b, g, _: get_queue(b)),
    Route(r"/scintiseg/studies/([^/]+)", "GET", lambda b, g, _: get_study(b, g[0])),
    Route(r"/scintiseg/studies/([^/]+)/preview\.png", "GET", lambda b, g, _: get_preview(b, g[0])),
    Route(r"/scintiseg/studies/([^/]+)/process", "POST", lambda b, g, body: post_process(b, g[0], body)),
    # physician labels, agreement and datasets (scintiseg.api.data)
    Route(r"/scintiseg/studies/([^/]+)/labels", "GET", lambda b, g, _: data.get_study_labels(b, g[0])),
    Route(r"/scintiseg/stats", "GET", lambda b, g, _: data.get_stats(b)),
    Route(r"/scintiseg/datasets/export", "POST", lambda b, g, body: data.post_export(b, body)),
)

#: Regexes to register with ``orthanc.RegisterRestCallback`` (full-URI matches), from :data:`ROUTES`.
ORTHANC_ROUTES: tuple[str, ...] = tuple(dict.fromkeys(route.pattern for route in ROUTES))

#: Registered after :data:`ORTHANC_ROUTES` (Orthanc takes the first callback whose regex
#: matches): any other URI under ``/scintiseg/`` is answered by :func:`dispatch` too, so that
#: an unknown path, or an id that Orthanc splits (it reads ``\`` as ``/``), gets this API's
#: JSON 404 rather than Orthanc's own error object.
FALLBACK_ROUTE = r"/scintiseg/(.*)"


def _match(path: str) -> list[tuple[Route, tuple[str, ...]]]:
    # ``path`` is the URI as Orthanc hands it: decoded, without the query string (its GET
    # arguments come apart), so a "?" here was a %3F inside a segment, e.g. a model's name
    path = path.rstrip("/") or "/"
    found = []
    for route in ROUTES:
        groups = route.match(path)
        if groups is not None:
            found.append((route, groups))
    return found


def allowed_methods(path: str) -> list[str]:
    """The methods ``path`` answers (for the ``Allow`` header of a 405)."""
    return sorted({route.method for route, _ in _match(path)})


def dispatch(backend: Backend, method: str, path: str, body: bytes | None = None) -> Response:
    """Answer one request; the API's error boundary (never raises)."""
    try:
        routes = _match(path)
        if not routes:
            raise HttpError(404, f"no such ScintiSeg route: {path}")
        for route, groups in routes:
            if route.method == method.upper():
                return route.handler(backend, groups, body)
        allowed = ", ".join(allowed_methods(path))
        raise HttpError(405, f"{method.upper()} is not allowed on {path}; use {allowed}")
    except HttpError as exc:
        return error_response(exc.status, exc.message)
    except NotFoundError as exc:  # the study was deleted while we looked at it
        return error_response(404, str(exc))
    except Exception as exc:  # the route's error boundary: log it, answer 500, keep serving
        log.exception("%s %s failed", method, path)
        return error_response(500, f"internal error: {type(exc).__name__}: {exc}")
