"""Score the served models on the 800 test couples, at the source resolution.

The test scans (``split.json``) are regenerated with
:func:`scintiseg_phantoms.thyroid.generate_scan` and each is segmented as-is and
left-right flipped by :class:`scintiseg.inference.Segmenter` -- the very ONNX
path the server runs (preprocessing, onnxruntime, mapping back to the source
matrix, postprocessing) -- and compared with the truth on the source matrix.

Reported:

* gland Dice (mean, median, min) over all couples;
* cold-nodule Dice over the couples whose truth has nodules;
* the fraction of nodule-free couples with no false nodule;
* all of these per case kind; inference time per frame.

Writes a JSON report, a Markdown table and a montage of the 12 worst couples
(image, truth contour, predicted contour).

Usage::

    python -m scintiseg_training.evaluate --models models --split datasets/scintiseg.split.json
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage


@dataclass
class TestScan:
    seed: int
    kind: str
    pixel_spacing_mm: float
    counts: np.ndarray
    gland: np.ndarray
    nodules: np.ndarray


def load_test_scans(split: Path, cache: Path | None = None, limit: int | None = None) -> list[TestScan]:
    """The test scans of ``split`` at source resolution (cached in ``cache`` when given)."""
    seeds = [int(s) for s in json.loads(split.read_text(encoding="utf-8"))["test"]]
    if limit:
        seeds = seeds[:limit]
    if cache is not None and cache.exists():
        cached = [TestScan(**d) for d in pickle.loads(cache.read_bytes())]
        if [s.seed for s in cached] == seeds:
            return cached
    from scintiseg_phantoms.thyroid import generate_scan

    scans = []
    t0 = time.perf_counter()
    for i, seed in enumerate(seeds, 1):
        s = generate_scan(seed)
        scans.append(
            TestScan(
                seed=seed,
                kind=str(s.kind),
                pixel_spacing_mm=float(s.pixel_spacing_mm),
                counts=np.asarray(s.counts),
                gland=np.asarray(s.gland, dtype=bool),
                nodules=np.asarray(s.nodules, dtype=bool),
            )
        )
        if i % 50 == 0 or i == len(seeds):
            print(
                f"\r  regenerated {i}/{len(seeds)} test scans, {time.perf_counter() - t0:.0f} s",
                end="",
                file=sys.stderr,
            )
    print(file=sys.stderr)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        # plain dictionaries: loadable whichever module runs as __main__
        cache.write_bytes(pickle.dumps([vars(s) for s in scans], protocol=pickle.HIGHEST_PROTOCOL))
    return scans


def dice(a: np.ndarray, b: np.ndarray) -> float:
    tot = int(a.sum()) + int(b.sum())
    return 1.0 if tot == 0 else 2.0 * int((a & b).sum()) / tot


@dataclass
class CoupleResult:
    seed: int
    flip: bool
    kind: str
    gland_dice: float
    has_nodules: bool
    nodule_dice: float | None
    false_nodule: bool
    detected: bool | None
    image: np.ndarray
    gland_truth: np.ndarray
    gland_pred: np.ndarray
    nodule_truth: np.ndarray
    nodule_pred: np.ndarray

    @property
    def badness(self) -> float:
        """How bad the couple is, for the failure montage (larger is worse)."""
        worst = 1.0 - self.gland_dice
        if self.nodule_dice is not None:
            worst = max(worst, 1.0 - self.nodule_dice)
        if self.false_nodule:
            worst = max(worst, 0.5)
        return worst


def run(models: Path, scans: list[TestScan], threads: int = 2) -> tuple[list[CoupleResult], dict[str, float]]:
    from scintiseg.inference import Segmenter

    seg = Segmenter.from_models_dir(models, providers=("CPUExecutionProvider",), threads=threads)
    results: list[CoupleResult] = []
    timings: dict[str, list[float]] = defaultdict(list)
    t0 = time.perf_counter()
    for i, s in enumerate(scans, 1):
        for flip in (False, True):
            counts, gland, nodules = s.counts, s.gland, s.nodules
            if flip:
                counts, gland, nodules = counts[:, ::-1], gland[:, ::-1], nodules[:, ::-1]
            t = time.perf_counter()
            r = seg.segment_frame(np.ascontiguousarray(counts), s.pixel_spacing_mm)
            timings["total_ms"].append((time.perf_counter() - t) * 1e3)
            for k, v in r.timings_ms.items():
                timings[k].append(v)
            has = bool(nodules.any())
            detected = None
            if has:
                lab, n = ndimage.label(nodules)
                hit = np.unique(lab[r.nodules & (lab > 0)])
                detected = bool(n > 0 and len(hit) == n)
            results.append(
                CoupleResult(
                    seed=s.seed,
                    flip=flip,
                    kind=s.kind,
                    gland_dice=dice(r.gland, gland),
                    has_nodules=has,
                    nodule_dice=dice(r.nodules, nodules) if has else None,
                    false_nodule=(not has) and bool(r.nodules.any()),
                    detected=detected,
                    image=np.asarray(counts),
                    gland_truth=gland,
                    gland_pred=r.gland,
                    nodule_truth=nodules,
                    nodule_pred=r.nodules,
                )
            )
        if i % 50 == 0 or i == len(scans):
            print(
                f"\r  segmented {2 * i}/{2 * len(scans)} couples, {time.perf_counter() - t0:.0f} s",
                end="",
                file=sys.stderr,
            )
    print(file=sys.stderr)
    return results, {k: float(np.mean(v)) for k, v in timings.items()}


def summarise(results: list[CoupleResult]) -> dict[str, Any]:
    g = np.array([r.gland_dice for r in results])
    nd = np.array([r.nodule_dice for r in results if r.nodule_dice is not None])
    free = [r for r in results if not r.has_nodules]
    det = [r.detected for r in results if r.detected is not None]
    out: dict[str, Any] = {
        "n": len(results),
        "gland_dice_mean": round(float(g.mean()), 4),
        "gland_dice_median": round(float(np.median(g)), 4),
        "gland_dice_min": round(float(g.min()), 4),
        "n_with_nodules": int(nd.size),
        "n_nodule_free": len(free),
    }
    if nd.size:
        out["nodule_dice_mean"] = round(float(nd.mean()), 4)
        out["nodule_dice_median"] = round(float(np.median(nd)), 4)
        out["nodule_detection_rate"] = round(float(np.mean(det)), 4)
    if free:
        out["nodule_free_clean_fraction"] = round(float(np.mean([not r.false_nodule for r in free])), 4)
    return out


TARGETS = {"gland_dice_mean": 0.98, "nodule_dice_mean": 0.95, "nodule_free_clean_fraction": 0.95}


def report(
    results: list[CoupleResult],
    timings: dict[str, float],
    models: Path,
    n_scans: int,
    threads: int = 0,
) -> dict[str, Any]:
    by_kind: dict[str, list[CoupleResult]] = defaultdict(list)
    for r in results:
        by_kind[r.kind].append(r)
    overall = summarise(results)
    return {
        "test_set": f"{n_scans} held-out synthetic scans x (original + left-right flip) = {len(results)} couples",
        "evaluated_at_source_resolution": True,
        "path": "scintiseg.inference.Segmenter (ONNX Runtime, CPU)",
        "threads": threads,
        "models": str(models),
        "overall": overall,
        "targets": TARGETS,
        "targets_met": {k: bool(overall.get(k, 0.0) >= v) for k, v in TARGETS.items()},
        "per_kind": {k: summarise(v) for k, v in sorted(by_kind.items())},
        "timings_ms_per_frame": {k: round(v, 2) for k, v in timings.items()},
    }


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else ("–" if v is None else str(v))


def markdown(rep: dict[str, Any]) -> str:
    cols = [
        ("n", "couples"),
        ("gland_dice_mean", "gland Dice"),
        ("gland_dice_min", "gland Dice min"),
        ("n_with_nodules", "with nodules"),
        ("nodule_dice_mean", "nodule Dice"),
        ("nodule_detection_rate", "all nodules hit"),
        ("n_nodule_free", "nodule-free"),
        ("nodule_free_clean_fraction", "no false nodule"),
    ]
    lines = [
        "# ScintiSeg model evaluation",
        "",
        f"Test set: {rep['test_set']}, scored at the source matrix through the served path "
        f"({rep['path']}); models: `{rep['models']}`.",
        "Generated by `python -m scintiseg_training.evaluate` (see `docs/training.md`).",
        "",
        "| kind | " + " | ".join(c[1] for c in cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    rows = [*rep["per_kind"].items(), ("**all**", rep["overall"])]
    for kind, m in rows:
        lines.append(f"| {kind} | " + " | ".join(_fmt(m.get(c[0])) for c in cols) + " |")
    lines += [
        "",
        "Targets: "
        + ", ".join(
            f"{k} ≥ {v} ({'met' if rep['targets_met'][k] else 'NOT met'}: {_fmt(rep['overall'].get(k))})"
            for k, v in rep["targets"].items()
        ),
        "",
    ]
    t = rep["timings_ms_per_frame"]
    lines += [
        f"Mean time per frame (ms, this CPU, {rep.get('threads', '?')} onnxruntime threads): "
        + ", ".join(f"{k} {v}" for k, v in t.items()),
        "",
        "Worst 12 couples: `docs/img/failures.png` (green: true gland, red: predicted gland, "
        "cyan: true nodules, yellow: predicted nodules).",
        "",
    ]
    return "\n".join(lines)


def _contour(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def montage(results: list[CoupleResult], path: Path, n: int = 12, tile: int = 256) -> list[CoupleResult]:
    """The ``n`` worst couples as a PNG grid; returns them."""
    from PIL import Image, ImageDraw

    worst = sorted(results, key=lambda r: r.badness, reverse=True)[:n]
    cols = 4
    rows = max(1, (len(worst) + cols - 1) // cols)
    label_h = 30
    sheet = Image.new("RGB", (cols * tile, rows * (tile + label_h)), (0, 0, 0))
    draw = ImageDraw.Draw(sheet)
    for i, r in enumerate(worst):
        h, w = r.image.shape
        k = max(1, tile // max(h, w))
        img = r.image.astype(np.float32)
        ref = float(np.percentile(img, 99.5)) or 1.0
        grey = (np.clip(img / ref, 0, 1) * 255).astype(np.uint8)
        rgb = np.repeat(np.kron(grey, np.ones((k, k), np.uint8))[:, :, None], 3, axis=2)

        def up(m: np.ndarray, kk: int = k) -> np.ndarray:
            return np.kron(m.astype(np.uint8), np.ones((kk, kk), np.uint8)).astype(bool)

        for mask, colour in (
            (r.gland_truth, (0, 255, 0)),
            (r.gland_pred, (255, 0, 0)),
            (r.nodule_truth, (0, 255, 255)),
            (r.nodule_pred, (255, 255, 0)),
        ):
            rgb[_contour(up(mask))] = colour
        y0 = (i // cols) * (tile + label_h)
        x0 = (i % cols) * tile
        sheet.paste(Image.fromarray(rgb).resize((tile, tile), Image.Resampling.NEAREST), (x0, y0))
        nd = "-" if r.nodule_dice is None else f"{r.nodule_dice:.3f}"
        flip = " flip" if r.flip else ""
        text = f"{r.kind} s{r.seed}{flip} {h}x{w}\ngland {r.gland_dice:.3f} nod {nd}"
        if r.false_nodule:
            text += " FP"
        draw.text((x0 + 3, y0 + tile + 1), text, fill=(255, 255, 255))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return worst


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", type=Path, default=Path("models"))
    ap.add_argument("--split", type=Path, default=Path("datasets/scintiseg.split.json"))
    ap.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="pickle of the regenerated test scans (default: beside the split)",
    )
    ap.add_argument("--limit", type=int, default=None, help="only the first N test scans")
    ap.add_argument("--json", type=Path, default=Path("docs/evaluation.json"))
    ap.add_argument("--markdown", default="docs/evaluation.md", help="'' for none")
    ap.add_argument("--montage", default="docs/img/failures.png", help="'' for none")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--update-cards", action="store_true", help="write the metrics into the model cards")
    args = ap.parse_args(argv)
    cache = args.cache or args.split.with_name(args.split.name.replace(".split.json", "") + ".test_scans.pkl")
    if args.limit:
        cache = cache.with_suffix(f".{args.limit}.pkl")
    scans = load_test_scans(args.split, cache, args.limit)
    results, timings = run(args.models, scans, args.threads)
    rep = report(results, timings, args.models, len(scans), args.threads)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(rep, indent=1) + "\n", encoding="utf-8")
    if args.markdown:
        md = Path(args.markdown)
        md.parent.mkdir(parents=True, exist_ok=True)
        md.write_text(markdown(rep), encoding="utf-8")
    if args.montage:
        montage(results, Path(args.montage))
    if args.update_cards:
        from .export import metrics_for, model_name, set_metrics

        for task in ("gland", "nodule"):
            set_metrics(args.models / model_name(task), metrics_for(task, rep))
    o = rep["overall"]
    print(json.dumps(o, indent=1), file=sys.stderr)
    print(f"wrote {args.json}, {args.markdown}, {args.montage}", file=sys.stderr)


if __name__ == "__main__":
    main()
