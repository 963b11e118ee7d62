"""The plugin's life: load the models, run the worker, recover unfinished studies, stop.

The assembly (:mod:`scintiseg.app.assembly`) builds one :class:`Service` at load
time (configuration already validated) and the entry script forwards Orthanc's
events:

* ``ORTHANC_STARTED`` -> :meth:`Service.start`: scan the models folder into the
  registry (:mod:`scintiseg.models.registry`; the execution provider in use is logged),
  start the registry's polling thread (folders added or removed are noticed
  within seconds), the worker (:class:`scintiseg.work.worker.Worker`, or the
  cluster's :class:`scintiseg.work.cluster.ClusterWorker` when ``ScintiSeg.Cluster``
  names a database) and the start-up scan (:mod:`scintiseg.work.recovery`);
* ``STABLE_STUDY`` -> :meth:`Service.submit`: queue the study, nothing more;
* ``POST /scintiseg/studies/{id}/process`` -> :meth:`Service.request`: record
  the request durably (:mod:`scintiseg.work.workstate`), then queue it;
* ``ORTHANC_STOPPED`` -> :meth:`Service.stop`: running jobs leave their study
  *pending* and the threads end.

Each job runs through :class:`scintiseg.work.runner.JobRunner` (claim, segment,
record, settle by :mod:`scintiseg.work.retries`). ``GET /scintiseg/status`` and
``/queue`` are drawn by :mod:`scintiseg.app.status`.

If no model can serve at start-up the error is logged and the service stays
off: Orthanc keeps storing and serving images, and the studies received
meanwhile are picked up by the scan at the next start.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from scintiseg import __version__
from scintiseg.app.config import Config
from scintiseg.app.startup import (
    Models,
    ModelsLoader,
    agreement_view,
    load_models,
    make_tracker,
    make_worker,
    model_entries,
)
from scintiseg.app.status import queue_snapshot, status_view
from scintiseg.core.store import Gateway
from scintiseg.models.registry import Registry
from scintiseg.work.failures import FailureLog
from scintiseg.work.jobs import StudyJobs
from scintiseg.work.recovery import RecoveryScan
from scintiseg.work.retries import RetryPolicy, Settler
from scintiseg.work.runner import JobRunner, Steps
from scintiseg.work.stability import StabilityTracker
from scintiseg.work.worker import JobOptions, StudyWorker
from scintiseg.work.workstate import MemoryWorkState, WorkState

log = logging.getLogger(__name__)


class Service:
    """Models + worker + start-up scan, driven by Orthanc's change events."""

    def __init__(
        self,
        config: Config,
        gateway: Gateway,
        load: ModelsLoader = load_models,
        workstate: WorkState | None = None,
        clock: Callable[[], float] = time.time,
        steps: Steps | None = None,
    ) -> None:
        self.config = config
        self.gateway = gateway
        self.load = load
        #: outstanding requests and retries (:mod:`scintiseg.work.workstate`); a cluster's replaces it
        self.workstate: WorkState = workstate if workstate is not None else MemoryWorkState(clock)
        self.clock = clock
        self.steps = steps if steps is not None else Steps()
        #: names this process in the work state's claims
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.failures = FailureLog()
        self.policy = RetryPolicy(config.retry_limit, config.retry_backoff_s)
        self.state = "stopped"
        self.error: str | None = None
        # built by start(), in this order
        self.worker: StudyWorker | None = None
        self.tracker: StabilityTracker | None = None
        self.models: Models | None = None
        self.runner: JobRunner | None = None
        self.scan: RecoveryScan | None = None
        self._lock = threading.Lock()

    # -- events ------------------------------------------------------------------------------
    def start(self) -> None:
        """Load the models and start working; logs (never raises) when that fails."""
        with self._lock:
            if self.state in ("running", "disabled"):
                return
            if not self.config.enabled:
                self.state = "disabled"
                log.warning("ScintiSeg is disabled in the configuration (ScintiSeg.Enabled = false)")
                return
            t0 = time.perf_counter()
            try:
                worker, gateway, cluster_state = make_worker(self.config, self.gateway, self._handle,
                                                             self._rescan, self.clock)
            except Exception as exc:  # PostgreSQL unreachable or refusing: keep Orthanc up
                return self._off(f"cannot use the cluster database: {exc}")
            if cluster_state is not None:  # on a cluster the work table is also the work state
                self.workstate = cluster_state
            tracker = make_tracker(self.config, self.gateway, self.submit, worker)
            try:
                models = self.load(self.config, gateway, tracker.ignore if tracker else None)
            except Exception as exc:  # models missing/corrupt, onnxruntime errors: keep Orthanc up
                return self._off(f"cannot load the models from {self.config.models_dir}: {exc}")
            settler = Settler(self.workstate, self.policy, self._resubmit, self.clock)
            self.models, self.worker, self.tracker = models, worker, tracker
            self.runner = JobRunner(
                models.jobs, self.workstate, settler, self.failures, self.owner, self.submit, self.steps
            )
            self.scan = RecoveryScan(
                self.gateway, models.jobs, self.workstate, worker,
                self.config.recovery_max_studies, self.config.recovery_page_size,
            )
            if models.registry is not None:
                models.registry.start()  # its own thread: never the change callbacks' one
            worker.start()
            if tracker is not None:
                tracker.start()
            self.state = "running"
            log.info(
                "ScintiSeg %s ready in %.1f s: models %s; execution providers %s; %d worker thread(s)",
                __version__, time.perf_counter() - t0, ", ".join(models.jobs.models),
                ", ".join(models.jobs.providers), self.config.worker_threads,
            )
            if self.scan.wanted:
                self.scan.start()

    def _off(self, error: str) -> None:
        self.state, self.error = "failed", error
        log.error("ScintiSeg is OFF: %s", error)

    def submit(self, study_id: str, retry_failed: bool = False, force: bool = False, upgrade: bool = False) -> bool:
        """Queue a study (never blocks, no I/O); False when the service is not running.

        ``retry_failed``: segment again the images whose last run failed;
        ``force``: segment every image again; ``upgrade``: segment again the images
        made by a model version that is no longer the active one.
        """
        worker = self.worker
        if worker is None or self.state != "running":
            return False
        return worker.submit(study_id, JobOptions(retry_failed=retry_failed, force=force, upgrade=upgrade))

    def request(self, study_id: str, retry_failed: bool = True, force: bool = False) -> bool:
        """A manual request: recorded durably first (it survives a restart), then queued.

        Concurrent requests for one study coalesce: into the recorded item, into the
        queued job, or into a running job that already covers them. False when the
        service is not running; a failure to record raises (the caller answers 500).
        """
        worker = self.worker
        if worker is None or self.state != "running":
            return False
        self.workstate.enqueue(study_id, retry_failed=retry_failed, force=force)
        # a manual request also segments again the images made by a superseded model version
        options = JobOptions(retry_failed=retry_failed, force=force, upgrade=True)
        return worker.submit(study_id, options, coalesce=True)

    def new_instance(self, instance_id: str) -> None:
        """An instance arrived (``NEW_INSTANCE``): note it, nothing more (no I/O)."""
        tracker = self.tracker
        if tracker is not None:
            tracker.new_instance(instance_id)

    def stop(self) -> None:
        with self._lock:
            worker, self.worker = self.worker, None
            tracker, self.tracker = self.tracker, None
            if self.state == "running":
                self.state = "stopped"
        if tracker is not None:
            tracker.stop()
        if self.registry is not None:
            self.registry.stop()
        if worker is not None:
            worker.stop(self.config.stop_timeout_s)
        if self.scan is not None:
            self.scan.join(self.config.stop_timeout_s)
        log.info("ScintiSeg stopped")

    # -- the worker's callbacks ----------------------------------------------------------------
    def _handle(self, study_id: str, should_stop: Callable[[], bool], options: JobOptions) -> object:
        runner = self.runner
        return runner.handle(study_id, should_stop, options) if runner is not None else None

    def _resubmit(self, study_id: str, options: JobOptions, not_before: float) -> bool:
        worker = self.worker
        return worker is not None and worker.submit(study_id, options, not_before=not_before)

    def _rescan(self, lost_nodes: list[str]) -> None:
        if self.scan is not None:
            self.scan.rescan(lost_nodes)

    # -- what the REST API reads ---------------------------------------------------------------
    @property
    def jobs(self) -> StudyJobs | None:
        return self.models.jobs if self.models is not None else None

    @property
    def registry(self) -> Registry | None:
        """The model registry, ``None`` until loaded."""
        return self.models.registry if self.models is not None else None

    @property
    def recovery(self) -> dict[str, Any]:
        """The start-up scan's progress (``GET /scintiseg/status``: recovery)."""
        return dict(self.scan.progress) if self.scan is not None else {"state": "not run", "examined": 0, "queued": 0}

    @property
    def retries_scheduled(self) -> int:
        runner = self.runner
        return runner.settler.retries_scheduled if runner is not None else 0

    def status(self) -> dict[str, Any]:
        """What ``GET /scintiseg/status`` answers."""
        return status_view(
            state=self.state, error=self.error, config=self.config, jobs=self.jobs, worker=self.worker,
            tracker=self.tracker, recovery=self.recovery, workstate=self.workstate,
            retries_scheduled=self.retries_scheduled,
        )

    def queue_snapshot(self) -> dict[str, Any]:
        """Pending, running and (since start-up) failed studies, for ``GET /scintiseg/queue``."""
        return queue_snapshot(self.state, self.worker, self.failures, self.workstate)

    def model_entries(self) -> list[dict[str, Any]]:
        """Every model folder, loaded or not (``GET /scintiseg/models``)."""
        return model_entries(self.registry)

    def reload_models(self) -> list[dict[str, Any]] | None:
        """Rescan the models folder now; ``None`` when the service has no registry."""
        registry = self.registry
        return model_entries(registry.reload()) if registry is not None else None

    def agreement(self, name: str, version: str) -> dict[str, Any] | None:
        """A shadow model's agreement summary; ``None`` when no folder has that model."""
        return agreement_view(self.models, name, version)

    def wait_idle(self, timeout: float) -> bool:
        worker = self.worker
        return worker.wait_idle(timeout) if worker else True
