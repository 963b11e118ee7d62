"""The wheel works on its own: built, installed in a fresh venv, and run.

The wheel is built from a copy of the package sources (``pip wheel``, no build
isolation: the dev venv's setuptools), then installed into a new venv without
system packages and without pip, offline: ``--no-index`` from the runtime
dependencies' wheels that ``make venv`` downloads into ``<venv>/wheelhouse``,
with the versions of ``constraints.txt``. So a dependency missing from
``pyproject.toml``, a module or data file left out of the wheel, or a path
computed from the package's own location fails here. Every step that cannot
run is a failure, never a skip. About 20 s on 2 cores, most of it the install.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pydicom
import pytest

import scintiseg

ROOT = Path(__file__).resolve().parents[2]
#: The sources that go into the wheel: pyproject's packages.find roots hold these packages.
SOURCES = {
    "plugin/scintiseg": "scintiseg",
    "phantoms/scintiseg_phantoms": "scintiseg_phantoms",
    "training/scintiseg_training": "scintiseg_training",
}
SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"

pytestmark = pytest.mark.slow


def run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def must(cmd: list[str], cwd: Path, env: dict[str, str], what: str) -> str:
    """Run ``cmd``; a non-zero exit fails the test with its output."""
    proc = run(cmd, cwd, env)
    if proc.returncode != 0:
        pytest.fail(f"{what} failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def clean_env(tmp: Path) -> dict[str, str]:
    """No pip configuration, no models folder, nothing of the checkout on the path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON", "SCINTISEG_", "VIRTUAL_ENV"))}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", HOME=str(tmp), PYTHONNOUSERSITE="1")
    return env


def build_wheel(tmp: Path, env: dict[str, str]) -> Path:
    src = tmp / "src"
    src.mkdir()
    shutil.copy2(ROOT / "pyproject.toml", src / "pyproject.toml")
    for folder in SOURCES:
        shutil.copytree(ROOT / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    must(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
         "-w", str(tmp / "dist"), str(src)],
        tmp, env, "building the wheel",
    )
    (wheel,) = (tmp / "dist").glob("scintiseg-*.whl")
    return wheel


def test_the_wheel_installs_in_a_fresh_venv_and_segments(tmp_path: Path, models_dir: Path) -> None:
    env = clean_env(tmp_path)
    wheelhouse = Path(sys.prefix) / "wheelhouse"
    if not any(wheelhouse.glob("onnxruntime-*.whl")):
        pytest.fail(f"no runtime wheels in {wheelhouse}: `make venv` downloads them")

    wheel = build_wheel(tmp_path, env)
    assert wheel.name == f"scintiseg-{scintiseg.__version__}-py3-none-any.whl"  # one version number
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        f"{package}/{init.relative_to(ROOT / folder).as_posix()}"
        for folder, package in SOURCES.items()
        for init in (ROOT / folder).rglob("__init__.py")
    }
    assert expected - names == set(), "every package and subpackage ships"
    assert "scintiseg/orthanc/explorer/scintiseg-explorer.js" in names
    assert not any(n.startswith(("tests/", "models/", "plugin/")) or n.endswith("scintiseg_plugin.py") for n in names)

    venv = tmp_path / "venv"
    must([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path, env, "creating the venv")
    python, command = venv / "bin" / "python", venv / "bin" / "scintiseg"
    must(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-index", "--no-compile",
         "--find-links", str(wheelhouse), "-c", str(ROOT / "constraints.txt"), str(wheel)],
        tmp_path, env, "installing the wheel offline",
    )

    # the installed package, its version and its data, from the venv and not from the checkout
    where = must(
        [str(python), "-c", "import importlib.metadata as m, scintiseg, scintiseg.orthanc.explorer as e; "
         "print(scintiseg.__file__, m.version('scintiseg'), scintiseg.__version__, 'scintiseg-panel' in e.script())"],
        tmp_path, env, "importing the installed package",
    ).split()
    assert Path(where[0]).is_relative_to(venv) and where[1:] == [scintiseg.__version__] * 2 + ["True"]
    assert must([str(command), "--version"], tmp_path, env, "scintiseg --version").strip() == (
        f"scintiseg {scintiseg.__version__}"
    )

    study = tmp_path / "study"
    must([str(command), "generate", "--out", str(study), "--count", "1", "--seed", "4321"],
         tmp_path, env, "scintiseg generate")
    (source,) = study.glob("*.dcm")

    # no models folder named: a clear error naming the three ways
    proc = run([str(command), "segment", str(study), "--out", str(tmp_path / "none")], tmp_path, env)
    assert proc.returncode == 2
    assert all(way in proc.stderr for way in ("--models", "SCINTISEG_MODELS", "ScintiSeg.ModelsDirectory"))

    out = tmp_path / "seg"
    printed = must([str(command), "segment", str(study), "--out", str(out), "--models", str(models_dir)],
                   tmp_path, env, "scintiseg segment")
    assert "1 segmented, 0 failed" in printed
    (seg_file,) = out.glob("SEG_*.dcm")
    seg = pydicom.dcmread(seg_file)
    src = pydicom.dcmread(source)
    assert seg.SOPClassUID == SEG_STORAGE and seg.StudyInstanceUID == src.StudyInstanceUID
    assert seg.SoftwareVersions == f"ScintiSeg {scintiseg.__version__}"
    assert len(seg.SegmentSequence) >= 1 and seg.PixelData
