"""Only thyroid scans get the thyroid models: the shipped cards' ``applies_to`` refuses the
other NM exams a department's Orthanc receives (bone, renal, cardiac, lung, parathyroid), in
the words and codes departments write, and a study no model applies to is skipped with the
reason, nothing stored in it."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pydicom
import pytest
from support import ROOT
from support.fake_gateway import FakeGateway
from support.fake_models import write_fake_models
from support.nm_fixtures import make_nm, to_bytes
from support.other_exams import OTHER_EXAMS, THYROID_EXAMS, as_exam, silent

from scintiseg.core.result import Status
from scintiseg.models.card import THYROID_APPLIES_TO, THYROID_OUTLINE
from scintiseg.models.registry import Registry, onnx_loader
from scintiseg.models.rules import AppliesTo, ImageFacts, RuleError, parse_applies_to
from scintiseg.pipeline.image import ImplausibleOutline, Pipeline, PipelineSource
from scintiseg.work.jobs import StudyJobs
from scintiseg.work.selection import Selection
from scintiseg_phantoms.dicom import scan_to_dataset, study_uids
from scintiseg_phantoms.thyroid import generate_scan

SHIPPED = sorted((ROOT / "models").glob("*/card.json"))


def thyroid_rule() -> AppliesTo:
    return parse_applies_to(THYROID_APPLIES_TO)


def phantom(seed: int = 3, isotope: str = "Tc-99m") -> pydicom.Dataset:
    scan = generate_scan(seed, kind="cold_nodules", isotope=isotope)
    study, series, (sop,) = study_uids(seed, 1)
    return scan_to_dataset(scan, patient_id="P", patient_name="T^P", study_uid=study, series_uid=series, sop_uid=sop)


def test_the_shipped_thyroid_cards_carry_the_thyroid_rule() -> None:
    assert len(SHIPPED) >= 2
    for path in SHIPPED:
        assert json.loads(path.read_text(encoding="utf-8"))["applies_to"] == THYROID_APPLIES_TO, path


@pytest.mark.parametrize("name", sorted(OTHER_EXAMS))
def test_another_exam_is_refused_by_the_thyroid_rule_with_the_words_that_named_it(name: str) -> None:
    facts = ImageFacts.of(as_exam(phantom(), OTHER_EXAMS[name]))
    why = thyroid_rule().matches_image(facts)
    assert why is not None and "another exam" in why, why


@pytest.mark.parametrize("name", sorted(THYROID_EXAMS))
def test_thyroid_scans_as_departments_write_them_pass(name: str) -> None:
    assert thyroid_rule().matches_image(ImageFacts.of(as_exam(phantom(), THYROID_EXAMS[name]))) is None


def test_the_phantoms_and_fixtures_and_a_silent_header_pass() -> None:
    rule = thyroid_rule()
    for ds in (phantom(3, "Tc-99m"), phantom(4, "I-131"), make_nm(64)):
        assert rule.matches_image(ImageFacts.of(ds)) is None
    assert rule.matches_image(ImageFacts.of(silent(phantom()))) is None


def test_a_tracer_or_a_body_part_of_another_exam_is_refused_even_in_plain_words() -> None:
    rule = thyroid_rule()
    gallium = silent(phantom())
    as_exam(gallium, THYROID_EXAMS["pertechnetate"])
    gallium.RadiopharmaceuticalInformationSequence[0].Radiopharmaceutical = "Ga-67 citrate"
    gallium.RadiopharmaceuticalInformationSequence[0].RadionuclideCodeSequence[0].CodeMeaning = "^67^Gallium"
    gallium.RadiopharmaceuticalInformationSequence[0].RadionuclideCodeSequence[0].CodeValue = "17432009"
    assert "another exam" in (rule.matches_image(ImageFacts.of(gallium)) or "")
    knee = silent(phantom())
    knee.BodyPartExamined = "KNEE"
    assert rule.matches_image(ImageFacts.of(knee)) == "body part KNEE"
    indium = silent(phantom())
    item = pydicom.Dataset()
    item.Radiopharmaceutical = "In-111 chloride"
    indium.RadiopharmaceuticalInformationSequence = [item]
    assert rule.matches_image(ImageFacts.of(indium)) == "radiopharmaceutical In-111 chloride"


def test_if_absent_is_read_checked_and_shown() -> None:
    strict = parse_applies_to({"radionuclide": {"codes": ["1368003"]}})
    assert strict.matches_image(ImageFacts.of(silent(phantom()))) == "radionuclide (none)"
    lenient = parse_applies_to({"radionuclide": {"codes": ["1368003"], "if_absent": "accept"}})
    assert lenient.matches_image(ImageFacts.of(silent(phantom()))) is None
    assert lenient.describe()["radionuclide"]["if_absent"] == "accept"
    with pytest.raises(RuleError, match="if_absent"):
        parse_applies_to({"radionuclide": {"codes": ["1"], "if_absent": "maybe"}})
    with pytest.raises(RuleError, match="excludes"):
        parse_applies_to({"excludes": "(unclosed"})


def test_a_study_of_another_exam_is_skipped_with_the_reason_and_nothing_is_stored(tmp_path: Path) -> None:
    models = write_fake_models(tmp_path / "models")  # the stand-ins carry the shipped kinds' rule
    gw = FakeGateway()
    renal = as_exam(phantom(21), OTHER_EXAMS["renal DMSA"])
    thyroid = as_exam(phantom(22), THYROID_EXAMS["pertechnetate"])
    renal_id, thyroid_id = gw.add(renal), gw.add(thyroid)
    jobs = StudyJobs(gw, PipelineSource(Registry(models, onnx_loader(["CPUExecutionProvider"]))), Selection())
    result = jobs.run(gw.study_of[renal_id])
    assert result is not None and result.status == Status.SKIPPED
    assert "'Renal DMSA scan' names another exam" in result.reason
    assert gw.count("store_instance") == 0
    done = jobs.run(gw.study_of[thyroid_id])
    assert done is not None and done.status == Status.DONE and gw.count("store_instance") == 1


# -- where the header says nothing: the gland outline's size --------------------------------
def test_outline_limits_are_read_checked_and_listed(tmp_path: Path) -> None:
    from support.fake_models import write_fake_model

    from scintiseg.models.card import ModelCardError, load_card

    folder = write_fake_model(tmp_path / "gland", "gland", outline={"gland": THYROID_OUTLINE})
    card = load_card(folder)
    assert card.outline["gland"].describe() == {"width_mm": [0.0, 150.0], "height_mm": [0.0, 140.0]}
    assert card.outline["gland"].why_not(98, 111) is None
    assert card.outline["gland"].why_not(190, 121) == "190 x 121 mm (made for 0-150 x 0-140 mm)"
    raw = json.loads((folder / "card.json").read_text())
    for bad, message in (({"nodule": raw["outline"]["gland"]}, "not a label"),
                         ({"gland": {"width_mm": [0, 1]}}, "exactly width_mm and height_mm"),
                         ({"gland": {"width_mm": [5, 1], "height_mm": [0, 1]}}, r"\[min, max\]")):
        (folder / "card.json").write_text(json.dumps({**raw, "outline": bad}))
        with pytest.raises(ModelCardError, match=message):
            load_card(folder, verify_sha256=False)
    reg = Registry(tmp_path, onnx_loader(["CPUExecutionProvider"]))
    assert reg.current.entries[0].describe()["outline"] == {}  # the refused card lists none


def dmsa_view(seed: int, view: str) -> pydicom.Dataset:
    from scintiseg_phantoms.renal import generate_study, renal_study_uids, view_to_dataset

    study_uid, series_uid, sops = renal_study_uids(seed)
    ds = view_to_dataset(generate_study(seed), view, patient_id="P", patient_name="T^P", study_uid=study_uid,
                         series_uid=series_uid, sop_uid=sops[view])
    return pydicom.dcmread(io.BytesIO(to_bytes(silent(ds))))


def test_the_shipped_gland_outline_refuses_most_renal_views_whose_header_says_nothing() -> None:
    """Measured: 53 of 60 such DMSA views refused (seeds 300-329); no thyroid scan refused."""
    from scintiseg_phantoms.independent import generate

    pipeline = Pipeline.from_models_dir(ROOT / "models", providers=["CPUExecutionProvider"])
    refused = segmented = 0
    for seed in range(300, 315):
        for view in ("posterior", "anterior"):
            try:
                pipeline.process(dmsa_view(seed, view))
                segmented += 1
            except ImplausibleOutline as exc:
                assert "not an image this model was made for" in str(exc) and exc.code == "implausible_outline"
                refused += 1
    assert refused >= 0.75 * (refused + segmented), (refused, segmented)
    for seed in range(5000, 5012):
        for scan in (generate_scan(seed), generate(seed)):
            study, series, (sop,) = study_uids(seed, 1)
            ds = scan_to_dataset(scan, patient_id="P", patient_name="T^P", study_uid=study, series_uid=series,
                                 sop_uid=sop)
            pipeline.process(pydicom.dcmread(io.BytesIO(to_bytes(ds))))  # raises if refused
