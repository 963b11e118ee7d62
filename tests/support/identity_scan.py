"""Finding a source's identifying values anywhere: every DICOM element, sequences and private
tags included, and any byte string (result JSON, exported files).

The tests that check pseudonymization and dataset export use :func:`identifying_values` on
the *source* datasets, then :func:`leaks_in_dataset` / :func:`leaks_in_bytes` on what came out.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator

import pydicom
from pydicom.dataset import Dataset

#: Attributes whose values identify the patient, the study or the place (their values are looked for).
IDENTIFYING = (
    "PatientName", "PatientID", "AccessionNumber", "PatientBirthDate", "InstitutionName",
    "InstitutionAddress", "ReferringPhysicianName", "OperatorsName", "PatientAddress", "OtherPatientIDs",
    "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "StudyID",
)
#: Values shorter than this are not searched for (they occur by chance: "1", "NM", "O").
MIN_LENGTH = 5


def _walk(ds: Dataset, path: str = "") -> Iterator[tuple[str, object]]:
    for elem in ds:
        where = f"{path}{elem.keyword or elem.tag}"
        if elem.VR == "SQ":
            for i, item in enumerate(elem.value or []):
                yield from _walk(item, f"{where}[{i}].")
        else:
            yield where, elem.value
    meta = getattr(ds, "file_meta", None)
    if meta is not None and not path:
        for elem in meta:
            yield f"file_meta.{elem.keyword}", elem.value


def _texts(value: object) -> list[str]:
    if isinstance(value, bytes):
        return [value.decode("latin-1")]
    if isinstance(value, list | tuple | pydicom.multival.MultiValue):
        return [t for v in value for t in _texts(v)]
    return [str(value)]


def identifying_values(datasets: Iterable[Dataset], extra: Iterable[str] = ()) -> set[str]:
    """The identifying values of the source datasets (top level, sequences and private tags)."""
    values: set[str] = set(extra)
    for ds in datasets:
        for where, value in _walk(ds):
            keyword = where.rsplit(".", 1)[-1].split("[")[0]
            if keyword in IDENTIFYING or where.startswith("(") or "[" in where and keyword.startswith("Patient"):
                for text in _texts(value):
                    values.add(text)
                    values.update(part for part in text.replace("^", " ").split() if part)
    return {v.strip() for v in values if len(v.strip()) >= MIN_LENGTH}


def leaks_in_dataset(ds: Dataset, values: set[str]) -> list[str]:
    """``"path: value"`` for every element of ``ds`` that contains one of ``values``."""
    found = []
    for where, value in _walk(ds):
        if where.endswith("PixelData"):
            continue
        for text in _texts(value):
            for v in values:
                if v in text:
                    found.append(f"{where}: {v!r}")
    return found


def leaks_in_bytes(data: bytes, values: set[str]) -> list[str]:
    """The values found anywhere in ``data`` (UTF-8 and Latin-1 encodings)."""
    return sorted(v for v in values if v.encode("utf-8") in data or v.encode("latin-1", "replace") in data)


def read(data: bytes) -> Dataset:
    return pydicom.dcmread(io.BytesIO(data))
