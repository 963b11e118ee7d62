"""ScintiSeg: the Orthanc Python plugin's entry script (``PythonScript``).

This is the only module that imports ``orthanc``. It makes the virtual
environment's packages importable, validates the ``ScintiSeg`` configuration
(a bad one stops Orthanc at start-up with a clear message), registers the
callbacks and hands everything else to :mod:`scintiseg.service`:

* ``ORTHANC_STARTED``: load the models, start the worker, scan for unfinished work;
* ``STABLE_STUDY``: queue the study (the callback does nothing else: all change
  callbacks share one thread in orthanc-python);
* ``ORTHANC_STOPPED``: stop the worker.

REST routes: ``GET /scintiseg/status`` (models, providers, queue) and
``POST /scintiseg/studies/{id}/process`` (queue a study again, retrying
failed images).

The virtual environment is ``$SCINTISEG_VENV`` or ``<repo>/.venv``; Orthanc's
embedded interpreter must be the one it was made from (same minor version).
"""

from __future__ import annotations

import json
import os
import re
import site
import sys
import threading
from pathlib import Path
from typing import Any

import orthanc  # the plugin's built-in module: importable before the venv is on sys.path

HERE = Path(__file__).resolve().parent


def _add_paths() -> None:
    """The venv's packages first (they must win over any system ones), then our package."""
    venv = Path(os.environ.get("SCINTISEG_VENV") or HERE.parent / ".venv")
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    packages = venv / "lib" / version / "site-packages"
    if packages.is_dir():
        before = list(sys.path)
        site.addsitedir(str(packages))  # also runs its .pth files
        sys.path[:] = [p for p in sys.path if p not in before] + before
    else:
        orthanc.LogError(
            f"ScintiSeg: no {version} virtual environment at {venv} (run 'make setup' or set SCINTISEG_VENV)"
        )
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))


_add_paths()

from scintiseg.config import ConfigError, load_config  # noqa: E402  (after _add_paths)
from scintiseg.gateway import OrthancGateway  # noqa: E402
from scintiseg.service import Service, install_orthanc_logging  # noqa: E402

try:
    CONFIG = load_config(json.loads(orthanc.GetConfiguration()))
except ConfigError as exc:
    orthanc.LogError(f"ScintiSeg: invalid configuration, Orthanc cannot start: {exc}")
    raise
install_orthanc_logging(orthanc, CONFIG.log_level)
SERVICE = Service(CONFIG, OrthancGateway(orthanc, CONFIG.result_metadata))

# Plugin API features differ between orthanc-python releases: detect, never assume.
# (Durable queues and the key-value store exist only in recent releases, orthanc-python >= 6;
# the study result lives in user metadata, which every release supports.)
FEATURES = {
    name: hasattr(orthanc, name)
    for name in ("EnqueueValue", "StoreKeyValue", "RegisterOnChangeCallback", "RegisterRestCallback")
}


_ORTHANC_ID = re.compile(r"[0-9a-f]{8}(-[0-9a-f]{8}){4}")


def on_change(change_type: int, level: int, resource_id: str) -> None:
    """Orthanc's change callback: enqueue or start/stop, and return at once."""
    try:
        if threading.current_thread().name.startswith("Dummy"):
            threading.current_thread().name = "orthanc-changes"  # for the log lines
        if change_type == orthanc.ChangeType.STABLE_STUDY:
            SERVICE.submit(resource_id)
        elif change_type == orthanc.ChangeType.ORTHANC_STARTED:
            SERVICE.start()
        elif change_type == orthanc.ChangeType.ORTHANC_STOPPED:
            SERVICE.stop()
    except Exception as exc:  # never let an exception reach Orthanc
        orthanc.LogError(f"ScintiSeg: error handling change {change_type} of {resource_id}: {exc}")


def _answer(output: Any, status: int, body: dict[str, Any]) -> None:
    text = json.dumps(body, indent=2)  # ASCII: json.dumps escapes the rest
    if status == 200:
        output.AnswerBuffer(text, "application/json")
    else:
        output.SetHttpHeader("Content-Type", "application/json")
        output.SendHttpStatus(status, text, len(text))


def rest_status(output: Any, uri: str, **request: Any) -> None:
    """``GET /scintiseg/status``: models, providers, queue, start-up scan."""
    if request.get("method") != "GET":
        output.SendMethodNotAllowed("GET")
        return
    _answer(output, 200, {**SERVICE.status(), "plugin_features": FEATURES})


def rest_process(output: Any, uri: str, **request: Any) -> None:
    """``POST /scintiseg/studies/{id}/process`` [``{"force": true}``]: queue the study again.

    Failed images are retried; ``force`` segments every image again.
    """
    if request.get("method") != "POST":
        output.SendMethodNotAllowed("POST")
        return
    study_id = str((request.get("groups") or [""])[0])
    if not _ORTHANC_ID.fullmatch(study_id):
        _answer(output, 400, {"error": "not an Orthanc study id", "status": 400})
        return
    try:
        body = json.loads(request.get("body") or b"{}")
    except ValueError:
        body = None
    if not isinstance(body, dict) or set(body) - {"force"} or not isinstance(body.get("force", False), bool):
        _answer(output, 400, {"error": 'the body must be empty or {"force": true|false}', "status": 400})
        return
    try:
        orthanc.RestApiGet(f"/studies/{study_id}")
    except Exception:
        _answer(output, 404, {"error": f"no study {study_id}", "status": 404})
        return
    force = bool(body.get("force", False))
    if not SERVICE.submit(study_id, retry_failed=True, force=force):
        _answer(output, 503, {"error": f"ScintiSeg is not running ({SERVICE.state})", "status": 503})
        return
    links = {"study": f"/studies/{study_id}"}
    _answer(output, 202, {"study": study_id, "queued": True, "force": force, "links": links})


orthanc.RegisterOnChangeCallback(on_change)
if FEATURES["RegisterRestCallback"]:
    orthanc.RegisterRestCallback("/scintiseg/status", rest_status)
    orthanc.RegisterRestCallback("/scintiseg/studies/([^/]+)/process", rest_process)
