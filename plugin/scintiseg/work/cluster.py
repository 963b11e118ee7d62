"""Several Orthanc nodes, one PostgreSQL: the study jobs taken from a shared work table.

:class:`ClusterWorker` implements :class:`scintiseg.work.worker.StudyWorker`,
as the local :class:`scintiseg.work.worker.Worker` does, but its queue is the
``scintiseg_work`` table of :mod:`scintiseg.work.pgwork` in
the database of Orthanc's own PostgreSQL index, so that any node with an idle
thread takes a study whatever node received it. Rules:

* the producer does no I/O: :meth:`ClusterWorker.submit` appends to an outbox
  that the node's *coordinator* thread writes to PostgreSQL (one transaction
  per batch, with a ``NOTIFY`` that wakes the idle threads of every node);
* each worker thread claims one study at a time (``SKIP LOCKED``) under a
  lease of ``lease_s`` seconds, which the coordinator renews every third of
  it. A node that dies stops renewing: another node takes its studies over
  when the leases expire, and the job resumes from the progress recorded on
  the study (the images already done keep their SEG);
* a job whose lease was lost (its node paused past the lease) sees
  ``should_stop() -> True``, and :class:`FencedGateway` refuses its result
  writes: each write is made while the study's row is locked and only if the
  row still carries the job's fencing token, so one result is recorded per
  study whatever happens to the nodes;
* a node silent for a lease is lost: one survivor rescans the index for the
  studies that node had received but not yet recorded (a crash in the few
  milliseconds between Orthanc storing an instance and the node writing its
  arrival);
* stopping releases the running studies at once (another node may take
  them) and drops nothing: the outbox is flushed first.

Why a table of our own rather than the plugin queues of Orthanc 1.12.10
(``ReserveQueueValue``/``AcknowledgeQueueValue``): Debian's Orthanc 1.10.1
with orthanc-python 4.0 has no queue API at all, and where it exists it
cannot say which node holds which study, renew a reservation, or fence a late
writer; the table does all three in the database that the deployment already
runs. ``GET /scintiseg/status`` reports whether the queue API is there
(``plugin_features``: ``ReserveQueueValue``, ``AcknowledgeQueueValue``).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from scintiseg.core.result import Status, StudyResult
from scintiseg.core.store import Gateway, InstanceInfo, SeriesInfo, StoredInstance, StudyMetadata
from scintiseg.work.jobs import Interrupted
from scintiseg.work.pgwork import CHANNEL, Claim, WorkQueue, WorkQueueError
from scintiseg.work.threads import ThreadGroup
from scintiseg.work.worker import Handler, JobOptions
from scintiseg.work.workstate import FAILED as GAVE_UP
from scintiseg.work.workstate import QUEUED, WorkItem
from scintiseg.work.workstate import RUNNING as WORK_RUNNING

log = logging.getLogger(__name__)

#: How long an idle thread waits for a NOTIFY before looking for expired leases.
POLL_S = 1.0
#: How long a REST snapshot may be reused (several HTTP threads ask at once).
SNAPSHOT_TTL_S = 0.2


class LeaseLost(Interrupted):
    """Another node took the study over: this job must record nothing more."""


class ClusterWorker:
    """Study jobs claimed from the cluster's work table by ``threads`` threads of this node."""

    def __init__(
        self,
        uri: str,
        node: str,
        handler: Handler,
        threads: int = 1,
        lease_s: float = 30.0,
        poll_s: float = POLL_S,
        queue_factory: Callable[[str, str, float], WorkQueue] = WorkQueue,
        stable_age_s: float = 60.0,
        on_node_lost: Callable[[list[str]], object] | None = None,
    ) -> None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.uri = uri
        self.node = node
        self.handler = handler
        self.n_threads = threads
        self.lease_s = float(lease_s)
        self.poll_s = float(poll_s)
        self.queue_factory = queue_factory
        #: a study still arriving here becomes claimable by others this long after its last instance
        self.hold_s = float(stable_age_s) + self.lease_s
        self.incarnation = uuid.uuid4().hex[:12]
        self.started = datetime.now(UTC)
        #: (study, options) to queue, or (study, None): instances of it arrived here
        self._outbox: deque[tuple[str, JobOptions | None]] = deque()
        self._stop = threading.Event()
        self._wake_coordinator = threading.Event()
        self._work = threading.Condition()
        self._work_seen = 0  # bumped by NOTIFY, so a waiting thread never misses one
        self._claims: dict[str, Claim] = {}  # study id -> this node's claim
        self._lost: set[str] = set()
        self._claims_lock = threading.Lock()
        self._threads = ThreadGroup("scintiseg-cluster")
        self._local = threading.local()
        self._control = queue_factory(uri, node, self.lease_s)  # coordinator's connection
        self._reader = queue_factory(uri, node, self.lease_s)  # REST snapshots
        self._snapshot: tuple[float, dict[str, Any]] | None = None
        self.jobs_done = 0
        self.takeovers = 0
        self.last_job_s: float | None = None
        self.waiting_seen = 0
        self.last_error: str | None = None
        #: told the names of lost nodes this node must rescan for (the service runs its scan)
        self.on_node_lost = on_node_lost

    # -- producer side (the change callback): no I/O ----------------------------------------
    def submit(
        self, study_id: str, options: JobOptions | None = None, not_before: float | None = None,
        coalesce: bool = False,
    ) -> bool:
        """Queue a study (through the outbox).

        ``not_before`` (a retry, a recorded request) and ``coalesce`` (a manual request):
        :class:`ClusterWorkState` has already written them to the study's row, with their
        time and options; queueing them again would run a forced study twice.
        """
        if self._stop.is_set():
            return False
        if not_before is not None or coalesce:
            return True
        self._outbox.append((study_id, options or JobOptions()))  # deque.append is thread-safe
        self._wake_coordinator.set()
        return True

    def arrived(self, study_id: str) -> None:
        """Instances of the study arrived at this node (the stability tracker says so): no I/O."""
        if not self._stop.is_set():
            self._outbox.append((study_id, None))
            self._wake_coordinator.set()

    # -- lifecycle ----------------------------------------------------------------------------
    def prepare(self) -> None:
        """Create the tables and free what a previous life of this node held (raises WorkQueueError)."""
        self._control.create_schema()
        released = self._control.release_node()
        if released:
            log.info("cluster: %d study(ies) held by this node's previous run are claimable again", released)

    def start(self) -> None:
        if self._threads.started:
            raise RuntimeError("worker already started")
        self._heartbeat()
        names: list[tuple[str, Callable[[], object]]] = [("coordinator", self._coordinate), ("listener", self._listen)]
        names += [(f"worker-{i}", self._loop) for i in range(self.n_threads)]
        self._threads.start(names)

    def should_stop(self) -> bool:
        return self._stop.is_set()

    def stop(self, timeout: float = 30.0) -> bool:
        """Finish the running jobs (they stop between images), release them, flush the outbox."""
        self._stop.set()
        self._wake_coordinator.set()
        with self._work:
            self._work.notify_all()
        ended = self._threads.join(timeout)
        self._flush()  # what arrived while stopping is not lost
        self._control.close()
        self._reader.close()
        return ended

    def wait_idle(self, timeout: float) -> bool:
        """Block until nothing waits in the cluster and this node runs nothing (tests, benchmarks)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._claims_lock:
                busy = bool(self._claims)
            if not self._outbox and not busy:
                try:
                    if self._reader.waiting_count() == 0:
                        return True
                except WorkQueueError:
                    pass
            time.sleep(0.05)
        return False

    def stats(self) -> dict[str, Any]:
        with self._claims_lock:
            running = sorted(self._claims)
        return {
            "threads": self.n_threads,
            "queued": len(self._outbox) + self.waiting_seen,
            "queued_ids": [s for s, o in list(self._outbox) if o is not None],
            "delayed": 0,  # retries wait in the work table (GET /scintiseg/queue: retrying)
            "delayed_ids": [],
            "running": running,
            "jobs_done": self.jobs_done,
            "last_job_s": self.last_job_s,
            "stopping": self._stop.is_set(),
        }

    # -- the coordinator: outbox, leases, heartbeat ----------------------------------------------
    def _flush(self) -> None:
        taken: list[tuple[str, JobOptions | None]] = []
        while self._outbox:
            taken.append(self._outbox.popleft())
        if not taken:
            return
        arrivals = list(dict.fromkeys(s for s, o in taken if o is None))
        batch: dict[tuple[str, bool], JobOptions] = {}
        for study_id, options in taken:
            if options is not None:
                key = (study_id, options.from_scan)
                batch[key] = batch[key].merge(options) if key in batch else options
        plain = [(s, o.retry_failed, o.force) for (s, scan), o in batch.items() if not scan]
        scanned = [(s, o.retry_failed, o.force) for (s, scan), o in batch.items() if scan]
        try:
            # arrivals first: a study that is stable in the same batch ends up ready
            self._control.arrived(arrivals, self.hold_s)
            self._control.enqueue(plain)
            self._control.enqueue(scanned, if_idle=True)
        except WorkQueueError:
            self._outbox.extendleft(reversed(taken))  # kept for the next round, in order
            raise

    def _renew(self) -> None:
        with self._claims_lock:
            claims = list(self._claims.values())
        if not claims:
            return
        held = self._control.renew(claims)
        lost = {c.study_id for c in claims} - held
        if lost:
            log.warning("cluster: lease lost on %s (another node took over)", ", ".join(sorted(lost)))
            with self._claims_lock:
                self._lost |= lost

    def _heartbeat(self) -> None:
        with self._claims_lock:
            running = sorted(self._claims)
        info = {
            "threads": self.n_threads,
            "running": running,
            "jobs_done": self.jobs_done,
            "takeovers": self.takeovers,
            "lease_s": self.lease_s,
        }
        self._control.heartbeat(self.incarnation, self.started, info)

    def _look_for_lost_nodes(self) -> None:
        lost = self._control.lost_nodes()
        if lost:
            log.warning("cluster: node(s) %s silent for %.0f s: rescanning for their studies",
                        ", ".join(lost), self.lease_s)
            if self.on_node_lost is not None:
                self.on_node_lost(lost)

    def _coordinate(self) -> None:
        every = max(0.2, self.lease_s / 3)
        next_beat = 0.0
        while not self._stop.is_set():
            try:
                self._flush()
                now = time.monotonic()
                if now >= next_beat:
                    self._renew()
                    self._heartbeat()
                    self.waiting_seen = self._control.waiting_count()
                    self._look_for_lost_nodes()
                    next_beat = now + every
                self.last_error = None
            except WorkQueueError as exc:  # PostgreSQL away: keep trying, keep the outbox
                self.last_error = str(exc)
                log.warning("cluster: %s", exc)
                self._stop.wait(min(every, 1.0))
            except Exception:  # the coordinator's boundary: never let it die
                log.exception("cluster coordinator error")
                self._stop.wait(1.0)
            self._wake_coordinator.wait(max(0.0, min(every, next_beat - time.monotonic())))
            self._wake_coordinator.clear()

    # -- NOTIFY: wake the idle threads when a study becomes claimable somewhere ------------------
    def _notified(self) -> None:
        with self._work:
            self._work_seen += 1
            self._work.notify_all()

    def _listen(self) -> None:
        import psycopg

        while not self._stop.is_set():
            try:
                with psycopg.connect(self.uri, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self._notified()  # (re)connected: something may have been missed
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=0.5, stop_after=64):
                            self._notified()
            except psycopg.Error as exc:
                log.debug("cluster listener: %s", exc)
                self._stop.wait(1.0)

    # -- consumer side -----------------------------------------------------------------------
    def _queue(self) -> WorkQueue:
        q = getattr(self._local, "queue", None)
        if q is None:
            q = self._local.queue = self.queue_factory(self.uri, self.node, self.lease_s)
        return q

    def _wait_for_work(self, seen: int) -> None:
        with self._work:
            if self._work_seen == seen and not self._stop.is_set():
                self._work.wait(self.poll_s)

    def _loop(self) -> None:
        q = self._queue()
        try:
            while not self._stop.is_set():
                seen = self._work_seen
                try:
                    claim = q.claim()
                except WorkQueueError as exc:
                    log.warning("cluster: cannot claim: %s", exc)
                    self._stop.wait(1.0)
                    continue
                if claim is None:
                    self._wait_for_work(seen)
                    continue
                self._run(q, claim)
        finally:
            q.close()

    def _run(self, q: WorkQueue, claim: Claim) -> None:
        sid = claim.study_id
        if claim.took_over_from:
            self.takeovers += 1
            log.warning("cluster: study %s taken over from node %s (its lease expired)", sid, claim.took_over_from)
        with self._claims_lock:
            self._claims[sid] = claim
            self._lost.discard(sid)
        self._local.claim = claim
        self._local.decision = None
        t0 = time.perf_counter()
        result: object = None
        try:
            result = self.handler(sid, lambda: self._stop.is_set() or sid in self._lost,
                                  JobOptions(retry_failed=claim.retry_failed, force=claim.force,
                                             upgrade=claim.upgrade))
        except Exception:  # the handler has its own boundary; this one keeps the thread alive
            log.exception("study %s: unexpected error escaped the job", sid)
        finally:
            self._local.claim = None
            self.last_job_s = round(time.perf_counter() - t0, 3)
            self.jobs_done += 1
        try:
            self._finish(q, claim, result)
        except WorkQueueError as exc:  # the lease expires and another node redoes the rest
            log.warning("study %s: could not record the end of the run: %s", sid, exc)
        finally:
            with self._claims_lock:
                self._claims.pop(sid, None)
                self._lost.discard(sid)

    def _finish(self, q: WorkQueue, claim: Claim, result: object) -> None:
        typed = result if isinstance(result, StudyResult) else None
        reason = typed.reason if typed is not None else "no result recorded"
        decision: tuple[str, float | None] | None = getattr(self._local, "decision", None)
        self._local.decision = None
        if claim.study_id in self._lost:
            return  # the node that took over records the end
        # unfinished (Orthanc stopping) or no result while stopping: another run finishes it
        if (typed is not None and typed.status is Status.PENDING) or (
            self._stop.is_set() and (typed is None or typed.unfinished)
        ):
            q.release(claim, "released by its node stopping")
            return
        if decision is not None and decision[0] == "fail":  # the service's retry rule decided
            retry_at = decision[1]
            q.failed_run(claim, reason, datetime.fromtimestamp(retry_at, UTC) if retry_at else None)
            return
        outcome = str(typed.status) if typed is not None else "gone"
        q.complete(claim, outcome, reason, failed=typed is not None and typed.status is Status.FAILED)

    # -- what the work state backend sees of the running job ---------------------------------------
    def current_claim(self, study_id: str) -> Claim | None:
        """This thread's claim on the study, if it is running the study's job."""
        claim: Claim | None = getattr(self._local, "claim", None)
        return claim if claim is not None and claim.study_id == study_id else None

    def decide_failed(self, study_id: str, retry_at: float | None) -> None:
        """The job's run failed: retry it at ``retry_at`` (epoch s), or give up (``None``)."""
        if self.current_claim(study_id) is not None:
            self._local.decision = ("fail", retry_at)

    def request(self, study_id: str, retry_failed: bool, force: bool, not_before: float = 0.0) -> None:
        """A manual request, written at once (the caller acknowledges it only after)."""
        ready = datetime.fromtimestamp(not_before, UTC) if not_before > 0 else None
        self._reader.enqueue([(study_id, retry_failed, force)], request=True, ready_at=ready)

    # -- fencing the result writes -------------------------------------------------------------
    @contextmanager
    def fenced(self, study_id: str) -> Iterator[None]:
        """Around a result write: the study's row is locked and still ours, else :class:`LeaseLost`."""
        claim: Claim | None = getattr(self._local, "claim", None)
        if claim is None or claim.study_id != study_id:
            yield  # not written by a cluster job (nothing else writes results today)
            return
        with self._queue().fenced(claim) as ours:
            if not ours:
                with self._claims_lock:
                    self._lost.add(study_id)
                raise LeaseLost(f"study {study_id}: another node holds it now")
            yield

    @contextmanager
    def scan_lock(self) -> Iterator[bool]:
        """Yields whether this node may run the start-up scan (one node at a time)."""
        q = self.queue_factory(self.uri, self.node, self.lease_s)
        try:
            with q.scan_lock() as ours:
                yield ours
        finally:
            q.close()

    # -- introspection --------------------------------------------------------------------------
    def shared_queue(self) -> dict[str, Any] | None:
        """``GET /scintiseg/queue`` of the cluster: the work table, the same on every node."""
        return queue_view(self.snapshot(), self.node)

    def cluster_status(self) -> dict[str, Any] | None:
        """The cluster beside this node's own counts: nodes, who runs what, what waits, counts."""
        view = queue_view(self.snapshot(), self.node)
        return {
            **view["cluster"],
            "lease_s": self.lease_s,
            "takeovers_by_this_node": self.takeovers,
            "failed": len(view["failed"]),
            "error": self.last_error,
        }

    def snapshot(self) -> dict[str, Any]:
        """The cluster's work table as ``GET /scintiseg/queue`` and ``/status`` show it."""
        now = time.monotonic()
        cached = self._snapshot
        if cached is not None and now - cached[0] < SNAPSHOT_TTL_S:
            return cached[1]
        snap = self._reader.snapshot()
        self._snapshot = (now, snap)
        return snap


class FencedGateway:
    """A :class:`~scintiseg.core.store.Gateway` whose result writes go through the work table's fence.

    Every other call is the inner gateway's; mypy checks this class against the
    :class:`~scintiseg.core.store.Gateway` protocol, so a method added there must be added here.
    """

    def __init__(self, inner: Gateway, worker: ClusterWorker) -> None:
        self.inner = inner
        self.worker = worker

    def write_result(self, study_id: str, result: StudyResult) -> None:
        with self.worker.fenced(study_id):
            self.inner.write_result(study_id, result)

    def study_exists(self, study_id: str) -> bool:
        return self.inner.study_exists(study_id)

    def study_series(self, study_id: str) -> list[SeriesInfo]:
        return self.inner.study_series(study_id)

    def instance_study(self, instance_id: str) -> str:
        return self.inner.instance_study(instance_id)

    def series_instances(self, series_id: str) -> list[InstanceInfo]:
        return self.inner.series_instances(series_id)

    def instance_file(self, instance_id: str) -> bytes:
        return self.inner.instance_file(instance_id)

    def store_instance(self, data: bytes) -> StoredInstance:
        return self.inner.store_instance(data)

    def study_metadata(self, study_id: str) -> StudyMetadata:
        return self.inner.study_metadata(study_id)

    def count_studies(self) -> int:
        return self.inner.count_studies()

    def list_studies(self, since: int, limit: int) -> list[str]:
        return self.inner.list_studies(since, limit)

    def study_tags(self, study_id: str) -> dict[str, str]:
        return self.inner.study_tags(study_id)

    def instance_tags(self, instance_id: str) -> dict[str, Any]:
        return self.inner.instance_tags(instance_id)

    def anonymize_instance(self, instance_id: str, request: dict[str, Any]) -> bytes:
        return self.inner.anonymize_instance(instance_id, request)

    def delete_instance(self, instance_id: str) -> None:
        self.inner.delete_instance(instance_id)

    def lookup_instance(self, sop_instance_uid: str) -> str | None:
        return self.inner.lookup_instance(sop_instance_uid)

    def read_study_metadata(self, study_id: str, name: str) -> str | None:
        return self.inner.read_study_metadata(study_id, name)

    def write_study_metadata(self, study_id: str, name: str, text: str) -> None:
        self.inner.write_study_metadata(study_id, name, text)

    def delete_study_metadata(self, study_id: str, name: str) -> None:
        self.inner.delete_study_metadata(study_id, name)

    def database_plugin(self) -> str | None:
        return self.inner.database_plugin()


def queue_view(snap: dict[str, Any], node: str) -> dict[str, Any]:
    """``GET /scintiseg/queue`` of a cluster: the lists every node agrees on, and who runs what."""
    open_rows = snap.get("open") or []
    running = [r for r in open_rows if r["state"] == "running" and (r.get("lease_left_s") or 0) > 0]
    waiting = [r for r in open_rows if r not in running]
    return {
        "pending": [r["study_id"] for r in waiting],
        "running": [r["study_id"] for r in running],
        "retrying": [
            {"study": r["study_id"], "attempts": int(r.get("failures") or 0), "retry_at": r.get("ready_at"),
             "reason": r.get("reason") or ""}
            for r in waiting if (r.get("failures") or 0) > 0
        ],
        "failed": [
            {"study": r["study_id"], "reason": r.get("reason") or "", "updated": r.get("finished_at"),
             "node": r.get("node"), "attempts": int(r.get("failures") or 1), "retry_at": None}
            for r in snap.get("failed") or []
        ],
        "cluster": {
            "node": node,
            "counts": snap.get("counts") or {},
            "running_on": {r["study_id"]: r.get("node") for r in running},
            "waiting": [
                {"study": r["study_id"], "received_by": r.get("received_by"),
                 "expired_lease_of": r.get("node") if r["state"] == "running" else None}
                for r in waiting
            ],
            "nodes": snap.get("nodes") or [],
        },
    }


class ClusterWorkState:
    """:class:`scintiseg.work.workstate.WorkState` on the cluster's work table.

    On a cluster the table *is* the durable work state: one row per study,
    claimed under a lease by the :class:`ClusterWorker` thread before the
    service's job starts. So :meth:`claim` hands the service that claim,
    :meth:`complete` leaves the end of the run to the worker (one statement
    with the outcome), :meth:`fail` tells it the retry rule's decision (retry
    at a time, or give up), :meth:`enqueue` writes a manual request at once,
    and :meth:`list` shows the retries and failures of the whole cluster.
    """

    name = "postgresql"
    durable = True

    def __init__(self, worker: ClusterWorker) -> None:
        self.worker = worker

    def enqueue(
        self, study_id: str, retry_failed: bool = False, force: bool = False, not_before: float = 0.0
    ) -> WorkItem:
        self.worker.request(study_id, retry_failed, force, not_before)
        return WorkItem(study_id, retry_failed, force, state=QUEUED, not_before=not_before, revision=1,
                        updated=time.time())

    def claim(self, study_id: str, owner: str, lease_s: float) -> WorkItem | None:
        claim = self.worker.current_claim(study_id)
        if claim is None:
            return None  # not a job this node's worker claimed: another node holds it
        return WorkItem(
            study_id, claim.retry_failed, claim.force, state=WORK_RUNNING, attempts=claim.failures,
            owner=self.worker.node, lease_until=time.time() + self.worker.lease_s, revision=claim.token,
            updated=time.time(),
        )

    def complete(self, item: WorkItem) -> None:
        """Nothing yet: the worker records the end of the run with its outcome."""

    def fail(self, item: WorkItem, reason: str, retry_at: float | None) -> WorkItem:
        self.worker.decide_failed(item.study_id, retry_at)
        return dataclasses.replace(
            item, state=QUEUED if retry_at is not None else GAVE_UP, attempts=item.attempts + 1,
            not_before=float(retry_at or 0.0), reason=reason, owner="", lease_until=0.0,
        )

    def list(self) -> list[WorkItem]:
        """The cluster's retries and given-up studies (automatic work needs no record)."""
        try:
            view = queue_view(self.worker.snapshot(), self.worker.node)
        except WorkQueueError as exc:
            log.warning("cluster: work table unreadable: %s", exc)
            return []
        items = [
            WorkItem(r["study"], retry_failed=True, state=QUEUED, attempts=r["attempts"],
                     not_before=_epoch(r["retry_at"]), reason=r["reason"], revision=1)
            for r in view["retrying"]
        ]
        items += [
            WorkItem(r["study"], state=GAVE_UP, attempts=r["attempts"], reason=r["reason"], revision=1)
            for r in view["failed"]
        ]
        return items

    def load(self) -> int:
        """Nothing to load: the table is read where it lies, by every node."""
        return 0


def _epoch(iso: Any) -> float:
    if not isinstance(iso, str) or not iso:
        return 0.0
    try:
        return datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return 0.0
