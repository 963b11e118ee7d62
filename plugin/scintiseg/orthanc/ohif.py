"""Serving the OHIF viewer's static site from Orthanc, with single-page-app routing.

``scripts/setup-ohif.sh`` installs a pre-built OHIF under ``build/ohif/site``,
rewritten to live under ``/ohif/`` and to read Orthanc's DICOMweb API at
``/dicom-web``. Orthanc's ServeFolders plugin could serve the files, but OHIF
routes on the client (``/ohif/viewer?StudyInstanceUIDs=...``): a reload or a
link to such a URL must answer ``index.html``, which ServeFolders cannot do.
So the plugin serves the folder through a REST callback: Orthanc's HTTP
server, authentication and TLS apply to the viewer exactly as to the rest of
the API.

:func:`ohif_asset` is the whole rule, free of Orthanc::

    file exists under the site               -> 200, its bytes, its MIME type
    path names a file (has an extension)     -> 404 (a missing chunk must not get HTML)
    anything else (a client route, or "")    -> 200, index.html
    site not installed                       -> 503, how to install it
    path escaping the site ("..", absolute)  -> 404

Example (what the adapter registers for ``/ohif/(.*)``)::

    status, body, mime = ohif_asset(site_dir, "viewer")   # index.html
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

#: The URL prefix the site was built for (``OHIF_PREFIX`` of the setup script).
PREFIX = "/ohif/"
#: OHIF's study viewer route (``@ohif/mode-longitudinal``), below :data:`PREFIX`.
VIEWER_ROUTE = "viewer"

MIME_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "application/javascript; charset=utf-8",
    ".mjs": "application/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".wasm": "application/wasm",  # WebAssembly.instantiateStreaming requires it
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".gif": "image/gif",
    ".ico": "image/x-icon",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    ".ttf": "font/ttf",
    ".txt": "text/plain; charset=utf-8",
    ".xml": "application/xml",
    ".jsonc": "application/json",
}
DEFAULT_MIME = "application/octet-stream"

NOT_INSTALLED = (
    b"The OHIF viewer is not installed on this server: run scripts/setup-ohif.sh "
    b"(or `make ohif`) and restart Orthanc.\n"
)


#: OHIF's hanging protocol that opens a study with its segmentation over the source image.
SEG_PROTOCOL = "@ohif/seg"


def viewer_url(study_instance_uid: str, prefix: str = PREFIX, with_seg: bool = False) -> str:
    """The viewer URL of a study (OHIF v3: ``/viewer?StudyInstanceUIDs=``).

    ``with_seg`` asks OHIF to open the study with its SEG already overlaid
    (hanging protocol :data:`SEG_PROTOCOL`) instead of the SEG as a thumbnail.
    """
    url = f"{prefix}{VIEWER_ROUTE}?StudyInstanceUIDs={study_instance_uid}"
    return url + f"&hangingProtocolId={SEG_PROTOCOL}" if with_seg else url


_HASHED = re.compile(r"(^|[./])[0-9a-f]{16,}\.(js|css|wasm|woff2?)$")


def cache_control(path: str) -> str:
    """``Cache-Control`` for an answer to ``path``: content-hashed bundles never change.

    Everything else (``index.html``, ``app-config.js``, client routes) is
    revalidated, so that a new OHIF or a new configuration shows at once.
    """
    return "public, max-age=31536000, immutable" if _HASHED.search(path) else "no-cache"


def mime_type(path: str) -> str:
    return MIME_TYPES.get(PurePosixPath(path).suffix.lower(), DEFAULT_MIME)


def _resolve(site: Path, path: str) -> Path | None:
    """The file ``path`` names inside ``site``, or ``None`` if it would leave it."""
    rel = PurePosixPath(path)
    if rel.is_absolute() or ".." in rel.parts:
        return None
    root = site.resolve()
    target = (root / rel).resolve()
    if target != root and root not in target.parents:
        return None  # a symbolic link pointing outside
    return target


def ohif_asset(site: Path, path: str) -> tuple[int, bytes, str]:
    """``(status, body, content type)`` for ``GET /ohif/<path>``.

    ``path`` is what follows the prefix, without the query string (Orthanc
    passes it as the regex group); ``""`` is the site's root.
    """
    index = site / "index.html"
    if not index.is_file():
        return 503, NOT_INSTALLED, "text/plain; charset=utf-8"
    target = _resolve(site, path)
    if target is None:
        return 404, b"Not found\n", "text/plain; charset=utf-8"
    if target.is_file():
        return 200, target.read_bytes(), mime_type(target.name)
    if PurePosixPath(path).suffix:
        return 404, b"Not found\n", "text/plain; charset=utf-8"
    return 200, index.read_bytes(), MIME_TYPES[".html"]
