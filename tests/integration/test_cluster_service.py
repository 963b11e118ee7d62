"""The service on a cluster, with the fake store of the unit tests and a real PostgreSQL.

Two :class:`~scintiseg.app.service.Service` objects on one work table and one
(fake) store stand for two nodes on one index: the retry rule of the service
goes through the cluster's work state, and a node that stalled past its lease
records nothing over the node that took its study over.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any

from support.fake_gateway import CountingPipeline, FakeGateway, fake_models, one_study, wait

from scintiseg.app.config import parse_section
from scintiseg.app.service import Service
from scintiseg.core.clock import now_iso
from scintiseg.core.result import Status, StudyResult
from scintiseg.work.workstate import FAILED as GAVE_UP


def node(uri: str, name: str, pipe: CountingPipeline, gw: FakeGateway, lease_s: float = 30, **section: Any) -> Service:
    cfg = parse_section({"ModelsDirectory": "models", "RecoveryScanMaxStudies": 0, **section}, environ={})
    cfg = dataclasses.replace(cfg, cluster_database=uri, cluster_node=name, cluster_lease_s=lease_s, stable_age_s=0)
    svc = Service(cfg, gw, fake_models(pipe))
    svc.start()
    assert svc.state == "running", svc.error
    return svc


def test_retries_and_manual_requests_go_through_the_clusters_table(pg_uri: str) -> None:
    gw, pipe = FakeGateway(), CountingPipeline()
    sid, uid = one_study(gw, 11)
    pipe.fail[uid] = RuntimeError("onnxruntime: [ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION")
    a = node(pg_uri, "a", pipe, gw, RetryLimit=2, RetryBackoffSeconds=1)
    b = node(pg_uri, "b", pipe, gw, RetryLimit=2, RetryBackoffSeconds=1)
    try:
        assert a.workstate.name == "postgresql" and b.workstate.name == "postgresql"
        a.submit(sid)
        wait(lambda: any(i.state == GAVE_UP for i in b.workstate.list()), timeout=30)
        assert len(pipe.calls) == 3  # the run and two retries, on whichever node was free
        gaps = [t2 - t1 for (_, t1), (_, t2) in zip(pipe.calls, pipe.calls[1:], strict=False)]
        assert gaps[0] >= 0.9 and gaps[1] >= 1.9  # the back-off doubles
        (failed,) = b.queue_snapshot()["failed"]
        assert failed["study"] == sid and failed["attempts"] == 3
        del pipe.fail[uid]
        assert b.request(sid)  # a manual retry on the other node
        wait(lambda: (r := gw.result(sid)) is not None and r["status"] == Status.DONE, timeout=30)
        wait(lambda: a.queue_snapshot()["failed"] == [] and a.queue_snapshot()["pending"] == [], timeout=10)
        assert a.queue_snapshot()["retrying"] == []
    finally:
        a.stop()
        b.stop()


def test_a_node_that_stalls_past_its_lease_records_nothing_over_the_node_that_took_over(pg_uri: str) -> None:
    gw, pipe = FakeGateway(), CountingPipeline()
    sid, _ = one_study(gw, 12)
    pipe.gate = threading.Event()
    a = node(pg_uri, "a", pipe, gw, lease_s=1)
    b: Service | None = None
    try:
        assert a.worker is not None
        a.worker._renew = lambda: None  # type: ignore[union-attr,method-assign]  # a stalled node: no renewal
        a.submit(sid)
        wait(lambda: len(pipe.calls) == 1, timeout=10)  # a's job is inside the model, gate closed
        written: list[StudyResult] = []
        inner_write = gw.write_result

        def write(study_id: str, result: StudyResult) -> None:
            written.append(result)
            inner_write(study_id, result)

        gw.write_result = write  # type: ignore[method-assign]
        b_started = now_iso()
        b = node(pg_uri, "b", pipe, gw, lease_s=30)
        wait(lambda: len(pipe.calls) == 2, timeout=10)  # a's lease expired: b runs the study too
        pipe.gate.set()  # both jobs run to the end now
        wait(lambda: (r := gw.result(sid)) is not None and r["status"] == Status.DONE, timeout=20)
        assert b.wait_idle(10) and a.wait_idle(10)
        time.sleep(0.3)
        assert written and all((w.job_started or "") >= b_started for w in written), "a wrote after losing its lease"
        assert gw.result(sid)["job_started"] >= b_started  # type: ignore[index]
        row = b.worker.snapshot() if b.worker else {}  # type: ignore[union-attr]
        assert row["counts"]["done"] == 1
        status = b.status()["cluster"]
        assert status["takeovers_by_this_node"] == 1
        assert a.jobs is not None and b.jobs is not None
        assert a.jobs.pipeline_runs == 1 and b.jobs.pipeline_runs == 1
    finally:
        a.stop()
        if b is not None:
            b.stop()
