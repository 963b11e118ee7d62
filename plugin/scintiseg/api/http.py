"""HTTP primitives of the ``/scintiseg/`` API: answers, errors, the study-id check.

Nothing here knows a route; :mod:`scintiseg.api.routes` maps paths to the
functions of :mod:`scintiseg.api.views` and :mod:`scintiseg.api.data`, which
raise :class:`HttpError` and return :class:`Response`.
"""

from __future__ import annotations

import json
import re
from typing import Any, NamedTuple, Protocol

JSON = "application/json"
PNG = "image/png"
ZIP = "application/zip"

#: Orthanc's identifier of a study (a SHA-1 split in five groups of eight hex digits)
STUDY_ID = r"[0-9a-f]{8}(?:-[0-9a-f]{8}){4}"


class Response(NamedTuple):
    """An HTTP answer: status code, body and its content type."""

    status: int
    body: bytes
    content_type: str


class HttpError(Exception):
    """An error answer, raised inside a route and turned into JSON by :func:`scintiseg.api.routes.dispatch`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def json_response(value: Any, status: int = 200) -> Response:
    """``value`` as indented JSON, ASCII only (Orthanc 4.0's SendHttpStatus takes a str
    whose length is the byte count)."""
    text = json.dumps(value, ensure_ascii=True, indent=2, sort_keys=False)
    return Response(status, (text + "\n").encode("ascii"), JSON)


def error_response(status: int, message: str) -> Response:
    """The API's error body: ``{"error": message, "status": status}``."""
    return json_response({"error": message, "status": status}, status)


class KnowsStudies(Protocol):
    def study_exists(self, study_id: str) -> bool: ...


def known_study(backend: KnowsStudies, study_id: str) -> None:
    """:class:`HttpError` 404 unless ``study_id`` is an id of a study Orthanc holds."""
    if not re.fullmatch(STUDY_ID, study_id) or not backend.study_exists(study_id):
        raise HttpError(404, f"unknown study {study_id!r}")


def parse_json_object(body: bytes | None, example: str) -> dict[str, Any]:
    """A request body that must be a JSON object (empty: ``{}``); :class:`HttpError` 400 if not."""
    if body is None or not body.strip():
        return {}
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HttpError(400, f"the body must be JSON, e.g. {example} ({exc})") from exc
    if not isinstance(value, dict):
        raise HttpError(400, f"the body must be a JSON object, e.g. {example}")
    return value
