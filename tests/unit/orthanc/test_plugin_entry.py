"""The entry script with a stand-in ``orthanc`` module: config at load, events, REST routes."""

from __future__ import annotations

import importlib
import json
import logging
import platform
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import ROOT

from scintiseg.app.config import ConfigError

PLUGIN_DIR = ROOT / "plugin"
STUDY = "27f7126f-4f66fb14-03f4081b-f9341db2-53925988"


class Output:
    def __init__(self) -> None:
        self.body: str | None = None
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self.mime = ""
        self.redirect = ""
        self.allowed = ""

    def AnswerBuffer(self, body: Any, mime: str) -> None:  # noqa: N802  (orthanc's names)
        self.body, self.status, self.mime = body, 200, mime

    def Redirect(self, target: str) -> None:  # noqa: N802
        self.redirect, self.status = target, 301

    def SendHttpStatus(self, code: int, body: str, size: int) -> None:  # noqa: N802  (orthanc-python 4.0)
        assert size == len(body.encode())
        self.body, self.status = body, code

    def SetHttpHeader(self, key: str, value: str) -> None:  # noqa: N802
        self.headers[key] = value

    def SendMethodNotAllowed(self, allowed: str) -> None:  # noqa: N802
        self.status, self.allowed = 405, allowed

    def SendHttpStatusCode(self, code: int) -> None:  # noqa: N802
        self.status = code


class Output50(Output):
    """The answer object of orthanc-python 4.2 and later (5.0 on Debian 13): SendHttpStatus
    takes the status and a bytes-like body (``Hz*``), and refuses 4.0's three arguments."""

    def SendHttpStatus(self, code: int, body: Any) -> None:  # type: ignore[override]  # noqa: N802
        self.body, self.status = (body.encode() if isinstance(body, str) else bytes(body)), code


def fake_orthanc(config: dict[str, Any]) -> types.ModuleType:
    mod = types.ModuleType("orthanc")
    mod.callbacks = {}  # type: ignore[attr-defined]
    mod.routes = {}  # type: ignore[attr-defined]
    mod.logs = []  # type: ignore[attr-defined]
    mod.ChangeType = types.SimpleNamespace(NEW_INSTANCE=2, STABLE_STUDY=8, ORTHANC_STARTED=10, ORTHANC_STOPPED=11)  # type: ignore[attr-defined]
    mod.GetConfiguration = lambda: json.dumps(config)  # type: ignore[attr-defined]
    mod.RegisterOnChangeCallback = lambda cb: mod.callbacks.__setitem__("change", cb)  # type: ignore[attr-defined]
    mod.RegisterRestCallback = lambda uri, cb: mod.routes.__setitem__(uri, cb)  # type: ignore[attr-defined]
    mod.RestApiGet = lambda uri: b"{}"  # type: ignore[attr-defined]
    mod.explorer = None  # type: ignore[attr-defined]
    mod.ExtendOrthancExplorer = lambda js: setattr(mod, "explorer", js)  # type: ignore[attr-defined]
    for name in ("LogInfo", "LogWarning", "LogError"):
        setattr(mod, name, lambda msg, _n=name: mod.logs.append((_n, msg)))
    return mod


@pytest.fixture
def load_plugin(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    logger = logging.getLogger("scintiseg")  # the plugin routes it to Orthanc: restore it after
    saved = (list(logger.handlers), logger.propagate, logger.level)

    def load(config: dict[str, Any]) -> tuple[types.ModuleType, types.ModuleType]:
        mod = fake_orthanc(config)
        monkeypatch.setitem(sys.modules, "orthanc", mod)
        monkeypatch.syspath_prepend(str(PLUGIN_DIR))
        sys.modules.pop("scintiseg_plugin", None)
        return importlib.import_module("scintiseg_plugin"), mod

    yield load
    sys.modules.pop("scintiseg_plugin", None)
    logger.handlers[:] = saved[0]
    logger.propagate, logger.level = saved[1], saved[2]


def test_bad_configuration_stops_loading_with_a_clear_message(load_plugin: Any) -> None:
    with pytest.raises(ConfigError, match="did you mean 'WorkerThreads'"):
        load_plugin({"UserMetadata": {"ScintiSegResult": 4242}, "ScintiSeg": {"WorkerThread": 2}})
    mod = sys.modules["orthanc"]
    assert any("invalid configuration" in msg for _, msg in mod.logs)  # type: ignore[attr-defined]


def test_callbacks_route_events_and_rest(load_plugin: Any, tmp_path: Path) -> None:
    config = {
        "UserMetadata": {"ScintiSegResult": 4242},
        "ScintiSeg": {"ModelsDirectory": str(tmp_path), "OhifDirectory": str(tmp_path / "no-ohif")},
    }
    plugin, mod = load_plugin(config)
    routes = mod.routes  # type: ignore[attr-defined]
    assert set(routes) == {"/scintiseg/status", "/ohif", "/ohif/(.*)", plugin.rest.FALLBACK_ROUTE,
                           *plugin.rest.ORTHANC_ROUTES}
    # Orthanc takes the first registered regex that matches: the fallback comes after ours
    order = list(routes)
    assert all(order.index(r) < order.index(plugin.rest.FALLBACK_ROUTE)
               for r in ("/scintiseg/status", *plugin.rest.ORTHANC_ROUTES))
    assert mod.explorer and "scintiseg-panel" in mod.explorer  # type: ignore[attr-defined]
    change = mod.callbacks["change"]  # type: ignore[attr-defined]
    change(mod.ChangeType.ORTHANC_STARTED, 4, "")  # type: ignore[attr-defined]
    # no models in tmp_path: the plugin stays off, Orthanc is not disturbed
    assert plugin.SERVICE.state == "failed" and "no model can serve" in plugin.SERVICE.error
    assert any(level == "LogError" and "ScintiSeg is OFF" in msg for level, msg in mod.logs)  # type: ignore[attr-defined]
    change(mod.ChangeType.STABLE_STUDY, 1, STUDY)  # type: ignore[attr-defined]
    change(mod.ChangeType.NEW_INSTANCE, 3, "instance-id")  # type: ignore[attr-defined]
    assert not any("error handling change" in msg for _, msg in mod.logs)  # type: ignore[attr-defined]
    out = Output()
    routes["/scintiseg/status"](out, "/scintiseg/status", method="GET")
    status = json.loads(out.body or "{}")
    assert status["state"] == "failed" and "plugin_features" in status

    # the /scintiseg/ API goes through rest.dispatch, whatever route matched
    api = routes["/scintiseg/studies/([^/]+)/process"]
    out = Output()
    api(out, "/scintiseg/health", method="GET")
    assert out.status == 503 and json.loads(out.body or "{}")["state"] == "failed"
    assert out.headers["Content-Type"] == "application/json"
    out = Output()
    api(out, "/scintiseg/studies/../../system/process", method="POST", groups=["../../system"])
    assert out.status == 404
    out = Output()
    api(out, f"/scintiseg/studies/{STUDY}/process", method="POST", groups=[STUDY], body=b'{"force": "yes"}')
    assert out.status == 400 and "force" in json.loads(out.body or "{}")["error"]
    out = Output()
    api(out, f"/scintiseg/studies/{STUDY}/process", method="POST", groups=[STUDY], body=b"")
    assert out.status == 503, "models not loaded: nothing queued"
    out = Output()
    api(out, f"/scintiseg/studies/{STUDY}/process", method="GET", groups=[STUDY])
    assert out.status == 405 and out.allowed == "POST"
    out = Output()
    api(out, "/scintiseg/models", method="GET")
    assert out.status == 200 and json.loads(out.body or "{}") == {"models": []}

    # OHIF: the site from OhifDirectory (here: not installed -> 503 with the fix), /ohif redirects
    out = Output()
    routes["/ohif/(.*)"](out, "/ohif/viewer", method="GET", groups=["viewer"])
    assert out.status == 503 and "setup-ohif" in (out.body or "")
    out = Output()
    routes["/ohif"](out, "/ohif", method="GET")
    assert out.status == 503 and not out.redirect
    change(mod.ChangeType.ORTHANC_STOPPED, 4, "")  # type: ignore[attr-defined]


def test_ohif_files_served_from_the_configured_folder(load_plugin: Any, tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("<html>OHIF</html>")
    (site / "app.0123456789abcdef0123.js").write_text("console.log(1)")
    config = {
        "UserMetadata": {"ScintiSegResult": 4242},
        "ScintiSeg": {"ModelsDirectory": str(tmp_path), "OhifDirectory": str(site)},
    }
    _, mod = load_plugin(config)
    route = mod.routes["/ohif/(.*)"]  # type: ignore[attr-defined]
    out = Output()
    route(out, "/ohif/viewer", method="GET", groups=["viewer"])
    assert out.status == 200 and out.body == b"<html>OHIF</html>" and out.headers["Cache-Control"] == "no-cache"
    out = Output()
    route(out, "/ohif/app.0123456789abcdef0123.js", method="GET", groups=["app.0123456789abcdef0123.js"])
    assert out.status == 200 and out.mime.startswith("application/javascript")
    assert "immutable" in out.headers["Cache-Control"]
    out = Output()
    mod.routes["/ohif"](out, "/ohif", method="GET")  # type: ignore[attr-defined]
    assert out.status == 200 and out.body == b"<html>OHIF</html>"
    out = Output()
    route(out, "/ohif/missing.js", method="GET", groups=["missing.js"])
    assert out.status == 404


@pytest.mark.parametrize("output_class", [Output, Output50], ids=["orthanc-python-4.0", "orthanc-python-5.0"])
def test_error_answers_in_the_form_each_plugin_release_takes(
    load_plugin: Any, tmp_path: Path, output_class: type[Output]
) -> None:
    """SendHttpStatus is (status, str, size) in 4.0 and (status, bytes) from 4.2 on: both answer."""
    config = {
        "UserMetadata": {"ScintiSegResult": 4242},
        "ScintiSeg": {"ModelsDirectory": str(tmp_path), "OhifDirectory": str(tmp_path / "no-ohif")},
    }
    plugin, mod = load_plugin(config)
    api = mod.routes["/scintiseg/studies/([^/]+)/process"]  # type: ignore[attr-defined]
    for _ in range(2):  # the first answer learns the form, the next ones use it
        out = output_class()
        api(out, f"/scintiseg/studies/{STUDY}/process", method="POST", groups=[STUDY], body=b'{"force": "yes"}')
        body = out.body.decode() if isinstance(out.body, bytes) else out.body
        assert out.status == 400 and "force" in json.loads(body or "{}")["error"]
        assert out.headers["Content-Type"] == "application/json"
    out = output_class()
    mod.routes["/ohif/(.*)"](out, "/ohif/viewer", method="GET", groups=["viewer"])  # type: ignore[attr-defined]
    body = out.body.decode() if isinstance(out.body, bytes) else out.body
    assert out.status == 503 and "setup-ohif" in (body or "")
    assert plugin._status_takes_size is (output_class is Output)
    out = output_class()
    mod.routes["/scintiseg/status"](out, "/scintiseg/status", method="GET")  # type: ignore[attr-defined]
    assert json.loads(out.body or "{}")["python"] == platform.python_version()
