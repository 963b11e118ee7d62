"""How fast the Orthanc plugin turns a C-STORE into a queryable SEG.

Starts a real Orthanc with the plugin (``scripts/run-orthanc.sh``, loopback,
temporary database), sends synthetic thyroid studies with ``storescu`` and
measures, from the end of the C-STORE to the SEG being listed in its study:

* one-image studies sent one at a time (latency; minus StableAge, which is
  pure waiting);
* a burst of N one-image studies in one association (time until the last SEG,
  and studies per minute);
* where a job's time goes, from the timings each study result records: the
  plugin's own share (fetch + parse from Orthanc, SEG serialisation + store)
  against model inference (gland + nodule).

Uses the trained models of ``models/`` when there are any (say so with
``--models``), else the tiny fake models of the tests, whose inference time is
meaningless (the report says which). Run (``PYTHONPATH=tests``: the test harnesses)::

    PYTHONPATH=tests .venv/bin/python bench/bench_orthanc.py            # 10 single studies, a burst of 50
    PYTHONPATH=tests .venv/bin/python bench/bench_orthanc.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchkit import ROOT, run_bench
from support.orthanc_harness import (
    OrthancServer,
    make_study,
    strip_json_comments,
)

PLUGIN_IO = ("fetch_ms", "parse_ms", "seg_write_ms", "store_ms")
ORTHANC_IO = ("fetch_ms", "store_ms")
STUDY_ORTHANC_IO = ("list_ms", "record_ms")
INFERENCE = ("gland_inference_ms", "nodule_inference_ms")
PIPELINE_CPU = ("decode_ms", "preprocess_ms", "postprocess_ms", "measure_ms", "flags_ms", "seg_encode_ms")


def epoch(iso: str) -> float:
    """Seconds since the epoch of a result's ``2026-01-02T03:04:05.678Z`` time."""
    return datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


def wait_seg(server: OrthancServer, study_uid: str, timeout: float = 120.0) -> float:
    """Poll (every 10 ms) until the study lists a SEG series; the monotonic time it did."""
    deadline = time.monotonic() + timeout
    sid = None
    while time.monotonic() < deadline:
        sid = sid or server.study_id(study_uid)
        if sid and "SEG" in server.series_by_modality(sid):
            return time.monotonic()
        time.sleep(0.01)
    raise TimeoutError(f"no SEG for study {study_uid} after {timeout} s")


def result_of(server: OrthancServer, study_uid: str) -> dict[str, Any]:
    return server.wait_result(study_uid, timeout=60)


def share(results: list[dict[str, Any]]) -> dict[str, float]:
    """Median per-image timings (ms) and the plugin-I/O / inference ratio."""
    per_image = [e["timings_ms"] for r in results for e in r["images"].values() if e.get("status") == "done"]

    def med(keys: tuple[str, ...]) -> float:
        return statistics.median(sum(float(t.get(k, 0.0)) for k in keys) for t in per_image)

    out = {
        "plugin_io_ms": med(PLUGIN_IO),
        "inference_ms": med(INFERENCE),
        "pipeline_cpu_ms": med(PIPELINE_CPU),
    }
    for key in PLUGIN_IO + INFERENCE + ("seg_encode_ms",):
        out[key] = med((key,))
    # everything a job does besides the pipeline: listing, result reads/writes, fetch, store
    out["job_overhead_ms"] = statistics.median(
        float(r["timings_ms"]["job_ms"]) - float(r["timings_ms"].get("total_ms", 0.0))
        for r in results
        if "job_ms" in r["timings_ms"]
    )
    out["job_ms"] = statistics.median(float(r["timings_ms"]["job_ms"]) for r in results if "job_ms" in r["timings_ms"])
    # Orthanc I/O proper, per one-image study: index reads, image fetch, SEG store, result writes
    out["orthanc_io_ms"] = statistics.median(
        sum(float(r["timings_ms"].get(k, 0.0)) for k in STUDY_ORTHANC_IO)
        + sum(float(e["timings_ms"].get(k, 0.0)) for e in r["images"].values() for k in ORTHANC_IO)
        for r in results
        if len(r["images"]) == 1
    )
    for key in STUDY_ORTHANC_IO:
        out[key] = statistics.median(float(r["timings_ms"].get(key, 0.0)) for r in results)
    out["preview_ms"] = med(("preview_ms",))
    inference = out["inference_ms"]
    out["plugin_share_of_inference"] = out["plugin_io_ms"] / inference if inference else float("inf")
    out["orthanc_io_share_of_inference"] = out["orthanc_io_ms"] / inference if inference else float("inf")
    return out


def scintiseg_section(**changes: Any) -> dict[str, Any]:
    """The ``ScintiSeg`` section of ``orthanc.json`` with some options changed."""
    config = json.loads(strip_json_comments((ROOT / "orthanc.json").read_text()))
    return {**config["ScintiSeg"], **changes}


def run(
    n_single: int, n_burst: int, stable_age: int, models: Path, work: Path, track_stability: bool = True
) -> dict[str, Any]:
    extra = {} if track_stability else {"ScintiSeg": scintiseg_section(TrackStability=False)}
    server = OrthancServer(data=work / "orthanc", models=models, stable_age=stable_age, extra_config=extra)
    server.start()
    try:
        status = server.get("/scintiseg/status")
        # warm-up (first inference allocates), not measured
        warm = make_study(work / "warm", seed=9000)
        server.storescu(warm.files)
        wait_seg(server, warm.study_uid)

        single = []
        single_results = []
        stable_delays = []
        plugin_latency = []
        phase = random.Random(0)
        for i in range(n_single):
            study = make_study(work / f"one{i}", seed=9100 + i)
            # Orthanc ages unstable studies in whole seconds: send at a random phase of the
            # second, as a modality would, or the loop locks onto one phase
            time.sleep(phase.random())
            sent = server.storescu(study.files)
            sent_wall = time.time()
            seen = wait_seg(server, study.study_uid)
            seen_wall = time.time()
            single.append(seen - sent)
            result = result_of(server, study.study_uid)
            single_results.append(result)
            started = epoch(result["job_started"])
            stable_delays.append(started - sent_wall - stable_age)  # stability detection
            plugin_latency.append(seen_wall - started)  # job start -> SEG listed

        burst = [make_study(work / f"burst{i}", seed=9200 + i) for i in range(n_burst)]
        t_send = time.monotonic()
        sent = server.storescu([f for s in burst for f in s.files])
        send_s = sent - t_send
        first_seen = None
        last = sent
        for study in burst:
            seen = wait_seg(server, study.study_uid, timeout=600)
            first_seen = seen if first_seen is None else min(first_seen, seen)
            last = max(last, seen)
        burst_results = [result_of(server, s.study_uid) for s in burst]
        server.wait_idle()
        final_status = server.get("/scintiseg/status")
    finally:
        server.stop()

    burst_s = last - sent
    return {
        "models": status["models"],
        "providers": status["providers"],
        "stable_age_s": stable_age,
        "track_stability": track_stability,
        "single": {
            "n": n_single,
            "latency_s": [round(x, 3) for x in single],
            "median_latency_s": round(statistics.median(single), 3),
            "median_minus_stable_age_s": round(statistics.median(single) - stable_age, 3),
            "max_minus_stable_age_s": round(max(single) - stable_age, 3),
            "stable_event_after_stable_age_s": {
                "median": round(statistics.median(stable_delays), 3),
                "max": round(max(stable_delays), 3),
            },
            "plugin_stable_event_to_seg_s": {
                "median": round(statistics.median(plugin_latency), 3),
                "max": round(max(plugin_latency), 3),
            },
        },
        "burst": {
            "n": n_burst,
            "last_seg_after_s": round(burst_s, 3),
            "last_seg_minus_stable_age_s": round(burst_s - stable_age, 3),
            "first_seg_after_s": round((first_seen or last) - sent, 3),
            # SEGs appear as fast as the studies arrive (each turns stable StableAge after its
            # own last image) and the worker keeps up: both limits are in this rate
            "seg_rate_per_minute": round(60.0 * (n_burst - 1) / max(1e-9, last - (first_seen or last)), 1),
        },
        "send_burst_s": round(send_s, 3),
        "per_image_single": share(single_results),
        "per_image_burst": share(burst_results),
        "pipeline_runs": final_status["pipeline_runs"],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--single", type=int, default=10, help="one-image studies sent one at a time")
    ap.add_argument("--burst", type=int, default=50, help="studies sent at once")
    ap.add_argument("--stable-age", type=int, default=2, help="Orthanc StableAge for the run (s)")
    ap.add_argument("--models", type=Path, help="models folder (default: models/ if trained, else fake)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument(
        "--no-tracker",
        action="store_true",
        help="TrackStability off: jobs start on Orthanc's own STABLE_STUDY (whole-second ageing)",
    )
    args = ap.parse_args(argv)
    report = run_bench(
        "bench-orthanc-",
        args.models,
        lambda models, work: run(args.single, args.burst, args.stable_age, models, work, not args.no_tracker),
    )
    if report is None:
        return 2
    report["worker_capacity_studies_per_minute"] = round(60000.0 / report["per_image_burst"]["job_ms"], 1)
    print(json.dumps(report, indent=2))
    s, b, p = report["single"], report["burst"], report["per_image_single"]
    capacity = report["worker_capacity_studies_per_minute"]
    print(
        f"\none study: {s['median_minus_stable_age_s']:.2f} s after StableAge (median of {s['n']}, "
        f"max {s['max_minus_stable_age_s']:.2f} s; job start "
        f"{s['stable_event_after_stable_age_s']['median']:.2f} s after StableAge, then the plugin "
        f"{s['plugin_stable_event_to_seg_s']['median']:.2f} s); burst of {b['n']}: last SEG "
        f"{b['last_seg_minus_stable_age_s']:.1f} s after StableAge (sent in {report['send_burst_s']:.1f} s), "
        f"SEGs appearing at {b['seg_rate_per_minute']:.0f}/min, one worker's capacity {capacity:.0f} studies/min; "
        f"Orthanc I/O {p['orthanc_io_ms']:.1f} ms ({100 * p['orthanc_io_share_of_inference']:.0f} % of "
        f"inference {p['inference_ms']:.1f} ms), with DICOM decode and SEG serialisation "
        f"{p['plugin_io_ms']:.1f} ms per image ({100 * p['plugin_share_of_inference']:.0f} %); "
        f"preview {p['preview_ms']:.1f} ms; whole job {p['job_ms']:.1f} ms of which "
        f"{p['job_overhead_ms']:.1f} ms outside the pipeline"
        + (" (FAKE models: inference time meaningless)" if report["fake_models"] else "")
    )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
