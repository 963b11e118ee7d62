"""Physician labels arriving in Orthanc: recognised, converted, linked, refused, compared.

:meth:`LabelIntake.step` runs on the worker after each study job (see :mod:`scintiseg.app.steps`).
It lists the study's SEG and RTSTRUCT instances from the index, skips ScintiSeg's own SEGs
(the result names them) and the objects already recorded, and reads each new one with
:func:`scintiseg.dicom.labels.read_label_object`. The outcome goes into the study metadata
``ScintiSeg.LabelsMetadata`` (JSON, one record per label object, keyed by its SOP Instance
UID)::

    {"schema": 1, "objects": {"<SOP UID>": {
        "instance_id", "kind": "SEG" | "RTSTRUCT", "status": "accepted" | "refused" | "ignored",
        "code" (refusals), "reason", "received", "provenance": {"who", "what", "when", ...},
        "images": [{"source_sop_instance_uid", "source_instance_id", "source_study",
                    "labels": [{"name", "code", "maps_to", "pixels", "frames_drawn"}],
                    "models_at_label_time": [...] | null,
                    "agreement": {"models", "ai_seg_instance_id", "dice": {...}, "nodules": {...}} | null}],
        "unmapped": [names]}}}

A refused object stays in Orthanc (it is only not used); its record says why. ``ignored``
marks SEGs of other automatic algorithms (not physician labels). The agreement is computed
as soon as the source image has a ScintiSeg result, and again when the models that made it
change. Records of objects deleted from Orthanc are dropped.

:meth:`LabelIntake.step` is the step's error boundary: an exception is logged (by Orthanc
id) and the study keeps serving; the next stable event retries.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pydicom
from pydicom import Dataset

from scintiseg.core.clock import now_iso
from scintiseg.core.result import ImageEntry, StudyResult
from scintiseg.core.store import Gateway, InstanceInfo, NotFoundError
from scintiseg.dicom.labels import REFUSALS, ImageLabels, LabelRefused, label_kind, provenance, read_label_object
from scintiseg.dicom.seg.content import LABELS
from scintiseg.pipeline.agreement import compare
from scintiseg.pipeline.preview import masks_from_seg

log = logging.getLogger(__name__)

SCHEMA = 1
LABEL_MODALITIES = ("SEG", "RTSTRUCT")
#: Algorithm names of ScintiSeg's own SEGs (model card names).
OWN_ALGORITHM_PREFIX = "scintiseg-"


def ai_masks(seg: Dataset, header: Dataset) -> dict[str, np.ndarray]:
    """The gland and nodule masks of ScintiSeg's SEG, by the shipped labels' segment names.

    The physician labels map to those two model labels (:mod:`scintiseg.dicom.labels`); a SEG
    segment of another label is not compared.
    """
    layers = {layer.name: layer.mask for layer in masks_from_seg(seg, header)}
    shape = (int(header.get("NumberOfFrames") or 1), int(header.Rows), int(header.Columns))
    return {key: layers.get(LABELS[key]["name"], np.zeros(shape, dtype=bool)) for key in ("gland", "nodule")}

def _read(data: bytes, header_only: bool = False) -> Dataset:
    return pydicom.dcmread(io.BytesIO(data), stop_before_pixels=header_only)


def _own_seg(ds: Dataset) -> bool:
    names = [
        str(algo.get("AlgorithmName", ""))
        for item in ds.get("SegmentSequence", None) or []
        for algo in item.get("SegmentationAlgorithmIdentificationSequence", None) or []
    ]
    names += [str(item.get("SegmentAlgorithmName", "")) for item in ds.get("SegmentSequence", None) or []]
    return bool(names) and all(n.startswith(OWN_ALGORITHM_PREFIX) for n in names if n)


class LabelIntake:
    """Reads and records the physician labels of a study (the labels metadata)."""

    def __init__(self, gateway: Gateway, metadata_name: str) -> None:
        self.gateway = gateway
        self.metadata_name = metadata_name

    # -- records -------------------------------------------------------------------------
    def records(self, study_id: str) -> dict[str, Any]:
        """The study's label records (empty when none)."""
        text = self.gateway.read_study_metadata(study_id, self.metadata_name)
        try:
            value = json.loads(text) if text else None
        except json.JSONDecodeError:
            value = None
        if not isinstance(value, dict) or not isinstance(value.get("objects"), dict):
            return {"schema": SCHEMA, "objects": {}}
        return value

    def all_records(self, page: int = 200) -> Iterator[tuple[str, dict[str, Any]]]:
        """(study id, record with its ``sop_instance_uid``) of every label object in the database."""
        total = self.gateway.count_studies()
        since = 0
        while since < total:
            ids = self.gateway.list_studies(since, page)
            if not ids:
                break
            for study_id in ids:
                try:
                    objects = self.records(study_id)["objects"]
                except NotFoundError:
                    continue
                for uid, record in objects.items():
                    yield study_id, {"sop_instance_uid": uid, **record}
            since += len(ids)

    # -- the step --------------------------------------------------------------------------
    def step(self, study_id: str, result: StudyResult | None, should_stop: Callable[[], bool]) -> None:
        """Worker step after the study job; never raises."""
        try:
            self.run(study_id, result, should_stop)
        except NotFoundError:
            log.warning("study %s: gone while its labels were read", study_id)
        except Exception:  # the step's error boundary: the study keeps serving, the next run retries
            log.exception("study %s: reading the physician labels failed", study_id)

    def run(
        self, study_id: str, result: StudyResult | None, should_stop: Callable[[], bool] = lambda: False
    ) -> dict[str, Any]:
        store = self.records(study_id)
        objects: dict[str, Any] = store["objects"]
        before = json.dumps(objects, sort_keys=True)
        own = set(result.seg_instance_ids) if result is not None else set()
        seen: set[str] = set()
        for series in self.gateway.study_series(study_id):
            if series.modality not in LABEL_MODALITIES:
                continue
            for inst in self.gateway.series_instances(series.series_id):
                if inst.instance_id in own or should_stop():
                    continue
                seen.add(inst.sop_instance_uid)
                record = objects.get(inst.sop_instance_uid)
                if record is None:
                    record = self._examine(study_id, inst)
                    if record is None:
                        continue
                    objects[inst.sop_instance_uid] = record
                    log.info("study %s: label object %s %s (%s)", study_id, inst.instance_id, record["status"],
                             record.get("code") or record.get("kind"))
                elif record.get("status") == "accepted":
                    self._refresh_agreement(record)
        for uid in [u for u in objects if u not in seen and not should_stop()]:
            del objects[uid]  # deleted from Orthanc
        if json.dumps(objects, sort_keys=True) != before:
            store["schema"] = SCHEMA
            self.gateway.write_study_metadata(study_id, self.metadata_name, json.dumps(store, sort_keys=True))
        return store

    # -- one label object ------------------------------------------------------------------
    def _examine(self, study_id: str, inst: InstanceInfo) -> dict[str, Any] | None:
        base: dict[str, Any] = {"instance_id": inst.instance_id, "received": now_iso(), "kind": None}
        try:
            ds = _read(self.gateway.instance_file(inst.instance_id))
        except Exception as exc:  # pydicom raises many types on a corrupt file
            return {**base, **_refused("corrupt", f"{REFUSALS['corrupt']}: {type(exc).__name__}: {exc}")}
        kind = label_kind(ds)
        if kind is None:
            if _own_seg(ds):
                return None
            return {**base, "kind": "SEG", "status": "ignored",
                    "reason": "an automatic segmentation (no MANUAL or SEMIAUTOMATIC segment): not a physician label",
                    "provenance": provenance(ds, "SEG")}
        base.update(kind=kind, provenance=provenance(ds, kind))
        sources: dict[str, tuple[str, Dataset]] = {}

        def source(uid: str) -> Dataset | None:
            if uid not in sources:
                iid = self.gateway.lookup_instance(uid)
                if iid is None:
                    return None
                sources[uid] = (iid, _read(self.gateway.instance_file(iid), header_only=True))
            return sources[uid][1]

        try:
            images = read_label_object(ds, source)
        except LabelRefused as exc:
            return {**base, **_refused(exc.code, exc.reason)}
        except Exception as exc:  # a malformed object pydicom reads but we cannot interpret
            return {**base, **_refused("corrupt", f"{REFUSALS['corrupt']}: {type(exc).__name__}: {exc}")}
        entries = []
        for image in images:
            iid, header = sources[image.source_sop_instance_uid]
            entry: dict[str, Any] = {
                "source_sop_instance_uid": image.source_sop_instance_uid,
                "source_instance_id": iid,
                "source_study": self.gateway.instance_study(iid),
                "labels": [label.summary() for label in image.labels],
            }
            ai = self._ai_result(entry)
            entry["models_at_label_time"] = list(ai[0].models) if ai else None
            entry["agreement"] = self._agreement(entry, image, header, ai)
            entries.append(entry)
        unmapped = sorted({lab["name"] for e in entries for lab in e["labels"] if lab["maps_to"] is None})
        return {**base, "status": "accepted", "code": None, "reason": "", "images": entries, "unmapped": unmapped}

    # -- agreement -------------------------------------------------------------------------
    def _ai_result(self, entry: dict[str, Any]) -> tuple[StudyResult, ImageEntry] | None:
        """(study result, image entry) of ScintiSeg's result for the label's source image."""
        result = self.gateway.study_metadata(str(entry["source_study"])).result
        if result is None:
            return None
        image = result.images.get(str(entry["source_sop_instance_uid"]))
        if image is None or not image.done or not image.seg_instance_id:
            return None
        return result, image

    def _agreement(
        self, entry: dict[str, Any], image: ImageLabels, header: Dataset,
        ai: tuple[StudyResult, ImageEntry] | None,
    ) -> dict[str, Any] | None:
        if ai is None:
            return None
        result, ai_image = ai
        seg = _read(self.gateway.instance_file(str(ai_image.seg_instance_id)))
        figures = compare(image.model_masks(), ai_masks(seg, header))
        return {"models": list(result.models), "ai_seg_instance_id": ai_image.seg_instance_id, **figures}

    def _refresh_agreement(self, record: dict[str, Any]) -> None:
        """Compute the agreement again where the source's result (or its models) changed."""
        stale = []
        for entry in record.get("images") or []:
            ai = self._ai_result(entry)
            current = entry.get("agreement")
            if ai is not None and (current is None or current.get("models") != ai[0].models
                                   or current.get("ai_seg_instance_id") != ai[1].seg_instance_id):
                stale.append((entry, ai))
        if not stale:
            return
        ds = _read(self.gateway.instance_file(str(record["instance_id"])))
        headers = {
            e["source_sop_instance_uid"]: _read(self.gateway.instance_file(str(e["source_instance_id"])),
                                                header_only=True)
            for e, _ in stale
        }
        images = {i.source_sop_instance_uid: i for i in read_label_object(ds, lambda uid: headers.get(uid)
                                                                          or self._header(uid))}
        for entry, ai in stale:
            uid = entry["source_sop_instance_uid"]
            entry["agreement"] = self._agreement(entry, images[uid], headers[uid], ai)

    def _header(self, uid: str) -> Dataset | None:
        iid = self.gateway.lookup_instance(uid)
        return None if iid is None else _read(self.gateway.instance_file(iid), header_only=True)


def _refused(code: str, reason: str) -> dict[str, Any]:
    return {"status": "refused", "code": code, "reason": reason}


def agreement_records(records: Iterator[tuple[str, dict[str, Any]]]) -> Iterator[dict[str, Any]]:
    """The per-image agreement entries of accepted label objects (for :func:`agreement.summarise`)."""
    for _, record in records:
        if record.get("status") != "accepted":
            continue
        for entry in record.get("images") or []:
            if entry.get("agreement"):
                yield entry["agreement"]
