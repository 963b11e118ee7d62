"""What becomes of a study's work item once its job has run: forgotten, retried later or given up.

A success forgets the request; a ``failed`` result that is ``retriable``
(:mod:`scintiseg.work.jobs`) is retried ``RetryLimit`` times, the n-th after
``RetryBackoffSeconds * 2**(n-1)`` seconds (at most an hour), the retry
recorded in the work state so that a restart keeps it; after the last one the
study stays given up (``failed`` in ``GET /scintiseg/queue``) until a manual
request. A job interrupted by Orthanc stopping leaves its record as it is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from scintiseg.core.result import Status, StudyResult
from scintiseg.work.worker import JobOptions
from scintiseg.work.workstate import WorkItem, WorkState

log = logging.getLogger(__name__)

#: The longest retry back-off (seconds).
MAX_BACKOFF_S = 3600.0

#: ``resubmit(study_id, options, not_before)``: queue the retry on the worker.
Resubmit = Callable[[str, JobOptions, float], bool]


@dataclass(frozen=True)
class RetryPolicy:
    """``RetryLimit`` retries, doubling from ``RetryBackoffSeconds``."""

    limit: int
    backoff_s: float

    def delay(self, attempt: int) -> float:
        """Seconds before retry number ``attempt`` (1, 2, ...), at most :data:`MAX_BACKOFF_S`."""
        return min(MAX_BACKOFF_S, self.backoff_s * 2 ** max(0, attempt - 1))


class Settler:
    """Settles work items by :class:`RetryPolicy`; counts the retries it scheduled."""

    def __init__(self, workstate: WorkState, policy: RetryPolicy, resubmit: Resubmit, clock: Callable[[], float]):
        self.workstate = workstate
        self.policy = policy
        self.resubmit = resubmit
        self.clock = clock
        self.retries_scheduled = 0

    def settle(self, item: WorkItem, result: StudyResult | None, stopping: bool) -> None:
        """Forget, retry later or give up ``item`` (after the job recorded ``result``)."""
        status = result.status if result is not None else None
        if stopping and status in (Status.PENDING, None):
            return  # interrupted: the record (if any) is queued again at the next start
        if result is None or status != Status.FAILED or not result.retriable:
            self.workstate.complete(item)
            return
        attempt = item.attempts + 1
        if attempt > self.policy.limit:
            self.workstate.fail(item, result.reason, None)
            log.warning(
                "study %s: failed %d time(s), no more automatic retries: %s", item.study_id, attempt, result.reason
            )
            return
        retry_at = self.clock() + self.policy.delay(attempt)
        self.workstate.fail(item, result.reason, retry_at)
        if self.resubmit(item.study_id, JobOptions(retry_failed=True), retry_at):
            self.retries_scheduled += 1
        log.warning(
            "study %s: failed (attempt %d of %d), retry in %.0f s: %s",
            item.study_id, attempt, self.policy.limit + 1, retry_at - self.clock(), result.reason,
        )
