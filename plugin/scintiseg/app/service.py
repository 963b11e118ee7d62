"""The plugin's life: load models, run the worker, recover unfinished studies.

The entry script ``scintiseg_plugin.py`` builds one :class:`Service` at load
time (configuration already validated) and forwards Orthanc's events:

* ``ORTHANC_STARTED`` -> :meth:`Service.start`: scan the models folder into the
  registry (:mod:`scintiseg.models.registry`; the execution provider in use is logged),
  start the registry's polling thread (folders added or removed are noticed
  within seconds), the worker threads, and a background scan of the studies for
  unfinished work left by a previous run (:meth:`Service.recover`);
* ``STABLE_STUDY`` -> :meth:`Service.submit`: queue the study, nothing more;
* ``POST /scintiseg/studies/{id}/process`` -> :meth:`Service.request`: record
  the request durably (:mod:`scintiseg.work.workstate`), then queue it;
* ``ORTHANC_STOPPED`` -> :meth:`Service.stop`: running jobs leave their study
  *pending* and the threads end.

Each job claims its study in the work state first and settles it after: a
success forgets the request; a ``failed`` result that is ``retriable``
(:mod:`scintiseg.work.jobs`) is retried ``RetryLimit`` times, the n-th after
``RetryBackoffSeconds * 2**(n-1)`` seconds (at most an hour), the retry
recorded so that a restart keeps it; after the last one the study stays
``failed`` in ``GET /scintiseg/queue`` until a manual request.

If no model can serve at start-up the error is logged and the service stays
off: Orthanc keeps storing and serving images, and the studies received
meanwhile are picked up by the scan at the next start.

Nothing here imports ``orthanc``: :func:`orthanc_log_handler` receives the
module to forward Python ``logging`` to Orthanc's log.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, cast

from scintiseg import __version__
from scintiseg.app.config import Config
from scintiseg.core.store import Gateway, GatewayError
from scintiseg.work.cluster import ClusterWorker, ClusterWorkState, FencedGateway, queue_view
from scintiseg.work.jobs import FAILED, PENDING, StudyJobs, needs_work, now_iso
from scintiseg.work.stability import StabilityTracker
from scintiseg.work.worker import JobOptions, Worker
from scintiseg.work.workstate import FAILED as GAVE_UP
from scintiseg.work.workstate import MemoryWorkState, WorkItem, WorkState

log = logging.getLogger(__name__)

#: How many failed studies :meth:`Service.queue_snapshot` remembers (the newest).
MAX_FAILURES = 200

#: How long a job's claim on its study holds (a dead owner's claim lapses after it).
LEASE_S = 3600.0
#: The longest retry back-off (seconds).
MAX_BACKOFF_S = 3600.0

#: Builds the :class:`StudyJobs` (loads the models); replaced in tests.
JobsFactory = Callable[[Config, Gateway], StudyJobs]
#: A worker step before the study job (e.g. pseudonymization, :mod:`scintiseg.app.steps`):
#: ``step(study_id, should_stop)`` is True when it took the study, which is then not segmented.
BeforeStep = Callable[[str, Callable[[], bool]], bool]
#: A worker step after the study job (e.g. physician labels): ``step(study_id, result, should_stop)``.
AfterStep = Callable[[str, "dict[str, Any] | None", Callable[[], bool]], None]


def load_jobs(config: Config, gateway: Gateway) -> StudyJobs:
    """Scan the models folder into a registry and wrap it in the pipelines and the study jobs.

    Raises when no model can serve (the service then stays off, Orthanc keeps running).
    """
    from scintiseg.models.registry import Registry, onnx_loader
    from scintiseg.pipeline.image import OutputOptions, PipelineSource
    from scintiseg.pipeline.shadow import AgreementLog

    registry = Registry(
        config.models_dir, onnx_loader(config.providers, config.inference_threads), poll_s=config.models_poll_s
    )
    current = registry.current
    if not current.active:
        refused = "; ".join(f"{e.folder.name}: {e.error}" for e in current.entries if e.error)
        raise RuntimeError(f"no model can serve ({refused or 'no model folder'})")
    options = OutputOptions(
        series_number=config.series_number,
        series_description=config.series_description,
        preview_series_number=config.preview_series_number,
        preview_series_description=config.preview_series_description,
    )
    return StudyJobs(
        gateway,
        PipelineSource(registry, options, AgreementLog(config.shadow_agreement_file)),
        config.selection,
        current.providers,
        store_preview=config.store_preview,
        reprocess_on_upgrade=config.reprocess_on_upgrade,
        delete_superseded_seg=config.delete_superseded_seg,
    )


def backoff_s(config: Config, attempt: int) -> float:
    """Delay before retry number ``attempt`` (1, 2, ...): doubling from ``RetryBackoffSeconds``."""
    return min(MAX_BACKOFF_S, config.retry_backoff_s * 2 ** max(0, attempt - 1))


class Service:
    """Models + worker + start-up scan, driven by Orthanc's change events."""

    def __init__(
        self,
        config: Config,
        gateway: Gateway,
        jobs_factory: JobsFactory = load_jobs,
        workstate: WorkState | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.gateway = gateway
        self.jobs_factory = jobs_factory
        #: outstanding requests and retries (:mod:`scintiseg.work.workstate`)
        self.workstate: WorkState = workstate if workstate is not None else MemoryWorkState(clock)
        self.clock = clock
        #: names this process in the work state's claims
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.retries_scheduled = 0
        self.jobs: StudyJobs | None = None
        self.worker: Worker | ClusterWorker | None = None
        self.state = "stopped"
        self.error: str | None = None
        self.recovery: dict[str, Any] = {"state": "not run", "examined": 0, "queued": 0}
        self._recovery_thread: threading.Thread | None = None
        self._lock = threading.Lock()
        #: study id -> {"study", "reason", "updated"} of the last failed job, newest last
        self._failures: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._failures_lock = threading.Lock()
        #: hands studies on StableAge after their last instance (``TrackStability``)
        self.tracker: StabilityTracker | None = None
        #: worker steps around each study job; each has its own error boundary
        self.before_job: list[BeforeStep] = []
        self.after_job: list[AfterStep] = []

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
                cluster = self._cluster_worker()
            except Exception as exc:  # PostgreSQL unreachable or refusing: keep Orthanc up
                self.state = "failed"
                self.error = f"cannot use the cluster database: {exc}"
                log.error("ScintiSeg is OFF: %s", self.error)
                return
            gateway = self.gateway if cluster is None else cast(Gateway, FencedGateway(self.gateway, cluster))
            try:
                self.jobs = self.jobs_factory(self.config, gateway)
            except Exception as exc:  # models missing/corrupt, onnxruntime errors: keep Orthanc up
                self.state = "failed"
                self.error = f"cannot load the models from {self.config.models_dir}: {exc}"
                log.error("ScintiSeg is OFF: %s", self.error)
                return
            registry = self.registry
            if registry is not None:
                registry.start()  # its own thread: never the change callbacks' one
            self.worker = cluster or Worker(self._handle, self.config.worker_threads, clock=self.clock)
            self.worker.start()
            if self.config.track_stability:
                self.tracker = StabilityTracker(
                    self.gateway.instance_study, self.submit, self.config.stable_age_s,
                    on_arrival=cluster.arrived if cluster else None,
                )
                self.jobs.on_stored = self.tracker.ignore
                self.tracker.start()
            self.state = "running"
            log.info(
                "ScintiSeg %s ready in %.1f s: models %s; execution providers %s; %d worker thread(s)",
                __version__,
                time.perf_counter() - t0,
                ", ".join(self.jobs.models),
                ", ".join(self.jobs.providers),
                self.config.worker_threads,
            )
            if self.config.recovery_max_studies > 0 or self.workstate.durable:
                self._recovery_thread = threading.Thread(target=self.recover, name="scintiseg-recovery", daemon=True)
                self._recovery_thread.start()

    def _cluster_worker(self) -> ClusterWorker | None:
        """The worker of the PostgreSQL work table when the configuration names one.

        On a cluster the table is also the work state (requests, retries): it replaces
        the backend chosen for a single node.
        """
        uri = self.config.cluster_database
        if not uri:
            return None
        worker = ClusterWorker(
            uri, self.config.cluster_node, self._handle, self.config.worker_threads, self.config.cluster_lease_s,
            stable_age_s=self.config.stable_age_s,
        )
        worker.prepare()
        worker.on_node_lost = self._rescan
        self.workstate = ClusterWorkState(worker)
        log.info("cluster: node %s, lease %.0f s, work state in PostgreSQL",
                 self.config.cluster_node, self.config.cluster_lease_s)
        return worker

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
        registry = self.registry
        if registry is not None:
            registry.stop()
        if worker is not None:
            worker.stop(self.config.stop_timeout_s)
        if self._recovery_thread is not None:
            self._recovery_thread.join(self.config.stop_timeout_s)
        log.info("ScintiSeg stopped")

    # -- the job ---------------------------------------------------------------------------
    def _handle(self, study_id: str, should_stop: Callable[[], bool], options: JobOptions) -> object:
        jobs = self.jobs
        if jobs is None:
            return None
        if any(step(study_id, should_stop) for step in self.before_job):
            return None
        item = self.workstate.claim(study_id, self.owner, LEASE_S)
        if item is None:
            log.info("study %s: claimed by another node, left to it", study_id)
            return None
        options = options.merge(JobOptions(retry_failed=item.retry_failed, force=item.force))
        item = dataclasses.replace(item, retry_failed=options.retry_failed, force=options.force)  # what the job does
        result = jobs.run(
            study_id, should_stop, retry_failed=options.retry_failed, force=options.force, upgrade=options.upgrade
        )
        self._note_outcome(study_id, result)
        self._settle(item, result, should_stop())
        for after in self.after_job:
            after(study_id, result, should_stop)
        return result

    def _settle(self, item: WorkItem, result: dict[str, Any] | None, stopping: bool) -> None:
        """Forget, retry later or give up the job's work item (after the result was recorded)."""
        status = result.get("status") if result else None
        if stopping and status in (PENDING, None):
            return  # interrupted: the record (if any) is queued again at the next start
        if status != FAILED or not (result or {}).get("retriable"):
            self.workstate.complete(item)
            return
        reason = str((result or {}).get("reason") or "")
        attempt = item.attempts + 1
        if attempt > self.config.retry_limit:
            self.workstate.fail(item, reason, None)
            log.warning("study %s: failed %d time(s), no more automatic retries: %s", item.study_id, attempt, reason)
            return
        retry_at = self.clock() + backoff_s(self.config, attempt)
        self.workstate.fail(item, reason, retry_at)
        worker = self.worker
        if worker is not None:
            worker.submit(item.study_id, JobOptions(retry_failed=True), not_before=retry_at)
            self.retries_scheduled += 1
        log.warning(
            "study %s: failed (attempt %d of %d), retry in %.0f s: %s",
            item.study_id, attempt, self.config.retry_limit + 1, retry_at - self.clock(), reason,
        )

    def _note_outcome(self, study_id: str, result: dict[str, Any] | None) -> None:
        with self._failures_lock:
            self._failures.pop(study_id, None)
            if result is not None and result.get("status") == "failed":
                self._failures[study_id] = {
                    "study": study_id,
                    "reason": str(result.get("reason") or ""),
                    "updated": result.get("updated"),
                }
                while len(self._failures) > MAX_FAILURES:
                    self._failures.popitem(last=False)

    # -- start-up scan ---------------------------------------------------------------------
    def _stopping(self) -> bool:
        worker = self.worker
        return worker is None or worker.should_stop()

    def unfinished_studies(self) -> Iterator[str]:
        """Studies whose result is missing, unfinished, stale or from other models.

        Looks at the newest ``RecoveryScanMaxStudies`` studies, a page of
        ``RecoveryScanPageSize`` at a time (one cheap index call per study).
        """
        jobs = self.jobs
        if jobs is None:
            return
        total = self.gateway.count_studies()
        start = max(0, total - self.config.recovery_max_studies)
        page = self.config.recovery_page_size
        since = start
        while since < total and not self._stopping():
            ids = self.gateway.list_studies(since, page)
            if not ids:
                break
            for study_id in ids:
                self.recovery["examined"] += 1
                try:
                    meta = self.gateway.study_metadata(study_id)
                except GatewayError:
                    continue  # deleted meanwhile
                outdated = jobs.pipelines().outdated if jobs.reprocess_on_upgrade else None
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
            worker = self.worker
            if worker is not None and worker.submit(item.study_id, options, not_before=item.not_before or None):
                queued += 1
        log.info("work state %s: %d record(s) loaded, %d queued", self.workstate.name, loaded, queued)
        return queued

    def recover(self) -> None:
        """Queue what a previous run left unfinished (runs on its own thread)."""
        t0 = time.perf_counter()
        self.recovery = {"state": "running", "examined": 0, "queued": 0, "requests": 0}
        try:
            self.recovery["requests"] = self.requeue_recorded()
            if self.config.recovery_max_studies <= 0:
                self.recovery["state"] = "done"
                return
            with self._scan_lock() as ours:
                if not ours:
                    self.recovery.update(state="done", skipped="another node of the cluster is scanning")
                    log.info("start-up scan: another node of the cluster is scanning")
                    return
                for study_id in self.unfinished_studies():
                    worker = self.worker
                    if self.state == "running" and worker and worker.submit(study_id, JobOptions(from_scan=True)):
                        self.recovery["queued"] += 1
        except Exception as exc:  # the scan's error boundary
            log.exception("start-up scan failed")
            self.recovery["state"] = f"failed: {exc}"
            return
        self.recovery["state"] = "done"
        self.recovery["seconds"] = round(time.perf_counter() - t0, 3)
        log.info(
            "start-up scan: %d study(ies) examined, %d queued for processing in %.1f s",
            self.recovery["examined"],
            self.recovery["queued"],
            self.recovery["seconds"],
        )

    def _rescan(self, lost_nodes: list[str]) -> None:
        """Another node died: scan the shared index again for what it left unrecorded."""
        running = self._recovery_thread
        if running is not None and running.is_alive():
            return
        log.info("rescanning the index for the studies of lost node(s) %s", ", ".join(lost_nodes))
        self._recovery_thread = threading.Thread(target=self.recover, name="scintiseg-rescan", daemon=True)
        self._recovery_thread.start()

    @contextmanager
    def _scan_lock(self) -> Iterator[bool]:
        """One node of a cluster scans the shared index at a time (a lone node always does)."""
        worker = self.worker
        if not isinstance(worker, ClusterWorker):
            yield True
            return
        with worker.scan_lock() as ours:
            yield ours

    # -- introspection ---------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """What ``GET /scintiseg/status`` answers."""
        jobs, worker = self.jobs, self.worker
        return {
            "software": f"ScintiSeg {__version__}",
            "state": self.state,
            "error": self.error,
            "models": jobs.models if jobs else [],
            "providers": jobs.providers if jobs else [],
            "models_dir": str(self.config.models_dir),
            "pipeline_runs": jobs.pipeline_runs if jobs else 0,
            "worker": worker.stats() if worker else None,
            "stability_tracker": (
                {"stable_age_s": self.tracker.stable_age, "waiting": self.tracker.pending(),
                 "handed_on": self.tracker.handed_on}
                if self.tracker else None
            ),
            "recovery": dict(self.recovery),
            "work_state": {"backend": self.workstate.name, "durable": self.workstate.durable,
                           "records": len(self.workstate.list()), "retries_scheduled": self.retries_scheduled},
            "cluster": self._cluster_status(),
        }

    def _cluster_status(self) -> dict[str, Any] | None:
        """The cluster beside this node's own counts: nodes, who runs what, what waits, counts."""
        worker = self.worker
        if not isinstance(worker, ClusterWorker):
            return None
        view = queue_view(worker.snapshot(), worker.node)
        return {
            **view["cluster"],
            "lease_s": worker.lease_s,
            "takeovers_by_this_node": worker.takeovers,
            "failed": len(view["failed"]),
            "error": worker.last_error,
        }

    def queue_snapshot(self) -> dict[str, Any]:
        """Pending, running and (since start-up) failed studies, for ``GET /scintiseg/queue``."""
        worker = self.worker
        if isinstance(worker, ClusterWorker):  # the cluster's table, the same on every node
            return {"state": self.state, **queue_view(worker.snapshot(), worker.node)}
        stats = worker.stats() if worker else {}
        with self._failures_lock:
            failed = list(reversed(self._failures.values()))  # newest first
        items = self.workstate.list()
        attempts = {i.study_id: i for i in items}
        listed = {f["study"] for f in failed}
        # studies that gave up in an earlier run are recorded too
        failed += [
            {"study": i.study_id, "reason": i.reason, "updated": None}
            for i in items if i.state == GAVE_UP and i.study_id not in listed
        ]
        for entry in failed:
            item = attempts.get(entry["study"])
            entry["attempts"] = item.attempts if item else 1
            entry["retry_at"] = _iso(item.not_before) if item and item.state != GAVE_UP else None
        return {
            "state": self.state,
            "pending": list(stats.get("queued_ids") or []),
            "running": list(stats.get("running") or []),
            "retrying": [
                {"study": i.study_id, "attempts": i.attempts, "retry_at": _iso(i.not_before), "reason": i.reason}
                for i in items if i.state != GAVE_UP and i.attempts > 0
            ],
            "failed": failed,
        }

    # -- models ----------------------------------------------------------------------------
    @property
    def registry(self) -> Any:
        """The model registry (:class:`scintiseg.models.registry.Registry`), ``None`` until loaded."""
        jobs = self.jobs
        return getattr(jobs.pipelines, "registry", None) if jobs else None

    def model_entries(self) -> list[dict[str, Any]]:
        """Every model folder, loaded or not (``GET /scintiseg/models``)."""
        registry = self.registry
        return [e.describe() for e in registry.current.entries] if registry is not None else []

    def reload_models(self) -> list[dict[str, Any]] | None:
        """Rescan the models folder now; ``None`` when the service has no registry."""
        registry = self.registry
        if registry is None:
            return None
        return [e.describe() for e in registry.reload().entries]

    def agreement(self, name: str, version: str) -> dict[str, Any] | None:
        """A shadow model's agreement summary; ``None`` when no folder has that model."""
        registry, jobs = self.registry, self.jobs
        if registry is None or jobs is None:
            return None
        entry = registry.current.entry(name, version)
        if entry is None:
            return None
        log_ = getattr(jobs.pipelines, "agreement", None)
        summary = log_.summary(entry.ident) if log_ is not None else {"images": 0}
        return {"model": entry.ident, "stage": entry.stage, **summary}

    def wait_idle(self, timeout: float) -> bool:
        worker = self.worker
        return worker.wait_idle(timeout) if worker else True


def _iso(epoch: float) -> str | None:
    return now_iso(epoch) if epoch else None


class OrthancLogHandler(logging.Handler):
    """Python ``logging`` records to Orthanc's log.

    Records at ``visible`` level and above go to ``LogWarning`` (shown by a
    default Orthanc), errors to ``LogError``, the rest to ``LogInfo`` (shown
    with ``--verbose``).
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
