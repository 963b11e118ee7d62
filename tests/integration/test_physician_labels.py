"""Physician labels on the real Orthanc: a MANUAL SEG saved like OHIF (DICOMweb STOW-RS) and an
RTSTRUCT sent with storescu are linked to the images ScintiSeg processed, with the agreement;
each kind of bad label object is refused with its reason, stays in Orthanc, and Orthanc serves on.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from support.label_objects import ellipse, labelmap_seg, manual_seg, rtstruct
from support.openapi_check import check_answer, load_spec
from support.orthanc_harness import STABLE_AGE, OrthancServer, Study, make_study, wait_for
from support.physician_labels import labels, stow


def save(tmp: Path, name: str, ds: pydicom.Dataset) -> Path:
    path = tmp / f"{name}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def wait_labels(orthanc: OrthancServer, sid: str, n: int) -> list[dict[str, Any]]:
    return wait_for(f"{n} label records", lambda: (lambda r: r if len(r) >= n else None)(labels(orthanc, sid)),
                    STABLE_AGE + 60)


@pytest.fixture(scope="module")
def processed(orthanc: OrthancServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Study, str]]:
    study = make_study(tmp_path_factory.mktemp("labelled"), seed=41, images=2, kind="cold_nodules")
    orthanc.storescu(study.files)
    orthanc.wait_result(study.study_uid, timeout=STABLE_AGE + 60)
    sid = orthanc.study_id(study.study_uid)
    assert sid is not None
    yield study, sid


def nm_sources(orthanc: OrthancServer, sid: str) -> list[tuple[str, pydicom.Dataset]]:
    out = [(iid, orthanc.instance(iid)) for iid in orthanc.series_by_modality(sid)["NM"]]
    return sorted(out, key=lambda t: int(t[1].InstanceNumber))


def test_manual_seg_and_rtstruct_are_linked_to_their_images(
    orthanc: OrthancServer, processed: tuple[Study, str], tmp_path: Path
) -> None:
    study, sid = processed
    (first_id, first), (second_id, second) = nm_sources(orthanc, sid)
    seg = manual_seg(first, study.glands[0][0], study.nodules[0][0])
    stored = stow(orthanc, seg)
    assert "00081199" in stored  # STOW-RS: Referenced SOP Sequence (stored)
    polygon = ellipse(64.3, 60.2, 20.0, 14.0)
    orthanc.storescu([save(tmp_path, "rt", rtstruct(second, {"Thyroid gland": [polygon], "Marker": [
        ellipse(20.3, 20.2, 3, 3)]}))])
    records = {r["kind"]: r for r in wait_labels(orthanc, sid, 2)}
    result = orthanc.result(sid)
    assert result is not None
    own = set(result["seg_instance_ids"])
    assert not own & {r["instance_id"] for r in labels(orthanc, sid)}  # ScintiSeg's SEGs are not labels

    seg_record = records["SEG"]
    assert seg_record["status"] == "accepted" and seg_record["provenance"]["who"] == "DR^LABEL"
    (image,) = seg_record["images"]
    assert (image["source_instance_id"], image["source_sop_instance_uid"]) == (first_id, first.SOPInstanceUID)
    assert [lab["maps_to"] for lab in image["labels"]] == ["gland", "nodule"]
    assert image["labels"][0]["pixels"] == int(study.glands[0][0].sum())
    agreement = image["agreement"]
    assert agreement is not None and agreement["models"] == result["models"]
    assert 0.0 <= agreement["dice"]["gland"] <= 1.0 and agreement["nodules"]["physician"] >= 1

    rt_record = records["RTSTRUCT"]
    assert rt_record["status"] == "accepted" and rt_record["unmapped"] == ["Marker"]
    (rt_image,) = rt_record["images"]
    assert rt_image["source_instance_id"] == second_id
    gland = next(lab for lab in rt_image["labels"] if lab["maps_to"] == "gland")
    assert abs(gland["pixels"] - np.pi * 20 * 14) < 30  # the ellipse's area in pixels of the NM matrix
    assert rt_image["agreement"] is not None and rt_image["agreement"]["nodules"] is None

    stats_data = orthanc.request("GET", "/scintiseg/stats")
    check_answer(load_spec(), "GET", "/scintiseg/stats", 200, "application/json", stats_data)
    stats = json.loads(stats_data)
    (group,) = stats["by_models"]
    assert group["models"] == result["models"] and group["images"] == 2
    assert group["dice"]["gland"]["n"] == 2


def test_bad_label_objects_are_refused_kept_and_orthanc_serves_on(
    orthanc: OrthancServer, processed: tuple[Study, str], tmp_path: Path
) -> None:
    study, sid = processed
    (_, first), _ = nm_sources(orthanc, sid)
    before = {r["sop_instance_uid"] for r in labels(orthanc, sid)}
    gland = study.glands[0][0]

    unknown = manual_seg(first, gland, tag="unknown-image")
    for group in unknown.PerFrameFunctionalGroupsSequence:
        group.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID = "1.2.826.0.1.99.404"
    unknown.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID = "1.2.826.0.1.99.404"
    small = copy.deepcopy(first)
    small.Rows = small.Columns = 64
    matrix = manual_seg(small, np.zeros((64, 64), dtype=bool) | (np.arange(64)[:, None] < 30), tag="matrix")
    corrupt = manual_seg(first, gland, tag="corrupt")
    corrupt.PixelData = corrupt.PixelData[:10]
    bad = {
        "unknown_image": unknown,
        "matrix": matrix,
        "corrupt": corrupt,
        "self_intersecting": rtstruct(first, {"Thyroid": [np.array([[40, 40], [90, 90], [90, 40], [40, 90]])]},
                                      tag="bow-tie"),
        "empty": rtstruct(first, {"Thyroid": [np.array([[40, 40], [90, 90]])]}, tag="empty"),
    }
    # storescu (RTSTRUCT) and REST (SEG: storescu's default presentation contexts lack it)
    orthanc.storescu([save(tmp_path, code, ds) for code, ds in bad.items() if ds.Modality == "RTSTRUCT"])
    for ds in (d for d in bad.values() if d.Modality == "SEG"):
        orthanc.upload(save(tmp_path, str(ds.SOPInstanceUID), ds).read_bytes())
    records = wait_labels(orthanc, sid, len(before) + len(bad))
    new = {r["sop_instance_uid"]: r for r in records if r["sop_instance_uid"] not in before}
    by_code = {r["code"]: r for r in new.values()}
    assert set(by_code) == set(bad), [(r["code"], r["reason"]) for r in new.values()]
    for code, ds in bad.items():
        record = by_code[code]
        assert record["status"] == "refused" and record["reason"], record
        assert record["sop_instance_uid"] == ds.SOPInstanceUID
        assert orthanc.get(f"/instances/{record['instance_id']}")["ID"] == record["instance_id"]  # kept
    assert "1.2.826.0.1.99.404" in by_code["unknown_image"]["reason"]
    assert orthanc.get("/system")["Version"]
    assert orthanc.get("/scintiseg/health")["status"] == "ok"


def test_a_label_map_seg_as_ohif_saves_it_is_linked_with_each_segment(
    orthanc: OrthancServer, processed: tuple[Study, str]
) -> None:
    study, sid = processed
    _, (second_id, second) = nm_sources(orthanc, sid)
    before = {r["instance_id"] for r in labels(orthanc, sid)}
    gland, nodules = study.glands[1][0], study.nodules[1][0]
    stow(orthanc, labelmap_seg(second, gland, nodules))
    record = wait_for("the label map's record", lambda: next(
        (r for r in labels(orthanc, sid) if r["instance_id"] not in before), None), STABLE_AGE + 60)
    assert record["kind"] == "SEG" and record["status"] == "accepted", record
    (image,) = record["images"]
    assert image["source_instance_id"] == second_id
    by_label = {lab["maps_to"]: lab["pixels"] for lab in image["labels"]}
    assert by_label == {"gland": int((gland & ~nodules).sum()), "nodule": int(nodules.sum())}
