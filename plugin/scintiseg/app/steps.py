"""What the worker does around the segmentation job: pseudonymize first, read labels after.

:func:`build_steps` makes the :class:`~scintiseg.work.runner.Steps` that the
assembly hands to the :class:`~scintiseg.app.service.Service`:

* before the job, with ``Anonymization.Enabled``: :class:`~scintiseg.intake.anonymize.Anonymizer`
  copies a non-pseudonymous study into its pseudonymized twin and drops (or keeps) the
  original; the original is then *not* segmented, its twin is queued instead;
* after the job, when the labels metadata is declared: :class:`~scintiseg.intake.labels.LabelIntake`
  reads the physician labels (MANUAL SEG, RTSTRUCT) that arrived in the study, records them
  (accepted with their masks' summary, or refused with a reason) and the AI-vs-physician
  agreement.

Both run on the worker thread, on the stable study, never on Orthanc's change-callback
thread. Nothing here imports ``orthanc``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from scintiseg.app.config import Config
from scintiseg.core.store import Gateway
from scintiseg.intake.anonymize import Anonymizer
from scintiseg.intake.labels import LabelIntake
from scintiseg.work.runner import AfterStep, BeforeStep, Steps, Taken


@dataclasses.dataclass(frozen=True)
class BuiltSteps:
    """The worker steps, and the objects behind them (for the REST API and the tests)."""

    steps: Steps
    anonymizer: Anonymizer | None = None
    labels: LabelIntake | None = None


def pseudonymize_step(anonymizer: Anonymizer) -> BeforeStep:
    """The before step: a study that is not pseudonymous is copied (its twin queued), not segmented."""

    def pseudonymize(study_id: str, should_stop: Callable[[], bool]) -> Taken | None:
        outcome = anonymizer.run(study_id, should_stop)
        if outcome is None:
            return None  # pseudonymous already: segment it
        return Taken(instead=(outcome.pseudonymized,) if outcome.pseudonymized is not None else ())

    return pseudonymize


def build_steps(config: Config, gateway: Gateway) -> BuiltSteps:
    """The configured steps around each study job."""
    before: list[BeforeStep] = []
    after: list[AfterStep] = []
    anonymizer = labels = None
    if config.anonymization.enabled:
        anonymizer = Anonymizer(config.anonymization, gateway)
        before.append(pseudonymize_step(anonymizer))
    if config.labels_metadata:
        labels = LabelIntake(gateway, config.labels_metadata)
        after.append(labels.step)
    return BuiltSteps(Steps(tuple(before), tuple(after)), anonymizer, labels)
