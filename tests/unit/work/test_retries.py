"""Retries with back-off, coalesced requests and durable requests, on the service with fakes."""

from __future__ import annotations

import threading
import time
from typing import Any

from support.fake_gateway import (
    CountingPipeline,
    FakeGateway,
    FakeMetadataStore,
    FakePipeline,
    fake_models,
    one_study,
    wait,
)

from scintiseg.app.config import parse_section
from scintiseg.app.service import Service
from scintiseg.core.result import Status
from scintiseg.dicom.nm import UnreadableImageError
from scintiseg.work.retries import RetryPolicy
from scintiseg.work.worker import JobOptions, Worker
from scintiseg.work.workstate import FAILED as GAVE_UP
from scintiseg.work.workstate import MemoryWorkState, MetadataWorkState


def service(pipe: FakePipeline, gw: FakeGateway, ws: Any = None, **section: Any) -> Service:
    cfg = parse_section({"ModelsDirectory": "models", "RecoveryScanMaxStudies": 0, **section}, environ={})
    return Service(cfg, gw, fake_models(pipe), workstate=ws)


def failing(seed: int, exc: Exception, **section: Any) -> tuple[Service, CountingPipeline, FakeGateway, str]:
    """A started service whose pipeline raises ``exc`` on the one image of a submitted study."""
    gw, pipe = FakeGateway(), CountingPipeline()
    sid, uid = one_study(gw, seed)
    pipe.fail[uid] = exc
    svc = service(pipe, gw, **section)
    svc.start()
    svc.submit(sid)
    return svc, pipe, gw, sid





def test_a_transient_failure_is_retried_up_to_the_limit_then_listed_and_a_manual_retry_works() -> None:
    svc, pipe, gw, sid = failing(
        1, RuntimeError("onnxruntime: [ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION"), RetryLimit=2, RetryBackoffSeconds=0
    )
    uid = next(iter(pipe.fail))
    wait(lambda: svc.workstate.list() and svc.workstate.list()[0].state == GAVE_UP)
    assert svc.wait_idle(5)
    assert len(pipe.calls) == 3  # the run and two retries
    result = gw.result(sid)
    assert result is not None and result["status"] == Status.FAILED and result["retriable"] is True
    assert "RUNTIME_EXCEPTION" in result["reason"]
    (failed,) = svc.queue_snapshot()["failed"]
    assert failed["study"] == sid and failed["attempts"] == 3 and failed["retry_at"] is None
    # the fault is gone: a manual retry goes through and clears the record
    del pipe.fail[uid]
    assert svc.request(sid)
    assert svc.wait_idle(5)
    assert gw.result(sid)["status"] == Status.DONE
    assert svc.workstate.list() == [] and svc.queue_snapshot()["failed"] == []
    svc.stop()


def test_bad_input_fails_once_without_retries() -> None:
    svc, pipe, gw, sid = failing(
        2, UnreadableImageError("3 samples per pixel (RGB): only greyscale NM images are segmented"),
        RetryLimit=3, RetryBackoffSeconds=0,
    )
    assert svc.wait_idle(5)
    time.sleep(0.05)
    result = gw.result(sid)
    assert result is not None and result["status"] == Status.FAILED and result["retriable"] is False
    assert len(pipe.calls) == 1 and svc.workstate.list() == []
    svc.stop()


def test_retries_back_off_doubling() -> None:
    cfg = parse_section({"ModelsDirectory": "models", "RetryBackoffSeconds": 30}, environ={})
    assert [RetryPolicy(cfg.retry_limit, cfg.retry_backoff_s).delay(n) for n in (1, 2, 3)] == [30, 60, 120]
    assert RetryPolicy(cfg.retry_limit, cfg.retry_backoff_s).delay(20) == 3600  # at most an hour
    svc, pipe, _, _ = failing(3, RuntimeError("boom"), RetryLimit=2, RetryBackoffSeconds=0.15)
    wait(lambda: len(pipe.calls) == 3)
    gaps = [b[1] - a[1] for a, b in zip(pipe.calls, pipe.calls[1:], strict=False)]
    assert gaps[0] >= 0.15 and gaps[1] >= 0.3, gaps
    svc.stop()


def test_the_retry_waiting_is_visible_in_the_queue() -> None:
    svc, _, _, sid = failing(4, RuntimeError("boom"), RetryLimit=1, RetryBackoffSeconds=60)
    wait(lambda: svc.queue_snapshot()["retrying"] != [])
    snap = svc.queue_snapshot()
    (retry,) = snap["retrying"]
    assert retry["study"] == sid and retry["attempts"] == 1 and retry["retry_at"].endswith("Z")
    assert snap["failed"][0]["retry_at"] == retry["retry_at"]
    assert svc.status()["worker"]["delayed"] == 1
    svc.stop()


def test_concurrent_requests_for_one_study_make_one_job() -> None:
    gw, pipe = FakeGateway(), CountingPipeline()
    sid, _ = one_study(gw, 5)
    svc = service(pipe, gw)
    svc.start()
    svc.submit(sid)
    assert svc.wait_idle(5) and len(pipe.calls) == 1
    pipe.gate = threading.Event()
    threads = [threading.Thread(target=svc.request, args=(sid, True, True)) for _ in range(12)]
    for t in threads[:6]:
        t.start()
    wait(lambda: len(pipe.calls) == 2)  # the job runs: the next six arrive during it
    for t in threads[6:]:
        t.start()
    for t in threads:
        t.join()
    pipe.gate.set()
    assert svc.wait_idle(5)
    assert len(pipe.calls) == 2, "twelve concurrent force requests must make one job"
    assert svc.workstate.list() == []
    svc.stop()


def test_a_manual_request_queued_when_orthanc_stopped_runs_at_the_next_start() -> None:
    gw, pipe, store = FakeGateway(), CountingPipeline(), FakeMetadataStore(0)
    busy, _ = one_study(gw, 6)
    done, done_uid = one_study(gw, 7)
    store.studies = [busy, done]
    first = service(pipe, gw, MetadataWorkState(store))
    first.start()
    first.submit(done)
    assert first.wait_idle(5)
    pipe.gate = threading.Event()
    first.request(busy, force=True)  # the worker blocks in this job...
    wait(lambda: first.status()["worker"]["running"] == [busy])
    assert first.request(done, force=True)  # ...so this one is still queued at the stop
    worker = first.worker
    assert worker is not None
    stopper = threading.Thread(target=first.stop)
    stopper.start()
    wait(worker.should_stop)  # Orthanc is stopping before the blocked job may go on
    pipe.gate.set()
    stopper.join()
    assert [i.study_id for i in MetadataWorkState(store).list()] == []  # nothing cached by a new one yet
    runs_before = sum(1 for u, _ in pipe.calls if u == done_uid)
    pipe.gate = None
    second = service(pipe, gw, MetadataWorkState(store), RecoveryScanMaxStudies=0)
    second.start()
    wait(lambda: second.recovery.get("state") == "done")
    assert second.recovery["requests"] >= 1
    assert second.wait_idle(5)
    assert sum(1 for u, _ in pipe.calls if u == done_uid) == runs_before + 1, "the forced study was not redone"
    assert second.workstate.list() == [] and store.meta == {}
    second.stop()


def test_worker_delays_and_coalesces() -> None:
    ran: list[tuple[str, JobOptions, float]] = []
    gate = threading.Event()

    def handler(study: str, should_stop: Any, options: JobOptions) -> None:
        ran.append((study, options, time.monotonic()))
        if study == "slow":
            gate.wait(5)

    w = Worker(handler)
    w.start()
    t0 = time.monotonic()
    w.submit("later", not_before=time.time() + 0.2)
    assert w.stats()["delayed"] == 1 and w.stats()["queued"] == 0
    w.submit("slow", JobOptions(force=True))
    wait(lambda: w.stats()["running"] == ["slow"])
    assert w.submit("slow", JobOptions(force=True), coalesce=True)  # covered by the running job
    assert w.submit("slow", JobOptions(retry_failed=True), coalesce=True)  # not covered: runs again
    gate.set()
    wait(lambda: len(ran) == 3)
    assert w.wait_idle(5)
    assert [r[0] for r in ran].count("slow") == 2
    later = next(r for r in ran if r[0] == "later")
    assert later[2] - t0 >= 0.2
    assert ran[-1][1] == JobOptions(retry_failed=True) or any(r[1].retry_failed for r in ran if r[0] == "slow")
    w.stop()


def test_memory_work_state_is_the_default_and_says_so() -> None:
    svc = service(FakePipeline(), FakeGateway())
    assert isinstance(svc.workstate, MemoryWorkState)
    svc.start()
    assert svc.status()["work_state"] == {"backend": "memory", "durable": False, "records": 0, "retries_scheduled": 0}
    svc.stop()
