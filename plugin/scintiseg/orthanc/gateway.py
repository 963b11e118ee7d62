"""The store port on Orthanc: :class:`OrthancGateway` over Orthanc's REST API.

``api`` is the ``orthanc`` module of the Python plugin, passed in by the entry
script (the only importer of ``orthanc``), or :class:`scintiseg.orthanc.httpapi.HttpApi`
for a remote Orthanc (the command line). Orthanc's own ``OrthancException`` never
leaves this module: it is translated into :class:`scintiseg.core.store.GatewayError`
or :class:`~scintiseg.core.store.NotFoundError` with ``raise ... from exc``.
"""

from __future__ import annotations

import json
from typing import Any

from scintiseg.core.result import StudyResult
from scintiseg.core.store import (
    STORED,
    GatewayError,
    InstanceInfo,
    NotFoundError,
    SeriesInfo,
    StoredInstance,
    StudyMetadata,
)

#: Orthanc error code "Accessing an inexistent item" / "Unknown resource".
_ORTHANC_INEXISTENT_ITEM = 7
_ORTHANC_UNKNOWN_RESOURCE = 17


class OrthancGateway:
    """:class:`Gateway` on Orthanc's in-process REST API.

    ``api`` is the ``orthanc`` module of the Python plugin (anything with
    ``RestApiGet``/``RestApiPost``/``RestApiPut`` taking a URI, and a body for
    the last two, and returning bytes). Calls go through Orthanc's REST
    router without HTTP, so they cost about as much as a function call.
    """

    def __init__(self, api: Any, metadata_name: str = "ScintiSegResult") -> None:
        self.api = api
        self.metadata_name = metadata_name

    # -- plumbing ---------------------------------------------------------------------------
    def _call(self, method: str, uri: str, *body: bytes) -> bytes:
        try:
            answer = getattr(self.api, method)(uri, *body)
        except Exception as exc:  # orthanc.OrthancException, whatever its class
            code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
            detail = exc.args[1] if len(exc.args) > 1 else exc
            if code in (_ORTHANC_INEXISTENT_ITEM, _ORTHANC_UNKNOWN_RESOURCE):
                raise NotFoundError(f"{method} {uri}: {detail}") from exc
            raise GatewayError(f"{method} {uri} failed: {detail}") from exc
        if answer is None:  # RestApiDelete answers nothing
            return b""
        return bytes(answer) if not isinstance(answer, bytes) else answer

    def _get_json(self, uri: str) -> Any:
        return json.loads(self._call("RestApiGet", uri))

    # -- Gateway ----------------------------------------------------------------------------
    def study_exists(self, study_id: str) -> bool:
        try:
            self._call("RestApiGet", f"/studies/{study_id}")
        except NotFoundError:
            return False
        return True

    def instance_study(self, instance_id: str) -> str:
        return str(self._get_json(f"/instances/{instance_id}/study")["ID"])

    def study_series(self, study_id: str) -> list[SeriesInfo]:
        out = []
        for s in self._get_json(f"/studies/{study_id}/series"):
            tags = s.get("MainDicomTags", {})
            out.append(
                SeriesInfo(
                    series_id=s["ID"],
                    modality=str(tags.get("Modality", "")).upper(),
                    description=str(tags.get("SeriesDescription", "")),
                    instance_ids=tuple(s.get("Instances", [])),
                )
            )
        return out

    def series_instances(self, series_id: str) -> list[InstanceInfo]:
        out = []
        for inst in self._get_json(f"/series/{series_id}/instances"):
            iid = inst["ID"]
            # SopClassUid is index metadata Orthanc records on reception: no file read.
            meta = self._get_json(f"/instances/{iid}/metadata?expand")
            out.append(
                InstanceInfo(
                    instance_id=iid,
                    sop_instance_uid=str(inst.get("MainDicomTags", {}).get("SOPInstanceUID", "")),
                    sop_class_uid=str(meta.get("SopClassUid", "")),
                )
            )
        return out

    def instance_file(self, instance_id: str) -> bytes:
        return self._call("RestApiGet", f"/instances/{instance_id}/file")

    def store_instance(self, data: bytes) -> StoredInstance:
        answer = json.loads(self._call("RestApiPost", "/instances", data))
        status = str(answer.get("Status", ""))
        if status not in STORED:
            # e.g. "FilteredOut" (a Lua/plugin filter refused it) or "Failure" (full storage)
            raise GatewayError(f"Orthanc refused to store the instance (status {status or 'unknown'})")
        return StoredInstance(
            instance_id=answer["ID"],
            status=str(answer.get("Status", "")),
            parent_study=str(answer.get("ParentStudy", "")),
        )

    def study_metadata(self, study_id: str) -> StudyMetadata:
        # "?expand" lists all metadata in one call and, unlike asking for a missing
        # name, does not make Orthanc log an error for studies without a result.
        meta = self._get_json(f"/studies/{study_id}/metadata?expand")
        return StudyMetadata(
            result=StudyResult.from_json(meta.get(self.metadata_name)),
            last_update=str(meta.get("LastUpdate", "")),
        )

    def write_result(self, study_id: str, result: StudyResult) -> None:
        body = result.to_json().encode("utf-8")
        self._call("RestApiPut", f"/studies/{study_id}/metadata/{self.metadata_name}", body)

    def database_plugin(self) -> str | None:
        # /system names the index's plugin file (null on SQLite); /plugins gives its id
        if not self._get_json("/system").get("DatabaseBackendPlugin"):
            return None
        ids = [str(p) for p in self._get_json("/plugins") if str(p).endswith("-index")]
        return ids[0] if ids else "unknown-index"

    def count_studies(self) -> int:
        return int(self._get_json("/statistics").get("CountStudies", 0))

    def list_studies(self, since: int, limit: int) -> list[str]:
        return [str(s) for s in self._get_json(f"/studies?since={since}&limit={limit}")]

    # -- pseudonymization, labels and datasets -------------------------------------------
    def study_tags(self, study_id: str) -> dict[str, str]:
        study = self._get_json(f"/studies/{study_id}")
        tags = {**study.get("MainDicomTags", {}), **study.get("PatientMainDicomTags", {})}
        return {str(k): str(v) for k, v in tags.items()}

    def instance_tags(self, instance_id: str) -> dict[str, Any]:
        return dict(self._get_json(f"/instances/{instance_id}/simplified-tags"))

    def anonymize_instance(self, instance_id: str, request: dict[str, Any]) -> bytes:
        return self._call("RestApiPost", f"/instances/{instance_id}/anonymize", json.dumps(request).encode("utf-8"))

    def delete_instance(self, instance_id: str) -> None:
        self._call("RestApiDelete", f"/instances/{instance_id}")

    def lookup_instance(self, sop_instance_uid: str) -> str | None:
        found = json.loads(self._call("RestApiPost", "/tools/lookup", sop_instance_uid.encode("ascii", "replace")))
        return next((str(f["ID"]) for f in found if f.get("Type") == "Instance"), None)

    def read_study_metadata(self, study_id: str, name: str) -> str | None:
        value = self._get_json(f"/studies/{study_id}/metadata?expand").get(name)
        return None if value is None else str(value)

    def write_study_metadata(self, study_id: str, name: str, text: str) -> None:
        self._call("RestApiPut", f"/studies/{study_id}/metadata/{name}", text.encode("utf-8"))

    def delete_study_metadata(self, study_id: str, name: str) -> None:
        try:
            self._call("RestApiDelete", f"/studies/{study_id}/metadata/{name}")
        except NotFoundError:
            pass  # the study (and its metadata) is gone already
