"""A small variant of the load benchmark (bench/bench_load.py) in the suite: 40 studies from 4
parallel C-STORE clients, all processed, none lost, none twice, the REST API answering meanwhile.
The full 500-study run and its figures are in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import bench_load  # bench/, on pytest's pythonpath (pyproject.toml)
import pytest
from support.orthanc_harness import missing_tools

pytestmark = pytest.mark.integration


def test_forty_studies_from_four_clients_none_lost_none_twice(tmp_path: Path, models_dir: Path) -> None:
    if missing_tools():
        pytest.skip(str(missing_tools()))
    args = argparse.Namespace(studies=40, clients=4, batch=5, warmup=2, stable_age=2, poll=0.1, settle=0.0,
                              timeout=300.0, set=[])
    report = bench_load.run(args, models_dir, tmp_path)
    assert report["statuses"] == {"done": 40}
    assert report["lost"] == 0 and report["processed_twice"] == 0 and report["pipeline_runs"] == 40
    rest = report["rest"]
    assert rest["errors"] == 0 and rest["system_ms"]["n"] > 0 and rest["study_ms"]["n"] > 0
    # generous bounds for a shared CI machine; the benchmark records the real figures
    assert rest["system_ms"]["p95"] < 1000 and rest["study_ms"]["p95"] < 1000, rest
    assert report["rss_mb"]["growth"] < 200, report["rss_mb"]
