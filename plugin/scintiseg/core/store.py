"""All the plugin's I/O with Orthanc goes through one small interface.

:class:`Gateway` is what the study jobs (:mod:`scintiseg.work.jobs`) need from a
DICOM store: list a study's series and instances, read an instance, store an
instance, read and write the study's result. :class:`OrthancGateway`
implements it on Orthanc's in-process REST API; the ``orthanc`` module is
*passed in* (only the entry script ``scintiseg_plugin.py`` imports it), so the
unit tests drive the same jobs with a fake gateway.

Exceptions::

    GatewayError            an Orthanc call failed (the message says which)
    └── NotFoundError       the resource does not exist (any more)

Orthanc's own ``OrthancException`` never leaves this module: it is translated
with ``raise ... from exc``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from scintiseg.core.result import StudyResult

#: Statuses of a store that mean the instance is in it (Orthanc's ``POST /instances`` words).
STORED = ("Success", "AlreadyStored")


class GatewayError(RuntimeError):
    """A call to the DICOM store failed."""


class NotFoundError(GatewayError):
    """The study, series or instance does not exist (deleted meanwhile?)."""


@dataclass(frozen=True)
class SeriesInfo:
    """One series of a study, from the store's index (no file read)."""

    series_id: str
    modality: str
    description: str
    instance_ids: tuple[str, ...]


@dataclass(frozen=True)
class InstanceInfo:
    """One instance, from the store's index: enough to decide without reading the file."""

    instance_id: str
    sop_instance_uid: str
    sop_class_uid: str


@dataclass(frozen=True)
class StudyMetadata:
    """What the plugin keeps on a study, and when the study last changed.

    ``last_update`` is Orthanc's ``LastUpdate`` of the study: it changes when an
    instance arrives (not when metadata is written), so comparing it with the
    value recorded in the result tells whether the study changed since.
    """

    result: StudyResult | None
    last_update: str


@dataclass(frozen=True)
class StoredInstance:
    """What the store says after storing an instance."""

    instance_id: str
    status: str  # "Success" or "AlreadyStored"
    parent_study: str


class Gateway(Protocol):
    """The DICOM store as the study jobs see it."""

    def database_plugin(self) -> str | None:
        """The plugin Orthanc's index runs on (e.g. ``postgresql-index``), ``None`` on its built-in SQLite."""
        ...

    def study_exists(self, study_id: str) -> bool:
        """Whether the store holds the study."""
        ...

    def study_series(self, study_id: str) -> list[SeriesInfo]:
        """The series of a study with their modality and description."""
        ...

    def instance_study(self, instance_id: str) -> str:
        """The id of the study an instance belongs to."""
        ...

    def series_instances(self, series_id: str) -> list[InstanceInfo]:
        """The instances of a series with their SOP Instance UID and SOP Class UID."""
        ...

    def instance_file(self, instance_id: str) -> bytes:
        """The DICOM Part-10 file of an instance."""
        ...

    def store_instance(self, data: bytes) -> StoredInstance:
        """Store a DICOM Part-10 file."""
        ...

    def study_metadata(self, study_id: str) -> StudyMetadata:
        """The study's recorded result (``None`` if none or unreadable) and last update."""
        ...

    def write_result(self, study_id: str, result: StudyResult) -> None:
        """Record the study's result (replacing the previous one)."""
        ...

    def count_studies(self) -> int:
        """How many studies the store holds."""
        ...

    def list_studies(self, since: int, limit: int) -> list[str]:
        """Study ids in creation order, ``limit`` of them from index ``since``."""
        ...

    # -- pseudonymization, labels and datasets (scintiseg.intake.anonymize, .labels, .datasets) -----
    def study_tags(self, study_id: str) -> dict[str, str]:
        """The study's patient and study main DICOM tags from the index (no file read)."""
        ...

    def instance_tags(self, instance_id: str) -> dict[str, Any]:
        """An instance's tags by keyword (Orthanc's simplified tags)."""
        ...

    def anonymize_instance(self, instance_id: str, request: dict[str, Any]) -> bytes:
        """The instance anonymized by Orthanc (``Replace``/``Keep``...), not stored."""
        ...

    def delete_instance(self, instance_id: str) -> None:
        """Delete one instance (its series and study go with their last one)."""
        ...

    def lookup_instance(self, sop_instance_uid: str) -> str | None:
        """The Orthanc id of the instance with this SOP Instance UID, ``None`` if absent."""
        ...

    def read_study_metadata(self, study_id: str, name: str) -> str | None:
        """A user metadata text of the study, ``None`` if absent."""
        ...

    def write_study_metadata(self, study_id: str, name: str, text: str) -> None:
        """Set a user metadata text of the study."""
        ...

    def delete_study_metadata(self, study_id: str, name: str) -> None:
        """Remove a user metadata of the study; nothing when it (or the study) is gone."""
        ...
