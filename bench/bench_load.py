"""Load: N one-image studies from parallel C-STORE clients; none lost, none twice, REST responsive, memory bounded.

Starts a real Orthanc with the plugin (``scripts/run-orthanc.sh``, loopback,
temporary database), warms it up with a few studies, then

* sends ``--studies`` synthetic thyroid studies with ``--clients`` parallel
  ``storescu`` processes (each one association per batch of ``--batch``);
* meanwhile polls ``GET /system`` and ``GET /scintiseg/studies/{id}`` (a
  study processed earlier) every ``--poll`` seconds and times each answer;
* waits until every study has its result, then checks that each NM image
  has exactly one SEG (and one preview when ``StorePreview``) and that the
  pipeline ran exactly once per image;
* reads Orthanc's resident memory (``VmRSS`` of the process) once the
  models are loaded, after the warm-up ("before") and after the burst (right
  after, and a few seconds later).

Prints one JSON report (``--json`` also writes it). The figures and the
command are in ``docs/benchmarks.md``. Environment variables reach Orthanc
(e.g. ``MALLOC_ARENA_MAX=8`` to compare allocator settings); ``--set
KEY=JSON`` changes an Orthanc option (``--set MaximumStorageCacheSize=128``).
Run it at low priority on a shared machine::

    PYTHONPATH=tests nice -n 15 .venv/bin/python bench/bench_load.py --studies 500 --clients 4
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import threading
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchkit import run_bench
from support.orthanc_harness import SCU_AET, OrthancServer, Study, make_study

#: Study seeds of the load run start here (clear of the other benchmarks and tests).
SEED0 = 20000


def rss_mb(pid: int) -> float:
    """Resident memory of a process (MiB), from ``/proc``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024.0, 1)
    raise RuntimeError(f"no VmRSS for process {pid}")


def p95(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))] if ordered else float("nan")


class Poller(threading.Thread):
    """Times GET requests to the given paths, round-robin, until stopped."""

    def __init__(self, server: OrthancServer, paths: list[str], every: float) -> None:
        super().__init__(daemon=True)
        self.server, self.paths, self.every = server, paths, every
        self.times: dict[str, list[float]] = {p: [] for p in paths}
        self.errors = 0
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            for path in self.paths:
                t0 = time.perf_counter()
                try:
                    with urllib.request.urlopen(self.server.url + path, timeout=30) as answer:
                        answer.read()
                    self.times[path].append((time.perf_counter() - t0) * 1e3)
                except OSError:
                    self.errors += 1
            self.halt.wait(self.every)


def send(server: OrthancServer, files: list[Path], batch: int) -> None:
    aet = server.get("/system")["DicomAet"]
    for i in range(0, len(files), batch):
        cmd = ["storescu", "-aet", SCU_AET, "-aec", aet, "127.0.0.1", str(server.dicom_port),
               *map(str, files[i : i + batch])]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"storescu failed: {proc.stdout}{proc.stderr}")


def count_outputs(server: OrthancServer, study: Study) -> dict[str, int]:
    sid = server.study_id(study.study_uid)
    if sid is None:
        return {}
    return {m: len(ids) for m, ids in server.series_by_modality(sid).items()}


def run(args: argparse.Namespace, models: Path, work: Path) -> dict[str, Any]:
    extra = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)}
    server = OrthancServer(data=work / "orthanc", models=models, stable_age=args.stable_age, extra_config=extra)
    t_gen = time.perf_counter()
    studies = [make_study(work / "s" / str(i), seed=SEED0 + i) for i in range(args.studies)]
    gen_s = time.perf_counter() - t_gen
    server.start()
    try:
        assert server.process is not None
        pid = server.process.pid
        rss_start = rss_mb(pid)  # models loaded, nothing processed yet
        warm = [make_study(work / "warm" / str(i), seed=SEED0 - 1 - i) for i in range(args.warmup)]
        server.storescu([f for s in warm for f in s.files])
        warm_results = [server.wait_result(s.study_uid, timeout=120) for s in warm]
        server.wait_idle()
        probe_sid = server.study_id(warm[0].study_uid)
        runs_before = server.get("/scintiseg/status")["pipeline_runs"]
        rss_before = rss_mb(pid)

        poller = Poller(server, ["/system", f"/scintiseg/studies/{probe_sid}"], args.poll)
        poller.start()
        t0 = time.monotonic()
        shares = [studies[i :: args.clients] for i in range(args.clients)]
        clients = [
            threading.Thread(target=send, args=(server, [f for s in share for f in s.files], args.batch))
            for share in shares
        ]
        for c in clients:
            c.start()
        for c in clients:
            c.join()
        sent_s = time.monotonic() - t0
        results = [server.wait_result(s.study_uid, timeout=args.timeout, statuses=("done", "failed", "skipped"))
                   for s in studies]
        server.wait_idle(timeout=args.timeout)
        done_s = time.monotonic() - t0
        poller.halt.set()
        poller.join()
        rss_after = rss_mb(pid)
        time.sleep(args.settle)
        rss_settled = rss_mb(pid)
        status = server.get("/scintiseg/status")
        outputs = [count_outputs(server, s) for s in studies]
        statistics_ = server.get("/statistics")
    finally:
        server.stop()

    statuses: dict[str, int] = {}
    for r in results:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    expect_sc = 1 if warm_results[0]["images"] and any(
        "preview_instance_id" in e for e in warm_results[0]["images"].values()) else 0
    twice = sum(1 for o in outputs if o.get("SEG", 0) > 1 or o.get("OT", 0) > expect_sc)
    lost = sum(1 for o in outputs if o.get("SEG", 0) < 1)
    system_ms = poller.times["/system"]
    study_ms = poller.times[f"/scintiseg/studies/{probe_sid}"]
    return {
        "studies": args.studies,
        "clients": args.clients,
        "batch": args.batch,
        "models": status["models"],
        "orthanc_options": extra,
        "generate_s": round(gen_s, 1),
        "send_s": round(sent_s, 1),
        "all_results_s": round(done_s, 1),
        "studies_per_minute": round(60.0 * args.studies / done_s, 1),
        "statuses": statuses,
        "lost": lost,
        "processed_twice": twice,
        "pipeline_runs": status["pipeline_runs"] - runs_before,
        "rest": {
            "system_ms": {"n": len(system_ms), "p50": round(statistics.median(system_ms), 1),
                          "p95": round(p95(system_ms), 1), "max": round(max(system_ms), 1)},
            "study_ms": {"n": len(study_ms), "p50": round(statistics.median(study_ms), 1),
                         "p95": round(p95(study_ms), 1), "max": round(max(study_ms), 1)},
            "errors": poller.errors,
        },
        "rss_mb": {"start": rss_start, "before": rss_before, "after": rss_after, "settled": rss_settled,
                   "growth": round(rss_after - rss_before, 1), "growth_settled": round(rss_settled - rss_before, 1),
                   "growth_from_start": round(rss_after - rss_start, 1)},
        "orthanc_disk_mb": statistics_.get("TotalDiskSizeMB"),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--studies", type=int, default=500)
    ap.add_argument("--clients", type=int, default=4, help="parallel storescu clients")
    ap.add_argument("--batch", type=int, default=25, help="studies per association")
    ap.add_argument("--warmup", type=int, default=5, help="studies processed before RSS 'before'")
    ap.add_argument("--stable-age", type=int, default=2)
    ap.add_argument("--poll", type=float, default=0.2, help="seconds between REST probes")
    ap.add_argument("--settle", type=float, default=5.0, help="seconds before the settled RSS reading")
    ap.add_argument("--timeout", type=float, default=1800.0)
    ap.add_argument("--models", type=Path, help="models folder (default: models/ if trained, else fake)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=JSON", help="an Orthanc option for the run")
    ap.add_argument("--json", type=Path, help="also write the report here")
    args = ap.parse_args(argv)
    report = run_bench("bench-load-", args.models, lambda models, work: run(args, models, work))
    if report is None:
        return 2
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    ok = report["lost"] == 0 and report["processed_twice"] == 0 and report["pipeline_runs"] == args.studies
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
