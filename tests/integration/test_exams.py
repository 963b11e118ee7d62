"""A department's Orthanc receives every kind of NM study: sent together over DICOM, a thyroid
scan gets its SEG, and renal DMSA studies (the DMSA phantom's own images and header, and a
thyroid image with a renal header) and a bone scan are skipped with the reason, with nothing
stored in them (the real Orthanc, the real plugin, the shipped models' cards)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pydicom
from support.orthanc_harness import STABLE_AGE, OrthancServer, make_study
from support.other_exams import OTHER_EXAMS, THYROID_EXAMS, Exam, as_exam

from scintiseg_phantoms.renal import generate_study, renal_study_uids, write_renal_study


def exam(name: str) -> Exam:
    return OTHER_EXAMS.get(name) or THYROID_EXAMS[name]


def edit(name: str) -> partial[pydicom.Dataset]:
    return partial(lambda e, ds: as_exam(ds, e), exam(name))


def test_a_mixed_burst_gives_each_exam_only_its_own_models(orthanc: OrthancServer, tmp_path: Path) -> None:
    thyroid = make_study(tmp_path / "thyroid", seed=71, images=2, kind="cold_nodules", edit=edit("french"))
    renal = make_study(tmp_path / "renal", seed=72, images=2, edit=edit("renal DMSA"))
    bone = make_study(tmp_path / "bone", seed=73, edit=edit("bone"))
    dmsa_files = write_renal_study(generate_study(74, kind="scarred"), tmp_path / "dmsa", seed=74)
    dmsa_uid = renal_study_uids(74)[0]
    orthanc.storescu([*renal.files, *thyroid.files, *dmsa_files, *bone.files])
    done = orthanc.wait_result(thyroid.study_uid, timeout=STABLE_AGE + 90)
    assert done["status"] == "done" and len(done["seg_instance_ids"]) == 2
    others = ((renal.study_uid, len(renal.files), "'Renal DMSA scan' names another exam"),
              (dmsa_uid, len(dmsa_files), "'Renal DMSA scan' names another exam"),
              (bone.study_uid, len(bone.files), "another exam"))
    for study_uid, images, words in others:
        result = orthanc.wait_result(study_uid, timeout=STABLE_AGE + 90, statuses=("skipped",))
        assert words in result["reason"], result["reason"]
        sid = orthanc.study_id(study_uid)
        assert sid is not None
        assert set(orthanc.series_by_modality(sid)) == {"NM"}  # no SEG, no preview
        view = orthanc.get(f"/scintiseg/studies/{sid}")
        assert view["status"] == "skipped" and len(view["images"]) == images
        assert all(i["status"] == "skipped" and "another exam" in i["reason"] for i in view["images"])
