"""How a running attempt ends: results, heartbeats and lapsed leases.

Every statement here is fenced by ``status = 'running'`` and the attempt
(and, for reports from a worker, the worker id): a report from an attempt
that lost its lease matches no row, so it can never overwrite the outcome
of a newer attempt.

The statements that find their rows by id write the fence as a join with
the batch (``j.status = e.held``, where every row of the batch holds
'running'), never as a condition on the jobs alone. Statistics are a
snapshot of a table that changes by the thousand each second, and they
often say that no job runs: the planner then took ``status = 'running'``
(written plainly) as a cue to scan every running and dead entry of an index
on status, and ``(status = 'running') IS TRUE`` as a cue to drive the join
from the jobs table (a full scan, each row compared with the whole batch)
instead of looking up the batch's ids; measured mid-drain, each turned a
5-10 ms result flush into 0.1-1.7 s. A join clause is estimated from the
number of distinct statuses instead, which keeps the lookup by id.
"""

from __future__ import annotations

import uuid
from typing import NamedTuple

from pulse_client import limits
from pulse_client._proto.pulse.v1 import pulse_pb2 as pb
from pulsed import metrics
from pulsed.config import Config
from pulsed.database import INDEX_ONLY_PLANS, Cursor, Prepared, array_literal

MAX_ERROR_CHARS = 16_000
MAX_RETRY_DELAY_MS = limits.MAX_RETRY_DELAY_MS

# The column "failure" of each outcome a worker reports.
_FAILURES: dict[int, str | None] = {
    pb.OUTCOME_SUCCEEDED: None,
    pb.OUTCOME_FAILED: "failed",
    pb.OUTCOME_FAILED_PERMANENTLY: "failed_permanently",
    pb.OUTCOME_RETURNED: "returned",
}

# Attempt n of the current budget waited base × n² seconds, plus up to 10%
# jitter so that jobs failing together do not retry together, never longer
# than the ceiling. Computed in float8, so no attempt count overflows.
_BACKOFF_SECONDS = """
    least(%(backoff_ceiling)s::float8,
          %(backoff_base)s::float8 * power((j.attempt - j.attempt_base)::float8, 2)
              * (1 + 0.1 * random()))
"""

# The status an attempt ends in, given how it ended (the column "failure":
# NULL for success, 'failed', 'failed_permanently', or 'returned' for a job
# its worker never started, which goes back in line).
_NEXT_STATUS = """
    CASE
        WHEN e.failure IS NULL THEN 'completed'
        WHEN j.cancel_requested_at IS NOT NULL THEN 'canceled'
        WHEN e.failure = 'returned' THEN 'pending'
        WHEN e.failure = 'failed_permanently'
             OR j.attempt - j.attempt_base >= j.max_attempts THEN 'dead_lettered'
        ELSE 'retrying'
    END
"""

# The end of an attempt: one UPDATE of the job's row from a row ``e`` that
# says how it ended (failure, error, retry_delay_ms). The new values are
# computed from the row being updated, not from an earlier read of it: a
# cancel request or a heartbeat that commits first is seen (Postgres reads
# the row again and re-checks the fence), without a locking step before the
# update, which cost a WAL record per job.
_END_ATTEMPT = (
    """
UPDATE jobs AS j SET
    status = """
    + _NEXT_STATUS
    + """,
    finished_at = CASE WHEN """
    + _NEXT_STATUS
    + """ IN ('retrying', 'pending') THEN NULL ELSE now() END,
    run_at = CASE WHEN """
    + _NEXT_STATUS
    + """ <> 'retrying' THEN j.run_at
                  WHEN e.retry_delay_ms > 0
                      THEN now() + e.retry_delay_ms * interval '1 millisecond'
                  ELSE now() + """
    + _BACKOFF_SECONDS
    + """ * interval '1 second' END,
    last_error = coalesce(e.error, j.last_error),
    -- A returned attempt never ran: it leaves the budget untouched.
    attempt_base = CASE WHEN e.failure = 'returned' THEN j.attempt_base + 1
                        ELSE j.attempt_base END,
    lease_expires_at = NULL
FROM e
WHERE j.id = e.id AND j.attempt = e.attempt AND j.status = e.held"""
)

# Worker reports: one statement for a whole batch, from any number of
# streams. A duplicate (id, attempt) in a batch is applied once, the first
# sent (DISTINCT ON keeps whichever its sort puts first, and the sort is not
# stable: without the ordinal it often kept a later one); reports of
# two attempts of one job (a stale one beside the current one, from a
# worker that got the job back) are both kept, and the fence picks the
# current one. Ids come as text (pulsed.stream checked their form) and go
# back as text: Postgres converts them faster than a Python adapter per id.
APPLY_RESULTS = (
    """
WITH e AS MATERIALIZED (
    SELECT DISTINCT ON (id, attempt) *, 'running'::text AS held
    FROM unnest(%(ids)s::text[]::uuid[], %(attempts)s::int[], %(worker_ids)s::text[],
                %(failures)s::text[], %(errors)s::text[], %(delays_ms)s::bigint[])
         WITH ORDINALITY AS r(id, attempt, worker_id, failure, error, retry_delay_ms, n)
    ORDER BY id, attempt, n
)"""
    + _END_ATTEMPT
    + """
  AND j.worker_id = e.worker_id
RETURNING j.id::text, j.attempt, j.status, j.topic
"""
)

# The watchdog: running jobs whose lease lapsed go through the retry path,
# the attempt counted like an error. SKIP LOCKED lets every replica's
# watchdog run at once without waiting on each other.
EXPIRE_LEASES = (
    """
WITH e AS MATERIALIZED (
    SELECT id, attempt, 'failed'::text AS failure, 0::bigint AS retry_delay_ms,
           'running'::text AS held,
           CASE WHEN timeout_ms > 0
                     AND now() >= started_at + timeout_ms * interval '1 millisecond'
                THEN format('timed out after %%s ms (attempt %%s, worker %%s)',
                            timeout_ms, attempt, worker_id)
                ELSE format('lease expired (attempt %%s, worker %%s)',
                            attempt, worker_id)
           END AS error
    FROM jobs
    WHERE status = 'running' AND lease_expires_at < now()
    ORDER BY lease_expires_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)"""
    + _END_ATTEMPT
    + """
RETURNING j.id, j.attempt, j.status, j.topic
"""
)

# Heartbeats extend the leases of jobs still held, never past a job's
# timeout, so a job that overruns it lapses even if its worker keeps
# heartbeating.
EXTEND_LEASES = """
WITH h AS MATERIALIZED (
    SELECT *, 'running'::text AS held, now() AS now
    FROM unnest(%(ids)s::text[]::uuid[], %(attempts)s::int[], %(worker_ids)s::text[])
         AS b(id, attempt, worker_id)
)
UPDATE jobs AS j SET
    lease_expires_at = CASE
        WHEN j.timeout_ms > 0 THEN least(
            now() + %(lease_seconds)s::float8 * interval '1 second',
            j.started_at + j.timeout_ms * interval '1 millisecond')
        ELSE now() + %(lease_seconds)s::float8 * interval '1 second' END
FROM h
WHERE j.id = h.id AND j.attempt = h.attempt AND j.worker_id = h.worker_id
  AND j.status = h.held AND j.lease_expires_at >= h.now
RETURNING j.id::text, j.attempt, j.cancel_requested_at IS NOT NULL
"""


_APPLY_RESULTS = Prepared(
    "pulse_apply_results", APPLY_RESULTS, settings=INDEX_ONLY_PLANS
)
_EXTEND_LEASES = Prepared(
    "pulse_extend_leases", EXTEND_LEASES, settings=INDEX_ONLY_PLANS
)


class Report(NamedTuple):
    """One worker's result for one attempt (the job id in canonical form)."""

    job_id: str
    attempt: int
    worker_id: str
    outcome: int
    error: str
    retry_delay_ms: int


class Ack(NamedTuple):
    accepted: bool
    status: str
    topic: str = ""


class Beat(NamedTuple):
    job_id: str
    attempt: int
    worker_id: str


class BeatReply(NamedTuple):
    held: bool
    cancel_requested: bool


def clean_error(text: str) -> str:
    """Error text as Postgres can store it: no NUL, bounded length."""
    if len(text) > MAX_ERROR_CHARS:
        text = (
            text[:MAX_ERROR_CHARS] + f"... [{len(text) - MAX_ERROR_CHARS} more chars]"
        )
    return text.replace("\x00", "\\x00")


def _backoff_params(config: Config) -> dict[str, float]:
    return {
        "backoff_base": config.backoff_base_seconds,
        "backoff_ceiling": config.backoff_ceiling_seconds,
    }


def apply_results(cur: Cursor, reports: list[Report], config: Config) -> list[Ack]:
    """Apply a batch of reports; one Ack per report, in order."""
    if not reports:
        return []
    ids, attempts, worker_ids, codes, errors, delays_ms = zip(*reports, strict=True)
    _APPLY_RESULTS.execute(
        cur,
        {
            "ids": array_literal(ids),
            "attempts": array_literal(attempts),
            "worker_ids": list(worker_ids),
            "failures": [_FAILURES[code] for code in codes],
            "errors": [
                None if code == pb.OUTCOME_SUCCEEDED else clean_error(error)
                for code, error in zip(codes, errors, strict=True)
            ],
            "delays_ms": array_literal(delays_ms),
            **_backoff_params(config),
        },
    )
    rows = cur.fetchall()
    metrics.count_ended((topic, status) for _, _, status, topic in rows)
    applied = {(row[0], row[1]): (row[2], row[3]) for row in rows}
    # A duplicate (id, attempt) was applied once: only its first report is.
    take = applied.pop
    acks = []
    for key in zip(ids, attempts, strict=True):
        status, topic = take(key, ("", ""))
        acks.append(Ack(bool(status), status, topic))
    return acks


def expire_leases(
    cur: Cursor, config: Config, limit: int = 1000
) -> list[tuple[uuid.UUID, int, str]]:
    """Send lapsed leases through the retry path; returns (id, attempt, status)."""
    cur.execute(EXPIRE_LEASES, {"limit": limit, **_backoff_params(config)})
    rows = cur.fetchall()
    metrics.count_expired((topic, status) for _, _, status, topic in rows)
    return [(row[0], row[1], row[2]) for row in rows]


def extend_leases(cur: Cursor, beats: list[Beat], config: Config) -> list[BeatReply]:
    """Extend the leases still held; one reply per beat, in order."""
    if not beats:
        return []
    ids, attempts, worker_ids = zip(*beats, strict=True)
    _EXTEND_LEASES.execute(
        cur,
        {
            "ids": array_literal(ids),
            "attempts": array_literal(attempts),
            "worker_ids": list(worker_ids),
            "lease_seconds": config.lease_seconds,
        },
    )
    held = {(row[0], row[1]): bool(row[2]) for row in cur.fetchall()}
    return [
        BeatReply(held=key in held, cancel_requested=held.get(key, False))
        for key in zip(ids, attempts, strict=True)
    ]
