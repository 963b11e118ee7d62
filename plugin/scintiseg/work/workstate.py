"""Durable work requests: what must still be done to a study, kept where Orthanc persists.

Automatic work needs no record of its own: a study whose result is missing,
unfinished, older than the study or made by other model versions is found
again by the start-up scan (:func:`scintiseg.work.jobs.needs_work`), so a
``kill -9`` loses nothing that arrived. What that derived state cannot tell is
a *request*: a manual retry or force of a study already ``done`` or
``failed``, and the retry (with its back-off and attempt count) of a study that
failed for a transient reason. Those are :class:`WorkItem` records in a
:class:`WorkState`, written before the request is acknowledged and removed
only when a job that covered them ended.

The interface (every backend implements it, the service uses nothing else)::

    enqueue(study, retry_failed, force, not_before) -> WorkItem
        record a request; one per study: a second request for the same study
        merges into it (flags or-ed, attempts reset, revision + 1)
    claim(study, owner, lease_s) -> WorkItem | None
        take the study for a job: the recorded request, or a transient item
        (revision 0, not stored) when none is recorded; None while another
        owner's lease is live (several nodes on one database)
    complete(item)
        the job run with ``item``'s options ended well: forget the record,
        unless a request that the job did not cover arrived meanwhile (its
        revision moved on, it asks for more), which stays queued
    fail(item, reason, retry_at)
        the job failed: record attempts + 1 and, with ``retry_at`` (epoch s),
        a retry due then; ``retry_at=None`` gives up (state ``failed``,
        kept so that ``GET /scintiseg/queue`` lists it across restarts)
    list() -> [WorkItem]
        the records, for the start-up re-queue and the queue view
    load() -> int
        read what a previous run left (start-up, off the callback thread)

Item states: ``queued`` (waiting, possibly until ``not_before``),
``running`` (claimed by ``owner`` until ``lease_until``), ``failed`` (gave up
after the retry limit; a new request re-queues it). A lease names the
process that holds it; records ``running`` under another owner whose lease
ran out (the process died) are queued again by :meth:`claim` and after
:meth:`load`.

Backends (the entry script picks one with :func:`choose_backend`, by feature
detection, never by version number):

* :class:`MetadataWorkState` (every Orthanc, e.g. Debian 12's 1.10.1 with
  orthanc-python 4.0): one JSON record per study in the user-defined study
  metadata ``ScintiSeg.WorkMetadata``; deleted with the study. ``load`` pages
  through the studies (one in-process call each). Single node: leases are
  kept but not arbitrated across processes.
* :class:`KeyValueWorkState` (orthanc-python >= 6 on Orthanc >= 1.12.8,
  ``StoreKeyValue``): the same records in the plugin key-value store; listing
  is one iterator, no scan.
* :class:`QueueWorkState` (plugin queues with ``ReserveQueueValue`` /
  ``AcknowledgeQueueValue``, Orthanc >= 1.12.10, plugin 7): the records in
  the key-value store, plus each request pushed to a durable queue whose
  reservations expire, so that a process dying mid-job gives its request back.
  ``take`` reserves the next request and ``complete`` / ``fail`` acknowledge
  what this process reserved. The single-node service dispatches from its own
  worker queue and reserves only at ``load`` (a value it did not reserve is
  acknowledged at the next start, once its record is gone); a node pulling
  work from a shared queue calls ``take`` in its loop.
* :class:`MemoryWorkState`: nothing durable (tests; the ``off`` choice).

A further backend (a database table, one row per study with an atomic
``UPDATE ... WHERE lease expired`` claim) subclasses :class:`CachedWorkState`
or implements the same six methods. Nothing here imports ``orthanc``: the
store objects are passed in (``OrthancGateway`` for metadata, the ``orthanc``
module for the key-value store and queues), so the unit tests use fakes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger(__name__)

QUEUED, RUNNING, FAILED = "queued", "running", "failed"
ITEM_STATES = (QUEUED, RUNNING, FAILED)
#: Schema of the stored record (bumped if its fields change incompatibly).
RECORD_SCHEMA = 1

Clock = Callable[[], float]


@dataclass(frozen=True)
class WorkItem:
    """One study's outstanding request (the JSON record, see :meth:`to_json`)."""

    study_id: str
    retry_failed: bool = False
    force: bool = False
    state: str = QUEUED
    #: failed runs since the last request
    attempts: int = 0
    #: epoch seconds before which the item is not due (retry back-off)
    not_before: float = 0.0
    #: why the last run failed
    reason: str = ""
    owner: str = ""
    lease_until: float = 0.0
    #: bumped by each request merged in; 0 for a transient (unrecorded) item
    revision: int = 0
    updated: float = 0.0

    @property
    def recorded(self) -> bool:
        return self.revision > 0

    def covers(self, other: WorkItem) -> bool:
        """Whether a job run with this item's options does all that ``other`` asks."""
        return (self.retry_failed or not other.retry_failed) and (self.force or not other.force)

    def to_json(self) -> str:
        return json.dumps({"schema": RECORD_SCHEMA, **dataclasses.asdict(self)}, sort_keys=True,
                          separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes | None) -> WorkItem | None:
        """The record, or ``None`` when absent or unreadable (never raises)."""
        if not text:
            return None
        try:
            raw = json.loads(text)
            if not isinstance(raw, dict) or raw.get("schema") != RECORD_SCHEMA:
                return None
            fields = {f.name for f in dataclasses.fields(cls)}
            item = cls(**{k: v for k, v in raw.items() if k in fields})
        except (ValueError, TypeError):
            return None
        if not isinstance(item.study_id, str) or item.state not in ITEM_STATES:
            return None
        return item


class WorkState(Protocol):
    """Where outstanding study requests live (see the module docstring)."""

    #: ``memory``, ``metadata``, ``keyvalue`` or ``queue``
    name: str
    #: whether the records survive Orthanc stopping
    durable: bool

    def enqueue(
        self, study_id: str, retry_failed: bool = False, force: bool = False, not_before: float = 0.0
    ) -> WorkItem: ...

    def claim(self, study_id: str, owner: str, lease_s: float) -> WorkItem | None: ...

    def complete(self, item: WorkItem) -> None: ...

    def fail(self, item: WorkItem, reason: str, retry_at: float | None) -> WorkItem: ...

    def list(self) -> list[WorkItem]: ...

    def load(self) -> int: ...


class CachedWorkState:
    """The rules of :class:`WorkState` on an in-memory map, with three storage hooks.

    Subclasses persist in :meth:`_save` / :meth:`_delete` and read back in
    :meth:`_read_all`; the map is the truth for this process (one lock), so a
    backend only has to store and list records.
    """

    name = "memory"
    durable = False

    def __init__(self, clock: Clock = time.time) -> None:
        self.clock = clock
        self._items: dict[str, WorkItem] = {}
        self._lock = threading.Lock()

    # -- storage hooks (nothing to do in memory) ----------------------------------------------
    def _save(self, item: WorkItem) -> None:
        """Persist ``item`` (replacing the study's record)."""

    def _delete(self, study_id: str) -> None:
        """Remove the study's record."""

    def _read_all(self) -> Iterable[WorkItem]:
        return ()

    # -- the interface ------------------------------------------------------------------------
    def enqueue(
        self, study_id: str, retry_failed: bool = False, force: bool = False, not_before: float = 0.0
    ) -> WorkItem:
        with self._lock:
            old = self._items.get(study_id)
            now = self.clock()
            if old is None:
                item = WorkItem(study_id, retry_failed, force, not_before=not_before, revision=1, updated=now)
            else:
                running = old.state == RUNNING
                item = dataclasses.replace(
                    old,
                    retry_failed=old.retry_failed or retry_failed,
                    force=old.force or force,
                    # a new request starts a fresh series of attempts
                    state=RUNNING if running else QUEUED,
                    attempts=0,
                    not_before=not_before,
                    revision=old.revision + 1,
                    updated=now,
                )
            self._save(item)
            self._items[study_id] = item
            return item

    def claim(self, study_id: str, owner: str, lease_s: float) -> WorkItem | None:
        with self._lock:
            now = self.clock()
            old = self._items.get(study_id)
            if old is None:
                return WorkItem(study_id, state=RUNNING, owner=owner, lease_until=now + lease_s, updated=now)
            if old.state == RUNNING and old.owner != owner and old.lease_until > now:
                return None
            item = dataclasses.replace(old, state=RUNNING, owner=owner, lease_until=now + lease_s, updated=now)
            self._save(item)
            self._items[study_id] = item
            return item

    def complete(self, item: WorkItem) -> None:
        with self._lock:
            current = self._items.get(item.study_id)
            if current is None:
                return
            if current.revision == item.revision or item.covers(current):
                self._delete(item.study_id)
                del self._items[item.study_id]
                return
            # a request the job did not cover came in while it ran: it stays, to run again
            again = dataclasses.replace(current, state=QUEUED, owner="", lease_until=0.0, updated=self.clock())
            self._save(again)
            self._items[item.study_id] = again

    def fail(self, item: WorkItem, reason: str, retry_at: float | None) -> WorkItem:
        with self._lock:
            current = self._items.get(item.study_id, item)
            # a request arrived during the job that the job did not cover
            merged = current.revision != item.revision and not item.covers(current)
            failed = dataclasses.replace(
                current,
                # a retry segments again the images that failed
                retry_failed=current.retry_failed or retry_at is not None,
                state=QUEUED if (retry_at is not None or merged) else FAILED,
                attempts=current.attempts if merged else item.attempts + 1,
                not_before=0.0 if merged else float(retry_at or 0.0),
                reason=reason,
                owner="",
                lease_until=0.0,
                revision=max(current.revision, 1),
                updated=self.clock(),
            )
            self._save(failed)
            self._items[item.study_id] = failed
            return failed

    def list(self) -> list[WorkItem]:
        with self._lock:
            return sorted(self._items.values(), key=lambda i: (i.not_before, i.updated, i.study_id))

    def load(self) -> int:
        """Read the stored records; those a dead process held are queued again."""
        found = 0
        for item in self._read_all():
            if item.state == RUNNING:
                item = dataclasses.replace(item, state=QUEUED, owner="", lease_until=0.0)
            with self._lock:
                if item.study_id not in self._items:
                    self._items[item.study_id] = item
                    found += 1
        return found


class MemoryWorkState(CachedWorkState):
    """Nothing durable: requests live as long as the process."""


# -- study metadata (every Orthanc) ------------------------------------------------------------
class MetadataStore(Protocol):
    """What :class:`MetadataWorkState` needs (``OrthancGateway`` implements it)."""

    def read_study_metadata(self, study_id: str, name: str) -> str | None: ...

    def write_study_metadata(self, study_id: str, name: str, text: str) -> None: ...

    def delete_study_metadata(self, study_id: str, name: str) -> None: ...

    def count_studies(self) -> int: ...

    def list_studies(self, since: int, limit: int) -> list[str]: ...


class MetadataWorkState(CachedWorkState):
    """One record per study in the study metadata ``metadata_name`` (declared in ``UserMetadata``)."""

    name = "metadata"
    durable = True

    def __init__(
        self, store: MetadataStore, metadata_name: str = "ScintiSegWork", page: int = 200, clock: Clock = time.time
    ) -> None:
        super().__init__(clock)
        self.store = store
        self.metadata_name = metadata_name
        self.page = page

    def _save(self, item: WorkItem) -> None:
        self.store.write_study_metadata(item.study_id, self.metadata_name, item.to_json())

    def _delete(self, study_id: str) -> None:
        self.store.delete_study_metadata(study_id, self.metadata_name)

    def _read_all(self) -> Iterator[WorkItem]:
        since, total = 0, self.store.count_studies()
        while since < total:
            ids = self.store.list_studies(since, self.page)
            if not ids:
                return
            for study_id in ids:
                try:
                    item = WorkItem.from_json(self.store.read_study_metadata(study_id, self.metadata_name))
                except Exception as exc:  # a study deleted meanwhile: its record went with it
                    log.debug("study %s: work record unreadable (%s)", study_id, exc)
                    continue
                if item is not None and item.study_id == study_id:
                    yield item
            since += len(ids)


# -- plugin key-value store and queues (Orthanc >= 1.12.8 / 1.12.10) ------------------------
class KeyValueWorkState(CachedWorkState):
    """The records in the plugin key-value store ``store_id`` (``StoreKeyValue`` & co)."""

    name = "keyvalue"
    durable = True

    def __init__(self, api: Any, store_id: str = "scintiseg-work", clock: Clock = time.time) -> None:
        super().__init__(clock)
        self.api = api
        self.store_id = store_id

    def _save(self, item: WorkItem) -> None:
        self.api.StoreKeyValue(self.store_id, item.study_id, item.to_json().encode("utf-8"))

    def _delete(self, study_id: str) -> None:
        self.api.DeleteKeyValue(self.store_id, study_id)

    def _read_all(self) -> Iterator[WorkItem]:
        it = self.api.CreateKeysValuesIterator(self.store_id)
        while it.Next():
            item = WorkItem.from_json(it.GetValue())
            if item is not None:
                yield item


class QueueWorkState(KeyValueWorkState):
    """Key-value records plus a durable plugin queue of requests with expiring reservations.

    :meth:`enqueue` pushes the study id to the queue ``queue_id``;
    :meth:`take` reserves the next one (``ReserveQueueValue``, released again
    after ``lease_s`` if not acknowledged, e.g. when the process died) and
    :meth:`complete` / :meth:`fail` acknowledge it (``AcknowledgeQueueValue``).
    A study id reserved twice (two requests) is coalesced by the record.
    """

    name = "queue"

    def __init__(
        self, api: Any, queue_id: str = "scintiseg-requests", store_id: str = "scintiseg-work",
        clock: Clock = time.time,
    ) -> None:
        super().__init__(api, store_id, clock)
        self.queue_id = queue_id
        self._reserved: dict[str, list[int]] = {}  # study id -> queue value ids held

    def enqueue(
        self, study_id: str, retry_failed: bool = False, force: bool = False, not_before: float = 0.0
    ) -> WorkItem:
        item = super().enqueue(study_id, retry_failed, force, not_before)
        self.api.EnqueueValue(self.queue_id, study_id.encode("utf-8"))
        return item

    def take(self, lease_s: float) -> str | None:
        """Reserve the next requested study id for ``lease_s`` seconds; None if the queue is empty."""
        value, value_id = self.api.ReserveQueueValue(self.queue_id, self.api.QueueOrigin.FRONT, int(lease_s))
        if value is None:
            return None
        study_id = bytes(value).decode("utf-8")
        with self._lock:
            self._reserved.setdefault(study_id, []).append(int(value_id))
        return study_id

    def _acknowledge(self, study_id: str) -> None:
        with self._lock:
            ids = self._reserved.pop(study_id, [])
        for value_id in ids:
            self.api.AcknowledgeQueueValue(self.queue_id, value_id)

    def complete(self, item: WorkItem) -> None:
        super().complete(item)
        self._acknowledge(item.study_id)

    def fail(self, item: WorkItem, reason: str, retry_at: float | None) -> WorkItem:
        failed = super().fail(item, reason, retry_at)
        self._acknowledge(item.study_id)
        if failed.state == QUEUED:
            self.api.EnqueueValue(self.queue_id, item.study_id.encode("utf-8"))
        return failed

    #: how long a reservation taken at start-up holds before the queue gives the value back
    load_lease_s = 600.0

    def load(self) -> int:
        found = super().load()
        # reserve what the queue holds now, so that finishing those requests acknowledges
        # them; a value without a record was finished before its acknowledgement: drop it
        while (study_id := self.take(self.load_lease_s)) is not None:
            with self._lock:
                known = study_id in self._items
            if not known:
                self._acknowledge(study_id)
        return found


#: Backends by name, most capable first (what ``ScintiSeg.WorkState`` ``auto`` tries).
BACKENDS = ("queue", "keyvalue", "metadata", "memory")
#: The plugin functions each backend needs (``hasattr`` on the ``orthanc`` module).
REQUIRED_API: dict[str, tuple[str, ...]] = {
    "queue": ("StoreKeyValue", "DeleteKeyValue", "CreateKeysValuesIterator",
              "EnqueueValue", "ReserveQueueValue", "AcknowledgeQueueValue"),
    "keyvalue": ("StoreKeyValue", "DeleteKeyValue", "CreateKeysValuesIterator"),
    "metadata": (),
    "memory": (),
}


def available_backends(api: Any, metadata_declared: bool = True) -> list[str]:
    """The backends the plugin API offers, most capable first (feature detection).

    ``metadata`` needs the work metadata declared in Orthanc's ``UserMetadata``.
    """
    return [
        name for name in BACKENDS
        if all(hasattr(api, fn) for fn in REQUIRED_API[name]) and (name != "metadata" or metadata_declared)
    ]


def choose_backend(
    choice: str,
    api: Any,
    store: MetadataStore,
    metadata_name: str,
    metadata_declared: bool = True,
    clock: Clock = time.time,
) -> CachedWorkState:
    """The backend named ``choice`` (``auto``: the most capable available); ValueError if absent."""
    offered = available_backends(api, metadata_declared)
    name = offered[0] if choice == "auto" else choice
    if name not in offered:
        raise ValueError(f"work state backend {name!r} is not available here (offered: {', '.join(offered)})")
    if name == "queue":
        return QueueWorkState(api, clock=clock)
    if name == "keyvalue":
        return KeyValueWorkState(api, clock=clock)
    if name == "metadata":
        return MetadataWorkState(store, metadata_name, clock=clock)
    return MemoryWorkState(clock)
