"""An in-memory :class:`scintiseg.core.store.Gateway` and a stand-in pipeline.

Test helpers only (``from support.fake_gateway import ...``). The fake store behaves like Orthanc where the
jobs can tell: a stored instance joins the study of its StudyInstanceUID in a
series of its modality, and bumps the study's ``LastUpdate``; writing the
result does not.

Also the service-level fakes the unit and integration tests share: a pipeline that
records when it is called (:class:`CountingPipeline`), one NM study in a fake store
(:func:`one_study`), a polling :func:`wait`, and Orthanc's study metadata alone
(:class:`FakeMetadataStore`).
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pydicom
from pydicom import Dataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from scintiseg.app.startup import Models, ModelsLoader
from scintiseg.core.result import StudyResult
from scintiseg.core.store import (
    GatewayError,
    InstanceInfo,
    NotFoundError,
    SeriesInfo,
    StoredInstance,
    StudyMetadata,
)
from scintiseg.dicom.builder import file_meta
from scintiseg.dicom.nm import NotNMImageError
from scintiseg.pipeline.image import NoModelApplies
from scintiseg.work.jobs import StudyJobs
from scintiseg.work.selection import Selection

from .nm_fixtures import make_nm

SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
SC_STORAGE = "1.2.840.10008.5.1.4.1.1.7"


def orthanc_like_id(uid: str) -> str:
    """An identifier shaped like Orthanc's (five groups of 8 hex digits of a SHA-1)."""
    digest = hashlib.sha1(uid.encode()).hexdigest()
    return "-".join(digest[i : i + 8] for i in range(0, 40, 8))


@dataclass
class _Instance:
    instance_id: str
    series_key: str
    sop_instance_uid: str
    sop_class_uid: str
    modality: str
    description: str
    data: bytes


@dataclass
class FakeGateway:
    """Studies keyed by StudyInstanceUID-derived ids; counts every call."""

    instances: dict[str, _Instance] = field(default_factory=dict)
    study_of: dict[str, str] = field(default_factory=dict)  # instance id -> study id
    metadata: dict[str, str] = field(default_factory=dict)  # study id -> result text
    last_update: dict[str, int] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    fail_on: dict[str, Exception] = field(default_factory=dict)  # method name -> exception
    on_store: Callable[[bytes], None] | None = None
    extra_metadata: dict[tuple[str, str], str] = field(default_factory=dict)  # (study, name) -> text
    #: what Orthanc's index runs on (``database_plugin``): None is its built-in SQLite
    index_plugin: str | None = None

    # -- test set-up ---------------------------------------------------------------------
    def add(self, ds: Dataset) -> str:
        """Store a dataset (as a modality would); returns its instance id."""
        buf = io.BytesIO()
        pydicom.dcmwrite(buf, ds, enforce_file_format=True)
        return self._put(buf.getvalue())

    def _put(self, data: bytes) -> str:
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
        study = orthanc_like_id(str(ds.StudyInstanceUID))
        iid = "inst-" + str(ds.SOPInstanceUID)[-12:]
        self.instances[iid] = _Instance(
            instance_id=iid,
            series_key=str(ds.SeriesInstanceUID),
            sop_instance_uid=str(ds.SOPInstanceUID),
            sop_class_uid=str(ds.SOPClassUID),
            modality=str(ds.get("Modality", "")),
            description=str(ds.get("SeriesDescription", "")),
            data=data,
        )
        self.study_of[iid] = study
        self.last_update[study] = self.last_update.get(study, 0) + 1
        return iid

    def study_id(self, ds: Dataset) -> str:
        return orthanc_like_id(str(ds.StudyInstanceUID))

    def result(self, study_id: str) -> dict[str, Any] | None:
        """The stored result as its JSON object (what Orthanc's metadata holds); None if absent."""
        text = self.metadata.get(study_id)
        value = json.loads(text) if text else None
        return value if isinstance(value, dict) else None

    def typed_result(self, study_id: str) -> StudyResult | None:
        """The stored result as the plugin reads it."""
        return StudyResult.from_json(self.metadata.get(study_id))

    def count(self, method: str) -> int:
        return sum(1 for c in self.calls if c == method)

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if name in self.fail_on:
            raise self.fail_on[name]

    # -- Gateway ---------------------------------------------------------------------------
    def database_plugin(self) -> str | None:
        self._call("database_plugin")
        return self.index_plugin

    def study_exists(self, study_id: str) -> bool:
        self._call("study_exists")
        return study_id in self.last_update

    def instance_study(self, instance_id: str) -> str:
        self._call("instance_study")
        if instance_id not in self.instances:
            raise NotFoundError(instance_id)
        return self.study_of[instance_id]

    def study_series(self, study_id: str) -> list[SeriesInfo]:
        self._call("study_series")
        if study_id not in self.last_update:
            raise NotFoundError(study_id)
        series: dict[str, list[_Instance]] = {}
        for iid, inst in self.instances.items():
            if self.study_of[iid] == study_id:
                series.setdefault(inst.series_key, []).append(inst)
        return [
            SeriesInfo(
                series_id=key,
                modality=insts[0].modality,
                description=insts[0].description,
                instance_ids=tuple(i.instance_id for i in insts),
            )
            for key, insts in series.items()
        ]

    def series_instances(self, series_id: str) -> list[InstanceInfo]:
        self._call("series_instances")
        return [
            InstanceInfo(i.instance_id, i.sop_instance_uid, i.sop_class_uid)
            for i in self.instances.values()
            if i.series_key == series_id
        ]

    def instance_file(self, instance_id: str) -> bytes:
        self._call("instance_file")
        if instance_id not in self.instances:
            raise NotFoundError(instance_id)
        return self.instances[instance_id].data

    def store_instance(self, data: bytes) -> StoredInstance:
        self._call("store_instance")
        if self.on_store is not None:
            self.on_store(data)
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
        iid = "inst-" + str(ds.SOPInstanceUID)[-12:]
        status = "AlreadyStored" if iid in self.instances else "Success"
        if status == "Success":
            self._put(data)
        return StoredInstance(iid, status, self.study_of[iid])

    def study_metadata(self, study_id: str) -> StudyMetadata:
        self._call("study_metadata")
        if study_id not in self.last_update:
            raise NotFoundError(study_id)
        return StudyMetadata(StudyResult.from_json(self.metadata.get(study_id)), str(self.last_update[study_id]))

    def write_result(self, study_id: str, result: StudyResult) -> None:
        self._call("write_result")
        self.metadata[study_id] = result.to_json()

    def count_studies(self) -> int:
        self._call("count_studies")
        return len(self.last_update)

    def list_studies(self, since: int, limit: int) -> list[str]:
        self._call("list_studies")
        return list(self.last_update)[since : since + limit]

    # -- pseudonymization, labels and datasets ----------------------------------------
    def study_tags(self, study_id: str) -> dict[str, str]:
        self._call("study_tags")
        iids = [i for i, s in self.study_of.items() if s == study_id]
        if not iids:
            raise NotFoundError(study_id)
        ds = pydicom.dcmread(io.BytesIO(self.instances[iids[0]].data), stop_before_pixels=True)
        return {k: str(ds.get(k, "")) for k in ("PatientName", "PatientID", "AccessionNumber", "StudyDate",
                                                 "StudyInstanceUID")}

    def instance_tags(self, instance_id: str) -> dict[str, Any]:
        self._call("instance_tags")
        ds = pydicom.dcmread(io.BytesIO(self.instance_file(instance_id)), stop_before_pixels=True)
        return {e.keyword: str(e.value) for e in ds if e.keyword and e.VR != "SQ"}

    def anonymize_instance(self, instance_id: str, request: dict[str, Any]) -> bytes:
        """Orthanc's anonymization, as far as the tests can tell: Replace, Remove, identity cleared."""
        self._call("anonymize_instance")
        ds = pydicom.dcmread(io.BytesIO(self.instance_file(instance_id)))
        for keyword in ("PatientBirthDate", "InstitutionName", "ReferringPhysicianName", "StudyDate"):
            if keyword in ds and keyword not in request.get("Keep", []):
                setattr(ds, keyword, "")
        ds.remove_private_tags()
        for keyword in request.get("Remove", []):
            if keyword in ds:
                delattr(ds, keyword)
        for keyword, value in request.get("Replace", {}).items():
            setattr(ds, keyword, value)
        ds.PatientIdentityRemoved = "YES"
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        buf = io.BytesIO()
        pydicom.dcmwrite(buf, ds, enforce_file_format=True)
        return buf.getvalue()

    def delete_instance(self, instance_id: str) -> None:
        self._call("delete_instance")
        if instance_id not in self.instances:
            raise NotFoundError(instance_id)
        del self.instances[instance_id]
        study = self.study_of.pop(instance_id)
        if study not in self.study_of.values():
            self.last_update.pop(study, None)
            self.metadata.pop(study, None)

    def lookup_instance(self, sop_instance_uid: str) -> str | None:
        self._call("lookup_instance")
        return next((i.instance_id for i in self.instances.values() if i.sop_instance_uid == sop_instance_uid),
                    None)

    def read_study_metadata(self, study_id: str, name: str) -> str | None:
        self._call("read_study_metadata")
        return self.extra_metadata.get((study_id, name))

    def write_study_metadata(self, study_id: str, name: str, text: str) -> None:
        self._call("write_study_metadata")
        if study_id not in self.last_update:
            raise NotFoundError(study_id)
        self.extra_metadata[(study_id, name)] = text

    def delete_study_metadata(self, study_id: str, name: str) -> None:
        self._call("delete_study_metadata")
        self.extra_metadata.pop((study_id, name), None)


@dataclass
class FakeSegResult:
    seg: Dataset
    source_sop_instance_uid: str
    timings_ms: dict[str, float]

    models: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "source_sop_instance_uid": self.source_sop_instance_uid,
            "seg_sop_instance_uid": str(self.seg.SOPInstanceUID),
            "models": list(self.models),
            "frames": [{"frame": 1, "labels": {"gland": {"pixels": 42}, "nodule": {"count": 0, "components": []}}}],
            "timings_ms": dict(self.timings_ms),
        }


class FakePipeline:
    """Deterministic 'SEG' per source and model version; records what it processed.

    ``version`` "1" serves ``scintiseg-gland@1.0.0`` and ``scintiseg-nodule@1.0.0``;
    ``applies`` says which series some model applies to, ``not_applying`` the SOP
    Instance UIDs no model applies to (by their header).
    """

    def __init__(self, version: str = "1") -> None:
        self.version = version
        self.models = [f"scintiseg-gland@{version}.0.0", f"scintiseg-nodule@{version}.0.0"]
        self.processed: list[str] = []
        self.fail: dict[str, Exception] = {}  # SOP Instance UID -> exception to raise
        self.fail_preview: dict[str, Exception] = {}  # same, for the preview picture
        self.applies: Callable[[str, str], bool] = lambda modality, description: True
        self.not_applying: set[str] = set()

    def applies_to_series(self, modality: str, description: str) -> bool:
        return self.applies(modality, description)

    def unavailable(self, modality: str, description: str) -> list[tuple[str, str]]:
        return []

    def outdated(self, idents: Any) -> list[str]:
        active = dict(m.split("@", 1) for m in self.models)
        return [i for i in idents if i.split("@", 1)[0] in active and active[i.split("@", 1)[0]] != i.split("@", 1)[1]]

    def process(self, source: Dataset) -> FakeSegResult:
        uid = str(source.SOPInstanceUID)
        if uid in self.fail:
            raise self.fail[uid]
        if str(source.get("Modality", "")) != "NM":
            raise NotNMImageError(f"instance {uid} is not a nuclear-medicine image")
        if uid in self.not_applying:
            raise NoModelApplies("no model applies: radionuclide ^201^Thallium")
        self.processed.append(uid)
        seg = self._derived(source, "seg", SEG_STORAGE, "SEG", "ScintiSeg")
        timings = {"gland_inference_ms": 10.0, "nodule_inference_ms": 5.0, "seg_encode_ms": 1.0}
        return FakeSegResult(seg, uid, timings, list(self.models))

    def preview(self, source: Dataset, result: FakeSegResult) -> Dataset:
        """A header-only 'Secondary Capture' per source and model version (modality OT)."""
        uid = str(source.SOPInstanceUID)
        if uid in self.fail_preview:
            raise self.fail_preview[uid]
        return self._derived(source, "sc", SC_STORAGE, "OT", "ScintiSeg preview")

    def _derived(self, source: Dataset, kind: str, sop_class: str, modality: str, description: str) -> Dataset:
        """A header-only instance in the source's study, its UIDs fixed by source and model version."""
        uid = str(source.SOPInstanceUID)
        ds = Dataset()
        ds.SOPClassUID = sop_class
        ds.SOPInstanceUID = generate_uid(entropy_srcs=[kind, uid, self.version])
        ds.SeriesInstanceUID = generate_uid(entropy_srcs=[kind + "series", str(source.SeriesInstanceUID), self.version])
        ds.StudyInstanceUID = source.StudyInstanceUID
        ds.Modality = modality
        ds.SeriesDescription = description
        ds.file_meta = file_meta(sop_class, ds.SOPInstanceUID)
        return ds


def ct_dataset(study_uid: str, n: int = 0) -> Dataset:
    """A minimal CT image header (with tiny pixels) in study ``study_uid``."""
    ds = Dataset()
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.SOPInstanceUID = generate_uid(entropy_srcs=["ct", study_uid, str(n)])
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=["ctseries", study_uid])
    ds.Modality = "CT"
    ds.PatientName = "Secret^Patient"
    ds.PatientID = "SECRET-ID-1"
    ds.SeriesDescription = "NECK CT"
    ds.Rows = ds.Columns = 2
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = b"\0" * 8
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


__all__ = ["FakeGateway", "FakePipeline", "GatewayError", "ct_dataset"]


class CountingPipeline(FakePipeline):
    """Records the time of every call; ``gate`` (when set) blocks calls until it opens."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, float]] = []
        self.gate: threading.Event | None = None

    def process(self, source: Dataset) -> Any:
        self.calls.append((str(source.SOPInstanceUID), time.monotonic()))
        if self.gate is not None:
            self.gate.wait(10)
        return super().process(source)


def one_study(gw: FakeGateway, seed: int) -> tuple[str, str]:
    nm = make_nm(seed=seed)
    gw.add(nm)
    return gw.study_id(nm), str(nm.SOPInstanceUID)


def wait(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


class FakeMetadataStore:
    """Study metadata as Orthanc keeps it: per study, per name; deleting the study deletes it."""

    def __init__(self, studies: int = 3) -> None:
        self.studies = [f"study-{i}" for i in range(studies)]
        self.meta: dict[tuple[str, str], str] = {}
        self.writes = 0

    def read_study_metadata(self, study_id: str, name: str) -> str | None:
        return self.meta.get((study_id, name))

    def write_study_metadata(self, study_id: str, name: str, text: str) -> None:
        self.writes += 1
        self.meta[(study_id, name)] = text

    def delete_study_metadata(self, study_id: str, name: str) -> None:
        self.meta.pop((study_id, name), None)

    def count_studies(self) -> int:
        return len(self.studies)

    def list_studies(self, since: int, limit: int) -> list[str]:
        return self.studies[since : since + limit]


def fake_models(pipe: FakePipeline, **jobs: Any) -> ModelsLoader:
    """A models loader for :class:`scintiseg.app.service.Service`: study jobs on ``pipe``."""

    def load(cfg: Any, gateway: Any, on_stored: Callable[[str], object] | None) -> Models:
        return Models(StudyJobs(gateway, lambda: pipe, Selection(), ["CPUExecutionProvider"], on_stored=on_stored,
                                **jobs))

    return load
