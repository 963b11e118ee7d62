"""What the service builds when Orthanc has started: the models, the worker, the stability tracker.

The models, and what the REST API shows of them:

:func:`load_models` scans the models folder into a :class:`~scintiseg.models.registry.Registry`
(ONNX sessions by :func:`~scintiseg.models.registry.onnx_loader`), wraps it in the
pipelines (:class:`~scintiseg.pipeline.image.PipelineSource`, with the shadow models'
:class:`~scintiseg.pipeline.shadow.AgreementLog`) and the study jobs
(:class:`~scintiseg.work.jobs.StudyJobs`). The service calls it at start-up; tests
give the service a loader of their own (:data:`ModelsLoader`).

The worker: :func:`make_worker` builds the local :class:`~scintiseg.work.worker.Worker`,
or the cluster's :class:`~scintiseg.work.cluster.ClusterWorker` when the configuration
names a database (its work table is then also the work state, and the jobs write their
results through its fence).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from scintiseg.app.config import Config
from scintiseg.core.store import Gateway
from scintiseg.models.registry import ModelSet, Registry, onnx_loader
from scintiseg.pipeline.image import OutputOptions, PipelineSource
from scintiseg.pipeline.shadow import AgreementLog
from scintiseg.work.cluster import ClusterWorker, ClusterWorkState, FencedGateway
from scintiseg.work.jobs import StudyJobs
from scintiseg.work.stability import StabilityTracker
from scintiseg.work.worker import Handler, StudyWorker, Worker
from scintiseg.work.workstate import WorkState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Models:
    """What the models loader gives: the study jobs, and the registry and shadow log behind them."""

    jobs: StudyJobs
    registry: Registry | None = None
    agreement: AgreementLog | None = None


#: Loads the models into study jobs: ``load(config, gateway, on_stored)``; replaced in tests.
ModelsLoader = Callable[[Config, Gateway, Callable[[str], object] | None], Models]


def load_models(config: Config, gateway: Gateway, on_stored: Callable[[str], object] | None = None) -> Models:
    """Scan the models folder into a registry and wrap it in the pipelines and the study jobs.

    Raises when no model can serve (the service then stays off, Orthanc keeps running).
    """
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
    agreement = AgreementLog(config.shadow_agreement_file)
    jobs = StudyJobs(
        gateway,
        PipelineSource(registry, options, agreement),
        config.selection,
        current.providers,
        store_preview=config.store_preview,
        reprocess_on_upgrade=config.reprocess_on_upgrade,
        delete_superseded_seg=config.delete_superseded_seg,
        on_stored=on_stored,
    )
    return Models(jobs, registry, agreement)


def model_entries(models: Registry | ModelSet | None) -> list[dict[str, Any]]:
    """Every model folder of the registry's current set (or of ``models``), loaded or not."""
    if models is None:
        return []
    current = models.current if isinstance(models, Registry) else models
    return [e.describe() for e in current.entries]


def agreement_view(models: Models | None, name: str, version: str) -> dict[str, Any] | None:
    """A shadow model's agreement summary; ``None`` when no folder has that model."""
    registry = models.registry if models is not None else None
    entry = registry.current.entry(name, version) if registry is not None else None
    if models is None or entry is None:
        return None
    summary = models.agreement.summary(entry.ident) if models.agreement is not None else {"images": 0}
    return {"model": entry.ident, "stage": entry.stage, **summary}


#: The id (``GET /plugins``) of the orthanc-postgresql index plugin.
POSTGRESQL_INDEX = "postgresql-index"


def cluster_database(config: Config, gateway: Gateway) -> str | None:
    """The cluster's database, or ``None`` when this node works alone.

    ``ClusterDatabase`` is used as given. A database taken from Orthanc's ``PostgreSQL``
    section is used only when Orthanc's index runs on that plugin: the section may be there
    for another run (the plugin not loaded, the index on SQLite).
    """
    uri = config.cluster_database
    if not uri or not config.cluster_database_from_index:
        return uri
    plugin = gateway.database_plugin()
    if plugin != POSTGRESQL_INDEX:
        log.warning(
            "cluster: the configuration has a PostgreSQL index section but Orthanc's index runs on %s: "
            "this node works alone (set ScintiSeg.ClusterDatabase to share a work table anyway)",
            plugin or "its built-in SQLite",
        )
        return None
    return uri


def make_worker(
    config: Config,
    gateway: Gateway,
    handler: Handler,
    on_node_lost: Callable[[list[str]], object],
    clock: Callable[[], float],
) -> tuple[StudyWorker, Gateway, WorkState | None]:
    """(worker, the gateway the jobs write through, the cluster's work state or ``None``).

    Raises when the cluster database is unreachable or refuses, or when Orthanc cannot say
    which index it runs on (the service stays off).
    """
    uri = cluster_database(config, gateway)
    if not uri:
        return Worker(handler, config.worker_threads, clock=clock), gateway, None
    worker = ClusterWorker(
        uri, config.cluster_node, handler, config.worker_threads, config.cluster_lease_s,
        stable_age_s=config.stable_age_s, on_node_lost=on_node_lost,
    )
    worker.prepare()
    log.info("cluster: node %s, lease %.0f s, work state in PostgreSQL", config.cluster_node, config.cluster_lease_s)
    return worker, FencedGateway(gateway, worker), ClusterWorkState(worker)


def make_tracker(
    config: Config, gateway: Gateway, submit: Callable[[str], object], worker: StudyWorker
) -> StabilityTracker | None:
    """Hands studies on StableAge after their last instance (``TrackStability``), else ``None``."""
    if not config.track_stability:
        return None
    return StabilityTracker(gateway.instance_study, submit, config.stable_age_s, on_arrival=worker.arrived)
