"""The REST routes of the anonymized database's loop: labels, agreement statistics, datasets.

::

    GET  /scintiseg/studies/{id}/labels   the study's physician label objects: accepted (linked
                                          to their source image, labels mapped or not, AI
                                          agreement) or refused with the reason
    GET  /scintiseg/stats                 AI-vs-physician agreement over the database, by
                                          model versions (images, Dice per label, nodules)
    POST /scintiseg/datasets/export       every labelled image as image-mask couples: a zip of
                                          an nnU-Net v2 raw dataset (scintiseg.intake.datasets)

Routed by the table of :mod:`scintiseg.api.routes`, so the answers go through its
error boundary; documented in ``docs/openapi.yaml``. The backend's ``labels`` is
the :class:`~scintiseg.intake.labels.LabelIntake` (``None`` when the labels
metadata is not declared: the routes then answer 503).
"""

from __future__ import annotations

from typing import Any, Protocol

from scintiseg.api.http import ZIP, HttpError, Response, json_response, known_study, parse_json_object
from scintiseg.core.store import Gateway
from scintiseg.intake.datasets import ExportOptions, export_zip
from scintiseg.intake.labels import LabelIntake
from scintiseg.pipeline.agreement import summarise

__all__ = ["get_stats", "get_study_labels", "post_export"]


class DataBackend(Protocol):
    """What these routes need from the plugin backend."""

    @property
    def labels(self) -> LabelIntake | None:
        """The physician labels' intake; ``None`` when the labels metadata is not declared."""
        ...

    @property
    def gateway(self) -> Gateway:
        """The store the dataset export reads."""
        ...

    def study_exists(self, study_id: str) -> bool:
        """Whether Orthanc holds the study."""
        ...


def _intake(backend: DataBackend) -> LabelIntake:
    intake = backend.labels
    if intake is None:
        raise HttpError(503, "physician labels are not read: declare ScintiSeg.LabelsMetadata "
                             "(\"ScintiSegLabels\") in Orthanc's UserMetadata")
    return intake


def label_view(record: dict[str, Any]) -> dict[str, Any]:
    """One label object as the API shows it (the recorded fields, with defaults)."""
    return {
        "sop_instance_uid": record.get("sop_instance_uid"),
        "instance_id": record.get("instance_id"),
        "kind": record.get("kind"),
        "status": record.get("status"),
        "code": record.get("code"),
        "reason": record.get("reason") or "",
        "received": record.get("received"),
        "provenance": record.get("provenance"),
        "images": list(record.get("images") or []),
        "unmapped": list(record.get("unmapped") or []),
    }


def get_study_labels(backend: DataBackend, study_id: str) -> Response:
    known_study(backend, study_id)
    objects = _intake(backend).records(study_id)["objects"]
    labels = [label_view({"sop_instance_uid": uid, **rec}) for uid, rec in objects.items()]
    labels.sort(key=lambda r: (str(r["received"]), str(r["sop_instance_uid"])))
    return json_response({"study": study_id, "labels": labels})


def get_stats(backend: DataBackend) -> Response:
    counts = {"accepted": 0, "refused": 0, "ignored": 0}
    refusals: dict[str, int] = {}
    agreements = []
    studies = set()
    for study_id, record in _intake(backend).all_records():
        status = str(record.get("status"))
        counts[status] = counts.get(status, 0) + 1
        if status == "refused":
            refusals[str(record.get("code"))] = refusals.get(str(record.get("code")), 0) + 1
        if status != "accepted":
            continue
        studies.add(study_id)
        agreements += [e["agreement"] for e in record.get("images") or [] if e.get("agreement")]
    return json_response({
        "label_objects": counts,
        "refusals": dict(sorted(refusals.items())),
        "labelled_studies": len(studies),
        "by_models": summarise(agreements),
    })


def parse_export_body(body: bytes | None) -> dict[str, Any]:
    """Options of ``POST /scintiseg/datasets/export``; :class:`HttpError` 400 if malformed."""
    value = parse_json_object(body, '{"flip": true}')
    allowed = {"flip": bool, "test_fraction": float, "allow_identified": bool}
    if set(value) - set(allowed):
        raise HttpError(400, "the body must be a JSON object with only \"flip\", \"test_fraction\" and "
                             "\"allow_identified\"")
    for key in ("flip", "allow_identified"):
        if key in value and not isinstance(value[key], bool):
            raise HttpError(400, f"\"{key}\" must be true or false")
    fraction = value.get("test_fraction", 0.2)
    if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0 <= fraction < 1:
        raise HttpError(400, "\"test_fraction\" must be a number in [0, 1)")
    return value


def post_export(backend: DataBackend, body: bytes | None) -> Response:
    options = parse_export_body(body)
    intake = _intake(backend)
    data = export_zip(intake, backend.gateway, ExportOptions(
        flip=options.get("flip", True), test_fraction=float(options.get("test_fraction", 0.2)),
        allow_identified=options.get("allow_identified", False)))
    return Response(200, data, ZIP)
