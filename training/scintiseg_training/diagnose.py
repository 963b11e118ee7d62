"""Where the segmentation error comes from: grid, noise, post-processing, nodule size.

Run on *validation* scans: seeds after the dataset's (``n_scans`` onwards by
default), in neither the training nor the test set, so nothing here tunes on
the test set. Four measurements, each against the truth on the source matrix:

1. **Grid ceiling.** The true masks taken to the 128 x 128 model grid (as
   training targets are) and mapped back the way the server maps logits: the
   best Dice a perfect model could reach through that grid (full window for
   the gland, gland window for nodules).
2. **Counting noise.** The served models on the same scans with Poisson noise
   (as served), with ten times the counts, and on the noise-free expected
   counts: how much of the error the noise explains.
3. **Post-processing variants.** Logit thresholds other than 0, and
   left-right flip test-time augmentation (mean of the logits of the image and
   of its mirror), for both models (for the gland, on its last pass).
4. **Cold nodules by size.** Per true nodule (connected component): the
   fraction of its pixels found, by equivalent diameter.

Usage::

    python -m scintiseg_training.diagnose --models models --scans 300 \\
        --json docs/diagnosis.json --markdown docs/diagnosis.md
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from scintiseg.models import postprocess
from scintiseg.models.preprocess import Window, full_window, gland_window, logits_to_source, mask_to_window
from scintiseg.models.registry import load_segmenter
from scintiseg.models.runtime import LoadedModel, OnnxModel, Segmenter, stage_input

from .evaluate import dice

#: Count scalings of measurement 2: served (Poisson), ten times the counts, noise-free.
NOISE_MODES = ("served", "counts_x10", "noise_free")
THRESHOLDS = (-1.0, -0.5, 0.0, 0.5, 1.0)
SIZE_BINS_MM = ((0.0, 8.0), (8.0, 12.0), (12.0, 18.0), (18.0, 100.0))


@contextlib.contextmanager
def counting(mode: str) -> Iterator[None]:
    """Generate scans with the given counting statistics (see :data:`NOISE_MODES`)."""
    from scintiseg_phantoms.thyroid import scan as scan_module

    served: Callable[..., np.ndarray] = scan_module.poisson_counts

    def noise_free(rng: np.random.Generator, expected: np.ndarray) -> np.ndarray:
        served(rng, expected)  # same random stream afterwards: same scan otherwise
        return np.asarray(expected, dtype=np.float32)

    def counts_x10(rng: np.random.Generator, expected: np.ndarray) -> np.ndarray:
        return served(rng, np.asarray(expected) * 10.0)

    replacement = {"served": served, "counts_x10": counts_x10, "noise_free": noise_free}[mode]
    scan_module.poisson_counts = replacement  # type: ignore[assignment]
    try:
        yield
    finally:
        scan_module.poisson_counts = served  # type: ignore[assignment]


def _grid_roundtrip(mask: np.ndarray, win: Window, size: int) -> np.ndarray:
    target = mask_to_window(mask, win, size)
    return logits_to_source(target - 0.5, win, mask.shape) > 0


def _logits(model: OnnxModel, image: np.ndarray, win: Window, tta: bool) -> np.ndarray:
    x = stage_input(model.stage, image, win)
    if tta:
        out = model.run(np.stack([x, x[:, ::-1]]))[:, 0]
        grid = (out[0] + out[1][:, ::-1]) / 2.0
    else:
        grid = model.run(x[None])[0, 0]
    return logits_to_source(grid, win, image.shape)


def _min_area(model: LoadedModel) -> float:
    """The minimum component area of a shipped model's post-processing (its first step's)."""
    return float(model.card.stages[0].post[0].params["min_component_mm2"])


def _gland_logits(seg: Segmenter, counts: np.ndarray, sp: float, tta: bool) -> np.ndarray:
    """Source-matrix logits of the served gland model's last pass (the second stage if it has one).

    The variants (threshold, flip) apply to that last pass; the first pass runs as served.
    """
    gland = seg.model("gland")
    first_stage, *later = gland.stages
    first = _logits(first_stage, counts, full_window(counts.shape), tta and not later)
    if not later:
        return first
    coarse = postprocess.clean_gland(first > first_stage.stage.threshold, sp, _min_area(gland))
    if not coarse.any():
        return first
    return _logits(later[0], counts, gland_window(coarse), tta)


def diagnose(models: Path, seeds: list[int], threads: int = 2) -> dict[str, Any]:
    from scintiseg_phantoms.thyroid import generate_scan

    seg = load_segmenter(models, providers=["CPUExecutionProvider"], threads=threads)
    gmodel, nmodel = seg.model("gland"), seg.model("nodule")
    gsize, nsize = gmodel.card.stages[0].size, nmodel.card.stages[0].size
    gmin, nmin = _min_area(gmodel), _min_area(nmodel)
    gthreshold = gmodel.card.stages[-1].threshold
    ceiling: dict[str, list[float]] = defaultdict(list)
    noise: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    variants: dict[str, list[float]] = defaultdict(list)
    sizes: list[tuple[float, float]] = []
    t0 = time.perf_counter()
    for i, seed in enumerate(seeds, 1):
        for mode in NOISE_MODES:
            with counting(mode):
                scan = generate_scan(seed)
            counts = np.asarray(scan.counts, dtype=np.float32)
            gland, nodules = np.asarray(scan.gland, bool), np.asarray(scan.nodules, bool)
            sp = float(scan.pixel_spacing_mm)
            res = seg.segment_frame(counts, sp)
            noise[mode]["gland"].append(dice(res.masks["gland"], gland))
            noise[mode][f"gland {scan.kind}"].append(dice(res.masks["gland"], gland))
            if nodules.any():
                noise[mode]["nodule"].append(dice(res.masks["nodule"], nodules))
            if mode != "served":
                continue
            # 1. grid ceiling
            full = _grid_roundtrip(gland, full_window(gland.shape), gsize)
            ceiling["gland"].append(dice(full, gland))
            if nodules.any():
                inner = _grid_roundtrip(nodules, gland_window(gland), nsize)
                ceiling["nodule"].append(dice(inner, nodules))
            # 3. post-processing variants
            for tta in (False, True):
                glog = _gland_logits(seg, counts, sp, tta)
                for th in THRESHOLDS:
                    g = postprocess.clean_gland(glog > th, sp, gmin)
                    variants[f"gland tta={int(tta)} threshold={th:+.1f}"].append(dice(g, gland))
                g = postprocess.clean_gland(glog > gthreshold, sp, gmin)
                nlog = _logits(nmodel.stages[0], counts, gland_window(g), tta)
                for th in THRESHOLDS:
                    nod = postprocess.clean_nodules(nlog > th, g, sp, nmin)
                    key = f"nodule tta={int(tta)} threshold={th:+.1f}"
                    if nodules.any():
                        variants[key].append(dice(nod, nodules))
                    else:
                        variants[key + " clean"].append(float(not nod.any()))
            # 4. nodules by size
            labels, n = ndimage.label(nodules, structure=np.ones((3, 3), dtype=bool))
            for k in range(1, n + 1):
                comp = labels == k
                diameter = 2.0 * float(np.sqrt(comp.sum() * sp * sp / np.pi))
                sizes.append((diameter, float((res.masks["nodule"] & comp).sum() / comp.sum())))
        if i % 25 == 0 or i == len(seeds):
            el = time.perf_counter() - t0
            eta = el / i * (len(seeds) - i)
            print(f"\r  scans {i}/{len(seeds)}  {el:5.0f}s  ETA {eta:5.0f}s", end="", file=sys.stderr)
    print(file=sys.stderr)

    def mean(v: list[float]) -> float:
        return round(float(np.mean(v)), 4) if v else float("nan")

    by_size = []
    for lo, hi in SIZE_BINS_MM:
        rec = [r for d, r in sizes if lo <= d < hi]
        by_size.append(
            {
                "diameter_mm": [lo, hi],
                "nodules": len(rec),
                "found_fraction_mean": mean(rec),
                "hit_rate": mean([float(r > 0.3) for r in rec]),
            }
        )
    return {
        "seeds": [seeds[0], seeds[-1]],
        "scans": len(seeds),
        "models": seg.model_idents,
        "grid_ceiling": {
            k: {"n": len(v), "dice_mean": mean(v), "dice_min": round(float(np.min(v)), 4)} for k, v in ceiling.items()
        },
        "counting_noise": {
            m: {k: {"n": len(d[k]), "dice_mean": mean(d[k])} for k in sorted(d, key=_row_order)}
            for m, d in noise.items()
        },
        "postprocess_variants": {
            k: {"n": len(variants[k]), "mean": mean(variants[k])} for k in sorted(variants, key=_variant_order)
        },
        "nodules_by_size": by_size,
        "seconds": round(time.perf_counter() - t0, 1),
    }


def _variant_order(key: str) -> tuple[str, bool, str, float]:
    """Model, Dice before clean fraction, flip augmentation, threshold."""
    model, tta, threshold, *rest = key.split()
    return (model, bool(rest), tta, float(threshold.split("=")[1]))


def _row_order(key: str) -> tuple[int, str]:
    """gland, nodule, then the gland per case kind."""
    return ({"gland": 0, "nodule": 1}.get(key, 2), key)


def markdown(rep: dict[str, Any]) -> str:
    lines = [
        "# Where the segmentation error comes from",
        "",
        f"Validation scans: seeds {rep['seeds'][0]}–{rep['seeds'][1]} ({rep['scans']} scans, original "
        "orientation), in neither the training nor the test set; models "
        + ", ".join(f"`{m}`" for m in rep["models"])
        + ". Generated by `python -m scintiseg_training.diagnose` (see `docs/training.md`).",
        "",
        "## 1. Grid ceiling (a perfect model seen through the 128 x 128 model grid)",
        "",
        "| mask | images | Dice mean | Dice min |",
        "|---|---|---|---|",
    ]
    for k, v in rep["grid_ceiling"].items():
        lines.append(f"| {k} | {v['n']} | {v['dice_mean']:.4f} | {v['dice_min']:.4f} |")
    lines += ["", "## 2. Counting noise (the served models on the same scans)", ""]
    modes = list(rep["counting_noise"])
    keys = list(rep["counting_noise"][modes[0]])
    lines.append("| Dice mean | images | " + " | ".join(m.replace("_", " ") for m in modes) + " |")
    lines.append("|---|---|" + "---|" * len(modes))
    for k in keys:
        cells = " | ".join(f"{rep['counting_noise'][m][k]['dice_mean']:.4f}" for m in modes)
        lines.append(f"| {k} | {rep['counting_noise'][modes[0]][k]['n']} | {cells} |")
    lines += ["", "## 3. Post-processing variants", "", "| variant | images | mean |", "|---|---|---|"]
    for k, v in rep["postprocess_variants"].items():
        lines.append(f"| {k} | {v['n']} | {v['mean']:.4f} |")
    lines += [
        "",
        "(`clean` rows: fraction of nodule-free images with no false nodule; others: Dice. The served "
        "setting is `tta=0 threshold=+0.0`.)",
        "",
        "## 4. Cold nodules by size",
        "",
        "| equivalent diameter (mm) | nodules | fraction of pixels found, mean | found (> 30 %) |",
        "|---|---|---|---|",
    ]
    for b in rep["nodules_by_size"]:
        lo, hi = b["diameter_mm"]
        span = f"≥ {lo:g}" if hi >= 100 else f"{lo:g}–{hi:g}"
        lines.append(f"| {span} | {b['nodules']} | {b['found_fraction_mean']:.2f} | {b['hit_rate']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", type=Path, default=Path("models"))
    ap.add_argument("--first-seed", type=int, default=2300, help="first validation seed (after the dataset's)")
    ap.add_argument("--scans", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=Path("docs/diagnosis.json"))
    ap.add_argument("--markdown", default="docs/diagnosis.md", help="'' for none")
    args = ap.parse_args(argv)
    seeds = list(range(args.first_seed, args.first_seed + args.scans))
    rep = diagnose(args.models, seeds, args.threads)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(rep, indent=1) + "\n", encoding="utf-8")
    if args.markdown:
        Path(args.markdown).write_text(markdown(rep), encoding="utf-8")
    print(f"wrote {args.json} {args.markdown} in {rep['seconds']} s", file=sys.stderr)


if __name__ == "__main__":
    main()
