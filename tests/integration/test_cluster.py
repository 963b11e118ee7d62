"""Several real Orthanc nodes with the plugin on one real PostgreSQL: work shared, exactly once.

Each test builds its own cluster (a fresh database on the session's PostgreSQL
server, a shared storage folder, nodes started by ``scripts/run-orthanc.sh``
with ``SCINTISEG_POSTGRESQL``), sends studies with ``storescu`` and reads the
outcome through the REST API of the nodes that are still up. PostgreSQL,
orthanc-postgresql, Orthanc, orthanc-python or dcmtk missing is a failure.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.cluster_harness import LEASE_S, OrthancCluster
from support.openapi_check import check_answer, load_spec
from support.orthanc_harness import OrthancServer, Study, make_study, missing_tools, wait_for

PG_PLUGIN_DIRS = ("/usr/share/orthanc/plugins", "/usr/lib/orthanc", "/usr/lib/x86_64-linux-gnu/orthanc")

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster(pg_uri: str, tmp_path: Path, models_dir: Path) -> Iterator[OrthancCluster]:
    has_plugin = any((Path(d) / "libOrthancPostgreSQLIndex.so").exists() for d in PG_PLUGIN_DIRS)
    missing = missing_tools() or (None if has_plugin else "orthanc-postgresql is not installed (make setup)")
    if missing:
        pytest.fail(missing)
    c = OrthancCluster(pg_uri, tmp_path / "cluster", models_dir)
    try:
        yield c
    finally:
        c.stop()


def burst(tmp_path: Path, first_seed: int, count: int, images: int = 1) -> list[Study]:
    return [make_study(tmp_path / "studies" / str(first_seed + i), seed=first_seed + i, images=images)
            for i in range(count)]


def send(node: OrthancServer, studies: list[Study]) -> None:
    node.storescu([f for s in studies for f in s.files])


def runs(node: OrthancServer) -> int:
    return int(node.get("/scintiseg/status")["pipeline_runs"])


def assert_one_seg_per_image(cluster: OrthancCluster, node: OrthancServer, studies: list[Study]) -> None:
    for study in studies:
        sid = node.study_id(study.study_uid)
        assert sid is not None
        nm = node.series_by_modality(sid).get("NM", [])
        sources = {str(node.instance(i).SOPInstanceUID) for i in nm}
        assert cluster.segs_per_source(node, sid) == {uid: 1 for uid in sources}, study.study_uid


def test_every_study_sent_to_node1_and_both_nodes_do_part_of_it(cluster: OrthancCluster, tmp_path: Path) -> None:
    node1, node2 = cluster.add_node(), cluster.add_node()
    studies = burst(tmp_path, 1000, 12)
    send(node1, studies)
    results = cluster.wait_results(node2, [s.study_uid for s in studies], timeout=120)
    assert all(r["status"] == "done" for r in results.values())
    cluster.wait_drained(node1, timeout=30)
    r1, r2 = runs(node1), runs(node2)
    assert r1 > 0 and r2 > 0, (r1, r2)  # node2 took work that node1 received
    assert r1 + r2 == len(studies)  # each image through the models once, cluster-wide
    assert_one_seg_per_image(cluster, node1, studies)
    # Orthanc's own STABLE_STUDY after each stored SEG queues its study once more (the run
    # finds nothing to do): the table shows every row done once those runs are over
    def all_done() -> bytes | None:
        body = node2.request("GET", "/scintiseg/queue")
        return body if json.loads(body)["cluster"]["counts"].get("done") == len(studies) else None

    body = wait_for("every row of the work table done", all_done, timeout=30, every=0.25)
    check_answer(load_spec(), "GET", "/scintiseg/queue", 200, "application/json", body)
    queue = json.loads(body)
    assert queue["failed"] == [] and queue["cluster"]["counts"].get("failed", 0) == 0
    assert {n["node"] for n in queue["cluster"]["nodes"]} == {"node1", "node2"}
    status = node2.get("/scintiseg/status")
    assert status["pipeline_runs"] == r2 and status["cluster"]["node"] == "node2"
    assert status["recovery"]["state"] == "done"


def test_kill_9_of_a_node_mid_burst_loses_nothing_and_duplicates_nothing(
    cluster: OrthancCluster, tmp_path: Path
) -> None:
    node1, node2 = cluster.add_node(), cluster.add_node()
    first = burst(tmp_path, 2000, 10, images=2)
    send(node1, first)
    wait_for("node1 to run a study", lambda: node1.get("/scintiseg/status")["worker"]["running"], timeout=60,
             every=0.05)
    late = burst(tmp_path, 2100, 3)
    send(node1, late)  # received, not stable yet: only node1 has seen them arrive
    node1.kill()
    # what node1 still held when it died, as the cluster table says (a study node1 was
    # running a moment before may have finished before the kill)
    running_on = node2.get("/scintiseg/queue")["cluster"]["running_on"]
    held = [sid for sid, node in running_on.items() if node == "node1"]
    killed_at = time.monotonic()
    studies = first + late
    results = cluster.wait_results(node2, [s.study_uid for s in studies], timeout=LEASE_S + 120)
    assert all(r["status"] == "done" for r in results.values()), {u: r["status"] for u, r in results.items()}
    assert node1.process is None  # still down
    assert_one_seg_per_image(cluster, node2, studies)
    queue = cluster.wait_drained(node2, timeout=30)
    assert queue["cluster"]["counts"]["failed"] == 0
    assert node2.get("/scintiseg/status")["cluster"]["takeovers_by_this_node"] >= len(held)
    alive = {n["node"]: n["alive"] for n in queue["cluster"]["nodes"]}
    assert alive["node2"] and (not alive["node1"] or time.monotonic() - killed_at < LEASE_S)
    # node1 comes back: its start-up scan finds nothing to redo
    node1.start()
    time.sleep(2)
    assert runs(node1) == 0
    assert node1.get("/scintiseg/queue")["running"] == []
    assert_one_seg_per_image(cluster, node1, studies)


def test_a_node_that_joins_mid_burst_takes_work(cluster: OrthancCluster, tmp_path: Path) -> None:
    node1 = cluster.add_node()
    studies = burst(tmp_path, 3000, 16, images=2)
    send(node1, studies)
    wait_for("node1 to start on the burst", lambda: runs(node1) > 0, timeout=60, every=0.05)
    node2 = cluster.add_node()
    waiting_at_join = node2.get("/scintiseg/queue")["cluster"]["counts"]["waiting"]
    cluster.wait_results(node2, [s.study_uid for s in studies], timeout=120)
    cluster.wait_drained(node2, timeout=30)
    assert waiting_at_join > 0, "the burst ended before node2 joined: make it longer"
    assert runs(node2) > 0
    assert runs(node1) + runs(node2) == 2 * len(studies)
    assert_one_seg_per_image(cluster, node2, studies)


def test_a_reprocess_request_on_node2_for_a_study_received_by_node1(cluster: OrthancCluster, tmp_path: Path) -> None:
    node1, node2 = cluster.add_node(), cluster.add_node()
    study = burst(tmp_path, 4000, 1)[0]
    send(node1, [study])
    before = node1.wait_result(study.study_uid, timeout=60)
    sid = node1.study_id(study.study_uid)
    assert sid is not None
    answer = node2.request("POST", f"/scintiseg/studies/{sid}/process", b'{"force": true}')
    assert b'"queued": true' in answer
    again = wait_for(
        "the forced run",
        lambda: (r := node2.result(sid)) and r["status"] == "done" and r["job_started"] > before["job_started"] and r,
        timeout=60,
    )
    assert again["seg_instance_ids"] == before["seg_instance_ids"]  # the same SEG, stored once
    assert runs(node1) + runs(node2) == 2
    assert_one_seg_per_image(cluster, node1, [study])
    cluster.wait_drained(node2, timeout=30)
