"""What the Orthanc benchmarks share: the tools check, a scratch folder and the models to run.

The benchmarks run on the real Orthanc with the repository's trained models (``models/``),
or with stand-in models when there are none (the report then says ``fake_models: true``).
They drive it with the tests' harnesses, the package ``tests/support``: run them with
``PYTHONPATH=tests`` (``PYTHONPATH=tests .venv/bin/python bench/bench_orthanc.py``).
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

try:
    from support.fake_models import write_fake_models
    from support.orthanc_harness import missing_tools, trained_models
except ModuleNotFoundError as exc:
    if exc.name != "support":
        raise
    raise SystemExit(
        "the benchmarks use the test harnesses (tests/support): run them with PYTHONPATH=tests, e.g.\n"
        "  PYTHONPATH=tests .venv/bin/python bench/bench_orthanc.py"
    ) from exc

ROOT = Path(__file__).resolve().parents[1]

Report = dict[str, Any]


def run_bench(prefix: str, models: Path | None, bench: Callable[[Path, Path], Report]) -> Report | None:
    """``bench(models, work)`` in a scratch folder named ``prefix...``; ``None`` (and the reason
    on stderr) when a tool the run needs is missing. ``models``: the folder asked for, else
    ``models/`` when trained, else stand-in models written in the scratch folder."""
    missing = missing_tools()
    if missing:
        print(missing, file=sys.stderr)
        return None
    chosen = models or trained_models()
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        work = Path(tmp)
        report = bench(chosen or write_fake_models(work / "fake-models"), work)
    report["fake_models"] = chosen is None
    return report
