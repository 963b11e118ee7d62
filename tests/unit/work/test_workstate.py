"""The durable work state: its rules on every backend, with fakes of what Orthanc persists."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from support.fake_gateway import FakeMetadataStore

from scintiseg.work.workstate import (
    FAILED,
    QUEUED,
    RUNNING,
    CachedWorkState,
    KeyValueWorkState,
    MemoryWorkState,
    MetadataWorkState,
    QueueWorkState,
    WorkItem,
    available_backends,
    choose_backend,
)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class _Iterator:
    def __init__(self, values: list[bytes]) -> None:
        self.values, self.i = values, -1

    def Next(self) -> bool:  # noqa: N802  (the orthanc module's names)
        self.i += 1
        return self.i < len(self.values)

    def GetValue(self) -> bytes:  # noqa: N802
        return self.values[self.i]


class FakePluginApi:
    """The key-value store and queues of orthanc-python 7 (Orthanc 1.12.10), in memory."""

    class QueueOrigin:
        FRONT, BACK = 0, 1

    def __init__(self) -> None:
        self.kv: dict[tuple[str, str], bytes] = {}
        self.queues: dict[str, list[tuple[int, bytes, float]]] = {}  # id, value, reserved until
        self.next_id = 1
        self.now = 0.0

    def StoreKeyValue(self, store: str, key: str, value: bytes) -> None:  # noqa: N802
        self.kv[(store, key)] = bytes(value)

    def DeleteKeyValue(self, store: str, key: str) -> None:  # noqa: N802
        self.kv.pop((store, key), None)

    def CreateKeysValuesIterator(self, store: str) -> _Iterator:  # noqa: N802
        return _Iterator([v for (s, _), v in sorted(self.kv.items()) if s == store])

    def EnqueueValue(self, queue: str, value: bytes) -> None:  # noqa: N802
        self.queues.setdefault(queue, []).append((self.next_id, bytes(value), 0.0))
        self.next_id += 1

    def ReserveQueueValue(self, queue: str, origin: int, timeout: int) -> tuple[bytes | None, int | None]:  # noqa: N802
        values = self.queues.get(queue, [])
        for n, (vid, value, until) in enumerate(values):
            if until <= self.now:
                values[n] = (vid, value, self.now + timeout)
                return value, vid
        return None, None

    def AcknowledgeQueueValue(self, queue: str, value_id: int) -> None:  # noqa: N802
        self.queues[queue] = [v for v in self.queues.get(queue, []) if v[0] != value_id]


def metadata_backend(clock: Clock) -> tuple[CachedWorkState, Callable[[], CachedWorkState]]:
    store = FakeMetadataStore()
    return MetadataWorkState(store, clock=clock), lambda: MetadataWorkState(store, clock=clock)


def keyvalue_backend(clock: Clock) -> tuple[CachedWorkState, Callable[[], CachedWorkState]]:
    api = FakePluginApi()
    return KeyValueWorkState(api, clock=clock), lambda: KeyValueWorkState(api, clock=clock)


def queue_backend(clock: Clock) -> tuple[CachedWorkState, Callable[[], CachedWorkState]]:
    api = FakePluginApi()
    return QueueWorkState(api, clock=clock), lambda: QueueWorkState(api, clock=clock)


DURABLE = [metadata_backend, keyvalue_backend, queue_backend]


@pytest.mark.parametrize("backend", DURABLE)
def test_a_request_survives_a_restart_and_is_forgotten_once_done(backend: Any) -> None:
    clock = Clock()
    ws, restarted = backend(clock)
    ws.enqueue("study-1", retry_failed=True, force=True)
    claimed = ws.claim("study-1", "node-a", 60)
    assert claimed is not None and claimed.state == RUNNING and claimed.force
    # the process dies (kill -9) during the job: the next one finds the request, queued again
    after = restarted()
    assert after.load() == 1
    (item,) = after.list()
    assert (item.study_id, item.state, item.force, item.retry_failed, item.owner) == ("study-1", QUEUED, True, True, "")
    again = after.claim("study-1", "node-b", 60)
    assert again is not None
    after.complete(again)
    assert after.list() == []
    assert restarted().load() == 0


@pytest.mark.parametrize("backend", DURABLE)
def test_failures_retry_with_their_attempts_then_give_up_visibly(backend: Any) -> None:
    clock = Clock()
    ws, restarted = backend(clock)
    item = ws.claim("study-2", "node-a", 60)  # automatic work: nothing recorded yet
    assert item is not None and not item.recorded and ws.list() == []
    ws.complete(item)
    assert ws.list() == []  # nothing written for work that went well
    failed = ws.fail(item, "internal error: boom", retry_at=1030.0)
    assert (failed.state, failed.attempts, failed.not_before, failed.retry_failed) == (QUEUED, 1, 1030.0, True)
    second = ws.claim("study-2", "node-a", 60)
    assert second is not None and second.attempts == 1
    ws.fail(second, "internal error: boom", retry_at=None)
    after = restarted()
    after.load()
    (gave_up,) = after.list()
    assert (gave_up.state, gave_up.attempts, gave_up.reason) == (FAILED, 2, "internal error: boom")
    # a manual request re-queues it with a fresh series of attempts
    renewed = after.enqueue("study-2", retry_failed=True)
    assert (renewed.state, renewed.attempts, renewed.not_before) == (QUEUED, 0, 0.0)


def test_requests_coalesce_and_a_request_during_a_job_is_not_lost() -> None:
    ws = MemoryWorkState(Clock())
    ws.enqueue("s", force=False)
    ws.enqueue("s", force=True)
    (item,) = ws.list()
    assert item.force and item.revision == 2  # one record per study
    claimed = ws.claim("s", "me", 60)
    assert claimed is not None
    ws.enqueue("s", force=True)  # arrives while the job runs, and the job covers it
    ws.complete(claimed)
    assert ws.list() == []
    ws.enqueue("s", force=True)
    claimed = ws.claim("s", "me", 60)
    assert claimed is not None
    ws.enqueue("s", retry_failed=True)  # arrives while the job runs, asking for more
    ws.complete(claimed)
    (left,) = ws.list()
    assert left.state == QUEUED and left.retry_failed and left.owner == ""
    claimed = ws.claim("s", "me", 60)
    assert claimed is not None
    ws.complete(claimed)
    assert ws.list() == []


def test_a_live_lease_of_another_owner_is_respected_and_a_lapsed_one_taken_over() -> None:
    clock = Clock()
    ws = MemoryWorkState(clock)
    ws.enqueue("s")
    assert ws.claim("s", "node-a", 60) is not None
    assert ws.claim("s", "node-b", 60) is None
    clock.t += 61
    taken = ws.claim("s", "node-b", 60)
    assert taken is not None and taken.owner == "node-b"


def test_records_are_json_and_bad_ones_are_ignored() -> None:
    item = WorkItem("s", force=True, attempts=2, not_before=5.0, revision=3)
    assert WorkItem.from_json(item.to_json()) == item
    for bad in (None, "", "not json", "[]", '{"schema": 99, "study_id": "s"}', '{"schema": 1, "study_id": 3}',
                '{"schema": 1, "study_id": "s", "state": "weird"}'):
        assert WorkItem.from_json(bad) is None


def test_metadata_backend_skips_records_of_other_studies_and_writes_only_requests() -> None:
    store = FakeMetadataStore()
    store.meta[("study-0", "ScintiSegWork")] = WorkItem("study-9").to_json()  # copied from elsewhere
    store.meta[("study-1", "ScintiSegWork")] = "garbage"
    ws = MetadataWorkState(store)
    assert ws.load() == 0
    item = ws.claim("study-2", "me", 60)
    assert item is not None
    ws.complete(item)
    assert store.writes == 0  # automatic work costs no metadata write


def test_queue_backend_acknowledges_what_it_finished_and_gives_back_what_a_dead_process_held() -> None:
    api = FakePluginApi()
    ws = QueueWorkState(api)
    ws.enqueue("s1")
    ws.enqueue("s2")
    assert ws.take(lease_s=30) == "s1"
    item = ws.claim("s1", "me", 30)
    assert item is not None
    ws.complete(item)
    assert [v for _, v, _ in api.queues["scintiseg-requests"]] == [b"s2"]  # s1 acknowledged
    # a process that reserved s2 and died: its reservation lapses, the next start takes it
    assert ws.take(lease_s=30) == "s2"
    api.now += 31
    after = QueueWorkState(api)
    assert after.load() == 1 and [i.study_id for i in after.list()] == ["s2"]
    claimed = after.claim("s2", "other", 30)
    assert claimed is not None
    after.fail(claimed, "boom", retry_at=50.0)  # a retry goes back to the queue
    assert [v for _, v, _ in api.queues["scintiseg-requests"]] == [b"s2"]


def test_queue_values_without_a_record_are_dropped_at_load() -> None:
    api = FakePluginApi()
    api.EnqueueValue("scintiseg-requests", b"done-before-ack")
    ws = QueueWorkState(api)
    assert ws.load() == 0
    assert api.queues["scintiseg-requests"] == []


def test_backend_choice_is_feature_detected() -> None:
    class Old:  # orthanc-python 4.0 on Orthanc 1.10.1
        pass

    class KeyValueOnly:
        StoreKeyValue = DeleteKeyValue = CreateKeysValuesIterator = object()

    store = FakeMetadataStore()
    assert available_backends(Old()) == ["metadata", "memory"]
    assert available_backends(Old(), metadata_declared=False) == ["memory"]
    assert available_backends(KeyValueOnly()) == ["keyvalue", "metadata", "memory"]
    assert available_backends(FakePluginApi())[0] == "queue"
    assert isinstance(choose_backend("auto", Old(), store, "ScintiSegWork"), MetadataWorkState)
    assert isinstance(choose_backend("auto", Old(), store, "W", metadata_declared=False), MemoryWorkState)
    assert isinstance(choose_backend("auto", KeyValueOnly(), store, "W"), KeyValueWorkState)
    assert isinstance(choose_backend("auto", FakePluginApi(), store, "W"), QueueWorkState)
    with pytest.raises(ValueError, match="'queue' is not available"):
        choose_backend("queue", Old(), store, "W")
