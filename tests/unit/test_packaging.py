"""What ships: the Docker image, the Orthanc configuration and the entry script agree."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from scintiseg.config import DEFAULTS, SECTION, load_config, strip_json_comments

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"

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


def requirement_files(path: Path) -> list[Path]:
    """``path`` and the files it includes with ``-r``, depth first."""
    files = [path]
    for line in path.read_text().splitlines():
        m = re.match(r"^\s*(-r|--requirement)\s+(\S+)", line)
        if m:
            files += requirement_files(path.parent / m.group(2))
    return files


def test_image_installs_the_requirements_make_setup_installs() -> None:
    steps = dockerfile_instructions()
    copies = [args for op, args in steps if op == "COPY"]
    assert any(args.split()[0] == "requirements.txt" for args in copies)
    runs = " ".join(args for op, args in steps if op == "RUN")
    installed = re.findall(r"pip install [^&]*?-r\s+(\S+)", runs)
    assert installed == ["requirements.txt"], installed
    makefile = (ROOT / "Makefile").read_text()
    assert "pip install -q -r requirements-dev.txt" in makefile
    assert ROOT / "requirements.txt" in requirement_files(ROOT / "requirements-dev.txt")


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
    copied = {args.split()[0] for op, args in steps if op == "COPY"}
    assert {"plugin/", "models/", "orthanc.json"} <= copied


def test_orthanc_json_parses_and_its_section_is_valid() -> None:
    config = orthanc_config()
    parsed = load_config(config, environ={})
    assert parsed.result_metadata in config["UserMetadata"]
    assert 1 <= config["StableAge"] <= 10, "a short StableAge keeps results seconds after the C-STORE"


def test_orthanc_json_documents_every_option_with_its_default() -> None:
    section = orthanc_config()[SECTION]
    assert set(section) == set(DEFAULTS)
    assert section == DEFAULTS, "orthanc.json must show the defaults of scintiseg.config"


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
