"""The cluster's work table (scintiseg.work.pgwork) against a real PostgreSQL server."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest

from scintiseg.work.pgwork import DONE, FAILED, RUNNING, WAITING, WorkQueue


def queue(uri: str, node: str, lease_s: float = 30.0) -> WorkQueue:
    q = WorkQueue(uri, node, lease_s)
    q.create_schema()
    return q


def test_schema_creation_races_are_serialised(pg_uri: str) -> None:
    errors: list[BaseException] = []

    def create() -> None:
        try:
            WorkQueue(pg_uri, "n", 30).create_schema()
        except BaseException as exc:  # collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_a_study_is_claimed_by_one_node_whatever_node_received_it(pg_uri: str) -> None:
    a, b = queue(pg_uri, "a"), queue(pg_uri, "b")
    a.enqueue([("s1", False, False), ("s2", False, False)])
    first, second = b.claim(), a.claim()
    assert first is not None and second is not None
    assert (first.study_id, second.study_id) == ("s1", "s2")  # oldest first, a different one each
    assert first.received_by == "a" and first.took_over_from is None
    assert a.claim() is None and b.claim() is None
    assert b.complete(first, "done") == DONE
    assert a.complete(second, "failed", "1 of 1 image(s) failed", failed=True) == FAILED
    snap = a.snapshot()
    assert snap["counts"] == {WAITING: 0, RUNNING: 0, DONE: 1, FAILED: 1}
    assert [f["study_id"] for f in snap["failed"]] == ["s2"]
    assert snap["failed"][0]["node"] == "a" and snap["failed"][0]["reason"].startswith("1 of 1")


def test_concurrent_claims_never_share_a_study(pg_uri: str) -> None:
    queue(pg_uri, "setup").enqueue([(f"s{i:03d}", False, False) for i in range(60)])
    taken: dict[str, list[str]] = {}
    lock = threading.Lock()

    def consume(node: str) -> None:
        q = WorkQueue(pg_uri, node, 30)
        while (c := q.claim()) is not None:
            with lock:
                taken.setdefault(c.study_id, []).append(node)
            q.complete(c, "done")
        q.close()

    threads = [threading.Thread(target=consume, args=(f"n{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(taken) == [f"s{i:03d}" for i in range(60)]
    assert all(len(nodes) == 1 for nodes in taken.values())
    assert len({n for nodes in taken.values() for n in nodes}) > 1  # the work was shared


def test_an_expired_lease_is_taken_over_and_fences_the_old_holder(pg_uri: str) -> None:
    dead, alive = queue(pg_uri, "dead", lease_s=0.5), queue(pg_uri, "alive", lease_s=30)
    dead.enqueue([("s1", False, True)])
    held = dead.claim()
    assert held is not None and held.force
    assert alive.claim() is None  # the lease is valid: nobody else may take it
    time.sleep(0.7)
    taken = alive.claim()
    assert taken is not None and taken.study_id == "s1"
    assert taken.took_over_from == "dead" and taken.attempts == 2 and taken.force
    assert taken.token > held.token
    # the old holder wakes up: it can neither renew, nor record, nor complete
    assert dead.renew([held]) == set()
    with dead.fenced(held) as may_write:
        assert not may_write
    assert dead.complete(held, "done") is None
    with alive.fenced(taken) as may_write:
        assert may_write
    assert alive.renew([taken]) == {"s1"}
    assert alive.complete(taken, "done") == DONE
    assert alive.row("s1")["takeovers"] == 1


def test_queued_while_running_runs_again_once_with_the_merged_options(pg_uri: str) -> None:
    q = queue(pg_uri, "a")
    q.enqueue([("s1", False, False)])
    c = q.claim()
    assert c is not None
    q.enqueue([("s1", True, False)])
    q.enqueue([("s1", False, True)])
    assert q.claim() is None  # never run twice at once
    assert q.complete(c, "done") == WAITING
    again = q.claim()
    assert again is not None and again.retry_failed and again.force
    assert q.complete(again, "done") == DONE
    assert q.claim() is None


def test_waiting_requests_merge_and_done_studies_queue_afresh(pg_uri: str) -> None:
    q = queue(pg_uri, "a")
    q.enqueue([("s1", False, False), ("s1", False, True)])
    c = q.claim()
    assert c is not None and c.force
    q.complete(c, "done")
    q.enqueue([("s1", False, False)])
    c = q.claim()
    assert c is not None and not c.force  # a finished run's options are not inherited


def test_a_manual_request_also_upgrades_and_keeps_it_through_runs_and_retries(pg_uri: str) -> None:
    # a request (POST .../process) segments again the images of a superseded model version;
    # arrivals and scans do not (ReprocessOnUpgrade decides for those)
    q = queue(pg_uri, "a")
    q.enqueue([("s1", False, False)])
    plain = q.claim()
    assert plain is not None and not plain.upgrade
    q.enqueue([("s1", True, False)], request=True)  # asked while it runs
    assert q.complete(plain, "done") == WAITING
    asked = q.claim()
    assert asked is not None and asked.upgrade and asked.retry_failed
    # a retry does what the failed run was asked to
    assert q.failed_run(asked, "store failed", datetime.now(UTC)) == WAITING
    retry = q.claim()
    assert retry is not None and retry.upgrade
    q.complete(retry, "done")
    q.arrived(["s1"], hold_s=0)
    q.enqueue([("s1", False, False)])
    arrival = q.claim()
    assert arrival is not None and not arrival.upgrade  # a finished request is not inherited
    q.release(arrival, "stopping")
    assert not (q.claim() or arrival).upgrade


def test_the_scan_leaves_open_rows_alone(pg_uri: str) -> None:
    q = queue(pg_uri, "a")
    q.enqueue([("run", False, False)])
    running = q.claim()
    assert running is not None
    q.enqueue([("wait", False, True)])
    q.enqueue([("run", False, False), ("wait", False, False), ("new", False, False)], if_idle=True)
    assert q.row("run")["again"] is False  # not queued behind itself
    assert q.row("wait")["force"] is True
    assert q.row("new")["state"] == WAITING


def test_release_and_restart_make_held_work_claimable_at_once(pg_uri: str) -> None:
    a, b = queue(pg_uri, "a"), queue(pg_uri, "b")
    a.enqueue([("s1", False, False), ("s2", False, False)])
    c1, c2 = a.claim(), a.claim()
    assert c1 is not None and c2 is not None
    assert a.release(c1, "node stopping")
    assert b.claim() is not None  # s1, without waiting for a lease to expire
    a2 = queue(pg_uri, "a")  # the same node, started again
    assert a2.release_node() == 1
    assert b.claim() is not None  # s2


def test_the_scan_lock_admits_one_node(pg_uri: str) -> None:
    a, b = queue(pg_uri, "a"), queue(pg_uri, "b")
    with a.scan_lock() as got_a:
        assert got_a
        with b.scan_lock() as got_b:
            assert not got_b
    with b.scan_lock() as got_b:
        assert got_b


def test_a_dead_scanner_releases_the_scan_lock(pg_uri: str) -> None:
    a, b = queue(pg_uri, "a"), queue(pg_uri, "b")
    lock = a.scan_lock()
    assert lock.__enter__()
    a.close()  # the node's connection drops (a crash); its backend ends a moment later
    deadline = time.monotonic() + 5
    while True:
        with b.scan_lock() as got_b:
            if got_b or time.monotonic() > deadline:
                break
        time.sleep(0.05)
    assert got_b


def test_heartbeats_list_the_nodes(pg_uri: str) -> None:
    from datetime import UTC, datetime

    a = queue(pg_uri, "a", lease_s=30)
    a.heartbeat("inc-1", datetime.now(UTC), {"threads": 1, "running": ["s9"]})
    nodes = a.snapshot()["nodes"]
    assert [n["node"] for n in nodes] == ["a"]
    assert nodes[0]["alive"] and nodes[0]["info"]["running"] == ["s9"]


def test_an_unreachable_server_is_a_work_queue_error(postgres) -> None:
    from scintiseg.work.pgwork import WorkQueueError

    q = WorkQueue("postgresql://nobody@127.0.0.1:1/none", "a", 30, connect_timeout_s=1)
    with pytest.raises(WorkQueueError):
        q.claim()


def test_a_study_still_arriving_waits_until_its_node_queues_it_or_its_hold_ends(pg_uri: str) -> None:
    receiver, other = queue(pg_uri, "receiver"), queue(pg_uri, "other")
    receiver.arrived(["s1", "s2"], hold_s=0.6)
    assert other.claim() is None  # not stable yet: nobody takes it
    receiver.enqueue([("s1", False, False)])  # s1 became stable on its node
    c = other.claim()
    assert c is not None and c.study_id == "s1"
    assert other.claim() is None
    time.sleep(0.8)  # the receiver died: s2's hold ends
    c2 = other.claim()
    assert c2 is not None and c2.study_id == "s2" and c2.received_by == "receiver"


def test_an_arrival_during_a_run_queues_the_study_again(pg_uri: str) -> None:
    q = queue(pg_uri, "a")
    q.enqueue([("s1", False, False)])
    c = q.claim()
    assert c is not None
    q.arrived(["s1"], hold_s=30)
    assert q.complete(c, "done") == WAITING
    assert q.claim() is None  # held until stable again
    q.enqueue([("s1", False, False)])
    assert q.claim() is not None


def test_a_silent_node_is_lost_once_for_one_survivor(pg_uri: str) -> None:
    from datetime import UTC, datetime

    dead, a, b = queue(pg_uri, "dead", lease_s=0.3), queue(pg_uri, "a", lease_s=0.3), queue(pg_uri, "b", lease_s=0.3)
    dead.heartbeat("inc-1", datetime.now(UTC), {})
    a.heartbeat("inc-a", datetime.now(UTC), {})
    assert a.lost_nodes() == []
    time.sleep(0.5)
    b.heartbeat("inc-b", datetime.now(UTC), {})
    found = a.lost_nodes() + b.lost_nodes()
    assert sorted(found) == ["a", "dead"]  # b sees a as silent too; each is found once
    assert a.lost_nodes() == [] and b.lost_nodes() == []
    dead.heartbeat("inc-2", datetime.now(UTC), {})  # it came back: a new incarnation may be lost again
    time.sleep(0.5)
    assert "dead" in b.lost_nodes()
