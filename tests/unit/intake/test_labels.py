"""Physician labels: SEG and RTSTRUCT to masks, label mapping, refusals, intake and agreement."""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest
from support.fake_gateway import FakeGateway
from support.label_objects import ellipse, labelmap_seg, manual_seg, rtstruct, source

from scintiseg.dicom.contours import ContourError, polygon_mask, self_intersects
from scintiseg.dicom.labels import LabelRefused, label_kind, map_label, read_label_object
from scintiseg.dicom.seg import COLD_NODULE, GLAND, build_seg
from scintiseg.intake.labels import LabelIntake
from scintiseg.pipeline.agreement import compare, dice, nodule_matching, summarise


def ai_seg(ds: pydicom.Dataset, gland: np.ndarray, nodules: np.ndarray) -> pydicom.Dataset:
    return build_seg(
        ds, np.stack([gland, nodules], axis=-1)[None],
        [GLAND.with_algorithm("scintiseg-gland", "9.9.9"), COLD_NODULE.with_algorithm("scintiseg-nodule", "9.9.9")],
        series_instance_uid=str(ds.SOPInstanceUID) + ".9", sop_instance_uid=str(ds.SOPInstanceUID) + ".9.1",
        series_number=9901, instance_number=1, series_description="ScintiSeg",
    )


def test_manual_seg_gives_the_drawn_masks_mapped_to_the_model_labels() -> None:
    ds, scan = source()
    seg = manual_seg(ds, scan.gland, scan.nodules)
    assert label_kind(seg) == "SEG"
    (image,) = read_label_object(seg, {str(ds.SOPInstanceUID): ds}.get)
    assert image.source_sop_instance_uid == ds.SOPInstanceUID
    masks = image.model_masks()
    assert np.array_equal(masks["gland"][0], scan.gland) and np.array_equal(masks["nodule"][0], scan.nodules)
    summary = [label.summary() for label in image.labels]
    assert [s["maps_to"] for s in summary] == ["gland", "nodule"]
    assert summary[0]["pixels"] == int(scan.gland.sum()) and summary[0]["frames_drawn"] == [1]


def test_a_label_map_seg_gives_each_segment_its_pixels() -> None:
    ds, scan = source()
    seg = labelmap_seg(ds, scan.gland, scan.nodules)
    assert label_kind(seg) == "SEG"
    (image,) = read_label_object(seg, {str(ds.SOPInstanceUID): ds}.get)
    masks = image.model_masks()
    assert np.array_equal(masks["nodule"][0], scan.nodules)
    assert np.array_equal(masks["gland"][0], scan.gland & ~scan.nodules)  # a pixel holds one segment
    assert [lab.maps_to for lab in image.labels] == ["gland", "nodule"]


def test_a_stack_index_frame_number_on_a_single_frame_image_means_the_image() -> None:
    # dcmjs numbers the frames of a series of single-frame NM images by their place in the series
    ds, scan = source()
    seg = manual_seg(ds, scan.gland, scan.nodules)
    for group in seg.PerFrameFunctionalGroupsSequence:
        group.DerivationImageSequence[0].SourceImageSequence[0].ReferencedFrameNumber = 3
    (image,) = read_label_object(seg, {str(ds.SOPInstanceUID): ds}.get)
    assert np.array_equal(image.model_masks()["gland"][0], scan.gland)


def test_scintiseg_automatic_seg_is_not_a_label() -> None:
    ds, scan = source()
    assert label_kind(ai_seg(ds, scan.gland, scan.nodules)) is None


@pytest.mark.parametrize(
    ("name", "code", "expected"),
    [
        ("Thyroid", None, "gland"),
        ("Left lobe", None, "gland"),
        ("Segment 1", ("SCT", "69748006", "Thyroid"), "gland"),
        ("Nodule 2", None, "nodule"),
        ("Kalter Knoten", None, "nodule"),
        ("x", ("SCT", "237495005", "Thyroid nodule"), "nodule"),
        ("Hot nodule", ("SCT", "27925004", "Nodule"), None),
        # the salivary glands a thyroid scan shows are not the thyroid gland
        ("Salivary gland", ("SCT", "385294005", "Salivary gland"), None),
        ("Left parotid gland", None, None),
        ("Glande submandibulaire", None, None),
        ("Background", ("SCT", "385294005", "Salivary gland"), None),
        # OHIF's defaults: the generic Tissue code and "Segment N" identify nothing
        ("Segment 1", ("SRT", "T-D0050", "Tissue"), None),
        ("Thyroid", ("SRT", "T-D0050", "Tissue"), "gland"),
    ],
)
def test_labels_map_by_code_then_name(name: str, code: tuple[str, str, str] | None, expected: str | None) -> None:
    assert map_label(name, code) == expected


def test_rtstruct_contours_are_rasterised_on_the_nm_matrix() -> None:
    ds, _ = source()
    polygon = ellipse(30.3, 28.4, 12.0, 8.0)  # no vertex on a pixel centre
    rt = rtstruct(ds, {"Thyroid": [polygon], "Cold nodule": [ellipse(26.0, 28.0, 3.0, 3.0)], "Marker": [
        ellipse(50, 50, 3, 3)]})
    assert label_kind(rt) == "RTSTRUCT"
    (image,) = read_label_object(rt, {str(ds.SOPInstanceUID): ds}.get)
    gland = image.model_masks()["gland"][0]
    assert np.array_equal(gland, polygon_mask(polygon, 64, 64))
    assert abs(int(gland.sum()) - np.pi * 12 * 8) < 12  # the ellipse's area, in pixels
    assert gland[28, 30] and not gland[28, 45]
    assert [lab.maps_to for lab in image.labels] == ["gland", "nodule", None]


def test_an_rtstruct_drawn_in_ohif_lands_where_it_was_drawn() -> None:
    # OHIF places a single-frame NM image on the top-level geometry or the anterior defaults,
    # not on its Detector Information item (coronal here): its contours lie on that plane
    ds, _ = source()
    polygon = ellipse(30.3, 28.4, 12.0, 8.0)
    standard = rtstruct(ds, {"Thyroid": [polygon]})
    drawn = rtstruct(ds, {"Thyroid": [polygon]}, viewer=True, tag="ohif")
    assert drawn.ROIContourSequence[0].ContourSequence[0].ContourData != \
        standard.ROIContourSequence[0].ContourSequence[0].ContourData
    for rt in (standard, drawn):
        (image,) = read_label_object(rt, {str(ds.SOPInstanceUID): ds}.get)
        assert np.array_equal(image.model_masks()["gland"][0], polygon_mask(polygon, 64, 64))


def test_bad_label_objects_are_refused_with_a_code() -> None:
    ds, scan = source()
    known = {str(ds.SOPInstanceUID): ds}.get
    cases = {
        "unknown_image": (manual_seg(ds, scan.gland), lambda uid: None),
        "self_intersecting": (rtstruct(ds, {"Thyroid": [np.array([[10, 10], [30, 30], [30, 10], [10, 30]])]}), known),
        "empty": (rtstruct(ds, {"Thyroid": [np.array([[10, 10], [30, 30]])]}), known),
        "matrix": (manual_seg(source(matrix=128)[0], source(matrix=128)[1].gland), known),
    }
    empty_seg = manual_seg(ds, np.zeros_like(scan.gland), tag="empty")
    cases["empty "] = (empty_seg, known)
    for code, (obj, sources) in cases.items():
        if code == "matrix":
            obj.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID = ds.SOPInstanceUID
            for group in obj.PerFrameFunctionalGroupsSequence:
                group.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID = ds.SOPInstanceUID
        with pytest.raises(LabelRefused) as info:
            read_label_object(obj, sources)
        assert info.value.code == code.strip(), (code, info.value.reason)


def test_polygon_fill_and_self_intersection() -> None:
    square = np.array([[1.5, 1.5], [5.5, 1.5], [5.5, 4.5], [1.5, 4.5]])
    mask = polygon_mask(square, 8, 8)
    assert mask.sum() == 4 * 3 and mask[2:5, 2:6].all()
    assert not self_intersects(square)
    assert self_intersects(np.array([[0, 0], [4, 4], [4, 0], [0, 4]]))
    with pytest.raises(ContourError, match="no area"):
        polygon_mask(np.array([[0, 0], [2, 2], [4, 4]]), 8, 8)


def test_agreement_dice_and_nodule_matching() -> None:
    a = np.zeros((1, 20, 20), dtype=bool)
    b = a.copy()
    a[0, 2:6, 2:6] = True
    a[0, 12:15, 12:15] = True
    b[0, 3:6, 3:6] = True
    b[0, 17:19, 2:4] = True
    assert dice(a, a) == 1.0 and dice(a & False, a & False) is None
    assert nodule_matching(a, b) == {"physician": 2, "ai": 2, "matched": 1, "missed_by_ai": 1, "ai_only": 1}
    rec = compare({"gland": a, "nodule": a}, {"gland": a, "nodule": b})
    assert rec["dice"]["gland"] == 1.0 and rec["nodules"]["matched"] == 1
    stats = summarise([{"models": ["m@1"], **rec}, {"models": ["m@1"], **compare({"gland": a}, {"gland": b})},
                       {"models": ["m@2"], **rec}])
    assert [s["images"] for s in stats] == [2, 1]
    assert stats[0]["dice"]["gland"]["n"] == 2 and stats[0]["dice"]["gland"]["mean"] == round(
        (1.0 + dice(a, b)) / 2, 4)  # type: ignore[operator]
    assert stats[0]["nodules"]["sensitivity"] == 0.5


def _store_ai_result(gw: FakeGateway, ds: pydicom.Dataset, gland: np.ndarray, nodules: np.ndarray) -> str:
    sid = gw.study_id(ds)
    seg_id = gw.add(ai_seg(ds, gland, nodules))
    source_id = gw.lookup_instance(str(ds.SOPInstanceUID))
    gw.metadata[sid] = json.dumps({"status": "done", "models": ["scintiseg-gland@9.9.9", "scintiseg-nodule@9.9.9"],
                                   "seg_instance_ids": [seg_id], "images": {str(ds.SOPInstanceUID): {
                                       "status": "done", "seg_instance_id": seg_id,
                                       "source_instance_id": source_id}}})
    return sid


def test_intake_records_accepted_refused_and_the_agreement() -> None:
    gw = FakeGateway()
    ds, scan = source()
    gw.add(ds)
    sid = _store_ai_result(gw, ds, scan.gland, scan.nodules)
    gw.add(manual_seg(ds, scan.gland, scan.nodules))
    broken = manual_seg(ds, scan.gland, tag="broken")
    broken.PixelData = broken.PixelData[:10]  # truncated pixel data: a corrupt object Orthanc still stores
    gw.add(broken)
    gw.add(rtstruct(ds, {"Thyroid": [np.array([[10, 10], [30, 30], [30, 10], [10, 30]])]}))
    intake = LabelIntake(gw, "ScintiSegLabels")
    store = intake.run(sid, gw.typed_result(sid))
    by_status = sorted((r["status"], r.get("code") or "") for r in store["objects"].values())
    assert by_status == [("accepted", ""), ("refused", "corrupt"), ("refused", "self_intersecting")]
    accepted = next(r for r in store["objects"].values() if r["status"] == "accepted")
    (image,) = accepted["images"]
    assert image["source_sop_instance_uid"] == ds.SOPInstanceUID
    assert image["agreement"]["dice"] == {"gland": 1.0, "nodule": 1.0}
    assert image["agreement"]["models"] == ["scintiseg-gland@9.9.9", "scintiseg-nodule@9.9.9"]
    assert accepted["provenance"]["who"] == "DR^LABEL" and "MANUAL" in accepted["provenance"]["what"]
    writes = gw.count("write_study_metadata")
    intake.run(sid, gw.typed_result(sid))
    assert gw.count("write_study_metadata") == writes  # nothing new: nothing written
    refused = [r for r in store["objects"].values() if r["status"] == "refused"]
    assert all(r["reason"] for r in refused)
    assert json.loads(gw.read_study_metadata(sid, "ScintiSegLabels") or "{}")["objects"] == store["objects"]


def test_ai_seg_read_back_matches_and_agreement_follows_a_model_change() -> None:
    gw = FakeGateway()
    ds, scan = source(seed=5)
    gw.add(ds)
    sid = gw.study_id(ds)
    gw.add(manual_seg(ds, scan.gland, scan.nodules))
    intake = LabelIntake(gw, "ScintiSegLabels")
    first = intake.run(sid, None)
    (record,) = first["objects"].values()
    assert record["images"][0]["agreement"] is None  # no AI result yet
    half = scan.gland.copy()
    half[::2] = False  # every other row: Dice about 2/3
    _store_ai_result(gw, ds, half, np.zeros_like(scan.nodules))
    second = intake.run(sid, gw.typed_result(sid))
    (again,) = second["objects"].values()
    agreement = again["images"][0]["agreement"]
    assert agreement is not None and 0.0 < agreement["dice"]["gland"] < 1.0
    assert agreement["nodules"]["ai"] == 0 and agreement["nodules"]["missed_by_ai"] >= 1


class _Backend:
    """The part of the plugin backend the label routes use."""

    def __init__(self, gateway: FakeGateway, labels: LabelIntake | None) -> None:
        self.gateway, self.labels = gateway, labels

    def study_exists(self, study_id: str) -> bool:
        return self.gateway.study_exists(study_id)


def test_label_and_stats_routes_follow_the_openapi_description() -> None:
    from support.openapi_check import check_against_spec, load_spec

    from scintiseg.api import routes as rest

    spec = load_spec()
    gw = FakeGateway()
    ds, scan = source()
    gw.add(ds)
    sid = _store_ai_result(gw, ds, scan.gland, np.zeros_like(scan.nodules))
    gw.add(manual_seg(ds, scan.gland, scan.nodules))
    gw.add(rtstruct(ds, {"Thyroid": [np.array([[10, 10], [20, 10]])]}))
    intake = LabelIntake(gw, "ScintiSegLabels")
    intake.run(sid, gw.typed_result(sid))
    backend = _Backend(gw, intake)
    answer = rest.dispatch(backend, "GET", f"/scintiseg/studies/{sid}/labels")  # type: ignore[arg-type]
    check_against_spec(spec, "GET", f"/scintiseg/studies/{sid}/labels", answer)
    body = json.loads(answer.body)
    assert [(r["kind"], r["status"], r["code"]) for r in body["labels"]] in (
        [("SEG", "accepted", None), ("RTSTRUCT", "refused", "empty")],
        [("RTSTRUCT", "refused", "empty"), ("SEG", "accepted", None)],
    )
    answer = rest.dispatch(backend, "GET", "/scintiseg/stats")  # type: ignore[arg-type]
    check_against_spec(spec, "GET", "/scintiseg/stats", answer)
    stats = json.loads(answer.body)
    assert stats["label_objects"] == {"accepted": 1, "refused": 1, "ignored": 0}
    assert stats["refusals"] == {"empty": 1} and stats["labelled_studies"] == 1
    (group,) = stats["by_models"]
    assert group["images"] == 1 and group["dice"]["gland"]["mean"] == 1.0
    assert group["nodules"]["missed_by_ai"] == group["nodules"]["physician"] >= 1
    off = rest.dispatch(_Backend(gw, None), "GET", "/scintiseg/stats")  # type: ignore[arg-type]
    check_against_spec(spec, "GET", "/scintiseg/stats", off)
    assert off.status == 503
