"""One study job as a worker thread runs it: steps before, claim, segment, record, settle, steps after.

:meth:`JobRunner.handle` is the :data:`scintiseg.work.worker.Handler` of both
workers. In order:

1. the *before* steps (e.g. pseudonymization, :mod:`scintiseg.app.steps`): one that
   takes the study (:class:`Taken`) ends the job there (the study is not segmented);
   the studies it names instead are queued;
2. the study is claimed in the work state (on a cluster: the worker's claim in the
   work table); a study claimed elsewhere is left to its owner;
3. :meth:`scintiseg.work.jobs.StudyJobs.run` segments what needs it and records the
   result on the study;
4. the outcome is noted in the :class:`~scintiseg.work.failures.FailureLog` and the
   work item settled by the :class:`~scintiseg.work.retries.Settler`;
5. the *after* steps (e.g. physician labels in) see the result.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence

from scintiseg.core.result import StudyResult
from scintiseg.work.failures import FailureLog
from scintiseg.work.jobs import StudyJobs
from scintiseg.work.retries import Settler
from scintiseg.work.worker import JobOptions
from scintiseg.work.workstate import WorkState

log = logging.getLogger(__name__)

#: How long a job's claim on its study holds (a dead owner's claim lapses after it).
LEASE_S = 3600.0

@dataclasses.dataclass(frozen=True)
class Taken:
    """A before step took the study: it is not segmented; ``instead`` are queued in its place."""

    instead: tuple[str, ...] = ()


#: A step before the study job: ``step(study_id, should_stop)``, :class:`Taken` when it took the study.
BeforeStep = Callable[[str, Callable[[], bool]], Taken | None]
#: A step after the study job: ``step(study_id, result, should_stop)``.
AfterStep = Callable[[str, StudyResult | None, Callable[[], bool]], None]


@dataclasses.dataclass(frozen=True)
class Steps:
    """The worker steps around each study job; each has its own error boundary."""

    before: Sequence[BeforeStep] = ()
    after: Sequence[AfterStep] = ()


class JobRunner:
    """Runs study jobs for ``owner`` (this process's name in the work state's claims).

    ``submit`` queues a study (the studies a before step names instead of its own).
    """

    def __init__(
        self,
        jobs: StudyJobs,
        workstate: WorkState,
        settler: Settler,
        failures: FailureLog,
        owner: str,
        submit: Callable[[str], object],
        steps: Steps = Steps(),
    ) -> None:
        self.jobs = jobs
        self.workstate = workstate
        self.settler = settler
        self.failures = failures
        self.owner = owner
        self.submit = submit
        self.steps = steps

    def handle(self, study_id: str, should_stop: Callable[[], bool], options: JobOptions) -> StudyResult | None:
        for before in self.steps.before:
            taken = before(study_id, should_stop)
            if taken is not None:
                for other in taken.instead:
                    self.submit(other)
                return None
        item = self.workstate.claim(study_id, self.owner, LEASE_S)
        if item is None:
            log.info("study %s: claimed by another node, left to it", study_id)
            return None
        options = options.merge(JobOptions(retry_failed=item.retry_failed, force=item.force))
        item = dataclasses.replace(item, retry_failed=options.retry_failed, force=options.force)  # what the job does
        result = self.jobs.run(
            study_id, should_stop, retry_failed=options.retry_failed, force=options.force, upgrade=options.upgrade
        )
        self.failures.note(study_id, result)
        self.settler.settle(item, result, should_stop())
        for after in self.steps.after:
            after(study_id, result, should_stop)
        return result
