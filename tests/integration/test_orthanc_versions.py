"""The Orthanc the tests drive is the one installed here, whichever Debian release that is.

Debian 12 ships Orthanc 1.10.1 with the Python plugin 4.0 on Python 3.11, Debian 13
Orthanc 1.12.7 with the plugin 5.0 on Python 3.13 (``scripts/trixie-integration.sh`` runs
these tests there). The versions Orthanc reports must be those of the installed Debian
packages, and those the run asked for with ``SCINTISEG_EXPECT_ORTHANC`` /
``SCINTISEG_EXPECT_PYTHON_PLUGIN`` (version prefixes, e.g. ``1.12.`` and ``5.``), so that a
run meant for one release cannot pass on another.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from support.orthanc_harness import ORTHANC_ENV, OrthancServer


def upstream_version(debian_version: str) -> str:
    """``1.12.7+dfsg-4`` -> ``1.12.7``; ``5.0+ds-3+b1`` -> ``5.0`` (no epoch, repack or revision)."""
    match = re.match(r"^(?:\d+:)?(\d+(?:\.\d+)*)", debian_version)
    assert match, f"not a Debian version: {debian_version!r}"
    return match.group(1)


def installed(package: str) -> str | None:
    """The upstream version of an installed Debian package, None without dpkg or package."""
    try:
        query = ["dpkg-query", "-W", "-f=${Status}|${Version}", package]
        proc = subprocess.run(query, capture_output=True, text=True, timeout=30, check=False)
    except FileNotFoundError:
        return None
    status, _, version = proc.stdout.partition("|")
    return upstream_version(version) if proc.returncode == 0 and status.endswith(" installed") else None


def test_upstream_version_drops_debian_suffixes() -> None:
    assert upstream_version("1.12.7+dfsg-4") == "1.12.7"
    assert upstream_version("1.10.1+dfsg-2") == "1.10.1"
    assert upstream_version("5.0+ds-3+b1") == "5.0"
    assert upstream_version("1:2.3~rc1-1") == "2.3"


def test_orthanc_under_test_is_the_installed_one(orthanc: OrthancServer) -> None:
    versions = orthanc.versions()  # the run's summary prints them too ("Orthanc under test: ...")
    for name, value in versions.items():
        assert re.fullmatch(r"\d+\.\d+(\.\d+)?", value), f"{name} version {value!r}"
    # Orthanc and its Python plugin are the Debian packages of this machine (or chroot)
    for key, package in (("orthanc", "orthanc"), ("python_plugin", "orthanc-python")):
        debian = installed(package)
        if debian is not None and os.environ.get("ORTHANC_BIN") is None:
            assert versions[key] == debian, f"{package}: Orthanc reports {versions[key]}, dpkg says {debian}"
    # the embedded interpreter is the one the plugin links, the one the venv is made from
    assert Path(ORTHANC_ENV["ORTHANC_PLUGIN_PYTHON"]).name == "python" + ".".join(versions["python"].split(".")[:2])
    # what this run was asked to check
    for key, variable in (("orthanc", "SCINTISEG_EXPECT_ORTHANC"), ("python_plugin", "SCINTISEG_EXPECT_PYTHON_PLUGIN")):
        wanted = os.environ.get(variable)
        if wanted and not versions[key].startswith(wanted):
            pytest.fail(f"{variable}={wanted}, but the Orthanc under test reports {key} {versions[key]}")
