"""Several Orthanc nodes on one PostgreSQL: throughput, coordination cost, takeover time.

Starts a private PostgreSQL server (``tests/support/pg_harness.py``: its own data folder
and free port) and real Orthanc nodes with the plugin through
``scripts/run-orthanc.sh`` with ``SCINTISEG_POSTGRESQL`` and a shared
``SCINTISEG_STORAGE`` (``tests/support/cluster_harness.py``), then measures:

* **throughput** with 1, 2 (and 3) nodes: a burst of one-image studies sent to
  node 1 only, timed from the end of the C-STORE to the last final result;
  each node is pinned to its own core with ``taskset`` (``--cores``; nodes
  beyond the cores share them round robin) and runs one inference thread, so
  that the scaling shows on a small machine;
* **coordination cost per study**: the work-table statements one study costs
  (enqueue, claim, a fenced result write, complete), timed against the same
  PostgreSQL without Orthanc (``--coordination`` studies);
* **takeover time**: node 1 is killed (``kill -9``) while it runs a study;
  the time until node 2 has claimed that study, and until its result is final.

Uses the trained models of ``models/`` when there are any, else the fake ones
of the tests (the report says which). Run (``PYTHONPATH=tests``: the test harnesses)::

    PYTHONPATH=tests .venv/bin/python bench/bench_cluster.py                 # 1 and 2 nodes, 40 studies
    PYTHONPATH=tests .venv/bin/python bench/bench_cluster.py --nodes 1 2 3 --studies 60 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import benchkit  # noqa: F401  (first: it says how to run when tests/support is out of reach)
from support.cluster_harness import OrthancCluster
from support.fake_models import write_fake_models
from support.orthanc_harness import OrthancServer, make_study, missing_tools, trained_models, wait_for
from support.pg_harness import PostgresServer, missing_postgres

from scintiseg.work.pgwork import WorkQueue


def pin(node: OrthancServer, core: int) -> None:
    """Every thread of the node's Orthanc on one core (threads made later inherit it)."""
    assert node.process is not None
    subprocess.run(["taskset", "-a", "-cp", str(core), str(node.process.pid)], check=True,
                   capture_output=True)


def new_cluster(pg: PostgresServer, folder: Path, models: Path, lease_s: float, name: str) -> OrthancCluster:
    uri = pg.create_database(name)
    return OrthancCluster(uri, folder / name, models, lease_s=lease_s, stable_age=1,
                          section={"InferenceThreads": 1, "WorkerThreads": 1})


def throughput(pg: PostgresServer, folder: Path, models: Path, n_nodes: int, studies: int,
               cores: list[int], seed: int) -> dict[str, Any]:
    cluster = new_cluster(pg, folder, models, 30, f"tp{n_nodes}")
    try:
        for i in range(n_nodes):
            pin(cluster.add_node(), cores[i % len(cores)])
        burst = [make_study(folder / f"studies-{seed}" / str(k), seed=seed + k) for k in range(studies)]
        node1 = cluster.nodes[0]
        node1.storescu([f for s in burst for f in s.files])
        sent = time.monotonic()
        cluster.wait_results(node1, [s.study_uid for s in burst], timeout=600)
        seconds = time.monotonic() - sent
        runs = {n.data.name: int(n.get("/scintiseg/status")["pipeline_runs"]) for n in cluster.nodes}
        return {
            "nodes": n_nodes,
            "studies": studies,
            "seconds": round(seconds, 2),
            "studies_per_min": round(60 * studies / seconds, 1),
            "images_per_node": runs,
            "cores": [cores[i % len(cores)] for i in range(n_nodes)],
        }
    finally:
        cluster.stop()


def coordination(pg: PostgresServer, studies: int) -> dict[str, Any]:
    """The work table's statements for one study, end to end, on a local PostgreSQL."""
    uri = pg.create_database("coordination")
    producer, consumer = WorkQueue(uri, "receiver", 30), WorkQueue(uri, "worker", 30)
    producer.create_schema()
    per_study = []
    steps: dict[str, list[float]] = {"arrive": [], "enqueue": [], "claim": [], "fence": [], "complete": []}
    for k in range(studies):
        sid = f"study-{k:05d}"
        t0 = time.perf_counter()
        producer.arrived([sid], hold_s=31)
        t1 = time.perf_counter()
        producer.enqueue([(sid, False, False)])
        t2 = time.perf_counter()
        claim = consumer.claim()
        t3 = time.perf_counter()
        assert claim is not None and claim.study_id == sid
        for _ in range(2):  # "processing" and the final result, as a one-image study writes
            with consumer.fenced(claim) as ours:
                assert ours
        t4 = time.perf_counter()
        consumer.complete(claim, "done", "1 image(s) segmented")
        t5 = time.perf_counter()
        for key, a, b in (("arrive", t0, t1), ("enqueue", t1, t2), ("claim", t2, t3), ("fence", t3, t4),
                          ("complete", t4, t5)):
            steps[key].append((b - a) * 1e3)
        per_study.append((t5 - t0) * 1e3)
    producer.close()
    consumer.close()
    return {
        "studies": studies,
        "per_study_ms_median": round(statistics.median(per_study), 2),
        "per_study_ms_p95": round(sorted(per_study)[int(0.95 * len(per_study)) - 1], 2),
        "steps_ms_median": {k: round(statistics.median(v), 3) for k, v in steps.items()},
    }


def takeover(pg: PostgresServer, folder: Path, models: Path, lease_s: float, cores: list[int],
             seed: int) -> dict[str, Any]:
    cluster = new_cluster(pg, folder, models, lease_s, f"takeover{int(lease_s)}")
    try:
        node1, node2 = cluster.add_node(), cluster.add_node()
        pin(node1, cores[0])
        pin(node2, cores[1 % len(cores)])
        burst = [make_study(folder / f"studies-{seed}" / str(k), seed=seed + k, images=3) for k in range(6)]
        node1.storescu([f for s in burst for f in s.files])
        running = wait_for("node1 to run a study", lambda: node1.get("/scintiseg/status")["worker"]["running"],
                           timeout=120, every=0.02)
        study = running[0]
        queue = WorkQueue(cluster.uri, "bench", lease_s)
        lease_left = float(queue.row(study)["lease_left_s"] or 0)
        node1.kill()
        killed = time.monotonic()

        def claimed_by_node2() -> bool:
            row = queue.row(study)
            return bool(row and row["node"] == "node2")

        wait_for("node2 to take the study over", claimed_by_node2, timeout=lease_s + 60, every=0.05)
        taken = time.monotonic() - killed
        wait_for("the study's final result", lambda: (r := node2.result(study)) and r["status"] == "done",
                 timeout=120, every=0.05)
        final = time.monotonic() - killed
        cluster.wait_results(node2, [s.study_uid for s in burst], timeout=300)
        everything = time.monotonic() - killed
        queue.close()
        return {
            "lease_s": lease_s,
            "lease_left_at_kill_s": round(lease_left, 2),
            "claimed_after_kill_s": round(taken, 2),
            "result_after_kill_s": round(final, 2),
            "all_done_after_kill_s": round(everything, 2),
        }
    finally:
        cluster.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--studies", type=int, default=40, help="one-image studies per throughput burst")
    ap.add_argument("--cores", type=int, nargs="+", default=sorted(os.sched_getaffinity(0))[:2])
    ap.add_argument("--coordination", type=int, default=300, help="studies of the coordination benchmark")
    ap.add_argument("--lease", type=float, nargs="+", default=[30.0], help="takeover runs, one per lease")
    ap.add_argument("--models", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    missing = missing_tools() or missing_postgres()
    if missing:
        print(f"cannot run: {missing}", file=sys.stderr)
        return 2
    folder = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    models = args.models or trained_models() or write_fake_models(folder / "fake-models")
    report: dict[str, Any] = {"models": str(models), "trained": trained_models() is not None or bool(args.models),
                              "cores": args.cores, "cpu_count": os.cpu_count()}
    pg = PostgresServer()
    pg.start()
    try:
        report["coordination"] = coordination(pg, args.coordination)
        print("coordination", json.dumps(report["coordination"]), flush=True)
        report["throughput"] = []
        for i, n in enumerate(args.nodes):
            row = throughput(pg, folder, models, n, args.studies, args.cores, seed=50000 + 1000 * i)
            report["throughput"].append(row)
            print("throughput", json.dumps(row), flush=True)
        report["takeover"] = []
        for i, lease in enumerate(args.lease):
            row = takeover(pg, folder, models, lease, args.cores, seed=60000 + 1000 * i)
            report["takeover"].append(row)
            print("takeover", json.dumps(row), flush=True)
    finally:
        pg.stop()
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
