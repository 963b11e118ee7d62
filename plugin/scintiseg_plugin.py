"""ScintiSeg: the Orthanc Python plugin's entry script (``PythonScript``).

This is the only module that imports ``orthanc``. It makes the virtual
environment's packages importable, validates the ``ScintiSeg`` configuration
(a bad one stops Orthanc at start-up with a clear message), registers the
callbacks and hands everything else to the objects that
:func:`scintiseg.app.assembly.assemble` builds (the service, the REST backend):

* ``ORTHANC_STARTED``: load the models, start the worker, scan for unfinished work;
* ``NEW_INSTANCE``: note the arrival for the stability tracker
  (:mod:`scintiseg.work.stability`, ``TrackStability``), which queues a study
  StableAge seconds after its last instance;
* ``STABLE_STUDY``: queue the study (Orthanc's own, whole-second stability: the
  authority and the backstop). These callbacks do nothing else: all change
  callbacks share one thread in orthanc-python;
* ``ORTHANC_STOPPED``: stop the worker.

HTTP routes (Orthanc REST callbacks, so Orthanc's authentication applies):

* the ``/scintiseg/`` API of :mod:`scintiseg.api.routes` (health, models, queue,
  studies, preview, process), answered by :class:`scintiseg.app.backend.PluginBackend`,
  plus ``GET /scintiseg/status`` (diagnostics: worker, start-up scan, plugin features);
* ``/ohif/...``: the OHIF viewer (:mod:`scintiseg.orthanc.ohif`), installed by
  ``scripts/setup-ohif.sh``; it reads Orthanc's DICOMweb plugin;
* Orthanc Explorer gets the script of :mod:`scintiseg.orthanc.explorer` (a ScintiSeg
  box on study pages).

The virtual environment is ``$SCINTISEG_VENV`` or ``<repo>/.venv``; Orthanc's
embedded interpreter must be the one it was made from (same minor version).
It holds the ``scintiseg`` package: the checkout's editable install
(``make venv``) or the wheel (the Docker image). Relative folders of the
configuration are taken from the folder holding ``plugin/``.
"""

from __future__ import annotations

import json
import os
import platform
import site
import sys
import threading
from pathlib import Path
from typing import Any

import orthanc  # the plugin's built-in module: importable before the venv is on sys.path

HERE = Path(__file__).resolve().parent


def _add_paths() -> None:
    """The venv's packages first: they must win over any system ones."""
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


_add_paths()

from scintiseg.api import routes as rest  # noqa: E402  (after _add_paths)
from scintiseg.app.assembly import assemble  # noqa: E402
from scintiseg.app.config import ConfigError, load_config  # noqa: E402
from scintiseg.orthanc import explorer, ohif  # noqa: E402
from scintiseg.orthanc.log import install_orthanc_logging  # noqa: E402

try:
    CONFIG = load_config(json.loads(orthanc.GetConfiguration()), root=HERE.parent)
except ConfigError as exc:
    orthanc.LogError(f"ScintiSeg: invalid configuration, Orthanc cannot start: {exc}")
    raise
install_orthanc_logging(orthanc, CONFIG.log_level)
try:
    PLUGIN = assemble(orthanc, CONFIG)
except ValueError as exc:
    orthanc.LogError(f"ScintiSeg: invalid configuration, Orthanc cannot start: ScintiSeg.WorkState: {exc}")
    raise
SERVICE = PLUGIN.service

# Plugin API features differ between orthanc-python releases: detect, never assume.
# (Durable queues and the key-value store exist only in recent releases, orthanc-python >= 6;
# the study result lives in user metadata, which every release supports, and so can the work
# state: scintiseg.work.workstate picks the most capable backend offered.)
FEATURES = {
    name: hasattr(orthanc, name)
    for name in (
        "EnqueueValue", "ReserveQueueValue", "AcknowledgeQueueValue", "StoreKeyValue",
        "RegisterOnChangeCallback", "RegisterRestCallback", "ExtendOrthancExplorer",
    )
}


def on_change(change_type: int, level: int, resource_id: str) -> None:
    """Orthanc's change callback: enqueue or start/stop, and return at once."""
    try:
        if threading.current_thread().name.startswith("Dummy"):
            threading.current_thread().name = "orthanc-changes"  # for the log lines
        if change_type == orthanc.ChangeType.NEW_INSTANCE:
            SERVICE.new_instance(resource_id)
        elif change_type == orthanc.ChangeType.STABLE_STUDY:
            SERVICE.submit(resource_id)
        elif change_type == orthanc.ChangeType.ORTHANC_STARTED:
            SERVICE.start()
        elif change_type == orthanc.ChangeType.ORTHANC_STOPPED:
            SERVICE.stop()
    except Exception as exc:  # never let an exception reach Orthanc
        orthanc.LogError(f"ScintiSeg: error handling change {change_type} of {resource_id}: {exc}")


#: Whether this orthanc-python takes SendHttpStatus(status, str, byte count), the form of 4.0
#: (Debian 12), rather than (status, bytes), the form of 4.2 and later (5.0 on Debian 13).
#: Learnt on the first error answer: each form is a TypeError in the other release, raised
#: before anything is sent. None until then.
_status_takes_size: bool | None = None


def _send_http_status(output: Any, status: int, body: bytes) -> None:
    """A status other than 200 with a body, in the form this plugin release takes."""
    global _status_takes_size
    if _status_takes_size is None:
        try:
            output.SendHttpStatus(status, body)
            _status_takes_size = False
            return
        except TypeError:
            _status_takes_size = True
    if _status_takes_size:
        # 4.0 takes a str whose length is the byte count: our error bodies are ASCII (JSON
        # with escapes, or plain English)
        text = body.decode("ascii", errors="replace")
        output.SendHttpStatus(status, text, len(text))
    else:
        output.SendHttpStatus(status, body)


def _send(output: Any, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
    """One answer through Orthanc's HTTP output (200 buffers; other codes as a status + body)."""
    for name, value in (headers or {}).items():
        output.SetHttpHeader(name, value)
    if status == 200:
        output.AnswerBuffer(body, content_type)
    else:
        output.SetHttpHeader("Content-Type", content_type)
        _send_http_status(output, status, body)


def rest_status(output: Any, uri: str, **request: Any) -> None:
    """``GET /scintiseg/status``: models, providers, queue, start-up scan (diagnostics)."""
    if request.get("method") != "GET":
        output.SendMethodNotAllowed("GET")
        return
    # "python": the interpreter the plugin embeds (3.11 on Debian 12, 3.13 on Debian 13)
    answer = {**SERVICE.status(), "plugin_features": FEATURES, "python": platform.python_version()}
    body = json.dumps(answer, indent=2).encode("ascii")
    _send(output, 200, body, "application/json")


def rest_api(output: Any, uri: str, **request: Any) -> None:
    """Every route of :mod:`scintiseg.api.routes` (``/scintiseg/...``), answered by :func:`rest.dispatch`."""
    method = str(request.get("method") or "GET")
    body = request.get("body")
    answer = rest.dispatch(PLUGIN.backend, method, uri, bytes(body) if body else None)
    if answer.status == 405:
        # Orthanc answers 405 itself, with the Allow header and no body (its plugin API
        # reserves that status to SendMethodNotAllowed)
        output.SendMethodNotAllowed(",".join(rest.allowed_methods(uri)))
        return
    _send(output, answer.status, answer.body, answer.content_type, {"Cache-Control": "no-cache"})


def ohif_site(output: Any, uri: str, **request: Any) -> None:
    """``/ohif/...``: the OHIF viewer's files, ``index.html`` for its client-side routes."""
    if request.get("method") != "GET":
        output.SendMethodNotAllowed("GET")
        return
    groups = request.get("groups") or []
    path = str(groups[0]) if groups else ""
    status, body, content_type = ohif.ohif_asset(CONFIG.ohif_dir, path)
    _send(output, status, body, content_type, {"Cache-Control": ohif.cache_control(path)})


def ohif_root(output: Any, uri: str, **request: Any) -> None:
    """``/ohif`` and ``/ohif/`` (Orthanc routes both here: it drops the trailing slash
    before matching, so a redirect to ``/ohif/`` would loop): the viewer's page, whose
    URLs are absolute under ``/ohif/``."""
    ohif_site(output, uri, **{**request, "groups": [""]})


orthanc.RegisterOnChangeCallback(on_change)
if FEATURES["RegisterRestCallback"]:
    orthanc.RegisterRestCallback("/scintiseg/status", rest_status)
    for route in rest.ORTHANC_ROUTES:
        orthanc.RegisterRestCallback(route, rest_api)
    orthanc.RegisterRestCallback(rest.FALLBACK_ROUTE, rest_api)
    orthanc.RegisterRestCallback("/ohif", ohif_root)
    orthanc.RegisterRestCallback("/ohif/(.*)", ohif_site)
if hasattr(orthanc, "ExtendOrthancExplorer"):
    orthanc.ExtendOrthancExplorer(explorer.script())
