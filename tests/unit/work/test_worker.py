"""The worker queue, the service life cycle and the Orthanc gateway (with a fake ``orthanc``)."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from support.fake_gateway import FakeGateway, FakePipeline, ct_dataset, fake_models
from support.nm_fixtures import make_nm

from scintiseg.app.config import Config, parse_section
from scintiseg.app.service import Service
from scintiseg.app.startup import Models
from scintiseg.core.result import Status, StudyResult
from scintiseg.core.store import GatewayError, NotFoundError
from scintiseg.orthanc.gateway import OrthancGateway
from scintiseg.orthanc.log import OrthancLogHandler
from scintiseg.work.jobs import StudyJobs
from scintiseg.work.selection import Selection
from scintiseg.work.worker import JobOptions, Worker

MODELS = FakePipeline().models


# -- Worker ---------------------------------------------------------------------------------
def test_worker_runs_jobs_in_order_once_each() -> None:
    seen: list[str] = []
    gate = threading.Event()

    def handler(study: str, should_stop: Any, options: JobOptions) -> None:
        gate.wait(5)
        seen.append(study)

    w = Worker(handler)
    w.start()
    for s in ["a", "b", "a", "c", "b"]:
        assert w.submit(s)
    gate.set()
    assert w.wait_idle(5)
    assert seen == ["a", "b", "c"]
    assert w.stop(5)


def test_submitted_while_running_runs_again_after_never_concurrently() -> None:
    running: set[str] = set()
    overlaps: list[str] = []
    runs: list[str] = []
    started = threading.Event()
    release = threading.Event()

    def handler(study: str, should_stop: Any, options: JobOptions) -> None:
        if study in running:
            overlaps.append(study)
        running.add(study)
        started.set()
        release.wait(5)
        runs.append(f"{study}:{options.retry_failed}")
        running.discard(study)

    w = Worker(handler, threads=3)
    w.start()
    w.submit("s")
    assert started.wait(5)
    w.submit("s", JobOptions(retry_failed=True))  # while it runs
    w.submit("s")
    release.set()
    assert w.wait_idle(5)
    assert runs == ["s:False", "s:True"] and overlaps == []
    w.stop(5)


def test_options_of_a_queued_study_are_merged() -> None:
    w = Worker(lambda *a: None)
    w.submit("a", JobOptions(retry_failed=True))
    w.submit("a", JobOptions(force=True))
    w.submit("b")
    assert w.stats()["queued_ids"] == ["a", "b"]
    assert w._queue["a"] == JobOptions(retry_failed=True, force=True)


def test_handler_exception_keeps_the_thread_alive() -> None:
    runs: list[str] = []

    def handler(study: str, should_stop: Any, options: JobOptions) -> None:
        runs.append(study)
        raise RuntimeError("escaped")

    w = Worker(handler)
    w.start()
    w.submit("a")
    w.submit("b")
    assert w.wait_idle(5)
    assert runs == ["a", "b"] and w.stats()["jobs_done"] == 2
    w.stop(5)


def test_stop_tells_the_running_job_and_drops_the_queue() -> None:
    saw_stop = threading.Event()
    started = threading.Event()

    def handler(study: str, should_stop: Any, options: JobOptions) -> None:
        started.set()
        deadline = time.monotonic() + 5
        while not should_stop() and time.monotonic() < deadline:
            time.sleep(0.01)
        if should_stop():
            saw_stop.set()

    w = Worker(handler)
    w.start()
    w.submit("a")
    w.submit("b")
    assert started.wait(5)
    assert w.stop(5)
    assert saw_stop.is_set()
    assert not w.submit("c")
    assert w.stats()["queued"] == 0 and w.stats()["jobs_done"] == 1


def test_submit_is_cheap() -> None:
    w = Worker(lambda *a: None)
    t0 = time.perf_counter()
    for i in range(10000):
        w.submit(f"s{i}")
    assert time.perf_counter() - t0 < 1.0
    assert w.stats()["queued"] == 10000


# -- Service --------------------------------------------------------------------------------
def config(**section: Any) -> Config:
    return parse_section({"ModelsDirectory": "models", **section}, environ={})


def test_service_processes_submitted_studies() -> None:
    gw, pipe = FakeGateway(), FakePipeline()
    nm = make_nm(seed=3)
    gw.add(nm)
    svc = Service(config(RecoveryScanMaxStudies=0), gw, fake_models(pipe))
    assert not svc.submit("x"), "nothing is queued before ORTHANC_STARTED"
    svc.start()
    assert svc.state == "running"
    assert svc.submit(gw.study_id(nm))
    assert svc.wait_idle(5)
    assert gw.result(gw.study_id(nm))["status"] == Status.DONE
    status = svc.status()
    assert status["models"] == MODELS and status["providers"] == ["CPUExecutionProvider"]
    svc.stop()
    assert svc.state == "stopped" and not svc.submit("x")


def test_service_without_models_stays_off_and_says_why(caplog: pytest.LogCaptureFixture) -> None:
    def broken(cfg: Config, gw: Any, on_stored: Any) -> Models:
        raise FileNotFoundError("no gland model in /nowhere")

    svc = Service(config(), FakeGateway(), broken)
    svc.start()  # must not raise
    assert svc.state == "failed" and "no gland model" in (svc.error or "")
    assert "ScintiSeg is OFF" in caplog.text
    assert not svc.submit("x")
    svc.stop()


def test_disabled_service_does_nothing() -> None:
    svc = Service(config(Enabled=False), FakeGateway(), fake_models(FakePipeline()))
    svc.start()
    assert svc.state == "disabled" and not svc.submit("x")


def test_start_up_scan_queues_unfinished_studies_only() -> None:
    gw, pipe = FakeGateway(), FakePipeline()
    done_nm, new_nm, ct = make_nm(seed=1), make_nm(seed=2), ct_dataset("1.2.3.9")
    for ds in (done_nm, new_nm, ct):
        gw.add(ds)
    jobs = StudyJobs(gw, lambda: pipe, Selection())
    jobs.run(gw.study_id(done_nm))
    jobs.run(gw.study_id(ct))
    processed_before = len(pipe.processed)
    svc = Service(config(RecoveryScanPageSize=1), gw, fake_models(pipe))
    svc.start()
    assert svc.scan is not None and svc.scan.thread is not None
    svc.scan.join(5)
    assert svc.wait_idle(5)
    assert svc.recovery["examined"] == 3 and svc.recovery["queued"] == 1
    assert len(pipe.processed) == processed_before + 1
    assert gw.result(gw.study_id(new_nm))["status"] == Status.DONE
    svc.stop()


def test_start_up_scan_is_bounded_to_the_newest_studies() -> None:
    gw = FakeGateway()
    for seed in range(5):
        gw.add(make_nm(seed=seed))
    svc = Service(config(RecoveryScanMaxStudies=2), gw, fake_models(FakePipeline()))
    svc.start()
    assert svc.scan is not None and svc.scan.thread is not None
    svc.scan.join(5)
    assert svc.recovery["examined"] == 2
    svc.stop()


# -- OrthancGateway on a fake orthanc module ------------------------------------------------
class FakeOrthancError(Exception):
    pass


class FakeOrthanc:
    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers
        self.puts: dict[str, bytes] = {}

    def RestApiGet(self, uri: str) -> bytes:  # noqa: N802  (the orthanc module's names)
        if uri not in self.answers:
            raise FakeOrthancError(7, "Accessing an inexistent item")
        value = self.answers[uri]
        if isinstance(value, Exception):
            raise value
        return value if isinstance(value, bytes) else json.dumps(value).encode()

    def RestApiPost(self, uri: str, body: bytes) -> bytes:  # noqa: N802
        return json.dumps({"ID": "seg1", "Status": "Success", "ParentStudy": "st1"}).encode()

    def RestApiPut(self, uri: str, body: bytes) -> bytes:  # noqa: N802
        self.puts[uri] = body
        return b""


def test_orthanc_gateway_reads_the_index_and_metadata() -> None:
    api = FakeOrthanc(
        {
            "/studies/st1/series": [
                {"ID": "se1", "MainDicomTags": {"Modality": "nm", "SeriesDescription": "THY"}, "Instances": ["i1"]}
            ],
            "/series/se1/instances": [{"ID": "i1", "MainDicomTags": {"SOPInstanceUID": "1.2.3"}}],
            "/instances/i1/metadata?expand": {"SopClassUid": "1.2.840.10008.5.1.4.1.1.20"},
            "/studies/st1/metadata?expand": {"LastUpdate": "20260101T000000", "ScintiSegResult": '{"status":"done"}'},
            "/studies/st2/metadata?expand": {"LastUpdate": "x", "ScintiSegResult": "not json"},
            "/statistics": {"CountStudies": 12},
            "/studies?since=0&limit=2": ["st1", "st2"],
            "/instances/i1/file": b"DICM",
        }
    )
    gw = OrthancGateway(api)
    (series,) = gw.study_series("st1")
    assert series.modality == "NM" and series.instance_ids == ("i1",)
    (inst,) = gw.series_instances("se1")
    assert inst.sop_instance_uid == "1.2.3" and inst.sop_class_uid.endswith(".20")
    meta = gw.study_metadata("st1")
    assert meta.result is not None and meta.result.status == Status.DONE
    assert meta.last_update == "20260101T000000"
    assert gw.study_metadata("st2").result is None
    assert gw.count_studies() == 12 and gw.list_studies(0, 2) == ["st1", "st2"]
    assert gw.instance_file("i1") == b"DICM"
    stored = gw.store_instance(b"x")
    assert stored.instance_id == "seg1" and stored.parent_study == "st1"
    gw.write_result("st1", StudyResult(Status.DONE, reason="1 image(s) segmented"))
    written = json.loads(api.puts["/studies/st1/metadata/ScintiSegResult"])
    assert written["status"] == "done" and written["reason"] == "1 image(s) segmented"


def test_orthanc_gateway_says_which_index_orthanc_runs_on() -> None:
    """Answers of Orthanc 1.10.1 (GET /system, GET /plugins) on SQLite and on PostgreSQL."""
    sqlite = FakeOrthanc({"/system": {"DatabaseBackendPlugin": None, "Version": "1.10.1"}})
    assert OrthancGateway(sqlite).database_plugin() is None
    pg = FakeOrthanc({
        "/system": {"DatabaseBackendPlugin": "/usr/share/orthanc/plugins/libOrthancPostgreSQLIndex.so"},
        "/plugins": ["explorer.js", "dicom-web", "postgresql-index", "python"],
    })
    assert OrthancGateway(pg).database_plugin() == "postgresql-index"


def test_orthanc_gateway_translates_errors() -> None:
    api = FakeOrthanc({"/studies/st1/series": FakeOrthancError(9, "Database is locked")})
    gw = OrthancGateway(api)
    with pytest.raises(NotFoundError) as missing:
        gw.study_series("gone")
    assert isinstance(missing.value.__cause__, FakeOrthancError)
    with pytest.raises(GatewayError, match="Database is locked") as other:
        gw.study_series("st1")
    assert not isinstance(other.value, NotFoundError)


def test_log_handler_routes_levels() -> None:
    import logging

    got: list[tuple[str, str]] = []

    class Api:
        def LogInfo(self, m: str) -> None:  # noqa: N802
            got.append(("info", m))

        def LogWarning(self, m: str) -> None:  # noqa: N802
            got.append(("warning", m))

        def LogError(self, m: str) -> None:  # noqa: N802
            got.append(("error", m))

    logger = logging.getLogger("scintiseg.test-handler")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    handler = OrthancLogHandler(Api(), logging.INFO)
    logger.addHandler(handler)
    try:
        logger.debug("d")
        logger.info("i")
        logger.error("e")
    finally:
        logger.removeHandler(handler)
    assert [lvl for lvl, _ in got] == ["info", "warning", "error"]
    assert got[1][1].startswith("ScintiSeg [")
