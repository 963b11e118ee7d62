"""Serving the OHIF site: files, single-page-app fallback, and no way out of the folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from scintiseg.orthanc.ohif import NOT_INSTALLED, cache_control, mime_type, ohif_asset, viewer_url


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    (root / "assets").mkdir(parents=True)
    (root / "index.html").write_text("<html>OHIF</html>")
    (root / "app.bundle.js").write_text("console.log(1)")
    (root / "0ddf.wasm").write_bytes(b"\0asm")
    (root / "assets" / "logo.svg").write_text("<svg/>")
    (tmp_path / "secret.txt").write_text("outside")
    return root


@pytest.mark.parametrize(
    "path, body, mime",
    [
        ("app.bundle.js", b"console.log(1)", "application/javascript; charset=utf-8"),
        ("0ddf.wasm", b"\0asm", "application/wasm"),
        ("assets/logo.svg", b"<svg/>", "image/svg+xml"),
        ("index.html", b"<html>OHIF</html>", "text/html; charset=utf-8"),
    ],
)
def test_site_files_are_served_with_their_mime_type(site: Path, path: str, body: bytes, mime: str) -> None:
    assert ohif_asset(site, path) == (200, body, mime)


@pytest.mark.parametrize("path", ["", "viewer", "viewer/", "segmentation", "local/study"])
def test_client_routes_get_index(site: Path, path: str) -> None:
    status, body, mime = ohif_asset(site, path)
    assert (status, body) == (200, b"<html>OHIF</html>") and mime.startswith("text/html")


@pytest.mark.parametrize("path", ["missing.js", "assets/missing.png", "1234.bundle.abc.js"])
def test_missing_files_are_404_not_html(site: Path, path: str) -> None:
    assert ohif_asset(site, path)[0] == 404


@pytest.mark.parametrize("path", ["../secret.txt", "assets/../../secret.txt", "/etc/passwd"])
def test_no_escape(site: Path, path: str) -> None:
    status, body, _ = ohif_asset(site, path)
    assert status == 404 and b"outside" not in body


def test_symlink_out_of_the_site_is_refused(site: Path) -> None:
    (site / "link.txt").symlink_to(site.parent / "secret.txt")
    assert ohif_asset(site, "link.txt")[0] == 404


def test_not_installed_is_503(tmp_path: Path) -> None:
    assert ohif_asset(tmp_path / "nowhere", "viewer") == (503, NOT_INSTALLED, "text/plain; charset=utf-8")


def test_viewer_urls_and_mime_types() -> None:
    assert viewer_url("1.2.3") == "/ohif/viewer?StudyInstanceUIDs=1.2.3"
    assert viewer_url("1.2.3", with_seg=True) == "/ohif/viewer?StudyInstanceUIDs=1.2.3&hangingProtocolId=@ohif/seg"
    assert mime_type("x.WOFF2") == "font/woff2"
    assert mime_type("x.unknown") == "application/octet-stream"


@pytest.mark.parametrize(
    "path, immutable",
    [
        ("app.bundle.0f6159c501addfe9.js", True),
        ("9437.bundle.848ed795e51e521c.js", True),
        ("0ddf166f7a343eda.wasm", True),
        ("a34f9d1faa5f3315.woff2", True),
        ("app-config.js", False),
        ("index.html", False),
        ("viewer", False),
        ("init-service-worker.js", False),
    ],
)
def test_cache_control(path: str, immutable: bool) -> None:
    assert ("immutable" in cache_control(path)) is immutable
