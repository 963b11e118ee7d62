"""Export a trained run to a model folder: ``model.onnx`` + ``card.json`` (schema 2).

The ONNX graph (opset 17) takes ``image`` ``[batch, 1, 128, 128]`` float32 and
gives ``logits`` of the same shape, with a dynamic ``batch`` axis. The graph is
checked with ``onnx.checker``, its outputs are compared with PyTorch on random
inputs, and the card (:func:`scintiseg.models.card.task_card`) is validated with
:func:`scintiseg.models.card.load_card` before the command returns.

Each model version is a folder of its own (:mod:`scintiseg.models.registry`): a new
version goes into ``<models>/<name>-<version>/`` beside the older ones, written
under a hidden name first and renamed into place, so a running Orthanc picks
it up whole (and removing the folder rolls back). Exporting a version that a
folder already holds replaces that folder the same way.

Usage::

    python -m scintiseg_training.export --run runs/gland --task gland --models models --version 2.0.0
    # the gland model's second pass, as the second stage of that version (refine.onnx):
    python -m scintiseg_training.export --run runs/gland-refine --task gland_refine --models models \\
        --version 2.0.0
    # update the metrics of an existing card (the ONNX file is untouched; the highest
    # version unless --version says which):
    python -m scintiseg_training.export --task nodule --models models \\
        --metrics docs/evaluation.json --metrics-only
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scintiseg.models.card import (
    CARD_FILE,
    ModelCardError,
    load_card,
    read_card_json,
    sha256_file,
    task_card,
    version_key,
)
from scintiseg.models.preprocess import full_window, gland_window, model_input

from .dataset import NORMALISATION, SIZE
from .train import load_model

OPSET = 17
MAX_BYTES = 10 * 1024 * 1024
VERSION = "1.0.0"

#: The window each task's network sees (the parity check feeds it real inputs of that window).
WINDOW = {"gland": "full", "nodule": "gland", "gland_refine": "gland"}
REFINE_ONNX = "refine.onnx"
MIN_COMPONENT_MM2 = {"gland": 20.0, "nodule": 10.0}


def model_name(task: str) -> str:
    return f"scintiseg-{task}"


def to_onnx_bytes(model: torch.nn.Module, size: int = SIZE) -> bytes:
    """The model as ONNX bytes (opset 17, dynamic batch), checked with onnx.checker."""
    import onnx

    model = model.cpu().eval()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # the TorchScript exporter is deprecated; the dynamo one needs onnxscript (not installed)
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model,
            (torch.zeros(1, 1, size, size),),
            buf,  # type: ignore[arg-type]  # a file-like object is accepted
            opset_version=OPSET,
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
            do_constant_folding=True,
            dynamo=False,
        )
    data = buf.getvalue()
    proto = onnx.load_from_string(data)
    onnx.checker.check_model(proto, full_check=True)
    return data


def max_abs_diff(model: torch.nn.Module, onnx_bytes: bytes, x: np.ndarray) -> float:
    """Largest |PyTorch - onnxruntime| logit difference on ``x`` ``(N, 1, S, S)``."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    sess = ort.InferenceSession(onnx_bytes, opts, providers=["CPUExecutionProvider"])
    (got,) = sess.run(["logits"], {"image": x.astype(np.float32)})
    with torch.no_grad():
        ref = model.cpu().eval()(torch.from_numpy(x.astype(np.float32))).numpy()
    return float(np.abs(np.asarray(got) - ref).max())


def write_card_file(path: Path, card: dict[str, Any]) -> None:
    path.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")


def write_card(folder: Path, card: dict[str, Any]) -> None:
    write_card_file(folder / CARD_FILE, card)


def make_card(
    task: str, sha: str, training: dict[str, Any], metrics: dict[str, Any], version: str = VERSION
) -> dict[str, Any]:
    return task_card(
        task,
        name=model_name(task),
        version=version,
        stages=[{"onnx": "model.onnx", "sha256": sha}],
        size=SIZE,
        percentile=NORMALISATION.percentile,
        clip=NORMALISATION.clip,
        min_component_mm2=MIN_COMPONENT_MM2[task],
        training=training,
        metrics=metrics,
    )


def model_folders(models: Path, name: str) -> list[tuple[str, Path]]:
    """(version, folder) of every readable folder of ``models`` holding model ``name``, oldest first."""
    found = []
    for folder in sorted(p for p in Path(models).glob("*") if p.is_dir() and not p.name.startswith(".")):
        try:
            raw = read_card_json(folder)
        except ModelCardError:
            continue
        if raw.get("name") == name and isinstance(raw.get("version"), str):
            found.append((str(raw["version"]), folder))
    return sorted(found, key=lambda vf: version_key(vf[0]))


def model_folder(models: Path, task: str, version: str | None = None) -> Path | None:
    """The folder of ``task``'s model at ``version`` (default: the highest one), if any."""
    found = model_folders(models, model_name(task))
    if version is not None:
        found = [vf for vf in found if vf[0] == version]
    return found[-1][1] if found else None


def _staging(models: Path, name: str) -> Path:
    """A hidden folder beside the models (the registry ignores it) to write a version into."""
    staging = Path(models) / f".{name}.export-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    return staging


def _put_in_place(staging: Path, target: Path) -> None:
    """Move a written folder into place in one rename (replacing ``target`` if it exists)."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        target.rename(old)
    staging.rename(target)
    if old is not None:
        shutil.rmtree(old)


def training_summary(
    ckpt: dict[str, Any], dataset: str, hardware: str | None = None, parity: dict[str, Any] | None = None
) -> dict[str, Any]:
    args = ckpt.get("args", {})
    last = ckpt["history"][-1] if ckpt.get("history") else {}
    return {
        "data": dataset,
        "architecture": {
            "family": "U-Net",
            **ckpt["unet"],
            "norm": "BatchNorm",
            "upsampling": "bilinear",
        },
        "couples": ckpt.get("n_train"),
        "validation_couples": ckpt.get("n_val"),
        "epochs": ckpt.get("epoch"),
        "steps": ckpt.get("step"),
        "batch_size": args.get("batch_size"),
        "learning_rate": args.get("lr"),
        "loss": "BCE-with-logits on soft targets + soft Dice",
        "augmentation": "left-right flips (in the data), shifts, intensity scaling, noise"
        + ("" if args.get("plain_augment", True) else ", gamma 0.7-1.4, blur, count-dependent noise")
        + (", jittered gland window" if ckpt["task"] in ("nodule", "gland_refine") else ""),
        "device": ckpt.get("device", args.get("device")),
        "training_minutes": round(float(ckpt.get("elapsed_s", 0.0)) / 60.0, 1),
        "final_validation": last.get("val", {}),
        **({"fine_tuned_from": ckpt["started_from"]} if ckpt.get("started_from") else {}),
        **({"hardware": hardware} if hardware else {}),
        **({"export_parity": parity} if parity else {}),
    }


DEFAULT_DATA = (
    "Synthetic thyroid scintigraphies (scintiseg_phantoms.thyroid.generate_scan, seeds 0-2299): "
    "2300 scans x (original + left-right flip) = 4600 image-mask couples, split by scan "
    "into 1900 training scans (3800 couples) and 400 test scans (800 couples)."
)


def export(
    run: Path,
    models: Path,
    task: str | None = None,
    dataset: str = DEFAULT_DATA,
    metrics: dict[str, Any] | None = None,
    hardware: str | None = None,
    version: str = VERSION,
) -> Path:
    """Export ``run/last.pt`` as version ``version`` of ``scintiseg-<task>``; returns its folder.

    A new model needs a new ``version``: it goes into a new folder beside the older
    ones and the plugin serves it in their place (their studies are processed again
    on request, or with ``ReprocessOnUpgrade``). The card keeps the previous test
    metrics only if the ONNX file is the same; a different model gets empty metrics
    until ``evaluate --update-cards`` scores it. A gland model keeps the second stage
    (``refine.onnx``) of the newest older version, if it had one.
    """
    model, ckpt = load_model(run)
    task = task or ckpt["task"]
    if task != ckpt["task"]:
        raise SystemExit(f"{run} is a {ckpt['task']} run, not {task}")
    data, parity = checked_onnx(model, task)
    diff = parity["max_abs_logit_diff"]
    if task == "gland_refine":
        return export_refine(data, parity, ckpt, models, dataset, metrics, hardware, version)
    models.mkdir(parents=True, exist_ok=True)
    name = model_name(task)
    same = model_folder(models, task, version)
    newest = model_folder(models, task)
    target = same or models / f"{name}-{version}"
    staging = _staging(models, name)
    (staging / "model.onnx").write_bytes(data)
    sha = sha256_file(staging / "model.onnx")
    old: dict[str, Any] = {}
    previous = read_card_json(same) if same is not None else {}
    if metrics is None and previous and previous["stages"][0]["sha256"] == sha:
        old = previous.get("metrics", {})
    card = make_card(task, sha, training_summary(ckpt, dataset, hardware, parity), metrics or old, version)
    source = same or newest
    if source is not None:
        stages = read_card_json(source).get("stages") or []
        if len(stages) > 1 and (source / stages[1]["onnx"]).is_file():
            # a second pass outlives a new first pass
            shutil.copy2(source / stages[1]["onnx"], staging / stages[1]["onnx"])
            card["stages"].append(stages[1])
    write_card(staging, card)
    load_card(staging)
    _put_in_place(staging, target)
    print(
        f"wrote {target}/model.onnx ({len(data)} bytes, torch/ort max diff {diff:.1e}) and card.json",
        file=sys.stderr,
    )
    return target


#: Phantom scans whose served model inputs check every export (PyTorch vs onnxruntime).
PARITY_SEEDS = (1, 2, 3)
#: Largest logit difference an export may show on them.
PARITY_TOLERANCE = 1e-3


def parity_inputs(task: str, seeds: tuple[int, ...] = PARITY_SEEDS) -> np.ndarray:
    """Real model inputs ``(N, 1, S, S)``: phantom scans through the served preprocessing.

    The gland model sees the whole field; the nodule model and the gland second
    pass see the window around the true gland, as they do at serving time.
    """
    from scintiseg_phantoms.thyroid import generate_scan

    inputs = []
    for seed in seeds:
        scan = generate_scan(seed)
        counts = np.asarray(scan.counts, dtype=np.float32)
        window = full_window(counts.shape) if WINDOW[task] == "full" else gland_window(scan.gland)
        inputs.append(model_input(counts, window, SIZE, NORMALISATION))
    return np.stack(inputs)[:, None].astype(np.float32)


def checked_onnx(model: torch.nn.Module, task: str) -> tuple[bytes, dict[str, Any]]:
    """ONNX bytes of ``model``, within the size limit and agreeing with PyTorch on real inputs.

    Returns the bytes and the parity record written into the card (``training.export_parity``).
    """
    data = to_onnx_bytes(model)
    if len(data) > MAX_BYTES:
        raise SystemExit(f"ONNX model is {len(data)} bytes, over {MAX_BYTES}")
    diff = max_abs_diff(model, data, parity_inputs(task))
    if diff > PARITY_TOLERANCE:
        raise SystemExit(f"onnxruntime and PyTorch disagree on phantom scans: max |diff| = {diff}")
    parity = {
        "max_abs_logit_diff": float(f"{diff:.3g}"),
        "tolerance": PARITY_TOLERANCE,
        "inputs": f"phantom scans (scintiseg_phantoms.thyroid seeds {', '.join(map(str, PARITY_SEEDS))}) "
        "through the served preprocessing",
    }
    return data, parity


def export_refine(
    data: bytes,
    parity: dict[str, Any],
    ckpt: dict[str, Any],
    models: Path,
    dataset: str,
    metrics: dict[str, Any] | None,
    hardware: str | None,
    version: str,
) -> Path:
    """Write a gland second pass as ``refine.onnx``, the second stage of gland version ``version``.

    The first stage comes from the gland folder of that version, else from the newest
    one (then a new version: give one): name, labels and post-processing stay; the test
    metrics are dropped unless given, since the served result changes.
    """
    source = model_folder(models, "gland", version) or model_folder(models, "gland")
    if source is None:
        raise SystemExit(f"no gland model in {models}: export the first pass (--task gland) first")
    card = read_card_json(source)
    name = str(card["name"])
    staging = _staging(models, name)
    first = card["stages"][0]
    shutil.copy2(source / first["onnx"], staging / first["onnx"])
    (staging / REFINE_ONNX).write_bytes(data)
    sha = sha256_file(staging / REFINE_ONNX)
    stages = card.get("stages") or []
    same = len(stages) > 1 and stages[1].get("sha256") == sha and card.get("version") == version
    card["version"] = version
    card["stages"] = [first, {
        **{k: v for k, v in first.items() if k not in ("onnx", "sha256", "training")},
        "onnx": REFINE_ONNX,
        "sha256": sha,
        "window": "previous",
        "training": training_summary(ckpt, dataset, hardware, parity),
    }]
    if metrics is not None:
        card["metrics"] = metrics
    elif not same:
        card["metrics"] = {}
    write_card(staging, card)
    load_card(staging)
    target = source if read_card_json(source).get("version") == version else models / f"{name}-{version}"
    _put_in_place(staging, target)
    print(
        f"wrote {target}/{REFINE_ONNX} ({len(data)} bytes, torch/ort max diff {parity['max_abs_logit_diff']:.1e}) "
        f"and the second stage of {target}/card.json, version {version}",
        file=sys.stderr,
    )
    return target


def set_metrics(folder: Path, metrics: dict[str, Any]) -> None:
    """Replace a card's metrics; the ONNX files (and so their sha256) are untouched."""
    card = read_card_json(folder)
    card["metrics"] = metrics
    for stage in card.get("stages") or []:
        stage["sha256"] = sha256_file(folder / stage["onnx"])
    tmp = folder / f".{CARD_FILE}.tmp"
    write_card_file(tmp, card)
    os.replace(tmp, folder / CARD_FILE)  # one rename: a running registry never reads half a card
    load_card(folder)


def metrics_for(task: str, report: dict[str, Any]) -> dict[str, Any]:
    """The part of an evaluation report (``evaluate.py`` JSON) that belongs in a task's card."""
    overall = report["overall"]
    common: dict[str, Any] = {k: report[k] for k in ("test_set", "evaluated_at_source_resolution") if k in report}
    if task == "gland":
        keys = ["gland_dice_mean", "gland_dice_median", "gland_dice_min"]
    else:
        keys = [
            "nodule_dice_mean",
            "nodule_dice_median",
            "nodule_free_clean_fraction",
            "nodule_detection_rate",
        ]
    per_kind = {
        kind: {k: v for k, v in m.items() if k.startswith(task) or k in ("n", "nodule_free_clean_fraction")}
        for kind, m in report.get("per_kind", {}).items()
    }
    out = {**common, **{k: overall[k] for k in keys if k in overall}, "per_kind": per_kind}
    # every family's physician figures (training family's test scans, independent family)
    out["families"] = {
        family: {"test_set": rep["test_set"], "overall": rep["overall"], "targets": rep["targets"]}
        for family, rep in report.get("families", {}).items()
    }
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, help="run folder with last.pt")
    ap.add_argument("--task", choices=("gland", "nodule", "gland_refine"))
    ap.add_argument("--models", type=Path, default=Path("models"))
    ap.add_argument("--metrics", type=Path, help="evaluation JSON (evaluate.py) to put in the card")
    ap.add_argument("--metrics-only", action="store_true", help="only update the card's metrics")
    ap.add_argument("--hardware", help="where it was trained, for the card (e.g. '2-core CPU')")
    ap.add_argument("--version", default=None, help=f"model version for the card (default {VERSION}); "
                    "give a new one for every new model (with --metrics-only: which version, default the highest)")
    args = ap.parse_args(argv)
    report = json.loads(args.metrics.read_text(encoding="utf-8")) if args.metrics else None
    if args.metrics_only:
        if not (args.task and report):
            raise SystemExit("--metrics-only needs --task and --metrics")
        folder = model_folder(args.models, args.task, args.version)
        if folder is None:
            raise SystemExit(f"no {model_name(args.task)} model in {args.models}")
        set_metrics(folder, metrics_for(args.task, report))
        return
    if args.run is None:
        raise SystemExit("--run is required")
    task = args.task
    metrics = metrics_for("gland" if task == "gland_refine" else task, report) if (report and task) else None
    export(args.run, args.models, task, metrics=metrics, hardware=args.hardware, version=args.version or VERSION)


if __name__ == "__main__":
    main()
