"""The cluster's work items: one row per study in a table of the plugin's own, in PostgreSQL.

Several Orthanc nodes on one PostgreSQL index share their studies through the
table ``scintiseg_work`` in the same database (created on first use). Any
node may take any waiting study, whatever node received it; the rules live in
the SQL of this module, each in one statement:

* **one row per study** (primary key): queueing a study that waits merges the
  request into the waiting row; queueing a study that runs marks it ``again``
  (it is queued once more when the run ends, never run twice at once);
* **claim** takes the oldest waiting row, or a running row whose lease has
  expired, with ``SELECT … FOR UPDATE SKIP LOCKED``: two nodes never take the
  same row, and neither waits for the other. The claim sets a lease
  (``lease_until``) and a new fencing ``token`` from a sequence;
* a running node **renews** its leases; a node that dies stops renewing, so its
  rows become claimable when the lease expires: it holds a lease, not the work;
* **complete**, **release** and :meth:`WorkQueue.fenced` act only while the
  caller's token is the row's token: a node that lost its lease (paused past
  it, then resumed) cannot record anything over the node that took over;
* a study whose instances are still **arriving** waits with ``ready_at`` in the
  future, pushed back by each arrival on its receiving node: if that node dies
  before the study is stable, another node takes the study when ``ready_at``
  passes (the stable-age plus one lease after its last instance);
* a node silent for a lease is **lost**: one survivor rescans the index for
  what it had received but not yet recorded (:meth:`WorkQueue.lost_nodes`);
* the **start-up scan** of the Orthanc index runs on one node at a time
  (:meth:`WorkQueue.scan_lock`, a session advisory lock, released if that node
  dies) and only queues studies that are not already waiting or running.

Nodes also record themselves in ``scintiseg_nodes`` (heartbeat, counts), so
``GET /scintiseg/status`` and ``/scintiseg/queue`` can say which node runs what.

Nothing here imports ``orthanc``. Each :class:`WorkQueue` holds one psycopg
connection (psycopg 3) guarded by a lock; the cluster worker
(:mod:`scintiseg.work.cluster`) gives each of its threads its own queue.

Exceptions::

    WorkQueueError      PostgreSQL refused or is unreachable (psycopg's error chained)
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

log = logging.getLogger(__name__)

#: States of a work row.
WAITING, RUNNING, DONE, FAILED = "waiting", "running", "done", "failed"
STATES = (WAITING, RUNNING, DONE, FAILED)

#: Advisory lock keys (``pg_advisory_lock`` takes a bigint): "SCISEG" + purpose.
SCHEMA_LOCK = 0x5343_4953_4547_0001
SCAN_LOCK = 0x5343_4953_4547_0002

#: LISTEN/NOTIFY channel: a row became claimable.
CHANNEL = "scintiseg_work"

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS scintiseg_work (
    study_id            text PRIMARY KEY,
    state               text NOT NULL CHECK (state IN ('waiting', 'running', 'done', 'failed')),
    retry_failed        boolean NOT NULL DEFAULT false,
    force               boolean NOT NULL DEFAULT false,
    again               boolean NOT NULL DEFAULT false,
    again_retry_failed  boolean NOT NULL DEFAULT false,
    again_force         boolean NOT NULL DEFAULT false,
    -- a manual request also segments again the images of a superseded model version
    upgrade             boolean NOT NULL DEFAULT false,
    again_upgrade       boolean NOT NULL DEFAULT false,
    received_by         text,
    node                text,
    token               bigint NOT NULL DEFAULT 0,
    lease_until         timestamptz,
    ready_at            timestamptz,
    attempts            integer NOT NULL DEFAULT 0,
    failures            integer NOT NULL DEFAULT 0,
    takeovers           integer NOT NULL DEFAULT 0,
    enqueued_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    started_at          timestamptz,
    finished_at         timestamptz,
    outcome             text,
    reason              text NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS scintiseg_work_open
    ON scintiseg_work (enqueued_at) WHERE state IN ('waiting', 'running');
CREATE INDEX IF NOT EXISTS scintiseg_work_failed
    ON scintiseg_work (finished_at) WHERE state = 'failed';
CREATE SEQUENCE IF NOT EXISTS scintiseg_lease_token;
CREATE TABLE IF NOT EXISTS scintiseg_nodes (
    node        text PRIMARY KEY,
    incarnation text NOT NULL,
    started_at  timestamptz NOT NULL,
    last_seen   timestamptz NOT NULL,
    info        jsonb NOT NULL DEFAULT '{{}}'::jsonb,
    scanned_for text
);
COMMENT ON TABLE scintiseg_work IS 'ScintiSeg work items shared by the Orthanc nodes (channel {CHANNEL})';
"""

# -- the statements (named for what they guarantee) -----------------------------------------
_ENQUEUE = """
INSERT INTO scintiseg_work AS w (study_id, state, retry_failed, force, upgrade, received_by, ready_at)
VALUES (%(study)s, 'waiting', %(retry)s, %(force)s, %(request)s, %(node)s, %(ready_at)s)
ON CONFLICT (study_id) DO UPDATE SET
    ready_at = EXCLUDED.ready_at,
    failures = CASE WHEN %(request)s THEN 0 ELSE w.failures END,
    state = CASE WHEN w.state = 'running' THEN 'running' ELSE 'waiting' END,
    retry_failed = CASE WHEN w.state = 'waiting' THEN w.retry_failed OR EXCLUDED.retry_failed
                        WHEN w.state = 'running' THEN w.retry_failed
                        ELSE EXCLUDED.retry_failed END,
    force = CASE WHEN w.state = 'waiting' THEN w.force OR EXCLUDED.force
                 WHEN w.state = 'running' THEN w.force
                 ELSE EXCLUDED.force END,
    upgrade = CASE WHEN w.state = 'waiting' THEN w.upgrade OR EXCLUDED.upgrade
                   WHEN w.state = 'running' THEN w.upgrade
                   ELSE EXCLUDED.upgrade END,
    again = w.again OR w.state = 'running',
    again_retry_failed = w.again_retry_failed OR (w.state = 'running' AND EXCLUDED.retry_failed),
    again_force = w.again_force OR (w.state = 'running' AND EXCLUDED.force),
    again_upgrade = w.again_upgrade OR (w.state = 'running' AND EXCLUDED.upgrade),
    enqueued_at = CASE WHEN w.state IN ('done', 'failed') THEN clock_timestamp() ELSE w.enqueued_at END,
    received_by = CASE WHEN w.state IN ('done', 'failed') THEN EXCLUDED.received_by ELSE w.received_by END
"""
# the scan's variant: a study already waiting or running is left as it is
_ENQUEUE_IF_IDLE = _ENQUEUE + "\nWHERE w.state IN ('done', 'failed')"

# instances of the study arrived at this node: it is not stable yet; if this node dies
# before it is, any node may take it at ``ready_at``
_ARRIVE = """
INSERT INTO scintiseg_work AS w (study_id, state, received_by, ready_at)
VALUES (%(study)s, 'waiting', %(node)s, clock_timestamp() + make_interval(secs => %(hold)s))
ON CONFLICT (study_id) DO UPDATE SET
    state = CASE WHEN w.state = 'running' THEN 'running' ELSE 'waiting' END,
    again = w.again OR w.state = 'running',
    ready_at = EXCLUDED.ready_at,
    retry_failed = CASE WHEN w.state = 'waiting' THEN w.retry_failed WHEN w.state = 'running' THEN w.retry_failed
                        ELSE false END,
    force = CASE WHEN w.state IN ('waiting', 'running') THEN w.force ELSE false END,
    upgrade = CASE WHEN w.state IN ('waiting', 'running') THEN w.upgrade ELSE false END,
    enqueued_at = CASE WHEN w.state IN ('done', 'failed') THEN clock_timestamp() ELSE w.enqueued_at END,
    received_by = EXCLUDED.received_by
"""

_CLAIM = """
WITH next AS (
    SELECT study_id, state AS was_state, node AS was_node
    FROM scintiseg_work
    WHERE (state = 'waiting' AND (ready_at IS NULL OR ready_at <= clock_timestamp()))
       OR (state = 'running' AND lease_until < clock_timestamp())
    ORDER BY enqueued_at
    LIMIT 1
    FOR UPDATE SKIP LOCKED
)
UPDATE scintiseg_work AS w SET
    state = 'running',
    node = %(node)s,
    token = nextval('scintiseg_lease_token'),
    lease_until = clock_timestamp() + make_interval(secs => %(lease)s),
    attempts = w.attempts + 1,
    takeovers = w.takeovers + CASE WHEN next.was_state = 'running' THEN 1 ELSE 0 END,
    started_at = clock_timestamp()
FROM next
WHERE w.study_id = next.study_id
RETURNING w.study_id, w.token, w.retry_failed, w.force, w.upgrade, w.attempts, next.was_state, next.was_node,
          w.received_by, w.failures
"""

_RENEW = """
UPDATE scintiseg_work AS w SET lease_until = clock_timestamp() + make_interval(secs => %(lease)s)
FROM unnest(%(studies)s::text[], %(tokens)s::bigint[]) AS h(study_id, token)
WHERE w.study_id = h.study_id AND w.token = h.token AND w.state = 'running'
RETURNING w.study_id
"""

_COMPLETE = """
UPDATE scintiseg_work SET
    state = CASE WHEN again THEN 'waiting' WHEN %(failed)s THEN 'failed' ELSE 'done' END,
    retry_failed = again AND again_retry_failed,
    force = again AND again_force,
    upgrade = again AND again_upgrade,
    enqueued_at = CASE WHEN again THEN clock_timestamp() ELSE enqueued_at END,
    again = false, again_retry_failed = false, again_force = false, again_upgrade = false,
    lease_until = NULL,
    finished_at = clock_timestamp(),
    outcome = %(outcome)s,
    reason = %(reason)s,
    failures = 0
WHERE study_id = %(study)s AND token = %(token)s AND state = 'running'
RETURNING state
"""

# a failed run: retried at ``retry_at`` (back-off), or given up (``retry_at`` NULL); a
# request that came during the run is not held back by the back-off
_FAILED_RUN = """
UPDATE scintiseg_work SET
    state = CASE WHEN again OR %(retry_at)s::timestamptz IS NOT NULL THEN 'waiting' ELSE 'failed' END,
    ready_at = CASE WHEN again THEN NULL ELSE %(retry_at)s::timestamptz END,
    retry_failed = %(retry_at)s::timestamptz IS NOT NULL OR again_retry_failed,
    force = again AND again_force,
    -- a retry does what the failed run was asked to (the images it left are still outdated)
    upgrade = (%(retry_at)s::timestamptz IS NOT NULL AND upgrade) OR (again AND again_upgrade),
    enqueued_at = CASE WHEN again OR %(retry_at)s::timestamptz IS NOT NULL THEN clock_timestamp()
                       ELSE enqueued_at END,
    again = false, again_retry_failed = false, again_force = false, again_upgrade = false,
    failures = failures + 1,
    lease_until = NULL,
    finished_at = clock_timestamp(),
    outcome = 'failed',
    reason = %(reason)s
WHERE study_id = %(study)s AND token = %(token)s AND state = 'running'
RETURNING state
"""

# a job interrupted by its node stopping: claimable at once by another node
_RELEASE = """
UPDATE scintiseg_work SET
    state = 'waiting',
    retry_failed = retry_failed OR again_retry_failed,
    force = force OR again_force,
    upgrade = upgrade OR again_upgrade,
    again = false, again_retry_failed = false, again_force = false, again_upgrade = false,
    node = NULL, lease_until = NULL, reason = %(reason)s
WHERE study_id = %(study)s AND token = %(token)s AND state = 'running'
"""

# a node starting again holds nothing: what its previous life held is claimable at once
_RELEASE_NODE = """
UPDATE scintiseg_work SET state = 'waiting', lease_until = NULL, reason = 'its node restarted'
WHERE node = %(node)s AND state = 'running'
"""

_FENCE = """
SELECT 1 FROM scintiseg_work
WHERE study_id = %(study)s AND token = %(token)s AND state = 'running' AND lease_until > clock_timestamp()
FOR UPDATE
"""

_HEARTBEAT = """
INSERT INTO scintiseg_nodes AS n (node, incarnation, started_at, last_seen, info)
VALUES (%(node)s, %(incarnation)s, %(started)s, clock_timestamp(), %(info)s)
ON CONFLICT (node) DO UPDATE SET
    incarnation = EXCLUDED.incarnation, started_at = EXCLUDED.started_at,
    last_seen = EXCLUDED.last_seen, info = EXCLUDED.info
"""

# a node silent for a lease is lost; one survivor (the one whose UPDATE wins) rescans for
# the studies it had received but not yet recorded, once per incarnation of the lost node
_LOST_NODES = """
UPDATE scintiseg_nodes SET scanned_for = incarnation
WHERE node <> %(node)s AND last_seen < clock_timestamp() - make_interval(secs => %(lease)s)
  AND scanned_for IS DISTINCT FROM incarnation
RETURNING node
"""

_ROW_COLUMNS = (
    "study_id, state, node, received_by, attempts, takeovers, enqueued_at, started_at, "
    "finished_at, lease_until, extract(epoch FROM lease_until - clock_timestamp()) AS lease_left_s, "
    "ready_at, failures, outcome, reason, force, retry_failed, upgrade, again"
)


class WorkQueueError(RuntimeError):
    """PostgreSQL refused a statement or cannot be reached."""


@dataclass(frozen=True)
class Claim:
    """A study this node holds a lease on; ``token`` fences everything it records."""

    study_id: str
    token: int
    retry_failed: bool
    force: bool
    attempts: int
    #: the node whose expired lease this claim took over (``None``: the study was waiting)
    took_over_from: str | None
    received_by: str | None
    #: failed runs since the last request (the retry rule counts them)
    failures: int = 0
    #: a manual request is among what the claim serves: images of a superseded model version
    #: are segmented again too
    upgrade: bool = False


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _row(record: dict[str, Any]) -> dict[str, Any]:
    out = {key: _iso(value) for key, value in record.items()}
    if out.get("lease_left_s") is not None:
        out["lease_left_s"] = round(float(out["lease_left_s"]), 3)
    return out


class WorkQueue:
    """The work table through one connection; each method is one short transaction.

    ``connect`` is a libpq URI (``postgresql://user@host:port/db``). The
    connection opens lazily and reopens after a failure, so a PostgreSQL
    restart costs the statements in flight, not the node.
    """

    def __init__(self, uri: str, node: str, lease_s: float, connect_timeout_s: int = 5) -> None:
        if lease_s <= 0:
            raise ValueError(f"lease_s must be > 0, got {lease_s}")
        self.uri = uri
        self.node = node
        self.lease_s = float(lease_s)
        self.connect_timeout_s = connect_timeout_s
        self._conn: Any = None
        self._lock = threading.RLock()

    # -- plumbing ---------------------------------------------------------------------------
    def _connection(self) -> Any:
        import psycopg
        from psycopg.rows import dict_row

        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(
                self.uri,
                autocommit=False,
                row_factory=dict_row,
                connect_timeout=self.connect_timeout_s,
                application_name=f"scintiseg {self.node}"[:63],
            )
        return self._conn

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        """A cursor in one transaction: committed on success, rolled back on any error."""
        import psycopg

        with self._lock:
            try:
                conn = self._connection()
                with conn.transaction(), conn.cursor() as cur:
                    yield cur
            except psycopg.OperationalError as exc:
                self.close()  # reconnect at the next call
                raise WorkQueueError(f"PostgreSQL unreachable: {exc}") from exc
            except psycopg.Error as exc:
                raise WorkQueueError(f"PostgreSQL error: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # closing a broken connection: nothing left to do
                log.debug("closing the PostgreSQL connection failed", exc_info=True)

    # -- schema -----------------------------------------------------------------------------
    def create_schema(self) -> None:
        """Create the tables once; nodes starting together serialise on an advisory lock."""
        with self._transaction() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            cur.execute(SCHEMA)

    # -- producer ---------------------------------------------------------------------------
    def enqueue(
        self,
        studies: Iterable[tuple[str, bool, bool]],
        if_idle: bool = False,
        request: bool = False,
        ready_at: datetime | None = None,
    ) -> int:
        """Queue ``(study_id, retry_failed, force)`` items in one transaction; returns rows touched.

        ``if_idle`` (the start-up scan): leave studies already waiting or running alone;
        ``request`` (a manual one): the count of failed runs starts afresh, and the job also
        segments again the images made by a superseded model version;
        ``ready_at``: not claimable before then.
        """
        params = [
            {"study": s, "retry": bool(r), "force": bool(f), "node": self.node, "request": request,
             "ready_at": ready_at}
            for s, r, f in studies
        ]
        if not params:
            return 0
        with self._transaction() as cur:
            cur.executemany(_ENQUEUE_IF_IDLE if if_idle else _ENQUEUE, params)
            touched = int(cur.rowcount or 0)
            cur.execute("SELECT pg_notify(%s, %s)", (CHANNEL, self.node))
        return touched

    def arrived(self, studies: Iterable[str], hold_s: float) -> None:
        """Instances of these studies arrived here: claimable by any node ``hold_s`` from now
        unless this node queues them first (when they are stable)."""
        params = [{"study": s, "node": self.node, "hold": float(hold_s)} for s in studies]
        if params:
            with self._transaction() as cur:
                cur.executemany(_ARRIVE, params)

    # -- consumer ---------------------------------------------------------------------------
    def claim(self) -> Claim | None:
        """Take the oldest claimable study (or ``None``): never one another node holds."""
        with self._transaction() as cur:
            cur.execute(_CLAIM, {"node": self.node, "lease": self.lease_s})
            rec = cur.fetchone()
        if rec is None:
            return None
        return Claim(
            study_id=rec["study_id"],
            token=int(rec["token"]),
            retry_failed=bool(rec["retry_failed"]),
            force=bool(rec["force"]),
            attempts=int(rec["attempts"]),
            took_over_from=rec["was_node"] if rec["was_state"] == RUNNING else None,
            received_by=rec["received_by"],
            failures=int(rec["failures"]),
            upgrade=bool(rec["upgrade"]),
        )

    def renew(self, claims: Sequence[Claim]) -> set[str]:
        """Extend the leases; returns the studies whose lease this node still holds."""
        if not claims:
            return set()
        with self._transaction() as cur:
            cur.execute(
                _RENEW,
                {"lease": self.lease_s, "studies": [c.study_id for c in claims], "tokens": [c.token for c in claims]},
            )
            return {r["study_id"] for r in cur.fetchall()}

    def complete(self, claim: Claim, outcome: str, reason: str = "", failed: bool = False) -> str | None:
        """Record the end of a run; the row's new state, ``None`` if the lease was lost."""
        with self._transaction() as cur:
            cur.execute(
                _COMPLETE,
                {"study": claim.study_id, "token": claim.token, "failed": failed,
                 "outcome": outcome, "reason": reason[:2000]},
            )
            rec = cur.fetchone()
            if rec is not None and rec["state"] == WAITING:
                cur.execute("SELECT pg_notify(%s, %s)", (CHANNEL, self.node))
        return None if rec is None else str(rec["state"])

    def failed_run(self, claim: Claim, reason: str, retry_at: datetime | None) -> str | None:
        """A failed run: retried at ``retry_at`` or (``None``) given up; ``None`` if the lease was lost."""
        with self._transaction() as cur:
            cur.execute(_FAILED_RUN, {"study": claim.study_id, "token": claim.token, "reason": reason[:2000],
                                      "retry_at": retry_at})
            rec = cur.fetchone()
        return None if rec is None else str(rec["state"])

    def release(self, claim: Claim, reason: str) -> bool:
        """Give a study back (this node stops): another node may claim it at once."""
        with self._transaction() as cur:
            cur.execute(_RELEASE, {"study": claim.study_id, "token": claim.token, "reason": reason})
            released = bool(cur.rowcount)
            if released:
                cur.execute("SELECT pg_notify(%s, %s)", (CHANNEL, self.node))
        return released

    def release_node(self) -> int:
        """At start-up: the rows a previous life of this node held become waiting."""
        with self._transaction() as cur:
            cur.execute(_RELEASE_NODE, {"node": self.node})
            n = int(cur.rowcount or 0)
            if n:
                cur.execute("SELECT pg_notify(%s, %s)", (CHANNEL, self.node))
        return n

    @contextmanager
    def fenced(self, claim: Claim) -> Iterator[bool]:
        """Hold the study's row locked while the caller records its result.

        Yields True when this node still holds the lease (write), False when it
        lost it (do not write). The row lock keeps any other node from taking
        the study over until the write is done.
        """
        with self._transaction() as cur:
            cur.execute(_FENCE, {"study": claim.study_id, "token": claim.token})
            yield cur.fetchone() is not None

    # -- the start-up scan ------------------------------------------------------------------
    @contextmanager
    def scan_lock(self) -> Iterator[bool]:
        """One node scans the shared index at a time; yields False if another node is scanning.

        A session advisory lock: released on exit, or by PostgreSQL when the
        scanning node's connection dies.
        """
        with self._transaction() as cur:
            cur.execute("SELECT pg_try_advisory_lock(%s) AS got", (SCAN_LOCK,))
            got = bool(cur.fetchone()["got"])
        try:
            yield got
        finally:
            if got:
                with self._transaction() as cur:
                    cur.execute("SELECT pg_advisory_unlock(%s)", (SCAN_LOCK,))

    # -- introspection ----------------------------------------------------------------------
    def heartbeat(self, incarnation: str, started: datetime, info: dict[str, Any]) -> None:
        from psycopg.types.json import Jsonb

        with self._transaction() as cur:
            cur.execute(
                _HEARTBEAT,
                {"node": self.node, "incarnation": incarnation, "started": started, "info": Jsonb(info)},
            )

    def lost_nodes(self) -> list[str]:
        """Nodes silent for a lease that this node is the one to rescan for (each once)."""
        with self._transaction() as cur:
            cur.execute(_LOST_NODES, {"node": self.node, "lease": self.lease_s})
            return [r["node"] for r in cur.fetchall()]

    def snapshot(self, limit: int = 1000, failed_limit: int = 200) -> dict[str, Any]:
        """The open rows (oldest first), the newest failures, counts per state and the nodes."""
        with self._transaction() as cur:
            cur.execute(
                f"SELECT {_ROW_COLUMNS} FROM scintiseg_work WHERE state IN ('waiting', 'running') "
                "ORDER BY enqueued_at LIMIT %s",
                (limit,),
            )
            open_rows = [_row(r) for r in cur.fetchall()]
            cur.execute(
                f"SELECT {_ROW_COLUMNS} FROM scintiseg_work WHERE state = 'failed' "
                "ORDER BY finished_at DESC LIMIT %s",
                (failed_limit,),
            )
            failed = [_row(r) for r in cur.fetchall()]
            cur.execute("SELECT state, count(*) AS n FROM scintiseg_work GROUP BY state")
            counts = {state: 0 for state in STATES}
            counts.update({r["state"]: int(r["n"]) for r in cur.fetchall()})
            cur.execute(
                "SELECT node, incarnation, started_at, last_seen, "
                "extract(epoch FROM clock_timestamp() - last_seen) AS seen_s_ago, info "
                "FROM scintiseg_nodes ORDER BY node"
            )
            nodes = []
            for r in cur.fetchall():
                node = _row(r)
                node["seen_s_ago"] = round(float(node["seen_s_ago"]), 3)
                node["alive"] = node["seen_s_ago"] <= self.lease_s
                nodes.append(node)
        return {"open": open_rows, "failed": failed, "counts": counts, "nodes": nodes}

    def row(self, study_id: str) -> dict[str, Any] | None:
        """One study's row (tests, diagnostics)."""
        with self._transaction() as cur:
            cur.execute(f"SELECT {_ROW_COLUMNS} FROM scintiseg_work WHERE study_id = %s", (study_id,))
            rec = cur.fetchone()
        return None if rec is None else _row(rec)

    def waiting_count(self) -> int:
        with self._transaction() as cur:
            cur.execute(
                "SELECT count(*) AS n FROM scintiseg_work WHERE state = 'waiting' "
                "OR (state = 'running' AND lease_until < clock_timestamp())"
            )
            return int(cur.fetchone()["n"])
