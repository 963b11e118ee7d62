"""Nothing the plugin reads (DICOM files, model cards, REST bodies, metadata) is unpickled or
evaluated: the served code has no eval/exec/compile, no pickle/marshal/shelve, no unsafe YAML,
and every numpy load refuses pickles."""

from __future__ import annotations

import ast
from pathlib import Path

SERVED = Path(__file__).resolve().parents[2] / "plugin"
FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__"}
FORBIDDEN_MODULES = {"pickle", "cPickle", "dill", "marshal", "shelve", "joblib", "cloudpickle"}


def served_sources() -> list[Path]:
    files = sorted(SERVED.rglob("*.py"))
    assert len(files) > 20  # the whole package is scanned
    return files


def offences(source: str, name: str) -> list[str]:
    """What in ``source`` would run or unpickle data (one line each)."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source, name)):
        where = f"{name}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import | ast.ImportFrom):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            found += [f"{where} imports {m}" for m in modules if m.split(".")[0] in FORBIDDEN_MODULES]
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id in FORBIDDEN_CALLS:
            found.append(f"{where} calls {func.id}()")
        if isinstance(func, ast.Attribute) and func.attr == "load" and isinstance(func.value, ast.Name):
            if func.value.id == "yaml":
                found.append(f"{where} yaml.load (use yaml.safe_load)")
            pickle = {k.arg: k.value for k in node.keywords}.get("allow_pickle")
            if func.value.id in ("np", "numpy") and not (isinstance(pickle, ast.Constant) and pickle.value is False):
                found.append(f"{where} numpy.load without allow_pickle=False")
    return sorted(found, key=lambda o: int(o.split(":")[1].split()[0]))


def test_no_eval_no_pickle_in_the_served_code() -> None:
    found = [o for p in served_sources() for o in offences(p.read_text(encoding="utf-8"), str(p.relative_to(SERVED)))]
    assert found == []


def test_the_scan_catches_what_it_forbids() -> None:
    bad = "import pickle\nimport numpy as np\neval('1')\nnp.load('x.npy')\nnp.load('y', allow_pickle=False)\n"
    assert offences(bad, "bad.py") == [
        "bad.py:1 imports pickle", "bad.py:3 calls eval()", "bad.py:4 numpy.load without allow_pickle=False"
    ]
