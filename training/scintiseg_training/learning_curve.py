"""Learning curve of the gland model: train on nested subsets, score each on the same test set.

Each subset (the first K training couples in a fixed hash order, so the
subsets are nested) trains for a fixed number of optimisation steps, is
exported to ONNX and scored with :mod:`scintiseg_training.evaluate` through the
served path on the 800 test couples at source resolution. The gland Dice does
not depend on the nodule model; any nodule model completes the model folder.

Usage::

    python -m scintiseg_training.learning_curve --data datasets/scintiseg.npz \\
        --subsets 94:300 200:400 1800:800 --nodule-model models/scintiseg-nodule
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from . import evaluate, export, train


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("datasets/scintiseg.npz"))
    ap.add_argument("--split", type=Path, default=Path("datasets/scintiseg.split.json"))
    ap.add_argument(
        "--subsets",
        nargs="+",
        default=["94:300", "200:400", "1800:800"],
        help="K:STEPS, K training couples for STEPS steps",
    )
    ap.add_argument("--runs", type=Path, default=Path("runs"))
    ap.add_argument("--nodule-model", type=Path, default=Path("models/scintiseg-nodule"))
    ap.add_argument(
        "--nodule-run",
        type=Path,
        default=Path("runs/nodule"),
        help="exported when --nodule-model does not exist",
    )
    ap.add_argument("--independent", type=int, default=300, help="scans of the independent family to score")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--out", type=Path, default=Path("runs/learning_curve.json"))
    args = ap.parse_args(argv)
    rows: list[dict[str, Any]] = json.loads(args.out.read_text()) if args.out.exists() else []
    done = {r["couples"] for r in rows}
    for spec in args.subsets:
        k, steps = (int(v) for v in spec.split(":"))
        if k in done:
            continue
        run = args.runs / f"lc-{k}"
        t0 = time.perf_counter()
        state = train.main_state(
            [
                "--task",
                "gland",
                "--data",
                str(args.data),
                "--out",
                str(run),
                "--limit-train",
                str(k),
                "--steps",
                str(steps),
                "--batch-size",
                str(args.batch_size),
                "--threads",
                str(args.threads),
                "--resume",
            ]
        )
        minutes = (time.perf_counter() - t0) / 60
        models = run / "models"
        export.export(run, models, "gland")
        nod = models / export.model_name("nodule")
        if nod.exists():
            shutil.rmtree(nod)
        if args.nodule_model.exists():
            shutil.copytree(args.nodule_model, nod)
        else:
            export.export(args.nodule_run, models, "nodule")
        ev = run / "evaluation.json"
        evaluate.main(
            [
                "--models",
                str(models),
                "--split",
                str(args.split),
                "--json",
                str(ev),
                "--markdown",
                "",
                "--montage",
                "",
                "--montage-independent",
                "",
                "--independent",
                str(args.independent),
                "--threads",
                str(args.threads),
            ]
        )
        rep = json.loads(ev.read_text())
        rows.append(
            {
                "couples": int(state["n_train"]),
                "steps": steps,
                "batch_size": args.batch_size,
                "train_minutes": round(float(state["elapsed_s"]) / 60, 1),
                "wall_minutes_incl_export": round(minutes, 1),
                "gland_dice_mean": rep["overall"]["gland_dice_mean"],
                "gland_dice_median": rep["overall"]["gland_dice_median"],
                **(
                    {"independent_gland_dice_mean": rep["families"]["independent"]["overall"]["gland_dice_mean"]}
                    if "independent" in rep.get("families", {})
                    else {}
                ),
            }
        )
        args.out.write_text(json.dumps(rows, indent=1), encoding="utf-8")
        print(json.dumps(rows[-1]), file=sys.stderr)


if __name__ == "__main__":
    main()
