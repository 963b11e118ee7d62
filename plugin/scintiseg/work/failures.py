"""The studies whose last job failed since start-up, newest last, at most :data:`MAX_FAILURES`.

``GET /scintiseg/queue`` lists them (``failed``) beside the work state's given-up
records; a later success of the study removes it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from scintiseg.core.result import Status, StudyResult

#: How many failed studies the log remembers (the newest).
MAX_FAILURES = 200


class FailureLog:
    """Thread-safe: every worker thread notes its job's outcome."""

    def __init__(self, limit: int = MAX_FAILURES) -> None:
        self.limit = limit
        self._failures: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def note(self, study_id: str, result: StudyResult | None) -> None:
        """The outcome of the study's job: listed if it failed, forgotten otherwise."""
        with self._lock:
            self._failures.pop(study_id, None)
            if result is not None and result.status == Status.FAILED:
                self._failures[study_id] = {"study": study_id, "reason": result.reason, "updated": result.updated}
                while len(self._failures) > self.limit:
                    self._failures.popitem(last=False)

    def newest_first(self) -> list[dict[str, Any]]:
        """Copies of the entries (``study``, ``reason``, ``updated``), the newest first."""
        with self._lock:
            return [dict(f) for f in reversed(self._failures.values())]
