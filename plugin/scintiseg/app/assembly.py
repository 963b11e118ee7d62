"""The plugin assembled: every object built once, in order, from the configuration.

:func:`assemble` is what the entry script (``plugin/scintiseg_plugin.py``) calls
once the configuration is valid. It builds, in this order and without changing
any object after it is built:

1. the :class:`~scintiseg.orthanc.gateway.OrthancGateway` on Orthanc's plugin API;
2. the work state (:func:`scintiseg.work.workstate.choose_backend`: the most durable
   one this Orthanc offers);
3. the worker steps (:func:`scintiseg.app.steps.build_steps`: pseudonymization before,
   physician labels after each job);
4. the :class:`~scintiseg.app.service.Service` (models, worker and start-up scan are
   built when Orthanc has started, by :meth:`~scintiseg.app.service.Service.start`);
5. the :class:`~scintiseg.app.backend.PluginBackend` that the REST routes answer from.

``api`` is the ``orthanc`` module; it is only handed to the adapter package
(:mod:`scintiseg.orthanc`) and to the work state, never imported here.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from scintiseg.app.backend import PluginBackend
from scintiseg.app.config import Config
from scintiseg.app.service import Service
from scintiseg.app.steps import BuiltSteps, build_steps
from scintiseg.orthanc.gateway import OrthancGateway
from scintiseg.work.workstate import WorkState, choose_backend

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Plugin:
    """Everything the entry script forwards Orthanc's events and requests to."""

    config: Config
    gateway: OrthancGateway
    workstate: WorkState
    steps: BuiltSteps
    service: Service
    backend: PluginBackend


def assemble(api: Any, config: Config) -> Plugin:
    """Build the plugin on ``api`` (the ``orthanc`` module).

    Raises ``ValueError`` when ``ScintiSeg.WorkState`` names a backend this Orthanc
    cannot offer (the entry script then stops Orthanc with the message).
    """
    gateway = OrthancGateway(api, config.result_metadata)
    workstate = choose_backend(config.work_state, api, gateway, config.work_metadata, config.work_metadata_declared)
    if not workstate.durable:
        log.warning(
            'requests and retries are not durable (work state %s); declare "%s" in UserMetadata to keep them '
            "across restarts", workstate.name, config.work_metadata,
        )
    steps = build_steps(config, gateway)
    service = Service(config, gateway, workstate=workstate, steps=steps.steps)
    backend = PluginBackend(service, gateway, labels=steps.labels)
    return Plugin(config, gateway, workstate, steps, service, backend)
