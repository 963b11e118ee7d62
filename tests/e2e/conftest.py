"""Fixtures of the browser tests (see :mod:`support.e2e_harness` for the helpers and the settings)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.e2e_harness import ProcessedStudy, Server, missing_browser_tools, skip_or_fail
from support.fake_models import write_fake_models
from support.orthanc_harness import OrthancServer, make_study, missing_tools, trained_models


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    missing = missing_browser_tools()
    if missing:
        pytest.skip(missing)
    external = os.environ.get("SCINTISEG_E2E_URL")
    if external:
        yield Server(external.rstrip("/"))
        return
    missing = missing_tools()
    if missing:
        pytest.skip(missing)
    models = trained_models() or write_fake_models(tmp_path_factory.mktemp("fake-models"))
    harness = OrthancServer(data=tmp_path_factory.mktemp("orthanc-e2e"), models=models)
    harness.start()
    try:
        yield Server(harness.url, harness)
    finally:
        harness.stop()


def send_and_wait(server: Server, folder: Path, seed: int, frames: int = 1) -> ProcessedStudy:
    """A synthetic thyroid study with cold nodules, sent to the server and segmented."""
    for path, what in (("/ohif/", "the OHIF viewer at /ohif/"), ("/dicom-web/studies", "DICOMweb")):
        if server.status(path) != 200:
            skip_or_fail(
                f"the server does not serve {what} (GET {path} -> {server.status(path)}): "
                "the plugin must register the /ohif/ route and load the DICOMweb plugin"
            )
    study = make_study(folder, seed=seed, frames=frames, kind="cold_nodules")
    if server.harness is not None:
        server.harness.storescu(study.files)
    else:
        for f in study.files:
            server.request("POST", "/instances", f.read_bytes())
    result = server.wait_result(study.study_uid)
    assert result["status"] == "done", result
    study_id = server.study_id(study.study_uid)
    assert study_id is not None
    return ProcessedStudy(study.study_uid, study_id, result)


@pytest.fixture(scope="module")
def processed_study(server: Server, tmp_path_factory: pytest.TempPathFactory) -> ProcessedStudy:
    """A single-frame NM thyroid study, segmented."""
    return send_and_wait(server, tmp_path_factory.mktemp("e2e-study"), seed=4242)


@pytest.fixture(scope="module")
def processed_multiframe(server: Server, tmp_path_factory: pytest.TempPathFactory) -> ProcessedStudy:
    """A two-frame NM thyroid study (one image, two frames), segmented."""
    return send_and_wait(server, tmp_path_factory.mktemp("e2e-multiframe"), seed=4343, frames=2)
