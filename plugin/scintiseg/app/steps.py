"""What the worker does around the segmentation job: pseudonymize first, read labels after.

:func:`install_steps` plugs the optional steps into the :class:`~scintiseg.app.service.Service`
built by the entry script:

* before the job, with ``Anonymization.Enabled``: :class:`~scintiseg.intake.anonymize.Anonymizer`
  copies a non-pseudonymous study into its pseudonymized twin and drops (or keeps) the
  original; the original is then *not* segmented, its twin is queued instead;
* after the job, when the labels metadata is declared: :class:`~scintiseg.dicom.labels.LabelIntake`
  reads the physician labels (MANUAL SEG, RTSTRUCT) that arrived in the study, records them
  (accepted with their masks' summary, or refused with a reason) and the AI-vs-physician
  agreement.

Both run on the worker thread, on the stable study, never on Orthanc's change-callback
thread. Nothing here imports ``orthanc``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from scintiseg.app.config import Config
from scintiseg.app.service import Service
from scintiseg.core.store import Gateway
from scintiseg.intake.anonymize import Anonymizer


def install_steps(service: Service, config: Config, gateway: Gateway) -> dict[str, Any]:
    """Add the configured steps to ``service``; returns them by name (for status and tests)."""
    steps: dict[str, Any] = {}
    if config.anonymization.enabled:
        anonymizer = Anonymizer(config.anonymization, gateway)
        steps["anonymizer"] = anonymizer

        def pseudonymize(study_id: str, should_stop: Callable[[], bool]) -> bool:
            outcome = anonymizer.run(study_id, should_stop)
            if outcome is None:
                return False  # pseudonymous already: segment it
            if outcome.pseudonymized is not None:
                service.submit(outcome.pseudonymized)
            return True

        service.before_job.append(pseudonymize)
    if config.labels_metadata:
        from scintiseg.intake.labels import LabelIntake

        intake = LabelIntake(gateway, config.labels_metadata)
        steps["labels"] = intake
        service.after_job.append(intake.step)
    return steps
