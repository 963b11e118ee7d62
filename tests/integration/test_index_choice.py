"""ScintiSeg asks Orthanc which index it runs on before it joins a cluster.

The configuration of Orthanc's own integration tests keeps a ``PostgreSQL`` section (for
another run) while the index is the built-in SQLite (the PostgreSQL plugin is not loaded):
ScintiSeg must not take that section for a cluster database, and must segment as usual.
"""

from __future__ import annotations

from pathlib import Path

from support.orthanc_harness import STABLE_AGE, OrthancServer, make_study

# nothing listens on port 1: a ScintiSeg that tried this database would turn itself OFF
UNUSED_POSTGRESQL = {"EnableIndex": True, "EnableStorage": False, "Host": "127.0.0.1", "Port": 1,
                     "Database": "orthanc", "Username": "orthanc", "Password": "orthanc"}


def test_a_postgresql_section_on_an_sqlite_index_leaves_scintiseg_on_and_alone(
    new_orthanc: OrthancServer, tmp_path: Path
) -> None:
    new_orthanc.extra_config = {"PostgreSQL": UNUSED_POSTGRESQL}
    new_orthanc.start()  # fails if the plugin reports "failed"
    assert new_orthanc.get("/system")["DatabaseBackendPlugin"] is None  # SQLite indeed
    status = new_orthanc.get("/scintiseg/status")
    assert status["state"] == "running" and status["error"] is None
    assert status["cluster"] is None
    assert "Orthanc's index runs on its built-in SQLite: this node works alone" in new_orthanc.log()
    study = make_study(tmp_path / "study", seed=61)
    new_orthanc.storescu(study.files)
    result = new_orthanc.wait_result(study.study_uid, timeout=STABLE_AGE + 60)
    assert result["status"] == "done"
