"""The REST API's backend on the running plugin: :class:`scintiseg.api.routes.Backend` for real.

:class:`PluginBackend` answers the routes of :mod:`scintiseg.api.routes` from the
:class:`~scintiseg.app.service.Service` (models, queue, failures) and the
:class:`~scintiseg.core.store.Gateway` (studies, their recorded result, the NM
and SEG files that the preview is drawn from). Like the rest of the package
it does not import ``orthanc``: the assembly (:mod:`scintiseg.app.assembly`) builds
it with the :class:`~scintiseg.orthanc.gateway.OrthancGateway`, the unit tests with a
fake store.
"""

from __future__ import annotations

import io
import logging
from typing import Any

import pydicom

from scintiseg.app.service import Service
from scintiseg.core.result import StudyResult
from scintiseg.core.store import Gateway
from scintiseg.intake.labels import LabelIntake
from scintiseg.pipeline.preview import preview_from_seg, stack_pngs

log = logging.getLogger(__name__)


class PluginBackend:
    """What the ``/scintiseg/`` routes read and do, on the service and the store."""

    def __init__(
        self, service: Service, gateway: Gateway, labels: LabelIntake | None = None, colormap: str = "grey"
    ) -> None:
        self.service = service
        self.gateway = gateway
        #: the physician labels' intake (:mod:`scintiseg.api.data`); ``None``: not read
        self.labels = labels
        self.colormap = colormap

    def study_exists(self, study_id: str) -> bool:
        return self.gateway.study_exists(study_id)

    def get_study_result(self, study_id: str) -> StudyResult | None:
        return self.gateway.study_metadata(study_id).result

    def render_preview(self, study_id: str) -> bytes | None:
        """One picture per segmented image of the study, one above the other.

        Drawn from the stored NM image and its stored SEG, so it shows exactly
        what a viewer would overlay; ``None`` when no image has a SEG yet.
        """
        result = self.get_study_result(study_id)
        entries = [e for e in result.done_images() if e.seg_instance_id] if result is not None else []
        numbered = {str(v["name"]) for v in self.label_info().values() if v.get("numbered")}
        pngs = []
        for entry in sorted(entries, key=lambda e: e.source_instance_id):
            source = pydicom.dcmread(io.BytesIO(self.gateway.instance_file(entry.source_instance_id)))
            seg = pydicom.dcmread(io.BytesIO(self.gateway.instance_file(str(entry.seg_instance_id))))
            pngs.append(preview_from_seg(source, seg, colormap=self.colormap, numbered=numbered,
                                         flags=entry.flag_codes()))
        return stack_pngs(pngs) if pngs else None

    def list_models(self) -> list[dict[str, Any]]:
        return self.service.model_entries()

    def reload_models(self) -> list[dict[str, Any]] | None:
        return self.service.reload_models()

    def agreement(self, name: str, version: str) -> dict[str, Any] | None:
        return self.service.agreement(name, version)

    def label_info(self) -> dict[str, dict[str, Any]]:
        registry = self.service.registry
        if registry is None:
            return {}
        return {
            key: {"name": label.name, "colour": list(label.colour), "numbered": label.numbered}
            for key, label in registry.current.labels().items()
        }

    def queue_snapshot(self) -> dict[str, Any]:
        return self.service.queue_snapshot()

    def enqueue(self, study_id: str, force: bool) -> bool:
        # an explicit request also retries the images whose last run failed, and those
        # made by a model version that is no longer the active one; it is recorded
        # durably before it is acknowledged
        return self.service.request(study_id, retry_failed=True, force=force)

    def health(self) -> dict[str, Any]:
        status = self.service.status()
        return {key: status.get(key) for key in ("state", "error", "models", "providers", "software")}
