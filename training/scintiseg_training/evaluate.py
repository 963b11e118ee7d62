"""Score the served models on both phantom families, at the source resolution.

Two test sets, never trained on:

* the training family's held-out test scans (``split.json``), regenerated with
  :func:`scintiseg_phantoms.thyroid.generate_scan`, each as-is and left-right
  flipped (the 800 test couples of the original work);
* the **independent family** (:func:`scintiseg_phantoms.independent.generate`,
  seeds ``0 .. N-1``): another shape model and another imaging model, written
  separately and never used for training or tuning, each scan as-is. It measures
  generalisation the way a leave-one-centre-out study does.

Each image goes through :class:`scintiseg.models.runtime.Segmenter` -- the very ONNX
path the server runs -- and is compared with the truth on the source matrix.

Reported for each family, overall and per case kind: gland Dice (mean, also with
low-count images excluded, median, min), the share of images with a gland
component outside the true gland, cold-nodule Dice, cold-nodule sensitivity by
diameter and false nodules per image (:mod:`scintiseg_training.metrics`), the
fraction of nodule-free images without a false nodule, and time per frame.

Writes a JSON report, a Markdown page with both families side by side, and
montages of the worst images of each family.

Usage::

    python -m scintiseg_training.evaluate --models models --split datasets/scintiseg.split.json \
        --independent 300
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from scintiseg.models.registry import load_segmenter

from .metrics import ImageScore, dice, score_image, summarise_scores

__all__ = ["dice", "load_test_scans", "load_independent_scans", "main", "run"]


@dataclass
class TestScan:
    seed: int
    kind: str
    pixel_spacing_mm: float
    counts: np.ndarray
    gland: np.ndarray
    nodules: np.ndarray
    nodule_labels: np.ndarray | None = None
    diameters_mm: list[float] | None = None


def _test_scan(seed: int, scan: Any) -> TestScan:
    cold = scan.params.get("cold_nodules") or []
    return TestScan(
        seed=seed,
        kind=str(scan.kind),
        pixel_spacing_mm=float(scan.pixel_spacing_mm),
        counts=np.asarray(scan.counts),
        gland=np.asarray(scan.gland, dtype=bool),
        nodules=np.asarray(scan.nodules, dtype=bool),
        nodule_labels=None if scan.nodule_labels is None else np.asarray(scan.nodule_labels),
        diameters_mm=[float(c["diameter_mm"]) for c in cold] if scan.nodule_labels is not None else None,
    )


def _load(
    what: str, seeds: list[int], generate: Callable[[int], Any], cache: Path | None
) -> list[TestScan]:
    """Scans of ``seeds`` at source resolution (cached in ``cache`` when given)."""
    if cache is not None and cache.exists():
        cached = [TestScan(**d) for d in pickle.loads(cache.read_bytes())]
        if [s.seed for s in cached] == seeds:
            return cached
    scans = []
    t0 = time.perf_counter()
    for i, seed in enumerate(seeds, 1):
        scans.append(_test_scan(seed, generate(seed)))
        if i % 50 == 0 or i == len(seeds):
            elapsed = time.perf_counter() - t0
            print(f"\r  generated {i}/{len(seeds)} {what} scans, {elapsed:.0f} s", end="", file=sys.stderr)
    print(file=sys.stderr)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        # plain dictionaries: loadable whichever module runs as __main__
        cache.write_bytes(pickle.dumps([vars(s) for s in scans], protocol=pickle.HIGHEST_PROTOCOL))
    return scans


def load_test_scans(split: Path, cache: Path | None = None, limit: int | None = None) -> list[TestScan]:
    """The training family's test scans of ``split``."""
    from scintiseg_phantoms.thyroid import generate_scan

    seeds = [int(s) for s in json.loads(split.read_text(encoding="utf-8"))["test"]]
    return _load("test", seeds[:limit] if limit else seeds, generate_scan, cache)


def load_independent_scans(n: int, cache: Path | None = None) -> list[TestScan]:
    """Seeds ``0 .. n-1`` of the independent family (never trained or tuned on)."""
    from scintiseg_phantoms.independent import generate

    return _load("independent", list(range(n)), generate, cache)


@dataclass
class CoupleResult:
    seed: int
    flip: bool
    kind: str
    score: ImageScore
    image: np.ndarray
    gland_truth: np.ndarray
    gland_pred: np.ndarray
    nodule_truth: np.ndarray
    nodule_pred: np.ndarray

    @property
    def gland_dice(self) -> float:
        return self.score.gland_dice

    @property
    def nodule_dice(self) -> float | None:
        return self.score.nodule_dice

    @property
    def has_nodules(self) -> bool:
        return self.score.nodule_dice is not None

    @property
    def false_nodule(self) -> bool:
        return self.score.false_nodules > 0

    @property
    def badness(self) -> float:
        """How bad the image is, for the failure montage (larger is worse)."""
        worst = 1.0 - self.gland_dice
        if self.nodule_dice is not None:
            worst = max(worst, 1.0 - self.nodule_dice)
        if self.false_nodule or self.score.gland_outside:
            worst = max(worst, 0.5)
        return worst


def _mirror(a: np.ndarray | None) -> np.ndarray | None:
    return None if a is None else np.ascontiguousarray(a[:, ::-1])


def run(
    models: Path, scans: list[TestScan], threads: int = 2, flips: bool = True
) -> tuple[list[CoupleResult], dict[str, float]]:
    seg = load_segmenter(models, providers=("CPUExecutionProvider",), threads=threads)
    results: list[CoupleResult] = []
    timings: dict[str, list[float]] = defaultdict(list)
    t0 = time.perf_counter()
    views = (False, True) if flips else (False,)
    for i, s in enumerate(scans, 1):
        for flip in views:
            counts, gland, nodules, labels = s.counts, s.gland, s.nodules, s.nodule_labels
            if flip:
                counts, gland, nodules = (np.ascontiguousarray(a[:, ::-1]) for a in (counts, gland, nodules))
                labels = _mirror(labels)
            t = time.perf_counter()
            r = seg.segment_frame(np.ascontiguousarray(counts), s.pixel_spacing_mm)
            timings["total_ms"].append((time.perf_counter() - t) * 1e3)
            for k, v in r.timings_ms.items():
                timings[k].append(v)
            score = score_image(
                counts, gland, nodules, r.masks["gland"], r.masks["nodule"], s.pixel_spacing_mm, labels, s.diameters_mm
            )
            results.append(
                CoupleResult(
                    seed=s.seed,
                    flip=flip,
                    kind=s.kind,
                    score=score,
                    image=np.asarray(counts),
                    gland_truth=gland,
                    gland_pred=r.masks["gland"],
                    nodule_truth=nodules,
                    nodule_pred=r.masks["nodule"],
                )
            )
        if i % 50 == 0 or i == len(scans):
            print(
                f"\r  segmented {len(results)}/{len(views) * len(scans)} images, {time.perf_counter() - t0:.0f} s",
                end="",
                file=sys.stderr,
            )
    print(file=sys.stderr)
    return results, {k: float(np.mean(v)) for k, v in timings.items()}


def summarise(results: list[CoupleResult]) -> dict[str, Any]:
    """The physician's figures (:func:`metrics.summarise_scores`) plus the historical ones."""
    out: dict[str, Any] = {"n": len(results), **summarise_scores([r.score for r in results])}
    nd = [r.nodule_dice for r in results if r.nodule_dice is not None]
    free = [r for r in results if not r.has_nodules]
    with_nodules = [r for r in results if r.score.found]
    out["n_with_nodules"] = len(nd)
    out["n_nodule_free"] = len(free)
    if nd:
        out["nodule_dice_median"] = round(float(np.median(nd)), 4)
        every = [all(f for _, f in r.score.found) for r in with_nodules]
        out["nodule_detection_rate"] = round(float(np.mean(every)), 4) if every else None
    if free:
        out["nodule_free_clean_fraction"] = round(float(np.mean([not r.false_nodule for r in free])), 4)
    return out


#: What the project aims for, per family (``key``: (comparison, value)).
TARGETS: dict[str, dict[str, tuple[str, float]]] = {
    "thyroid": {
        "gland_dice_mean": (">=", 0.98),
        "nodule_dice_mean": (">=", 0.95),
        "nodule_free_clean_fraction": (">=", 0.95),
    },
    "independent": {
        "gland_dice_mean_low_count_excluded": (">=", 0.95),
        "gland_outside_fraction": ("<=", 0.02),
        "sensitivity_>=15mm": (">=", 0.90),
        "sensitivity_10-15mm": (">=", 0.75),
        "false_nodules_per_image": ("<=", 0.1),
    },
}


def _target_value(overall: dict[str, Any], key: str) -> float | None:
    """A target's figure; the sensitivity keys pool the diameter classes they name."""
    sens = overall.get("nodule_sensitivity_by_diameter", {})
    if key == "sensitivity_>=15mm":
        n = sum(sens[b]["n"] for b in ("15-20 mm", ">=20 mm"))
        hits = sum((sens[b]["sensitivity"] or 0.0) * sens[b]["n"] for b in ("15-20 mm", ">=20 mm"))
        return round(hits / n, 4) if n else None
    if key == "sensitivity_10-15mm":
        return sens.get("10-15 mm", {}).get("sensitivity")
    value = overall.get(key)
    return None if value is None else float(value)


def targets_met(family: str, overall: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out = {}
    for key, (op, target) in TARGETS.get(family, {}).items():
        value = _target_value(overall, key)
        met = value is not None and (value >= target if op == ">=" else value <= target)
        out[key] = {"target": f"{op} {target}", "value": value, "met": met}
    return out


def report(
    results: list[CoupleResult],
    timings: dict[str, float],
    models: Path,
    description: str,
    family: str,
    threads: int = 0,
) -> dict[str, Any]:
    by_kind: dict[str, list[CoupleResult]] = defaultdict(list)
    for r in results:
        by_kind[r.kind].append(r)
    overall = summarise(results)
    return {
        "family": family,
        "test_set": description,
        "evaluated_at_source_resolution": True,
        "path": "scintiseg.models.runtime.Segmenter (ONNX Runtime, CPU)",
        "threads": threads,
        "models": str(models),
        "overall": overall,
        "targets": targets_met(family, overall),
        "per_kind": {k: summarise(v) for k, v in sorted(by_kind.items())},
        "timings_ms_per_frame": {k: round(v, 2) for k, v in timings.items()},
    }


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else ("–" if v is None else str(v))


def _sens(m: dict[str, Any], name: str) -> str:
    cell = m.get("nodule_sensitivity_by_diameter", {}).get(name, {})
    if not cell or not cell.get("n"):
        return "–"
    return f"{cell['sensitivity']:.2f} ({cell['n']})"


COLUMNS: tuple[tuple[str, str], ...] = (
    ("n", "images"),
    ("gland_dice_mean", "gland Dice"),
    ("gland_dice_mean_low_count_excluded", "gland Dice, low-count excl."),
    ("gland_dice_min", "gland Dice min"),
    ("gland_outside_fraction", "gland outside thyroid"),
    ("nodule_dice_mean", "nodule Dice"),
    ("false_nodules_per_image", "false nodules / image"),
    ("nodule_free_clean_fraction", "nodule-free clean"),
)
SENS_COLUMNS = ("<10 mm", "10-15 mm", "15-20 mm", ">=20 mm")


def _table(rep: dict[str, Any]) -> list[str]:
    head = [c[1] for c in COLUMNS] + [f"found {b}" for b in SENS_COLUMNS]
    lines = ["| kind | " + " | ".join(head) + " |", "|---|" + "---|" * len(head)]
    for kind, m in [*rep["per_kind"].items(), ("**all**", rep["overall"])]:
        cells = [_fmt(m.get(c[0])) for c in COLUMNS] + [_sens(m, b) for b in SENS_COLUMNS]
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    return lines


def markdown(reps: dict[str, dict[str, Any]], montages: dict[str, str]) -> str:
    lines = [
        "# ScintiSeg model evaluation",
        "",
        "Generated by `python -m scintiseg_training.evaluate` (command in `docs/training.md`). Every image "
        "is segmented through the served path (ONNX Runtime, CPU) and scored at its source matrix. Neither "
        "family's test images were used for training or for tuning; the independent family was never used "
        "for either (rules of each figure: `training/metrics.py`).",
        "",
        "## Both families side by side",
        "",
        "| figure | " + " | ".join(reps) + " |",
        "|---|" + "---|" * len(reps),
    ]
    rows = [(c[1], c[0]) for c in COLUMNS] + [(f"cold nodules found, {b}", b) for b in SENS_COLUMNS]
    for label, key in rows:
        cells = [
            _sens(r["overall"], key) if key in SENS_COLUMNS else _fmt(r["overall"].get(key)) for r in reps.values()
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    for family, rep in reps.items():
        lines += ["", f"## {family}: {rep['test_set']}", "", *_table(rep), "", "Targets:", ""]
        for key, t in rep["targets"].items():
            lines.append(f"- {key} {t['target']}: {_fmt(t['value'])} — {'met' if t['met'] else '**NOT met**'}")
        timing = ", ".join(f"{k} {v}" for k, v in rep["timings_ms_per_frame"].items())
        lines += [
            "",
            f"Mean time per frame (ms, {rep.get('threads', '?')} onnxruntime threads): {timing}.",
            "",
            f"Worst 12 images: `{montages.get(family, '')}` (green: true gland, red: predicted gland, "
            "cyan: true nodules, yellow: predicted nodules).",
        ]
        if montages.get(family):
            lines += ["", f"![worst images of the {family} family]({Path(montages[family]).relative_to('docs')})"
                      if montages[family].startswith("docs/") else ""]
    lines.append("")
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
        missed = sum(1 for _, f in r.score.found if not f)
        flip = " flip" if r.flip else ""
        text = f"{r.kind} s{r.seed}{flip} {h}x{w}\ngland {r.gland_dice:.3f} nod {nd}"
        if r.false_nodule:
            text += f" FP{r.score.false_nodules}"
        if missed:
            text += f" miss{missed}"
        if r.score.gland_outside:
            text += " OUT"
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
    ap.add_argument("--independent", type=int, default=300, help="scans of the independent family (0: none)")
    ap.add_argument("--json", type=Path, default=Path("docs/evaluation.json"))
    ap.add_argument("--markdown", default="docs/evaluation.md", help="'' for none")
    ap.add_argument("--montage", default="docs/img/failures.png", help="'' for none")
    ap.add_argument(
        "--montage-independent", default="docs/img/failures-independent.png", help="'' for none"
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--update-cards", action="store_true", help="write the metrics into the model cards")
    args = ap.parse_args(argv)
    cache = args.cache or args.split.with_name(args.split.name.replace(".split.json", "") + ".test_scans.pkl")
    if args.limit:
        cache = cache.with_suffix(f".{args.limit}.pkl")
    scans = load_test_scans(args.split, cache, args.limit)
    results, timings = run(args.models, scans, args.threads)
    described = (
        f"{len(scans)} held-out scans of the training family x (original + left-right flip) = {len(results)} couples"
    )
    reps = {"thyroid": report(results, timings, args.models, described, "thyroid", args.threads)}
    worst = {"thyroid": (results, args.montage)}
    if args.independent:
        ind = load_independent_scans(args.independent, cache.with_name(f"independent.{args.independent}.pkl"))
        ind_results, ind_timings = run(args.models, ind, args.threads, flips=False)
        described = f"{len(ind)} scans of the independent family (seeds 0-{len(ind) - 1}), as acquired"
        reps["independent"] = report(ind_results, ind_timings, args.models, described, "independent", args.threads)
        worst["independent"] = (ind_results, args.montage_independent)
    rep = {**reps["thyroid"], "families": reps}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(rep, indent=1) + "\n", encoding="utf-8")
    montages = {}
    for family, (res, path) in worst.items():
        if path:
            montage(res, Path(path))
            montages[family] = path
    if args.markdown:
        md = Path(args.markdown)
        md.parent.mkdir(parents=True, exist_ok=True)
        md.write_text(markdown(reps, montages), encoding="utf-8")
    if args.update_cards:
        from .export import metrics_for, set_metrics

        # the folders of the models just evaluated (the ones the registry serves for each label)
        served = load_segmenter(args.models, providers=("CPUExecutionProvider",))
        for task in ("gland", "nodule"):
            set_metrics(served.model(task).card.folder, metrics_for(task, rep))
    for family, r in reps.items():
        print(family, json.dumps(r["overall"], indent=1), file=sys.stderr)
    print(f"wrote {args.json}, {args.markdown}, {', '.join(montages.values())}", file=sys.stderr)


if __name__ == "__main__":
    main()
