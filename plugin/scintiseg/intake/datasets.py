"""Datasets out: every physician-labelled image as image-mask couples, nnU-Net v2 raw layout.

:func:`export` walks the accepted label records of the database
(:class:`~scintiseg.intake.labels.LabelIntake`), reads each label object and its source NM
image again through the gateway, and writes one couple per labelled frame, and its
left-right mirror (``flip``, the augmentation of the original work), as::

    imagesTr/<case>_0000.nii.gz    the frame's counts (float32), pixel spacing in the header
    labelsTr/<case>.nii.gz         0 background, 1 gland, 2 cold nodule (uint8)
    dataset.json                   channel_names, labels, numTraining, file_ending (nnU-Net v2)
    manifest.json                  one entry per case (below)

so that nnU-Net v2 (``nnUNetv2_plan_and_preprocess`` on ``DatasetXXX_Name/``), MONAI and
ScintiSeg's own training (``scintiseg_training.dataset --export DIR``) train on it.

Cases are named ``<pseudonymous patient>_<10 hex of the source image and frame>`` (+ ``_lr``
for the mirror): the name of a couple does not change when the database grows. Each
manifest entry holds the pseudonymous patient and study, the source instance and frame, the
label's provenance (object, kind, who, what, when), the model versions at labelling time,
and the ``split``: ``test`` when a hash of the patient id falls below ``test_fraction``,
else ``train``, so a patient's couples (mirrors included) stay on one side, and a patient
never changes side as the database grows. The export copies no DICOM header: nothing but
the pseudonyms, UIDs of the pseudonymized objects, pixel spacing and pixels leaves Orthanc;
images whose patient is not pseudonymous are left out (and counted in the manifest) unless
``allow_identified`` is set.

Two entry points: ``POST /scintiseg/datasets/export`` (:func:`export_zip`, in memory) and
the command line ``scintiseg export --url URL --out DIR`` (:func:`scintiseg.app.export.main`, over
HTTP with :class:`scintiseg.orthanc.httpapi.HttpApi`, a progress bar on stderr).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import pydicom

from scintiseg.core.store import Gateway, NotFoundError
from scintiseg.dicom.labels import LabelRefused, read_label_object
from scintiseg.dicom.nifti import write_nifti
from scintiseg.dicom.nm import nm_frames, pixel_spacing_mm
from scintiseg.intake.anonymize import is_pseudonymous
from scintiseg.intake.labels import LabelIntake

log = logging.getLogger(__name__)

__all__ = ["LABEL_VALUES", "ExportOptions", "ProgressBar", "export", "export_zip", "folder_sink", "split_of"]

SPLIT_SALT = "scintiseg-export-split-v1"
#: The label map's values (nnU-Net ``labels``): a nodule pixel is also gland.
LABEL_VALUES = {"background": 0, "gland": 1, "nodule": 2}
FILE_ENDING = ".nii.gz"
#: Environment variables for the command line's Orthanc credentials.

Sink = Callable[[str, bytes], None]
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class ExportOptions:
    """``flip``: also write each couple mirrored left-right; ``test_fraction``: patients held out;
    ``allow_identified``: also export images whose patient is not pseudonymous (off: skipped)."""

    flip: bool = True
    test_fraction: float = 0.2
    allow_identified: bool = False


def split_of(patient_id: str, test_fraction: float) -> str:
    """``test`` or ``train`` for a patient, from a hash of its (pseudonymous) id only."""
    digest = hashlib.sha256(f"{SPLIT_SALT}:{patient_id}".encode()).digest()
    return "test" if int.from_bytes(digest[:8], "big") / 2**64 < test_fraction else "train"


def case_name(patient_id: str, source_uid: str, frame: int) -> str:
    """A case name that stays the same as the database grows (nnU-Net: letters, digits, ``_``)."""
    key = hashlib.sha256(f"{source_uid}:{frame}".encode()).hexdigest()[:10]
    safe = "".join(c if c.isalnum() else "_" for c in patient_id) or "patient"
    return f"{safe}_{key}"


def label_map(masks: dict[str, np.ndarray], frame: int, shape: tuple[int, int]) -> np.ndarray:
    out = np.zeros(shape, dtype=np.uint8)
    for name in ("gland", "nodule"):  # nodules last: they lie inside the gland
        if name in masks:
            out[masks[name][frame]] = LABEL_VALUES[name]
    return out


def _labelled_images(intake: LabelIntake) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    out = []
    for study_id, record in intake.all_records():
        if record.get("status") != "accepted":
            continue
        for entry in record.get("images") or []:
            if any(lab.get("maps_to") for lab in entry.get("labels") or []):
                out.append((study_id, record, entry))
    return out


def export(
    intake: LabelIntake, gateway: Gateway, sink: Sink, options: ExportOptions = ExportOptions(),
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Write the dataset through ``sink(relative path, bytes)``; returns ``dataset.json``."""
    images = _labelled_images(intake)
    cases: list[dict[str, Any]] = []
    identified = 0
    for done, (study_id, record, entry) in enumerate(images, 1):
        try:
            couples = _couples(gateway, study_id, record, entry, options, sink)
        except (NotFoundError, LabelRefused) as exc:  # deleted or changed since it was recorded
            log.warning("label %s: skipped in the export (%s)", record.get("instance_id"), exc)
            couples = []
        if couples is None:
            identified += 1
        else:
            cases += couples
        if progress is not None:
            progress(done, len(images))
    cases.sort(key=lambda c: str(c["case"]))
    dataset = {
        "name": "ScintiSeg",
        "description": "Thyroid scintigraphy frames with physician labels, exported by ScintiSeg",
        "channel_names": {"0": "NM"},
        "labels": dict(LABEL_VALUES),
        "numTraining": len(cases),
        "file_ending": FILE_ENDING,
        "overwrite_image_reader_writer": "SimpleITKIO",
    }
    sink("dataset.json", (json.dumps(dataset, indent=2) + "\n").encode())
    manifest = {"schema": 1, "split": {"salt": SPLIT_SALT, "test_fraction": options.test_fraction,
                                       "by": "sha256 of the pseudonymous patient id"},
                "flip": options.flip, "skipped_not_pseudonymous": identified, "cases": cases}
    sink("manifest.json", (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode())
    return dataset


def _couples(
    gateway: Gateway, study_id: str, record: dict[str, Any], entry: dict[str, Any], options: ExportOptions,
    sink: Sink,
) -> list[dict[str, Any]] | None:
    """The couples of one labelled image; ``None`` when its patient is not pseudonymous (not exported)."""
    source = pydicom.dcmread(io.BytesIO(gateway.instance_file(str(entry["source_instance_id"]))))
    if not options.allow_identified and not is_pseudonymous(
        {k: str(source.get(k, "")) for k in ("PatientID", "PatientName")}
    ):
        return None
    label_object = pydicom.dcmread(io.BytesIO(gateway.instance_file(str(record["instance_id"]))))
    uid = str(entry["source_sop_instance_uid"])
    (image,) = [i for i in read_label_object(label_object, lambda u: source if u == uid else None)
                if i.source_sop_instance_uid == uid]
    masks = image.model_masks()
    frames = nm_frames(source)
    spacing = pixel_spacing_mm(source) or (1.0, 1.0)
    patient = str(source.get("PatientID", ""))
    split = split_of(patient, options.test_fraction)
    drawn = sorted({int(f) for m in masks.values() for f in np.flatnonzero(m.any(axis=(1, 2)))})
    out = []
    for frame in drawn:
        base = case_name(patient, uid, frame + 1)
        counts = frames[frame].astype(np.float32)
        labels = label_map(masks, frame, counts.shape)
        for flipped in (False, True) if options.flip else (False,):
            case = base + ("_lr" if flipped else "")
            img, lab = (counts[:, ::-1], labels[:, ::-1]) if flipped else (counts, labels)
            sink(f"imagesTr/{case}_0000{FILE_ENDING}", write_nifti(np.ascontiguousarray(img), spacing))
            sink(f"labelsTr/{case}{FILE_ENDING}", write_nifti(np.ascontiguousarray(lab), spacing))
            out.append({
                "case": case,
                "flipped": flipped,
                "of_case": base,
                "split": split,
                "patient": patient,
                "patient_name": str(source.get("PatientName", "")),
                "study_instance_uid": str(source.get("StudyInstanceUID", "")),
                "study": str(entry.get("source_study") or study_id),
                "source_sop_instance_uid": uid,
                "source_instance_id": entry["source_instance_id"],
                "frame": frame + 1,
                "matrix": [int(counts.shape[0]), int(counts.shape[1])],
                "pixel_spacing_mm": [float(spacing[0]), float(spacing[1])],
                "labels_present": sorted(masks),
                "label": {
                    "sop_instance_uid": record.get("sop_instance_uid"),
                    "instance_id": record.get("instance_id"),
                    "kind": record.get("kind"),
                    "provenance": record.get("provenance"),
                    "received": record.get("received"),
                },
                "models_at_label_time": entry.get("models_at_label_time"),
            })
    return out


def export_zip(intake: LabelIntake, gateway: Gateway, options: ExportOptions = ExportOptions()) -> bytes:
    """The dataset as a zip (``POST /scintiseg/datasets/export``), built in memory."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:  # .nii.gz is compressed already

        def sink(name: str, data: bytes) -> None:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            zf.writestr(info, data)

        export(intake, gateway, sink, options)
    return buf.getvalue()


def folder_sink(out: Path) -> Sink:
    def sink(name: str, data: bytes) -> None:
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    return sink


class ProgressBar:
    """``[#####.....] 42/120 images`` on stderr, redrawn in place on a terminal."""

    def __init__(self, stream: TextIO, width: int = 30) -> None:
        self.stream, self.width = stream, width
        self.start = time.perf_counter()
        self.tty = stream.isatty()
        self._last = -1.0

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        if not self.tty and done < total and now - self._last < 2.0:
            return  # a log file gets a line every 2 s, a terminal every image
        self._last = now
        filled = int(self.width * done / max(1, total))
        line = f"[{'#' * filled}{'.' * (self.width - filled)}] {done}/{total} images ({now - self.start:.0f} s)"
        self.stream.write(("\r" if self.tty else "") + line + ("" if self.tty and done < total else "\n"))
        self.stream.flush()
