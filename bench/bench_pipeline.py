"""Per-image time split of the offline pipeline against the raw ONNX Runtime time.

Run: ``make bench`` or ``.venv/bin/python bench/bench_pipeline.py [--matrix 256] [--repeat 30]``.

Stages: decode (DICOM bytes -> dataset -> frames), pre-process, gland (both
passes when the gland card has a ``refine`` pass) and nodule inference,
post-process (+ measurements), SEG encode (build + write to bytes). "raw" is
``session.run`` alone on a ready input for each model. The
targets (issue 2) are: whole pipeline <= 1.5x the raw model time, and
<= 100 ms for both models on one 256x256 image on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import pydicom

from scintiseg.app.config import MODELS_ENV
from scintiseg.models.runtime import Segmenter
from scintiseg.pipeline.image import Pipeline
from scintiseg_phantoms.dicom import scan_to_dataset, study_uids
from scintiseg_phantoms.thyroid import generate_scan

#: The checkout's models, unless $SCINTISEG_MODELS or --models names others.
REPO_MODELS = Path(__file__).resolve().parents[1] / "models"


def make_source(matrix: int, seed: int) -> bytes:
    scan = generate_scan(seed, matrix=matrix, kind="cold_nodules")
    study, series, (sop,) = study_uids(seed, 1)
    ds = scan_to_dataset(
        scan, patient_id="BENCH", patient_name="Bench^Pipeline",
        study_uid=study, series_uid=series, sop_uid=sop,
    )
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def raw_ms(segmenter: Segmenter, repeat: int) -> dict[str, float]:
    """Median time of one bare network run of each stage of each model (``raw_<label>[_<n>]_ms``)."""
    out = {}
    for loaded in segmenter.models:
        for n, model in enumerate(loaded.stages):
            size = model.stage.size
            x = np.random.default_rng(0).random((1, size, size), np.float32)
            model.run(x)  # warm-up
            times = []
            for _ in range(repeat):
                t = time.perf_counter()
                model.run(x)
                times.append((time.perf_counter() - t) * 1e3)
            key = loaded.card.labels[0].key + ("" if n == 0 else "_refine" if n == 1 else f"_{n}")
            out[f"raw_{key}_ms"] = statistics.median(times)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--matrix", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--models", default=os.environ.get(MODELS_ENV) or str(REPO_MODELS))
    ap.add_argument("--providers", default="CUDAExecutionProvider,CPUExecutionProvider")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    args = ap.parse_args()

    pipeline = Pipeline.from_models_dir(Path(args.models), providers=args.providers.split(","))
    sources = [make_source(args.matrix, 7000 + i) for i in range(args.repeat)]
    first = pydicom.dcmread(io.BytesIO(sources[0]))
    segmenter = pipeline.segmenter(pipeline.plan(first))
    pipeline.process(first)  # warm-up

    rows: list[dict[str, float]] = []
    for blob in sources:
        t0 = time.perf_counter()
        ds = pydicom.dcmread(io.BytesIO(blob))
        t1 = time.perf_counter()
        result = pipeline.process(ds)
        buf = io.BytesIO()
        result.seg.save_as(buf, enforce_file_format=True)
        t2 = time.perf_counter()
        row = dict(result.timings_ms)
        row["decode_ms"] += (t1 - t0) * 1e3
        row["seg_encode_ms"] += (t2 - t1) * 1e3 - result.timings_ms["total_ms"]
        row["total_ms"] = (t2 - t0) * 1e3
        rows.append(row)
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    med.update(raw_ms(segmenter, args.repeat))
    raw_total = sum(v for k, v in med.items() if k.startswith("raw_"))
    med["pipeline_over_raw"] = med["total_ms"] / raw_total
    print(f"matrix {args.matrix}x{args.matrix}, {args.repeat} images, providers {segmenter.providers}")
    print(f"models: {', '.join(segmenter.model_idents)}")
    print("median per image:")
    for k in (
        "decode_ms", "preprocess_ms", "gland_inference_ms", "nodule_inference_ms",
        "postprocess_ms", "measure_ms", "flags_ms", "seg_encode_ms", "total_ms", "raw_gland_ms", "raw_gland_refine_ms",
        "raw_nodule_ms",
    ):
        if k not in med:
            continue
        print(f"  {k:22s} {med[k]:8.2f}")
    print(f"  {'pipeline / raw models':22s} {med['pipeline_over_raw']:8.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(med, indent=2))


if __name__ == "__main__":
    main()
