"""Driving a real Orthanc with the real plugin, started by ``scripts/run-orthanc.sh``.

Each :class:`OrthancServer` gets free loopback ports and its own data folder
(fresh SQLite database) under pytest's tmp dir, ``TCP_NODELAY=1`` (set by the
script), and a copy of the repository's ``orthanc.json`` with ``StableAge`` 2.
It loads the trained models of ``models/`` when there are any, else tiny
fake ones (:mod:`support.fake_models`). Studies go in with real DICOM clients:
``storescu`` (dcmtk) and REST ``POST /instances``.

Fixtures are in ``tests/integration/conftest.py``; this module holds the helpers the tests
import (``from support.orthanc_harness import ...``).
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pydicom

from scintiseg.app.config import strip_json_comments
from scintiseg.models.registry import Registry

from .dicom_tools import dciodvfy_path  # noqa: F401  (re-exported to the tests)

ROOT = Path(__file__).resolve().parents[2]


def orthanc_env() -> dict[str, str]:
    """Where this machine's Orthanc and plugins are (``scripts/orthanc-env.sh``: Debian 12 or 13)."""
    out = subprocess.run(
        [str(ROOT / "scripts" / "orthanc-env.sh")], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


ORTHANC_ENV = orthanc_env()
ORTHANC = ORTHANC_ENV["ORTHANC_BIN"]
PYTHON_PLUGIN = ORTHANC_ENV["ORTHANC_PYTHON_PLUGIN"]
#: the plugin's virtual environment: the repository's .venv unless SCINTISEG_VENV names another
#: (the Debian 13 run in a chroot has its own, made from that release's Python)
VENV = Path(os.environ.get("SCINTISEG_VENV") or ROOT / ".venv")
STABLE_AGE = 2
SCU_AET = "STORESCU"
#: what each Orthanc started in this session reported, e.g. "Orthanc 1.12.7, Python plugin 5.0
#: on Python 3.13.5": the integration tests' summary prints it, so a run says what it checked
VERSIONS_SEEN: set[str] = set()

T = TypeVar("T")


def missing_tools() -> str | None:
    if not os.access(ORTHANC, os.X_OK):
        return "Orthanc is not installed (make setup)"
    if not PYTHON_PLUGIN or not Path(PYTHON_PLUGIN).exists():
        return "orthanc-python is not installed (make setup)"
    if shutil.which("storescu") is None:
        return "dcmtk's storescu is not installed (make setup)"
    return None


def trained_models() -> Path | None:
    """``$SCINTISEG_MODELS`` or ``models/``, if active models there make the gland and nodule labels."""
    folder = Path(os.environ.get("SCINTISEG_MODELS") or ROOT / "models")
    current = Registry(folder, lambda card: card).current  # cards only: no session is loaded
    labels = {key for e in current.active if e.card is not None for key in e.card.label_keys}
    return folder if {"gland", "nodule"} <= labels else None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, every: float = 0.1) -> T:
    """Poll ``probe`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


@dataclass
class OrthancServer:
    """One Orthanc process; ``restart`` keeps its database."""

    data: Path
    models: Path
    stable_age: int = STABLE_AGE
    http_port: int = 0
    dicom_port: int = 0
    process: subprocess.Popen[bytes] | None = None
    runs: int = 0
    #: Orthanc options added to (or replacing) those of orthanc.json
    extra_config: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: HTTP Basic credentials the harness sends (when the test enables authentication)
    auth: tuple[str, str] | None = None
    #: environment of scripts/run-orthanc.sh added to the harness's (e.g. SCINTISEG_POSTGRESQL)
    extra_env: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def log_path(self) -> Path:
        return self.data / f"orthanc-{self.runs}.log"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self) -> None:
        self.http_port = self.http_port or free_port()
        self.dicom_port = self.dicom_port or free_port()
        self.data.mkdir(parents=True, exist_ok=True)
        config = json.loads(strip_json_comments((ROOT / "orthanc.json").read_text()))
        config["StableAge"] = self.stable_age
        config.update(self.extra_config)
        (self.data / "test-orthanc.json").write_text(json.dumps(config, indent=2))
        env = {
            **os.environ,
            "SCINTISEG_HTTP_PORT": str(self.http_port),
            "SCINTISEG_DICOM_PORT": str(self.dicom_port),
            "SCINTISEG_DATA": str(self.data),
            "SCINTISEG_CONFIG": str(self.data / "test-orthanc.json"),
            "SCINTISEG_MODELS": str(self.models),
            "SCINTISEG_VENV": str(VENV),
            **self.extra_env,
        }
        self.runs += 1
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [str(ROOT / "scripts" / "run-orthanc.sh")],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.data,
                start_new_session=True,
            )
        try:
            wait_for("the plugin to start", self._plugin_running, timeout=60, every=0.2)
        except AssertionError:
            self.stop()
            raise AssertionError(f"Orthanc did not start:\n{self.log()[-4000:]}") from None
        v = self.versions()
        VERSIONS_SEEN.add(f"Orthanc {v['orthanc']}, Python plugin {v['python_plugin']} on Python {v['python']}")

    def versions(self) -> dict[str, str]:
        """What the running Orthanc says it is (GET /system), its Python plugin (GET
        /plugins/python) and the interpreter that plugin embeds (GET /scintiseg/status)."""
        return {
            "orthanc": str(self.get("/system")["Version"]),
            "python_plugin": str(self.get("/plugins/python")["Version"]),
            "python": str(self.get("/scintiseg/status")["python"]),
        }

    def _plugin_running(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"Orthanc exited ({self.process.returncode}):\n{self.log()[-4000:]}")
        try:
            status = self.get("/scintiseg/status")
        except (OSError, urllib.error.URLError):
            return False
        if status.get("state") == "failed":
            raise AssertionError(f"plugin failed to start: {status.get('error')}")
        return status.get("state") == "running" and status.get("recovery", {}).get("state") == "done"

    def stop(self, timeout: float = 30) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None

    def kill(self) -> None:
        """``kill -9`` Orthanc (the script ``exec``-s it: the process is Orthanc itself)."""
        if self.process is None:
            return
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    # -- REST ------------------------------------------------------------------------------
    def request(self, method: str, path: str, body: bytes | None = None) -> bytes:
        req = urllib.request.Request(self.url + path, data=body, method=method)
        if self.auth is not None:
            token = base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(req, timeout=30) as answer:
            return bytes(answer.read())

    def get(self, path: str) -> Any:
        return json.loads(self.request("GET", path))

    def upload(self, data: bytes) -> dict[str, Any]:
        """REST upload, as a web client would (``POST /instances``)."""
        return json.loads(self.request("POST", "/instances", data))

    def storescu(self, files: Sequence[Path], *options: str) -> float:
        """C-STORE the files in one association; returns the time the last one was stored.

        ``options`` go to storescu (e.g. ``-R``: propose each file's own transfer syntax).
        """
        aet = self.get("/system")["DicomAet"]
        cmd = ["storescu", *options, "-aet", SCU_AET, "-aec", aet, "127.0.0.1", str(self.dicom_port),
               *map(str, files)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == 0, f"storescu failed: {proc.stdout}{proc.stderr}"
        return time.monotonic()

    def study_id(self, study_uid: str) -> str | None:
        found = json.loads(self.request("POST", "/tools/lookup", study_uid.encode()))
        return next((f["ID"] for f in found if f["Type"] == "Study"), None)

    def result(self, study_id: str) -> dict[str, Any] | None:
        meta = self.get(f"/studies/{study_id}/metadata?expand")
        text = meta.get("ScintiSegResult")
        return json.loads(text) if text else None

    def wait_result(self, study_uid: str, timeout: float, statuses: Sequence[str] = ("done",)) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            sid = self.study_id(study_uid)
            if sid is None:
                return None
            res = self.result(sid)
            return res if res and res["status"] in statuses else None

        return wait_for(f"a {'/'.join(statuses)} result for study {study_uid}", probe, timeout)

    def series_by_modality(self, study_id: str) -> dict[str, list[str]]:
        """Modality -> instance ids of the study."""
        out: dict[str, list[str]] = {}
        for s in self.get(f"/studies/{study_id}/series"):
            out.setdefault(s["MainDicomTags"].get("Modality", ""), []).extend(s["Instances"])
        return out

    def instance(self, instance_id: str) -> pydicom.Dataset:
        return pydicom.dcmread(io.BytesIO(self.request("GET", f"/instances/{instance_id}/file")))

    def wait_idle(self, timeout: float = 60) -> None:
        def idle() -> bool:
            worker = self.get("/scintiseg/status")["worker"]
            return worker["queued"] == 0 and not worker["running"]

        wait_for("the plugin's queue to drain", idle, timeout)


def serving(data: Path, models: Path) -> Iterator[OrthancServer]:
    """A started Orthanc on ``models`` (skips when the tools are missing), stopped afterwards."""
    import pytest

    missing = missing_tools()
    if missing:
        pytest.skip(missing)
    server = OrthancServer(data=data, models=models)
    server.start()
    try:
        yield server
    finally:
        server.stop()


# -- synthetic studies ---------------------------------------------------------------------
@dataclass
class Study:
    """A synthetic study on disk with its ground truth (one mask per frame per file)."""

    study_uid: str
    files: list[Path]
    glands: list[list[np.ndarray]]
    nodules: list[list[np.ndarray]]


def make_study(
    out: Path,
    seed: int,
    images: int = 1,
    frames: int = 1,
    kind: str | None = "normal",
    isotope: str | None = None,
    edit: Callable[[pydicom.Dataset], object] | None = None,
) -> Study:
    """``images`` NM instances of ``frames`` frames each (same matrix), seeds from ``seed``.

    ``isotope`` ("Tc-99m", "I-131") forces the scan's isotope, which the DICOM writer
    records as the radionuclide (code and meaning) and the radiopharmaceutical; ``edit``
    changes each dataset before it is written (e.g. :func:`support.other_exams.as_exam`).
    """
    from scintiseg.core.uids import deterministic_uid
    from scintiseg_phantoms.dicom import scan_to_dataset
    from scintiseg_phantoms.thyroid import generate_scan

    out.mkdir(parents=True, exist_ok=True)
    base = ("scintiseg-integration", str(seed))
    study_uid = deterministic_uid(*base, "study")
    files, glands, nodules = [], [], []
    for i in range(images):
        scan = generate_scan(seed * 100 + i, kind=kind, matrix=128, isotope=isotope)
        # the frames of one instance share matrix, spacing and isotope: frame f > 0 is the
        # first one mirrored and/or flipped (a different image with known truth)
        scans = [scan] + [
            dataclasses.replace(
                scan,
                counts=_turn(scan.counts, f),
                gland=_turn(scan.gland, f),
                nodules=_turn(scan.nodules, f),
            )
            for f in range(1, frames)
        ]
        ds = scan_to_dataset(
            scans,
            patient_id=f"INT{seed:06d}",
            patient_name=f"INTEGRATION^CASE{seed}",
            study_uid=study_uid,
            series_uid=deterministic_uid(*base, "series"),
            sop_uid=deterministic_uid(*base, "sop", str(i)),
            instance_number=i + 1,
        )
        if edit is not None:
            edit(ds)
        path = out / f"nm_{seed}_{i}.dcm"
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
        glands.append([s.gland for s in scans])
        nodules.append([s.nodules for s in scans])
    return Study(study_uid, files, glands, nodules)


def _turn(a: np.ndarray, f: int) -> np.ndarray:
    a = np.fliplr(a) if f % 2 else a
    return np.ascontiguousarray(np.flipud(a) if (f // 2) % 2 else a)


def ct_file(out: Path, seed: int) -> tuple[str, Path]:
    """A small CT image (its own study) as a Part-10 file."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    study_uid = generate_uid(entropy_srcs=["ct-study", str(seed)])
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = generate_uid(entropy_srcs=["ct-sop", str(seed)])
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=["ct-series", str(seed)])
    ds.PatientName, ds.PatientID = "CT^NECK", f"CT{seed}"
    ds.Modality, ds.SeriesDescription = "CT", "NECK"
    ds.Rows = ds.Columns = 16
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
    ds.ImagePositionPatient = [0, 0, 0]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [0.5, 0.5]
    ds.PixelData = np.full((16, 16), 1000, dtype="<i2").tobytes()
    path = out / f"ct_{seed}.dcm"
    out.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return study_uid, path


