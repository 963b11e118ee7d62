"""The start-up scan: queue what a previous run (or a lost node of the cluster) left unfinished.

Two sources, on a thread of its own (:meth:`RecoveryScan.start`), never the change
callbacks' one:

* the work state's records (:mod:`scintiseg.work.workstate`): manual requests and
  retries a previous run recorded, queued again with their back-off;
* the newest ``RecoveryScanMaxStudies`` studies of the index, a page of
  ``RecoveryScanPageSize`` at a time (one cheap index call per study), whose
  result is missing, unfinished, older than the study, or (``ReprocessOnUpgrade``)
  made by a superseded model version.

On a cluster one node scans the shared index at a time (the worker's
:meth:`~scintiseg.work.worker.StudyWorker.scan_lock`); a node that loses a peer
scans again (:meth:`RecoveryScan.rescan`). :attr:`RecoveryScan.progress` is what
``GET /scintiseg/status`` shows as ``recovery``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

from scintiseg.core.store import Gateway, GatewayError
from scintiseg.work.jobs import StudyJobs, needs_work
from scintiseg.work.worker import JobOptions, StudyWorker
from scintiseg.work.workstate import FAILED as GAVE_UP
from scintiseg.work.workstate import WorkState

log = logging.getLogger(__name__)


class RecoveryScan:
    """Finds and queues unfinished work on ``worker``; one scan thread at a time."""

    def __init__(
        self,
        gateway: Gateway,
        jobs: StudyJobs,
        workstate: WorkState,
        worker: StudyWorker,
        max_studies: int,
        page_size: int,
    ) -> None:
        self.gateway = gateway
        self.jobs = jobs
        self.workstate = workstate
        self.worker = worker
        self.max_studies = max_studies
        self.page_size = page_size
        self.progress: dict[str, Any] = {"state": "not run", "examined": 0, "queued": 0}
        self.thread: threading.Thread | None = None

    @property
    def wanted(self) -> bool:
        """Whether a scan has anything to look at (studies to scan, or durable records)."""
        return self.max_studies > 0 or self.workstate.durable

    def start(self, name: str = "scintiseg-recovery") -> None:
        """Run :meth:`run` on a thread, unless a scan is running already."""
        running = self.thread
        if running is not None and running.is_alive():
            return
        self.thread = threading.Thread(target=self.run, name=name, daemon=True)
        self.thread.start()

    def rescan(self, lost_nodes: list[str]) -> None:
        """Other nodes died: scan the shared index again for what they left unrecorded."""
        log.info("rescanning the index for the studies of lost node(s) %s", ", ".join(lost_nodes))
        self.start("scintiseg-rescan")

    def join(self, timeout: float) -> None:
        if self.thread is not None:
            self.thread.join(timeout)

    def unfinished_studies(self) -> Iterator[str]:
        """Studies whose result is missing, unfinished, stale or from other models."""
        total = self.gateway.count_studies()
        since = max(0, total - self.max_studies)
        while since < total and not self.worker.should_stop():
            ids = self.gateway.list_studies(since, self.page_size)
            if not ids:
                break
            for study_id in ids:
                self.progress["examined"] += 1
                try:
                    meta = self.gateway.study_metadata(study_id)
                except GatewayError:
                    continue  # deleted meanwhile
                outdated = self.jobs.pipelines().outdated if self.jobs.reprocess_on_upgrade else None
                if needs_work(meta.result, meta.last_update, outdated):
                    yield study_id
            since += len(ids)

    def requeue_recorded(self) -> int:
        """Queue the requests and retries a previous run recorded; returns how many."""
        loaded = self.workstate.load()
        queued = 0
        for item in self.workstate.list():
            if item.state == GAVE_UP:
                continue
            # recorded requests are manual ones (or their retries): they cover upgrades too
            options = JobOptions(retry_failed=item.retry_failed, force=item.force, upgrade=True)
            if self.worker.submit(item.study_id, options, not_before=item.not_before or None):
                queued += 1
        log.info("work state %s: %d record(s) loaded, %d queued", self.workstate.name, loaded, queued)
        return queued

    def run(self) -> None:
        """Queue what is unfinished (the scan's error boundary: logs, never raises)."""
        t0 = time.perf_counter()
        self.progress = {"state": "running", "examined": 0, "queued": 0, "requests": 0}
        try:
            self.progress["requests"] = self.requeue_recorded()
            if self.max_studies <= 0:
                self.progress["state"] = "done"
                return
            with self.worker.scan_lock() as ours:
                if not ours:
                    self.progress.update(state="done", skipped="another node of the cluster is scanning")
                    log.info("start-up scan: another node of the cluster is scanning")
                    return
                for study_id in self.unfinished_studies():
                    if self.worker.submit(study_id, JobOptions(from_scan=True)):
                        self.progress["queued"] += 1
        except Exception as exc:  # the scan's error boundary
            log.exception("start-up scan failed")
            self.progress["state"] = f"failed: {exc}"
            return
        self.progress["state"] = "done"
        self.progress["seconds"] = round(time.perf_counter() - t0, 3)
        log.info(
            "start-up scan: %d study(ies) examined, %d queued for processing in %.1f s",
            self.progress["examined"], self.progress["queued"], self.progress["seconds"],
        )
