"""Under make test, a missing storescu or Chromium fails the suite instead of skipping it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: One integration test (needs storescu) and the browser tests' server fixture (needs Chromium).
TESTS = ["tests/integration/test_orthanc_plugin.py::test_ct_study_is_left_untouched", "tests/e2e"]


#: Kept out of the PATH of the inner pytest.
HIDDEN = {"storescu", "node", "nodejs"}


def path_without_tools(folder: Path) -> str:
    """A PATH of one folder linking every program of the current PATH but :data:`HIDDEN`."""
    folder.mkdir()
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        if not os.path.isdir(directory):
            continue
        for name in os.listdir(directory):
            target = Path(directory) / name
            if name not in HIDDEN and not (folder / name).exists() and os.access(target, os.X_OK):
                (folder / name).symlink_to(target)
    return str(folder)


def run_pytest(required: bool, path: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PATH": path,  # no storescu, no node
        "SCINTISEG_CHROMIUM": "/nonexistent/chromium",
        "SCINTISEG_TOOLS_REQUIRED": "1" if required else "0",
        "SCINTISEG_E2E_REQUIRED": "0",
    }
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfs", *TESTS],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )


def test_missing_tools_fail_under_make_test_and_skip_otherwise(tmp_path: Path) -> None:
    path = path_without_tools(tmp_path / "bin")
    strict = run_pytest(required=True, path=path)
    out = strict.stdout + strict.stderr
    assert strict.returncode != 0, out
    assert "a tool the suite needs is missing" in out and "storescu" in out and "Chromium" in out, out
    assert " skipped" not in out.splitlines()[-1], out
    lenient = run_pytest(required=False, path=path)
    out = lenient.stdout + lenient.stderr
    assert lenient.returncode == 0 and "skipped" in out.splitlines()[-1], out
