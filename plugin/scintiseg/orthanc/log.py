"""Python ``logging`` into Orthanc's log (the entry script installs it at load time)."""

from __future__ import annotations

import logging
from typing import Any


class OrthancLogHandler(logging.Handler):
    """Python ``logging`` records to Orthanc's log.

    Records at ``visible`` level and above go to ``LogWarning`` (shown by a
    default Orthanc), errors to ``LogError``, the rest to ``LogInfo`` (shown
    with ``--verbose``). ``api`` is the ``orthanc`` module (or a fake of it).
    """

    def __init__(self, api: Any, visible: int = logging.INFO) -> None:
        super().__init__(level=logging.DEBUG)
        self.api = api
        self.visible = visible
        self.setFormatter(logging.Formatter("ScintiSeg [%(threadName)s] %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = self.format(record)
            if record.levelno >= logging.ERROR:
                self.api.LogError(msg)
            elif record.levelno >= self.visible:
                self.api.LogWarning(msg)
            else:
                self.api.LogInfo(msg)
        except Exception:  # logging must never break the caller
            self.handleError(record)


def install_orthanc_logging(api: Any, level: str = "INFO") -> logging.Handler:
    """Route the ``scintiseg`` loggers to Orthanc; ``level`` is ``ScintiSeg.LogLevel``."""
    handler = OrthancLogHandler(api, getattr(logging, level.upper(), logging.INFO))
    root = logging.getLogger("scintiseg")
    for old in [h for h in root.handlers if isinstance(h, OrthancLogHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    root.propagate = False
    return handler
