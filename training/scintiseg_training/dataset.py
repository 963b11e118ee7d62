"""The training set: synthetic scans, each seen as-is and left-right flipped.

As in the original work, ``n_scans`` synthetic scans (seeds ``0 .. n_scans-1``
by default) give two image-mask couples each: the scan and its left-right
mirror. The split is made ONCE, by scan, from a hash of the seed, so a test
scan's mirror never lands in training: with the defaults 1900 training scans
(3800 couples) and 400 test scans (800 couples).

Every couple is preprocessed with the serving code (:mod:`scintiseg.models.preprocess`)
and cached in ``datasets/<name>.npz``:

* ``gland_x``: the full-window, normalised model input (float16);
* ``gland_y``: the fraction of each model pixel covered by the gland (uint8, /255);
* ``nodule_x``: the gland window computed from the TRUE gland mask; for the
  training couples the window is jittered a little (shift and size) so that
  the nodule model tolerates the imperfect gland predicted at serving time;
* ``nodule_y``: the soft cold-nodule target in that window (uint8, /255);
* ``gland_refine_y``: the soft gland target in that same window, for the gland
  model's second pass (``refine``), which sees the window around the first
  pass's gland as the nodule model does;
* ``seed``, ``flip``, ``kind``, ``test``, ``matrix``, ``pixel_spacing_mm``.

The scan seeds of each side of the split go to ``datasets/<name>.split.json``;
:mod:`scintiseg_training.evaluate` regenerates the test scans at source
resolution from it.

Usage::

    python -m scintiseg_training.dataset --name scintiseg --scans 2300 --test 400 --workers 2
    # or from the physician-labelled images of ScintiSeg's database (scintiseg export):
    python -m scintiseg_training.dataset --name department --export exports/department
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scintiseg.dicom.nifti import read_nifti
from scintiseg.models.preprocess import (
    Normalisation,
    Window,
    full_window,
    gland_window,
    mask_to_window,
    model_input,
)

#: Model input side for both models.
SIZE = 128
#: The normalisation written to the model cards and used here.
NORMALISATION = Normalisation(percentile=99.0, clip=1.5)
SPLIT_SALT = "scintiseg-split-v1"


def seed_hash(seed: int, salt: str = SPLIT_SALT) -> int:
    """A stable pseudo-random integer for a scan seed (independent of PYTHONHASHSEED)."""
    digest = hashlib.sha256(f"{salt}:{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def split_seeds(seeds: list[int], n_test: int, salt: str = SPLIT_SALT) -> tuple[list[int], list[int]]:
    """``(train, test)`` scan seeds: the ``n_test`` seeds with the smallest hash are test."""
    if not 0 <= n_test <= len(seeds):
        raise ValueError(f"cannot hold out {n_test} of {len(seeds)} scans")
    order = sorted(seeds, key=lambda s: seed_hash(s, salt))
    test = sorted(order[:n_test])
    train = sorted(order[n_test:])
    return train, test


def jitter_window(window: Window, rng: np.random.Generator) -> Window:
    """A window moved by up to ~5 % of its side and resized by -10 % .. +15 %."""
    side = window.side * float(rng.uniform(0.90, 1.15))
    cy = window.top + window.side / 2 + float(rng.normal(0.0, 0.04)) * window.side
    cx = window.left + window.side / 2 + float(rng.normal(0.0, 0.04)) * window.side
    return Window(top=cy - side / 2, left=cx - side / 2, side=side)


@dataclass
class Couple:
    seed: int
    flip: bool
    kind: str
    matrix: int
    pixel_spacing_mm: float
    gland_x: np.ndarray
    gland_y: np.ndarray
    nodule_x: np.ndarray
    nodule_y: np.ndarray
    gland_refine_y: np.ndarray


def _to_u8(a: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8)


def couple_from_arrays(
    counts: np.ndarray, gland: np.ndarray, nodules: np.ndarray, *, seed: int, flip: bool, kind: str,
    pixel_spacing_mm: float, jitter: bool, size: int = SIZE,
) -> Couple:
    """One preprocessed couple from a frame's counts and its gland and nodule masks."""
    counts = np.asarray(counts, dtype=np.float32)
    gland, nodules = np.asarray(gland, dtype=bool), np.asarray(nodules, dtype=bool)
    fw = full_window((counts.shape[0], counts.shape[1]))
    gw = gland_window(gland)
    if jitter:
        rng = np.random.default_rng([seed, int(flip), 7])
        gw = jitter_window(gw, rng)
    return Couple(
        seed=seed,
        flip=flip,
        kind=kind,
        matrix=int(max(counts.shape)),
        pixel_spacing_mm=float(pixel_spacing_mm),
        gland_x=model_input(counts, fw, size, NORMALISATION).astype(np.float16),
        gland_y=_to_u8(mask_to_window(gland, fw, size)),
        nodule_x=model_input(counts, gw, size, NORMALISATION).astype(np.float16),
        nodule_y=_to_u8(mask_to_window(nodules, gw, size)),
        gland_refine_y=_to_u8(mask_to_window(gland, gw, size)),
    )


def couples_for_scan(seed: int, jitter: bool, size: int = SIZE) -> list[Couple]:
    """The two preprocessed couples (original, left-right flip) of scan ``seed``."""
    from scintiseg_phantoms.thyroid import generate_scan

    scan = generate_scan(seed)
    out = []
    for flip in (False, True):
        counts = np.asarray(scan.counts, dtype=np.float32)
        gland = np.asarray(scan.gland, dtype=bool)
        nodules = np.asarray(scan.nodules, dtype=bool)
        if flip:
            counts, gland, nodules = counts[:, ::-1], gland[:, ::-1], nodules[:, ::-1]
        out.append(couple_from_arrays(counts, gland, nodules, seed=seed, flip=flip, kind=str(scan.kind),
                                      pixel_spacing_mm=float(scan.pixel_spacing_mm), jitter=jitter, size=size))
    return out


def _work(args: tuple[int, bool]) -> list[Couple]:
    seed, jitter = args
    return couples_for_scan(seed, jitter)


def build(
    out: Path,
    seeds: list[int],
    n_test: int,
    workers: int = 2,
    log_every: int = 50,
) -> dict[str, Any]:
    """Generate, preprocess and cache the dataset; returns the split dictionary."""
    train, test = split_seeds(seeds, n_test)
    test_set = set(test)
    jobs = [(s, s not in test_set) for s in seeds]
    couples: list[Couple] = []
    t0 = time.perf_counter()
    total = len(jobs)

    def progress(done: int) -> None:
        el = time.perf_counter() - t0
        eta = el / max(done, 1) * (total - done)
        print(
            f"\r  scans {done}/{total}  {el:6.0f}s elapsed  ETA {eta:5.0f}s",
            end="",
            file=sys.stderr,
        )

    if workers > 1:
        with mp.get_context("fork").Pool(workers) as pool:
            for i, res in enumerate(pool.imap(_work, jobs, chunksize=4), 1):
                couples.extend(res)
                if i % log_every == 0 or i == total:
                    progress(i)
    else:
        for i, job in enumerate(jobs, 1):
            couples.extend(_work(job))
            if i % log_every == 0 or i == total:
                progress(i)
    print(file=sys.stderr)
    save_couples(out, couples, test_set)
    split = {
        "salt": SPLIT_SALT,
        "n_scans": len(seeds),
        "train": train,
        "test": test,
        "couples_per_scan": ["original", "left-right flip"],
        "size": SIZE,
        "normalisation": {"percentile": NORMALISATION.percentile, "clip": NORMALISATION.clip},
        "seconds": round(time.perf_counter() - t0, 1),
    }
    split_path(out).write_text(json.dumps(split, indent=1), encoding="utf-8")
    return split


def save_couples(out: Path, couples: list[Couple], test_set: set[int]) -> None:
    """Cache the couples in ``out`` (.npz); a couple is a test couple when its seed is in ``test_set``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        out,
        gland_x=np.stack([c.gland_x for c in couples]),
        gland_y=np.stack([c.gland_y for c in couples]),
        nodule_x=np.stack([c.nodule_x for c in couples]),
        nodule_y=np.stack([c.nodule_y for c in couples]),
        gland_refine_y=np.stack([c.gland_refine_y for c in couples]),
        seed=np.array([c.seed for c in couples], dtype=np.int64),
        flip=np.array([c.flip for c in couples], dtype=bool),
        kind=np.array([c.kind for c in couples]),
        test=np.array([c.seed in test_set for c in couples], dtype=bool),
        matrix=np.array([c.matrix for c in couples], dtype=np.int32),
        pixel_spacing_mm=np.array([c.pixel_spacing_mm for c in couples], dtype=np.float32),
    )


def patient_seed(patient_id: str) -> int:
    """A stable integer standing for a patient, so that couples group by patient like scans by seed."""
    return int.from_bytes(hashlib.sha256(f"patient:{patient_id}".encode()).digest()[:7], "big")


def build_from_export(export_dir: Path, out: Path) -> dict[str, Any]:
    """Cache an export of ``scintiseg export`` (nnU-Net v2 raw layout + manifest.json) like :func:`build`.

    The export's couples are used as they are (its mirrored couples included: no second
    flip), its ``split`` decides the test couples, and the ``seed`` of a couple stands for its
    patient, so that validation also holds out whole patients.
    """
    t0 = time.perf_counter()
    manifest = json.loads((export_dir / "manifest.json").read_text(encoding="utf-8"))
    couples: list[Couple] = []
    test_set: set[int] = set()
    for case in manifest["cases"]:
        counts, spacing = read_nifti((export_dir / "imagesTr" / f"{case['case']}_0000.nii.gz").read_bytes())
        labels, _ = read_nifti((export_dir / "labelsTr" / f"{case['case']}.nii.gz").read_bytes())
        seed = patient_seed(str(case["patient"]))
        test = case["split"] == "test"
        if test:
            test_set.add(seed)
        couples.append(couple_from_arrays(counts, labels >= 1, labels == 2, seed=seed, flip=bool(case["flipped"]),
                                          kind="export", pixel_spacing_mm=spacing[1], jitter=not test))
    if not couples:
        raise SystemExit(f"{export_dir} holds no couple")
    save_couples(out, couples, test_set)
    split = {
        "export": str(export_dir),
        "n_cases": len(couples),
        "train": sorted({c["patient"] for c in manifest["cases"] if c["split"] == "train"}),
        "test": sorted({c["patient"] for c in manifest["cases"] if c["split"] == "test"}),
        "size": SIZE,
        "normalisation": {"percentile": NORMALISATION.percentile, "clip": NORMALISATION.clip},
        "seconds": round(time.perf_counter() - t0, 1),
    }
    split_path(out).write_text(json.dumps(split, indent=1), encoding="utf-8")
    return split


def split_path(npz: Path) -> Path:
    """``datasets/<name>.split.json`` beside ``datasets/<name>.npz``."""
    return npz.with_name(npz.name.removesuffix(".npz") + ".split.json")


@dataclass
class Arrays:
    """The cached dataset, for one task."""

    x: np.ndarray  # (N, 128, 128) float16
    y: np.ndarray  # (N, 128, 128) uint8, soft target * 255
    seed: np.ndarray
    flip: np.ndarray
    kind: np.ndarray
    test: np.ndarray


#: Training tasks and the cached arrays (input, target) each one learns from.
TASK_ARRAYS = {
    "gland": ("gland_x", "gland_y"),
    "nodule": ("nodule_x", "nodule_y"),
    "gland_refine": ("nodule_x", "gland_refine_y"),
}


def load(npz: Path, task: str) -> Arrays:
    if task not in TASK_ARRAYS:
        raise ValueError(f"task must be one of {', '.join(TASK_ARRAYS)}, got {task!r}")
    x_key, y_key = TASK_ARRAYS[task]
    with np.load(npz) as d:
        if y_key not in d:
            raise SystemExit(f"{npz} has no {y_key}: rebuild it with scintiseg_training.dataset")
        return Arrays(
            x=d[x_key],
            y=d[y_key],
            seed=d["seed"],
            flip=d["flip"],
            kind=d["kind"],
            test=d["test"],
        )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--name", default="scintiseg", help="writes datasets/<name>.npz")
    ap.add_argument("--datasets", type=Path, default=Path("datasets"))
    ap.add_argument("--scans", type=int, default=2300)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--test", type=int, default=400, help="scans held out for testing")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--export", type=Path, default=None,
                    help="build from a dataset export (scintiseg export --url ... --out DIR) instead of phantoms")
    args = ap.parse_args(argv)
    out = args.datasets / f"{args.name}.npz"
    if args.export is not None:
        summary = build_from_export(args.export, out)
        print(f"wrote {out} ({summary['n_cases']} couples of {len(summary['train'])} training and "
              f"{len(summary['test'])} test patients) from {args.export}", file=sys.stderr)
        return
    seeds = list(range(args.first_seed, args.first_seed + args.scans))
    print(
        f"building {out}: {len(seeds)} scans, {args.test} held out, {args.workers} workers",
        file=sys.stderr,
    )
    split = build(out, seeds, args.test, workers=args.workers)
    print(
        f"wrote {out} ({2 * len(split['train'])} train + {2 * len(split['test'])} test couples) "
        f"and {split_path(out)} in {split['seconds']} s",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
