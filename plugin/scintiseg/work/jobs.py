"""The per-study job: which NM images to segment, segment them, record the result.

:meth:`StudyJobs.run` is called by a worker thread with an Orthanc study id
when the study became stable (or was found unfinished at start-up). It

1. takes one snapshot of the models (:class:`scintiseg.models.registry.ModelSet`, through
   the pipeline it is given): the whole job runs on it, even if the registry
   reloads meanwhile;
2. reads the study's recorded result and lists its series from the index only
   (no file is read): a study without an accepted modality, series description
   or SOP class, or whose series no model applies to, is *skipped* with a reason
   and no model run;
3. segments each accepted instance that has no entry yet (or, on request or with
   ``ReprocessOnUpgrade``, whose entry was made by a model version that is no
   longer the active one: the new SEG series is added, the old SEG deleted when
   ``DeleteSupersededSeg`` says so), storing one SEG per instance in the same
   study and recording progress after each image; each image entry records the
   models that made it;
4. records the study result (JSON, see :func:`summary`).

Nothing is done twice: our SEGs are not accepted instances, so the study
turning stable again after they arrive finds nothing to do and writes
nothing; the SEG UIDs are deterministic, so even a re-store changes nothing.

:meth:`StudyJobs.run` is the job's error boundary: any exception is logged with
its traceback and recorded as a readable reason on the study; nothing reaches
the caller. Each image has its own boundary inside it, so one bad image does
not cost the others. Logs name studies and instances by Orthanc id only,
never by patient name or ID.

The result is a :class:`scintiseg.core.result.StudyResult`; its statuses are
:class:`scintiseg.core.result.Status`.

A ``failed`` result says whether trying again may help (``retriable``): true
when an image or the job failed for a reason outside the image (an internal
error, the models, Orthanc refusing the SEG), false when only the input is
at fault (unreadable, undecodable). The service retries the former with
back-off (:mod:`scintiseg.app.service`).
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import pydicom
from pydicom.errors import InvalidDicomError

from scintiseg import __version__
from scintiseg.core.clock import now_iso
from scintiseg.core.result import RESULT_SCHEMA, ImageEntry, Status, StudyResult
from scintiseg.core.store import Gateway, InstanceInfo, NotFoundError, SeriesInfo
from scintiseg.dicom.nm import SkippedImageError, UnreadableImageError
from scintiseg.pipeline.image import ModelUnavailable
from scintiseg.work.selection import Selection, radiopharmaceutical_text

log = logging.getLogger(__name__)

StopFlag = Callable[[], bool]

#: Per-image timings (ms) of the plugin's work outside the offline pipeline: reading the
#: image from Orthanc and decoding it, serialising and storing the SEG.
PLUGIN_IO_TIMINGS = ("fetch_ms", "parse_ms", "seg_write_ms", "store_ms")
#: Of those, the Orthanc I/O proper (what the offline command line does not do at all);
#: the study adds ``list_ms`` (index reads) and ``record_ms`` (result writes).
ORTHANC_IO_TIMINGS = ("fetch_ms", "store_ms")


class Interrupted(Exception):
    """Orthanc is stopping: leave the study pending, it resumes at the next start."""


class SegResult(Protocol):
    """What :meth:`scintiseg.pipeline.image.Pipeline.process` returns (``InstanceResult``)."""

    seg: pydicom.Dataset
    timings_ms: dict[str, float]

    def summary(self) -> dict[str, Any]: ...


class Processor(Protocol):
    """The segmentation pipeline on one snapshot of the models (:class:`scintiseg.pipeline.image.Pipeline`)."""

    @property
    def models(self) -> list[str]:
        """The active models' identities."""
        ...

    def applies_to_series(self, modality: str, description: str) -> bool:
        """Whether some model may apply to a series (index data only)."""
        ...

    def outdated(self, idents: Sequence[str]) -> list[str]:
        """Those of ``idents`` whose model name now serves another version."""
        ...

    def unavailable(self, modality: str, description: str) -> list[tuple[str, str]]:
        """(identity, error) of served models broken in place that would apply to a series."""
        ...

    def process(self, source: pydicom.Dataset) -> SegResult:
        """Segment one image; :class:`scintiseg.pipeline.image.NoModelApplies` if no model applies."""
        ...

    def preview(self, source: pydicom.Dataset, result: Any) -> pydicom.Dataset:
        """The result's preview picture as a Secondary Capture of the source's study."""
        ...


def needs_work(
    result: StudyResult | None,
    last_update: str,
    outdated: Callable[[Sequence[str]], Sequence[str]] | None = None,
) -> bool:
    """Whether the start-up scan must queue a study with this recorded result.

    True when there is no result, when it is unfinished, or when instances
    arrived since it was recorded. Models added or upgraded since do not count
    (a new model never requeues the database), unless ``outdated`` is given
    (``ReprocessOnUpgrade``): then a study made by a version that is no longer
    the active one of its name is queued too.
    """
    if result is None or result.unfinished:
        return True
    if outdated is not None and outdated(result.models):
        return True
    return bool(last_update) and result.study_last_update != last_update


def study_status(images: dict[str, ImageEntry]) -> tuple[Status, str]:
    """Study (status, reason) from its per-image entries."""
    failed = [e for e in images.values() if e.status is Status.FAILED]
    done = [e for e in images.values() if e.status is Status.DONE]
    skipped = [e for e in images.values() if e.status is Status.SKIPPED]
    if failed:
        return Status.FAILED, f"{len(failed)} of {len(images)} image(s) failed: {failed[0].reason}"
    if done:
        reason = f"{len(done)} image(s) segmented"
        if skipped:
            reason += f", {len(skipped)} skipped ({skipped[0].reason})"
        return Status.DONE, reason
    if skipped:
        return Status.SKIPPED, f"all {len(skipped)} image(s) skipped: {skipped[0].reason}"
    return Status.SKIPPED, "no image to segment"


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1e3, 2)


class StudyJobs:
    """Runs study jobs against a :class:`~scintiseg.core.store.Gateway`.

    ``pipelines`` gives the pipeline of the current models snapshot; each job
    calls it once and keeps what it got. ``providers`` are the onnxruntime
    execution providers in use. Thread-safe as long as one study is never run
    by two threads at once (:class:`scintiseg.work.worker.Worker` guarantees that).
    """

    def __init__(
        self,
        gateway: Gateway,
        pipelines: Callable[[], Processor],
        selection: Selection,
        providers: Sequence[str] = (),
        store_preview: bool = False,
        reprocess_on_upgrade: bool = False,
        delete_superseded_seg: bool = False,
        on_stored: Callable[[str], object] | None = None,
    ) -> None:
        self.gateway = gateway
        self.pipelines = pipelines
        self.selection = selection
        self.providers = list(providers)
        #: store each image's preview picture as a Secondary Capture after its SEG
        self.store_preview = store_preview
        #: segment again, without being asked, the images made by a superseded model version
        self.reprocess_on_upgrade = reprocess_on_upgrade
        #: delete an image's previous SEG (and preview) once the new version's is stored
        self.delete_superseded_seg = delete_superseded_seg
        #: told the id of every instance the jobs store (SEG, preview), e.g. to ignore its arrival
        self.on_stored = on_stored
        #: how many images went through the pipeline (models) since start-up
        self.pipeline_runs = 0
        self._count_lock = threading.Lock()

    @property
    def models(self) -> list[str]:
        """The active models' identities now."""
        return self.pipelines().models

    # -- the error boundary ---------------------------------------------------------------
    def run(
        self,
        study_id: str,
        should_stop: StopFlag = lambda: False,
        retry_failed: bool = False,
        force: bool = False,
        upgrade: bool = False,
    ) -> StudyResult | None:
        """Process one study; never raises. Returns the recorded result (``None`` if none).

        ``retry_failed`` segments again the images whose last run failed, ``force``
        every image (the SEG UIDs being deterministic, Orthanc keeps the stored copies),
        ``upgrade`` (or ``ReprocessOnUpgrade``) the images made by a superseded version.
        """
        state = _JobState(study_id)
        try:
            return self._run(state, should_stop, retry_failed, force, upgrade or self.reprocess_on_upgrade)
        except Interrupted:
            log.warning("study %s: interrupted, left pending", study_id)
            return self._record_quietly(
                state, Status.PENDING, "interrupted by Orthanc stopping; resumes at the next start"
            )
        except NotFoundError as exc:
            log.warning("study %s: no longer in Orthanc, nothing recorded (%s)", study_id, exc)
            return None
        except ModelUnavailable as exc:
            log.warning("study %s: %s", study_id, exc)
            state.transient = True
            return self._record_quietly(state, Status.FAILED, str(exc))
        except Exception as exc:  # the job's error boundary: log, record, keep Orthanc serving
            if should_stop():
                log.warning("study %s: %s while Orthanc is stopping; left pending", study_id, exc)
                return self._record_quietly(
                    state, Status.PENDING, "interrupted by Orthanc stopping; resumes at the next start"
                )
            log.exception("study %s: job failed", study_id)
            state.transient = True
            return self._record_quietly(state, Status.FAILED, f"internal error: {type(exc).__name__}: {exc}")

    def _record_quietly(self, state: _JobState, status: Status, reason: str) -> StudyResult | None:
        try:
            return self._write(state, status, reason)
        except Exception:
            log.exception("study %s: could not record status %s", state.study_id, status)
            return None

    # -- the job ---------------------------------------------------------------------------
    def _run(
        self, state: _JobState, should_stop: StopFlag, retry_failed: bool, force: bool, upgrade: bool
    ) -> StudyResult | None:
        t0 = time.perf_counter()
        pipeline = self.pipelines()  # this job's models, whatever the registry does meanwhile
        sid = state.study_id
        meta = self.gateway.study_metadata(sid)
        state.previous = meta.result
        if meta.result is not None:
            state.images = dict(meta.result.images)

        series = self.gateway.study_series(sid)
        chosen, why_not = self._choose_series(series, pipeline)
        if not chosen:
            state.images = {}
            state.last_update = meta.last_update
            return self._settle(state, Status.SKIPPED, why_not)

        instances = [i for s in chosen for i in self.gateway.series_instances(s.series_id)]
        accepted = [i for i in instances if i.sop_class_uid in self.selection.sop_classes]
        if not accepted:
            found = sorted({i.sop_class_uid or "?" for i in instances})
            state.images = {}
            state.last_update = meta.last_update
            return self._settle(
                state,
                Status.SKIPPED,
                f"no instance of an accepted SOP class in the {'/'.join(self.selection.modalities)} "
                f"series (found: {', '.join(found) or 'none'})",
            )
        # forget entries of instances deleted since; keep the rest
        uids = {i.sop_instance_uid for i in accepted}
        state.images = {k: v for k, v in state.images.items() if k in uids}
        def outdated(entry: ImageEntry) -> bool:
            return entry.done and bool(pipeline.outdated(entry.models))

        todo = [
            i
            for i in accepted
            if force
            or i.sop_instance_uid not in state.images
            or (retry_failed and state.images[i.sop_instance_uid].failed)
            or (upgrade and outdated(state.images[i.sop_instance_uid]))
        ]
        state.timings["list_ms"] = _ms(t0)
        if not todo:
            state.last_update = meta.last_update
            status, reason = study_status(state.images)
            return self._settle(state, status, reason)

        log.info("study %s: %d image(s) to segment", sid, len(todo))
        self._write(state, Status.PROCESSING, f"segmenting {len(todo)} image(s)")
        for n, inst in enumerate(todo):
            if should_stop():
                raise Interrupted
            entry = self._image(sid, inst, should_stop, pipeline, state.images.get(inst.sop_instance_uid))
            if entry is not None:
                state.images[inst.sop_instance_uid] = entry
            if n + 1 < len(todo):
                self._write(state, Status.PROCESSING, f"segmented {n + 1} of {len(todo)} image(s)")
        # read after our own SEGs were stored, so their arrival does not look like a change
        t = time.perf_counter()
        state.last_update = self.gateway.study_metadata(sid).last_update
        state.timings["list_ms"] = round(state.timings["list_ms"] + _ms(t), 2)
        state.timings["job_ms"] = _ms(t0)
        status, reason = study_status(state.images)
        result = self._write(state, status, reason)
        log.info("study %s: %s (%s) in %.0f ms", sid, status, reason, state.timings["job_ms"])
        return result

    def _choose_series(self, series: list[SeriesInfo], pipeline: Processor) -> tuple[list[SeriesInfo], str]:
        chosen, why_not = self._select_series(series)
        if not chosen:
            return chosen, why_not
        applying = [s for s in chosen if pipeline.applies_to_series(s.modality, s.description)]
        broken = [b for s in chosen for b in pipeline.unavailable(s.modality, s.description)]
        if broken and not applying:  # the models it needs broke in place: fail (retried), never skip
            raise ModelUnavailable.of(broken)
        if not applying:
            found = sorted({f"{s.modality} {s.description!r}" for s in chosen})
            return [], f"no active model applies to the series ({', '.join(found)})"
        return applying, ""

    def _select_series(self, series: list[SeriesInfo]) -> tuple[list[SeriesInfo], str]:
        sel = self.selection
        mods = "/".join(sel.modalities)
        chosen = [s for s in series if s.modality in sel.modalities]
        if not chosen:
            found = sorted({s.modality or "?" for s in series})
            return [], f"no {mods} series in the study (modalities: {', '.join(found) or 'none'})"
        if sel.series_description is not None:
            rule = sel.series_description
            matching = [s for s in chosen if rule.search(s.description)]
            if not matching:
                found = sorted({s.description for s in chosen})
                return [], (
                    f"no {mods} series description matches {rule.pattern!r} "
                    f"(found: {', '.join(repr(d) for d in found)})"
                )
            chosen = matching
        return chosen, ""

    def _image(
        self,
        study_id: str,
        inst: InstanceInfo,
        should_stop: StopFlag,
        pipeline: Processor,
        previous: ImageEntry | None = None,
    ) -> ImageEntry | None:
        """Segment one instance and store its SEG; the per-image error boundary."""
        base: dict[str, Any] = {"source_instance_id": inst.instance_id, "updated": now_iso()}

        def entry_of(status: Status, reason: str, **more: Any) -> ImageEntry:
            return ImageEntry(status=status, reason=reason, **base, **more)

        timings: dict[str, float] = {}
        try:
            t = time.perf_counter()
            data = self.gateway.instance_file(inst.instance_id)
            timings["fetch_ms"] = _ms(t)
            t = time.perf_counter()
            try:
                ds = pydicom.dcmread(io.BytesIO(data))
            except (InvalidDicomError, ValueError, EOFError) as exc:
                return entry_of(Status.FAILED, f"not a readable DICOM file: {exc}")
            timings["parse_ms"] = _ms(t)
            rule = self.selection.radiopharmaceutical
            if rule is not None:
                text = radiopharmaceutical_text(ds)
                if not rule.search(text):
                    return entry_of(
                        Status.SKIPPED, f"radiopharmaceutical {text or '(none)'!r} does not match {rule.pattern!r}"
                    )
            with self._count_lock:
                self.pipeline_runs += 1
            result = pipeline.process(ds)
            t = time.perf_counter()
            buf = io.BytesIO()
            pydicom.dcmwrite(buf, result.seg, enforce_file_format=True)
            timings["seg_write_ms"] = _ms(t)
            if should_stop():
                raise Interrupted
            t = time.perf_counter()
            stored = self.gateway.store_instance(buf.getvalue())
            timings["store_ms"] = _ms(t)
            self._stored(stored.instance_id)
        except SkippedImageError as exc:
            # not an NM image, or nothing to segment (no counts): no SEG, the reason and its code
            return entry_of(Status.SKIPPED, str(exc), flags=[{"code": exc.code, "message": str(exc)}])
        except UnreadableImageError as exc:
            log.warning("study %s: instance %s unreadable: %s", study_id, inst.instance_id, exc)
            return entry_of(Status.FAILED, str(exc))
        except ModelUnavailable as exc:  # a served model broke in place: retried once it is restored
            log.warning("study %s: instance %s not segmented: %s", study_id, inst.instance_id, exc)
            return entry_of(Status.FAILED, str(exc), transient=True)
        except NotFoundError:
            log.warning("study %s: instance %s deleted before it was segmented", study_id, inst.instance_id)
            return None
        except Interrupted:
            raise
        except Exception as exc:
            if should_stop():
                raise Interrupted from exc
            log.exception("study %s: instance %s failed", study_id, inst.instance_id)
            return entry_of(Status.FAILED, f"internal error: {type(exc).__name__}: {exc}", transient=True)
        if stored.parent_study and stored.parent_study != study_id:
            log.warning(
                "study %s: SEG of instance %s was stored in another study %s",
                study_id,
                inst.instance_id,
                stored.parent_study,
            )
        entry = ImageEntry.from_dict({**base, **result.summary(), "status": Status.DONE})
        assert entry is not None  # a known status always reads
        entry.seg_series_instance_uid = str(result.seg.SeriesInstanceUID)
        entry.seg_instance_id = stored.instance_id
        entry.store_status = stored.status
        if self.store_preview:
            entry.preview_instance_id, entry.preview_error = self._store_preview(
                study_id, inst, ds, result, timings, pipeline
            )
        entry.timings_ms = {**(entry.timings_ms or {}), **timings}
        if previous is not None and self.delete_superseded_seg:
            self._delete_superseded(study_id, previous, entry)
        log.info(
            "study %s: instance %s segmented -> SEG %s (%s, %.0f ms inference)",
            study_id,
            inst.instance_id,
            stored.instance_id,
            stored.status,
            inference_ms(entry.timings_ms),
        )
        return entry

    def _store_preview(
        self,
        study_id: str,
        inst: InstanceInfo,
        ds: pydicom.Dataset,
        result: SegResult,
        timings: dict[str, float],
        pipeline: Processor,
    ) -> tuple[str | None, str | None]:
        """Store the preview Secondary Capture: (its instance id, or why not); a failure costs
        the picture, never the SEG."""
        t = time.perf_counter()
        try:
            picture = pipeline.preview(ds, result)
            buf = io.BytesIO()
            pydicom.dcmwrite(buf, picture, enforce_file_format=True)
            stored = self.gateway.store_instance(buf.getvalue())
            self._stored(stored.instance_id)
        except NotFoundError:
            raise
        except Exception as exc:
            log.warning("study %s: preview of instance %s not stored: %s", study_id, inst.instance_id, exc)
            return None, f"{type(exc).__name__}: {exc}"
        finally:
            timings["preview_ms"] = _ms(t)
        return stored.instance_id, None

    def _delete_superseded(self, study_id: str, previous: ImageEntry, entry: ImageEntry) -> None:
        """Delete the SEG and preview an older model version made of this image (``DeleteSupersededSeg``)."""
        for what, old, new in (
            ("seg", previous.seg_instance_id, entry.seg_instance_id),
            ("preview", previous.preview_instance_id, entry.preview_instance_id),
        ):
            if old and old != new:
                try:
                    self.gateway.delete_instance(old)
                    log.info("study %s: superseded %s %s deleted", study_id, what, old)
                except NotFoundError:
                    pass
                except Exception as exc:  # the new SEG is stored: a stale one left behind is no failure
                    log.warning("study %s: could not delete superseded instance %s: %s", study_id, old, exc)

    def _stored(self, instance_id: str) -> None:
        if self.on_stored is not None:
            try:
                self.on_stored(instance_id)
            except Exception:  # a bookkeeping hook must not fail the image
                log.exception("on_stored hook failed for instance %s", instance_id)

    # -- recording -------------------------------------------------------------------------
    def _settle(self, state: _JobState, status: Status, reason: str) -> StudyResult | None:
        """Record a final state unless the study already says exactly that (no churn)."""
        prev = state.previous
        if (
            prev is not None
            and prev.status is status
            and prev.reason == reason
            and prev.models == used_models(state.images)
            and prev.schema == RESULT_SCHEMA
            and prev.images == state.images
            and prev.study_last_update == state.last_update
        ):
            log.debug("study %s: nothing to do (%s)", state.study_id, status)
            return prev
        result = self._write(state, status, reason)
        log.info("study %s: %s (%s)", state.study_id, status, reason)
        return result

    def _write(self, state: _JobState, status: Status, reason: str) -> StudyResult:
        result = summary(state, status, reason, used_models(state.images), self.providers)
        t = time.perf_counter()
        self.gateway.write_result(state.study_id, result)
        # Orthanc I/O of the recording itself (the writes before this one: a result
        # cannot contain the time of its own write)
        state.timings["record_ms"] = round(state.timings.get("record_ms", 0.0) + _ms(t), 2)
        return result


class _JobState:
    """What one job knows so far, so that the error boundary can record it."""

    def __init__(self, study_id: str) -> None:
        self.study_id = study_id
        self.previous: StudyResult | None = None
        self.images: dict[str, ImageEntry] = {}
        self.timings: dict[str, float] = {}
        self.last_update: str | None = None
        self.started = time.time()
        #: the job itself failed for a reason outside the images
        self.transient = False


def used_models(images: dict[str, ImageEntry]) -> list[str]:
    """The models that made the study's SEGs (sorted identities)."""
    return sorted({m for e in images.values() if e.done for m in e.models})


def inference_ms(timings: dict[str, float]) -> float:
    """Network time of every model (``<label>_inference_ms`` keys)."""
    return sum(float(v) for k, v in timings.items() if k.endswith("_inference_ms"))


def summary(
    state: _JobState, status: Status, reason: str, models: Sequence[str], providers: Sequence[str]
) -> StudyResult:
    """The result recorded on the study (no pixel data, no patient identity).

    ``models`` are the versions that made the study's SEGs (each image entry
    records its own).
    """
    seg_ids = sorted(e.seg_instance_id for e in state.images.values() if e.done and e.seg_instance_id)
    totals: dict[str, float] = {}
    for entry in state.images.values():
        for key, value in (entry.timings_ms or {}).items():
            totals[key] = round(totals.get(key, 0.0) + float(value), 2)
    totals.update(state.timings)
    retriable = None
    if status is Status.FAILED:
        retriable = state.transient or any(e.failed and e.transient for e in state.images.values())
    return StudyResult(
        status=status,
        reason=reason,
        models=list(models),
        providers=list(providers),
        software=f"ScintiSeg {__version__}",
        job_started=now_iso(state.started),
        updated=now_iso(),
        study_last_update=state.last_update,
        seg_instance_ids=seg_ids,
        images=dict(state.images),
        timings_ms=totals,
        retriable=retriable,
    )
