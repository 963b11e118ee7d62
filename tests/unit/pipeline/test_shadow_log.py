"""The shadow agreement records outlive a restart (``ShadowAgreementFile``), stay bounded,
survive a cut last line, and never fail a job when the file cannot be written."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from scintiseg.app.config import AGREEMENT_FILE_NAME, ConfigError, load_config
from scintiseg.pipeline.shadow import AgreementLog

SHADOW = "scintiseg-nodule@99.0.0"
OTHER = "scintiseg-gland@9.1.0"


def record(i: int, dice: float = 0.9) -> dict[str, object]:
    return {"image": f"1.2.3.{i}", "against": "scintiseg-nodule@2.0.0", "dice": {"nodule": dice},
            "found_by_active_only": i % 2, "found_by_shadow_only": 0}


def test_records_are_read_back_by_the_next_log(tmp_path: Path) -> None:
    path = tmp_path / "agreement.jsonl"
    first = AgreementLog(path)
    for i in range(5):
        first.add(SHADOW, record(i, 0.8 + i / 100))
    first.add(OTHER, record(9, 0.5))
    before = first.summary(SHADOW)
    again = AgreementLog(path)
    assert again.summary(SHADOW) == before and before["images"] == 5
    assert again.summary(OTHER)["images"] == 1
    assert again.summary(SHADOW)["found_by_active_only"] == 2
    assert len(path.read_text().splitlines()) == 6


def test_a_cut_last_line_is_skipped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "agreement.jsonl"
    log = AgreementLog(path)
    log.add(SHADOW, record(1))
    log.add(SHADOW, record(2))
    text = path.read_text()
    path.write_text(text + text.splitlines()[0][:17])  # a write cut by a crash
    again = AgreementLog(path)
    assert again.summary(SHADOW)["images"] == 2 and again.unreadable == 1
    again.add(SHADOW, record(3))  # appending after the cut line still reads back
    assert AgreementLog(path).summary(SHADOW)["images"] == 3


def test_the_file_stays_bounded(tmp_path: Path) -> None:
    path = tmp_path / "agreement.jsonl"
    log = AgreementLog(path, max_records=10)
    for i in range(55):
        log.add(SHADOW, record(i))
    lines = path.read_text().splitlines()
    assert len(lines) <= 20
    again = AgreementLog(path, max_records=10)
    summary = again.summary(SHADOW)
    assert summary["images"] == 10
    assert [r["image"] for r in summary["recent"]] == [f"1.2.3.{i}" for i in range(45, 55)]


def test_an_unwritable_file_keeps_records_in_memory(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    log = AgreementLog(blocker / "agreement.jsonl")
    with caplog.at_level(logging.WARNING, logger="scintiseg.pipeline.shadow"):
        log.add(SHADOW, record(1))
        log.add(SHADOW, record(2))
    assert log.summary(SHADOW)["images"] == 2
    assert len([r for r in caplog.records if "cannot write" in r.message]) == 1  # said once


def test_without_a_file_nothing_is_written(tmp_path: Path) -> None:
    log = AgreementLog()
    log.add(SHADOW, record(1))
    assert log.summary(SHADOW)["images"] == 1 and list(tmp_path.iterdir()) == []


def orthanc_config(**extra: object) -> dict[str, object]:
    return {"UserMetadata": {"ScintiSegResult": 4242}, "ScintiSeg": {"ModelsDirectory": "/m"}, **extra}


def test_the_default_file_is_in_orthancs_storage_folder(tmp_path: Path) -> None:
    config = load_config(orthanc_config(StorageDirectory=str(tmp_path / "db")), root=tmp_path)
    assert config.shadow_agreement_file == tmp_path / "db" / AGREEMENT_FILE_NAME


def test_a_configured_file_is_taken_from_the_root(tmp_path: Path) -> None:
    conf = orthanc_config()
    conf["ScintiSeg"] = {"ModelsDirectory": "/m", "ShadowAgreementFile": "state/agreement.jsonl"}
    assert load_config(conf, root=tmp_path).shadow_agreement_file == tmp_path / "state" / "agreement.jsonl"
    conf["ScintiSeg"] = {"ModelsDirectory": "/m", "ShadowAgreementFile": 3}
    with pytest.raises(ConfigError, match="ShadowAgreementFile"):
        load_config(conf, root=tmp_path)


def test_records_are_json_lines_naming_their_shadow(tmp_path: Path) -> None:
    path = tmp_path / "agreement.jsonl"
    AgreementLog(path).add(SHADOW, record(7))
    (line,) = path.read_text().splitlines()
    assert json.loads(line) == {"shadow": SHADOW, **record(7)}
