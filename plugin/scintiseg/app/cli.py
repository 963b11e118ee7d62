"""The ``scintiseg`` command line.

``scintiseg segment INPUT... --out DIR [--models DIR]``
    DICOM files or folders in; one SEG per source NM instance out, and one
    summary line per image. Inputs that are not NM images or cannot be read
    get a message and are skipped; the exit code is 1 if any input failed.
    The models folder is ``--models``, else ``$SCINTISEG_MODELS``.
``scintiseg generate --out DIR``
    A synthetic study set (NM Image Storage files) for demos and tests
    (the phantom package ``scintiseg_phantoms``).
``scintiseg train|evaluate|export|dataset ...``
    The training commands of ``scintiseg_training`` (need ``scintiseg[training]``: torch, onnx).
``scintiseg export --url URL --out DIR [--user U --password P]``
    With ``--url``: the physician-labelled images of a running Orthanc as an nnU-Net v2 raw
    dataset (:mod:`scintiseg.intake.datasets`); without it, ``export`` exports a trained model.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TextIO

import pydicom
from pydicom.errors import InvalidDicomError

from scintiseg import __version__
from scintiseg.app.config import MODELS_ENV, MODELS_HINT, ConfigError, models_folder
from scintiseg.app.export import main as export_dataset
from scintiseg.dicom.nm import NotNMImageError, SkippedImageError, UnreadableImageError, is_nm_image
from scintiseg.models.runtime import DEFAULT_PROVIDERS
from scintiseg.pipeline.image import OutputOptions, Pipeline

log = logging.getLogger("scintiseg")

TRAINING_COMMANDS = {
    "dataset": "scintiseg_training.dataset",
    "train": "scintiseg_training.train",
    "evaluate": "scintiseg_training.evaluate",
    "export": "scintiseg_training.export",
}


def resolve_models_dir(given: str | None) -> Path:
    """``--models``, else ``$SCINTISEG_MODELS``: an existing folder, or :class:`ConfigError` saying how to name one."""
    folder = models_folder(given, os.environ)
    if not folder.is_dir():
        source = "--models" if given else f"${MODELS_ENV}"
        raise ConfigError(f"cannot load the models: the folder {folder} ({source}) does not exist; {MODELS_HINT}")
    return folder


def iter_inputs(paths: Sequence[str]) -> Iterator[Path]:
    """Files named, and every file below folders named, in sorted order."""
    for p in map(Path, paths):
        if p.is_dir():
            yield from sorted(f for f in p.rglob("*") if f.is_file())
        else:
            yield p


class Progress:
    """A one-line progress bar on a terminal, silent elsewhere and for few items."""

    def __init__(self, total: int, stream: TextIO, min_items: int = 10) -> None:
        self.total = total
        self.stream = stream
        self.enabled = total >= min_items and stream.isatty()
        self.start = time.perf_counter()

    def update(self, done: int) -> None:
        if not self.enabled:
            return
        width = 30
        filled = int(width * done / max(1, self.total))
        elapsed = time.perf_counter() - self.start
        eta = elapsed / done * (self.total - done) if done else 0.0
        self.stream.write(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} ETA {eta:5.1f}s"
        )
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


def cmd_segment(args: argparse.Namespace) -> int:
    try:
        models_dir = resolve_models_dir(args.models)
    except ConfigError as exc:
        print(f"scintiseg segment: {exc}", file=sys.stderr)
        return 2
    files = list(iter_inputs(args.inputs))
    if not files:
        print("scintiseg: no input files", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    providers = args.providers.split(",") if args.providers else list(DEFAULT_PROVIDERS)
    pipeline = Pipeline.from_models_dir(
        models_dir, providers=providers, options=OutputOptions(series_number=args.series_number)
    )
    for entry in pipeline.model_set.entries:
        if entry.stage == "refused":
            print(f"scintiseg: model folder {entry.folder} refused: {entry.error}", file=sys.stderr)
    if not pipeline.models:
        print(f"scintiseg: cannot load the models: no usable model in {models_dir}", file=sys.stderr)
        return 2
    models, used = ", ".join(pipeline.models), ", ".join(pipeline.model_set.providers)
    print(f"models: {models}; providers: {used}")
    failed = 0
    done = 0
    progress = Progress(len(files), sys.stderr)
    for i, path in enumerate(files, 1):
        try:
            try:
                ds = pydicom.dcmread(path)
            except (InvalidDicomError, OSError, ValueError) as exc:
                raise UnreadableImageError(f"not a readable DICOM file ({exc})") from exc
            if not is_nm_image(ds):
                raise NotNMImageError(
                    f"not an NM image (Modality {getattr(ds, 'Modality', '?')}, "
                    f"SOP class {getattr(ds, 'SOPClassUID', '?')})"
                )
            result = pipeline.process(ds)
        except (SkippedImageError, UnreadableImageError) as exc:  # NoModelApplies is a SkippedImageError
            failed += 1
            print(f"SKIP {path}: {exc}", file=sys.stderr)
        except Exception as exc:  # one error boundary per input: report and go on
            failed += 1
            log.debug("failure on %s", path, exc_info=True)
            print(f"FAIL {path}: {type(exc).__name__}: {exc}", file=sys.stderr)
        else:
            done += 1
            target = out / f"SEG_{result.seg.SOPInstanceUID}.dcm"
            result.seg.save_as(target, enforce_file_format=True)
            print(summary_line(path, result.frames, result.timings_ms["total_ms"], target))
        progress.update(i)
    progress.close()
    print(f"{done} segmented, {failed} failed or skipped, SEG files in {out}")
    return 1 if failed else 0


def summary_line(path: Path, frames: list[dict], total_ms: float, target: Path) -> str:
    """``path: gland 1234.5 mm², nodule 2, 45 ms -> SEG file`` (per frame when several).

    Each label says its area (or pixels), or its count when it counts components.
    """
    parts = []
    for f in frames:
        items = []
        for key, figures in (f.get("labels") or {}).items():
            if "count" in figures:
                items.append(f"{key} {figures['count']}")
            elif figures.get("area_mm2") is not None:
                items.append(f"{key} {figures['area_mm2']:.1f} mm²")
            else:
                items.append(f"{key} {figures.get('pixels', 0)} px")
        prefix = f"frame {f['frame']}: " if len(frames) > 1 else ""
        parts.append(prefix + ", ".join(items))
    return f"{path}: {'; '.join(parts)}, {total_ms:.0f} ms -> {target.name}"


def cmd_generate(args: argparse.Namespace) -> int:
    try:
        from scintiseg_phantoms.dicom import scan_to_dataset, study_uids
        from scintiseg_phantoms.thyroid import generate_scan
    except ImportError as exc:
        print(
            f"scintiseg generate: the phantom package scintiseg_phantoms is not installed ({exc}); "
            "it ships in the scintiseg wheel and in the checkout's `make venv`",
            file=sys.stderr,
        )
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.frames < 1:
        print("scintiseg generate: --frames must be at least 1", file=sys.stderr)
        return 2
    progress = Progress(args.count, sys.stderr)
    for i in range(args.count):
        seed = args.seed + i
        scan = generate_scan(seed, kind=args.kind)
        study, series, (sop,) = study_uids(seed, 1)
        # several frames: repeated static views of the same neck (one per detector)
        ds = scan_to_dataset(
            [scan] * args.frames if args.frames > 1 else scan,
            patient_id=f"SYN{seed:08d}",
            patient_name=f"SYNTHETIC^CASE{seed}",
            study_uid=study,
            series_uid=series,
            sop_uid=sop,
        )
        ds.save_as(out / f"NM_{seed:05d}_{scan.kind}.dcm", enforce_file_format=True)
        progress.update(i + 1)
    progress.close()
    print(f"{args.count} synthetic NM studies in {out}")
    return 0


def run_training_command(name: str, argv: Sequence[str]) -> int:
    try:
        module = importlib.import_module(TRAINING_COMMANDS[name])
    except ImportError as exc:
        print(
            f"scintiseg {name}: the training tools are not installed ({exc}); "
            "install scintiseg[training] (torch, onnx), or run `make venv` in the checkout",
            file=sys.stderr,
        )
        return 2
    return int(module.main(list(argv)) or 0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scintiseg", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"scintiseg {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True)

    seg = sub.add_parser("segment", help="segment NM DICOM files into DICOM-SEG files")
    seg.add_argument("inputs", nargs="+", help="DICOM files or folders")
    seg.add_argument("--out", required=True, help="folder for the SEG files")
    seg.add_argument("--models", default=None, help=f"models folder (default: ${MODELS_ENV})")
    seg.add_argument(
        "--providers", default="", help="onnxruntime execution providers, comma-separated"
    )
    seg.add_argument("--series-number", type=int, default=9901, help="SEG series number")
    seg.set_defaults(func=cmd_segment)

    gen = sub.add_parser("generate", help="write synthetic thyroid scintigraphy studies")
    gen.add_argument("--out", required=True, help="output folder")
    gen.add_argument("--count", type=int, default=10, help="number of studies")
    gen.add_argument("--seed", type=int, default=1000, help="first seed")
    gen.add_argument("--kind", default=None, help="force a case kind (see docs/synthetic-data.md)")
    gen.add_argument("--frames", type=int, default=1, help="frames per NM instance")
    gen.set_defaults(func=cmd_generate)

    for name in TRAINING_COMMANDS:
        p = sub.add_parser(name, help=f"training: {name} (see docs/training.md)", add_help=False)
        p.add_argument("args", nargs=argparse.REMAINDER)
        p.set_defaults(func=None, training=name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "export" and any(a == "--url" or a.startswith("--url=") for a in argv[1:]):
        return export_dataset(argv[1:])  # the dataset of a running Orthanc
    if argv and argv[0] in TRAINING_COMMANDS:
        return run_training_command(argv[0], argv[1:])
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
