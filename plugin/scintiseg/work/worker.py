"""Study jobs on background threads, fed by a queue that never blocks its producer.

orthanc-python runs every change callback on one thread, so the callback
must return at once: :meth:`Worker.submit` only records the study id under a
lock and wakes a worker; the job (Orthanc I/O, models, SEG storage) runs on
the worker threads.

Queue rules:

* a study is queued at most once (submitting it again while queued is a no-op);
* a study is never run by two threads at once: submitted while it runs, it is
  queued again after the run ends (the study changed during the job);
* jobs run in submission order; a submission with ``not_before`` (a retry's
  back-off) waits aside until then, unless the study is queued anyway;
* a *request* (``coalesce=True``: a manual reprocess) for a study whose running
  job already covers its options joins that job instead of queueing another
  one, so concurrent requests for one study make one job;
* :meth:`Worker.stop` lets the running jobs see ``should_stop() -> True`` and
  return (they leave their study *pending*); what was still queued is simply
  dropped, because the start-up scan finds those studies again (their result
  is missing or older than the study, or a durable request is recorded for them
  in :mod:`scintiseg.work.workstate`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from scintiseg.work.threads import ThreadGroup

log = logging.getLogger(__name__)

#: How many queued study ids :meth:`Worker.stats` lists.
STATS_IDS = 1000


@dataclass(frozen=True)
class JobOptions:
    """How to run a study job; requests for a study already queued are merged (or-ed)."""

    #: segment again the images whose last run failed
    retry_failed: bool = False
    #: segment every image again, whatever the previous result says
    force: bool = False
    #: segment again the images made by a model version that is no longer the active one
    upgrade: bool = False
    #: queued by the start-up scan: a cluster leaves a study that already waits or runs alone
    from_scan: bool = False

    def merge(self, other: JobOptions) -> JobOptions:
        return JobOptions(
            retry_failed=self.retry_failed or other.retry_failed,
            force=self.force or other.force,
            upgrade=self.upgrade or other.upgrade,
            from_scan=self.from_scan and other.from_scan,
        )

    def covers(self, other: JobOptions) -> bool:
        """Whether a job run with these options does all that ``other`` asks."""
        return (
            (self.retry_failed or not other.retry_failed)
            and (self.force or not other.force)
            and (self.upgrade or self.force or not other.upgrade)
        )


#: ``handler(study_id, should_stop, options)``; its exceptions are logged, never raised.
Handler = Callable[[str, Callable[[], bool], JobOptions], object]


class StudyWorker(Protocol):
    """What the service drives: the local :class:`Worker` and the cluster's
    :class:`scintiseg.work.cluster.ClusterWorker` both implement it."""

    def submit(
        self, study_id: str, options: JobOptions | None = None, not_before: float | None = None,
        coalesce: bool = False,
    ) -> bool:
        """Queue a study without blocking or I/O; False once stopped."""
        ...

    def arrived(self, study_id: str) -> None:
        """Instances of the study arrived at this node (the stability tracker says so)."""
        ...

    def start(self) -> None: ...

    def stop(self, timeout: float = 30.0) -> bool:
        """Let the running jobs end (they leave their study pending); True if all ended in time."""
        ...

    def should_stop(self) -> bool: ...

    def wait_idle(self, timeout: float) -> bool:
        """Block until nothing is queued or running (tests, benchmarks); True if idle."""
        ...

    def stats(self) -> dict[str, Any]:
        """Threads, queued and running studies, jobs done (``GET /scintiseg/status``: worker)."""
        ...

    def scan_lock(self) -> AbstractContextManager[bool]:
        """Around the start-up scan: yields whether this node may scan now."""
        ...

    def shared_queue(self) -> dict[str, Any] | None:
        """The queue every node agrees on (a cluster's work table), ``None`` for a lone node."""
        ...

    def cluster_status(self) -> dict[str, Any] | None:
        """The cluster's nodes and counts (``GET /scintiseg/status``: cluster), ``None`` for a lone node."""
        ...


class Worker:
    """A FIFO of study ids served by ``threads`` daemon threads."""

    def __init__(
        self,
        handler: Handler,
        threads: int = 1,
        name: str = "scintiseg-worker",
        clock: Callable[[], float] = time.time,
    ) -> None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.handler = handler
        self.n_threads = threads
        self.name = name
        self._cond = threading.Condition()
        self._queue: OrderedDict[str, JobOptions] = OrderedDict()
        self._running: dict[str, JobOptions] = {}
        self._again: dict[str, JobOptions] = {}  # submitted while running
        self._delayed: dict[str, tuple[float, JobOptions]] = {}  # not before (clock), options
        self.clock = clock
        self._stop = threading.Event()
        self._threads = ThreadGroup(name)
        self.jobs_done = 0
        self.last_job_s: float | None = None

    # -- producer side (the change callback): no I/O, no waiting -------------------------
    def submit(
        self,
        study_id: str,
        options: JobOptions | None = None,
        not_before: float | None = None,
        coalesce: bool = False,
    ) -> bool:
        """Queue a study; False if the worker is stopped.

        ``not_before`` (on :attr:`clock`): not due before then (retry back-off);
        ``coalesce``: a request that a running job of the study already covers
        joins it.
        """
        if self._stop.is_set():
            return False
        options = options or JobOptions()
        with self._cond:
            running = self._running.get(study_id)
            if study_id in self._queue:
                self._queue[study_id] = self._queue[study_id].merge(options)
            elif not_before is not None and not_before > self.clock():
                when, before = self._delayed.get(study_id, (not_before, JobOptions()))
                self._delayed[study_id] = (min(when, not_before), before.merge(options))
            elif running is not None:
                if not (coalesce and running.covers(options)):
                    self._again[study_id] = self._again.get(study_id, JobOptions()).merge(options)
            else:
                delayed = self._delayed.pop(study_id, None)
                self._queue[study_id] = delayed[1].merge(options) if delayed else options
            self._cond.notify()
        return True

    def arrived(self, study_id: str) -> None:
        """Nothing to share on a lone node: the stability tracker queues the study itself."""

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self._threads.start([(str(i), self._loop) for i in range(self.n_threads)])

    def should_stop(self) -> bool:
        return self._stop.is_set()

    def stop(self, timeout: float = 30.0) -> bool:
        """Ask the threads to finish their current job and end; True if all ended in time."""
        self._stop.set()
        with self._cond:
            dropped = len(self._queue) + len(self._delayed)
            self._queue.clear()
            self._again.clear()
            self._delayed.clear()
            self._cond.notify_all()
        if dropped:
            log.info("%d queued study(ies) left for the next start", dropped)
        return self._threads.join(timeout)

    def wait_idle(self, timeout: float) -> bool:
        """Block until nothing is queued or running (tests, benchmarks); True if idle."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queue or self._running:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def stats(self) -> dict[str, Any]:
        with self._cond:
            return {
                "threads": self.n_threads,
                "queued": len(self._queue) + len(self._again),
                "queued_ids": list(self._queue)[:STATS_IDS],
                "delayed": len(self._delayed),
                "delayed_ids": sorted(self._delayed, key=lambda s: self._delayed[s][0])[:STATS_IDS],
                "running": sorted(self._running),
                "jobs_done": self.jobs_done,
                "last_job_s": self.last_job_s,
                "stopping": self._stop.is_set(),
            }

    @contextmanager
    def scan_lock(self) -> Iterator[bool]:
        """A lone node always scans."""
        yield True

    def shared_queue(self) -> dict[str, Any] | None:
        return None

    def cluster_status(self) -> dict[str, Any] | None:
        return None

    # -- consumer side ---------------------------------------------------------------------
    def _due(self) -> float | None:
        """Move the delayed studies now due to the queue; seconds until the next one (lock held)."""
        if not self._delayed:
            return None
        now = self.clock()
        for study_id in [s for s, (when, _) in self._delayed.items() if when <= now]:
            _, options = self._delayed.pop(study_id)
            if study_id in self._running:
                self._again[study_id] = self._again.get(study_id, JobOptions()).merge(options)
            else:
                self._queue[study_id] = self._queue.get(study_id, JobOptions()).merge(options)
        return min((when for when, _ in self._delayed.values()), default=now) - now if self._delayed else None

    def _take(self) -> tuple[str, JobOptions] | None:
        with self._cond:
            while not self._stop.is_set():
                wait = self._due()
                if self._queue:
                    break
                self._cond.wait(None if wait is None else max(0.01, wait))
            if self._stop.is_set():
                return None
            study_id, options = self._queue.popitem(last=False)
            self._running[study_id] = options
            return study_id, options

    def _loop(self) -> None:
        while True:
            item = self._take()
            if item is None:
                return
            study_id, options = item
            t0 = time.perf_counter()
            try:
                self.handler(study_id, self.should_stop, options)
            except Exception:  # the handler has its own boundary; this one keeps the thread alive
                log.exception("study %s: unexpected error escaped the job", study_id)
            finally:
                with self._cond:
                    self._running.pop(study_id, None)
                    self.jobs_done += 1
                    self.last_job_s = round(time.perf_counter() - t0, 3)
                    if study_id in self._again and not self._stop.is_set():
                        self._queue[study_id] = self._again.pop(study_id)
                    self._cond.notify_all()
