"""Orthanc's REST API over HTTP, shaped like the plugin's in-process ``orthanc`` module.

:class:`HttpApi` offers ``RestApiGet/Post/Put/Delete(uri[, body]) -> bytes`` on a remote
Orthanc (HTTP Basic authentication when credentials are given), so that
:class:`scintiseg.core.store.OrthancGateway` and everything built on it (label records,
dataset export) run the same from the command line as inside the plugin. HTTP errors are
raised as :class:`OrthancHttpError` whose first argument is Orthanc's error code (404 ->
7, "inexistent item"), which the gateway translates into its own exceptions.
"""

from __future__ import annotations

import base64
import urllib.error
import urllib.request

__all__ = ["HttpApi", "OrthancHttpError"]

_INEXISTENT_ITEM = 7


class OrthancHttpError(RuntimeError):
    """An HTTP call to Orthanc failed: ``args = (orthanc_code | None, message)``."""


class HttpApi:
    """``RestApi*`` calls on the Orthanc at ``url`` (e.g. ``http://127.0.0.1:8042``)."""

    def __init__(self, url: str, user: str | None = None, password: str | None = None, timeout: float = 60) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._auth = None
        if user:
            token = base64.b64encode(f"{user}:{password or ''}".encode()).decode("ascii")
            self._auth = f"Basic {token}"

    def _request(self, method: str, uri: str, body: bytes | None = None) -> bytes:
        req = urllib.request.Request(self.url + uri, data=body, method=method)
        if self._auth:
            req.add_header("Authorization", self._auth)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as answer:
                return bytes(answer.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")[:300]
            code = _INEXISTENT_ITEM if exc.code == 404 else None
            raise OrthancHttpError(code, f"HTTP {exc.code} {detail}".strip()) from exc
        except urllib.error.URLError as exc:
            raise OrthancHttpError(None, f"cannot reach Orthanc at {self.url}: {exc.reason}") from exc

    def RestApiGet(self, uri: str) -> bytes:  # noqa: N802  (the orthanc module's names)
        return self._request("GET", uri)

    def RestApiPost(self, uri: str, body: bytes) -> bytes:  # noqa: N802
        return self._request("POST", uri, body)

    def RestApiPut(self, uri: str, body: bytes) -> bytes:  # noqa: N802
        return self._request("PUT", uri, body)

    def RestApiDelete(self, uri: str) -> bytes:  # noqa: N802
        return self._request("DELETE", uri)
