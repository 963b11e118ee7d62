"""``scintiseg export --url URL --out DIR``: the dataset of a running Orthanc, into a folder.

The command-line face of :mod:`scintiseg.intake.datasets`: it reads a remote Orthanc over
HTTP (:class:`scintiseg.orthanc.httpapi.HttpApi` under the same
:class:`~scintiseg.orthanc.gateway.OrthancGateway` that the plugin uses in-process) and
writes the nnU-Net v2 raw layout, a progress bar on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from scintiseg.intake.datasets import ExportOptions, ProgressBar, export, folder_sink
from scintiseg.intake.labels import LabelIntake
from scintiseg.orthanc.gateway import OrthancGateway
from scintiseg.orthanc.httpapi import HttpApi

USER_ENV, PASSWORD_ENV = "SCINTISEG_ORTHANC_USER", "SCINTISEG_ORTHANC_PASSWORD"


def main(argv: Sequence[str] | None = None) -> int:
    """``scintiseg export --url URL --out DIR``: the dataset of a running Orthanc, into a folder."""
    ap = argparse.ArgumentParser(prog="scintiseg export", description=main.__doc__)
    ap.add_argument("--url", required=True, help="Orthanc's base URL, e.g. http://127.0.0.1:8042")
    ap.add_argument("--out", required=True, type=Path, help="dataset folder (nnU-Net v2 raw layout)")
    ap.add_argument("--user", default=os.environ.get(USER_ENV), help=f"Orthanc user (or ${USER_ENV})")
    ap.add_argument("--password", default=os.environ.get(PASSWORD_ENV), help=f"its password (or ${PASSWORD_ENV})")
    ap.add_argument("--no-flip", action="store_true", help="do not add the left-right mirrored couples")
    ap.add_argument("--test-fraction", type=float, default=0.2, help="share of patients in the test split")
    ap.add_argument("--labels-metadata", default="ScintiSegLabels", help="ScintiSeg.LabelsMetadata")
    ap.add_argument("--allow-identified", action="store_true",
                    help="also export images whose patient is not pseudonymous (Th_/ID_): their real identity "
                         "then appears in manifest.json")
    args = ap.parse_args(list(argv or []))
    if not 0 <= args.test_fraction < 1:
        ap.error("--test-fraction must lie in [0, 1)")
    gateway = OrthancGateway(HttpApi(args.url, args.user, args.password))
    intake = LabelIntake(gateway, args.labels_metadata)
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        dataset = export(intake, gateway, folder_sink(args.out),
                         ExportOptions(flip=not args.no_flip, test_fraction=args.test_fraction,
                                       allow_identified=args.allow_identified),
                         progress=ProgressBar(sys.stderr))
    except Exception as exc:  # the command's error boundary (Orthanc unreachable, refused, ...)
        print(f"scintiseg export: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"{dataset['numTraining']} couples in {args.out} (nnU-Net v2 raw layout, manifest.json)")
    return 0
