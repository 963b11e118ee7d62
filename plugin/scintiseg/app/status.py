"""What ``GET /scintiseg/status`` and ``GET /scintiseg/queue`` answer, drawn from the service's parts.

Pure views: they read the worker (:class:`~scintiseg.work.worker.StudyWorker`), the
failure log, the work state and the start-up scan, and change nothing. On a cluster
the queue is the work table's, the same on every node
(:meth:`~scintiseg.work.worker.StudyWorker.shared_queue`).
"""

from __future__ import annotations

from typing import Any

from scintiseg import __version__
from scintiseg.app.config import Config
from scintiseg.core.clock import now_iso
from scintiseg.work.failures import FailureLog
from scintiseg.work.jobs import StudyJobs
from scintiseg.work.stability import StabilityTracker
from scintiseg.work.worker import StudyWorker
from scintiseg.work.workstate import FAILED as GAVE_UP
from scintiseg.work.workstate import WorkState


def status_view(
    *,
    state: str,
    error: str | None,
    config: Config,
    jobs: StudyJobs | None,
    worker: StudyWorker | None,
    tracker: StabilityTracker | None,
    recovery: dict[str, Any],
    workstate: WorkState,
    retries_scheduled: int,
) -> dict[str, Any]:
    """``GET /scintiseg/status``: models, providers, worker, tracker, scan, work state, cluster."""
    return {
        "software": f"ScintiSeg {__version__}",
        "state": state,
        "error": error,
        "models": jobs.models if jobs else [],
        "providers": jobs.providers if jobs else [],
        "models_dir": str(config.models_dir),
        "pipeline_runs": jobs.pipeline_runs if jobs else 0,
        "worker": worker.stats() if worker else None,
        "stability_tracker": (
            {"stable_age_s": tracker.stable_age, "waiting": tracker.pending(), "handed_on": tracker.handed_on}
            if tracker else None
        ),
        "recovery": dict(recovery),
        "work_state": {"backend": workstate.name, "durable": workstate.durable,
                       "records": len(workstate.list()), "retries_scheduled": retries_scheduled},
        "cluster": worker.cluster_status() if worker else None,
    }


def queue_snapshot(
    state: str, worker: StudyWorker | None, failures: FailureLog, workstate: WorkState
) -> dict[str, Any]:
    """``GET /scintiseg/queue``: pending, running, retrying and failed studies."""
    shared = worker.shared_queue() if worker else None
    if shared is not None:  # the cluster's table, the same on every node
        return {"state": state, **shared}
    stats = worker.stats() if worker else {}
    failed = failures.newest_first()
    items = workstate.list()
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
        "state": state,
        "pending": list(stats.get("queued_ids") or []),
        "running": list(stats.get("running") or []),
        "retrying": [
            {"study": i.study_id, "attempts": i.attempts, "retry_at": _iso(i.not_before), "reason": i.reason}
            for i in items if i.state != GAVE_UP and i.attempts > 0
        ],
        "failed": failed,
    }


def _iso(epoch: float) -> str | None:
    return now_iso(epoch) if epoch else None
