"""Reading jobs and the operator's changes to one job: cancel and requeue."""

from __future__ import annotations

import base64
import datetime
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from google.protobuf import timestamp_pb2

from pulse_client._proto.pulse.v1 import pulse_pb2 as pb
from pulse_client.errors import InvalidArgument, InvalidState, JobNotFound, PulseError
from pulse_client.limits import MAX_PAGE_SIZE
from pulsed.database import Cursor, Database
from pulsed.submits import NOTIFY_CHANNEL_PENDING, parse_job_id

if TYPE_CHECKING:
    from pulsed.auth import Caller

STATUS_TO_PROTO = {
    "scheduled": pb.JOB_STATUS_SCHEDULED,
    "pending": pb.JOB_STATUS_PENDING,
    "running": pb.JOB_STATUS_RUNNING,
    "retrying": pb.JOB_STATUS_RETRYING,
    "completed": pb.JOB_STATUS_COMPLETED,
    "dead_lettered": pb.JOB_STATUS_DEAD_LETTERED,
    "canceled": pb.JOB_STATUS_CANCELED,
}
PROTO_TO_STATUS: dict[int, str] = {value: key for key, value in STATUS_TO_PROTO.items()}
FINISHED = ("completed", "dead_lettered", "canceled")

JOB_COLUMNS = """
    id, topic, payload, priority, status, attempt, attempt_base, max_attempts,
    run_at, created_at, started_at, finished_at, lease_expires_at, worker_id,
    last_error, timeout_ms, cancel_requested_at
"""

SELECT_JOB = f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = %(id)s"

SELECT_STATUS = "SELECT status FROM jobs WHERE id = %(id)s"

# A queued job is canceled at once. A running one keeps running: its worker
# hears of the request on its next heartbeat and reports how it ended.
CANCEL_JOB = f"""
UPDATE jobs SET
    status = CASE WHEN status = 'running' THEN status ELSE 'canceled' END,
    finished_at = CASE WHEN status = 'running' THEN NULL ELSE now() END,
    cancel_requested_at = CASE WHEN status = 'running'
                               THEN coalesce(cancel_requested_at, now())
                               ELSE cancel_requested_at END
WHERE id = %(id)s AND status IN ('scheduled', 'pending', 'retrying', 'running')
RETURNING {JOB_COLUMNS}
"""

# A fresh attempt budget counts from here; attempt itself keeps growing so
# that a report from an attempt before the requeue can never match.
REQUEUE_JOB = f"""
UPDATE jobs SET
    status = 'pending', attempt_base = attempt, run_at = now(),
    finished_at = NULL, cancel_requested_at = NULL, lease_expires_at = NULL,
    worker_id = NULL
WHERE id = %(id)s AND status IN ('dead_lettered', 'canceled')
RETURNING {JOB_COLUMNS}
"""

NOTIFY_PENDING = "SELECT pg_notify(%(channel)s, %(topic)s)"

COUNT_BY_TOPIC_AND_STATUS = """
SELECT topic, status, count(*) FROM jobs GROUP BY topic, status ORDER BY topic
"""

OLDEST_PENDING = f"""
SELECT {JOB_COLUMNS}, extract(epoch FROM now() - run_at)
FROM jobs WHERE status = 'pending' ORDER BY run_at LIMIT 1
"""

DEFAULT_PAGE_SIZE = 100


def to_timestamp(moment: datetime.datetime | None) -> timestamp_pb2.Timestamp | None:
    if moment is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(moment)
    return ts


def row_to_job(row: tuple[Any, ...]) -> pb.Job:
    (
        job_id,
        topic,
        payload,
        priority,
        status,
        attempt,
        attempt_base,
        max_attempts,
        run_at,
        created_at,
        started_at,
        finished_at,
        lease_expires_at,
        worker_id,
        last_error,
        timeout_ms,
        cancel_requested_at,
    ) = row[:17]
    return pb.Job(
        id=str(job_id),
        topic=topic,
        payload=bytes(payload),
        priority=priority,
        status=STATUS_TO_PROTO[status],
        attempt=attempt,
        max_attempts=max_attempts,
        attempts_used=attempt - attempt_base,
        run_at=to_timestamp(run_at),
        created_at=to_timestamp(created_at),
        started_at=to_timestamp(started_at),
        finished_at=to_timestamp(finished_at),
        lease_expires_at=to_timestamp(lease_expires_at),
        worker_id=worker_id or "",
        last_error=last_error or "",
        timeout_ms=timeout_ms,
        cancel_requested_at=to_timestamp(cancel_requested_at),
    )


def get_job(cur: Cursor, job_id: str) -> pb.Job:
    cur.execute(SELECT_JOB, {"id": parse_job_id(job_id)})
    row = cur.fetchone()
    if row is None:
        raise JobNotFound(f"job {job_id!r} not found")
    return row_to_job(row)


def cancel_job(cur: Cursor, job_id: str) -> pb.Job:
    return _transition(cur, CANCEL_JOB, job_id, "cancel", "it has already finished")


def requeue_job(cur: Cursor, job_id: str) -> pb.Job:
    job = _transition(
        cur,
        REQUEUE_JOB,
        job_id,
        "requeue",
        "only dead_lettered or canceled jobs can be",
    )
    cur.execute(NOTIFY_PENDING, {"channel": NOTIFY_CHANNEL_PENDING, "topic": job.topic})
    return job


def _transition(
    cur: Cursor, statement: str, job_id: str, verb: str, why: str
) -> pb.Job:
    key = parse_job_id(job_id)
    cur.execute(statement, {"id": key})
    row = cur.fetchone()
    if row is not None:
        return row_to_job(row)
    cur.execute(SELECT_STATUS, {"id": key})
    found = cur.fetchone()
    if found is None:
        raise JobNotFound(f"job {job_id!r} not found")
    raise InvalidState(f"cannot {verb} job {job_id!r} with status {found[0]}: {why}")


def list_jobs(
    cur: Cursor,
    *,
    statuses: list[int],
    topic: str,
    page_size: int,
    page_token: str,
) -> tuple[list[pb.Job], str]:
    """One page of jobs, newest first, and the token of the next page."""
    if not 0 <= page_size <= MAX_PAGE_SIZE:
        raise InvalidArgument(
            f"page_size {page_size} is out of range 0..{MAX_PAGE_SIZE}"
        )
    limit = page_size or DEFAULT_PAGE_SIZE
    clauses = []
    params: dict[str, Any] = {"limit": limit + 1}
    if statuses:
        unknown = [s for s in statuses if s not in PROTO_TO_STATUS]
        if unknown:
            raise InvalidArgument(f"unknown status value {unknown[0]}")
        clauses.append("status = ANY(%(statuses)s)")
        params["statuses"] = [PROTO_TO_STATUS[s] for s in statuses]
    if topic:
        clauses.append("topic = %(topic)s")
        params["topic"] = topic
    if page_token:
        params["after_created"], params["after_id"] = _decode_page_token(page_token)
        clauses.append("(created_at, id) < (%(after_created)s, %(after_id)s)")
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    # The WHERE clause is assembled from the fixed fragments above only.
    cur.execute(
        f"SELECT {JOB_COLUMNS} FROM jobs {where} "
        "ORDER BY created_at DESC, id DESC LIMIT %(limit)s",
        params,
    )
    rows = cur.fetchall()
    next_token = ""
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        next_token = _encode_page_token(last[9], last[0])
    return [row_to_job(row) for row in rows], next_token


def _encode_page_token(created_at: datetime.datetime, job_id: uuid.UUID) -> str:
    raw = f"{created_at.isoformat()}|{job_id}".encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode_page_token(token: str) -> tuple[datetime.datetime, uuid.UUID]:
    try:
        created, job_id = base64.urlsafe_b64decode(token.encode()).decode().split("|")
        moment = datetime.datetime.fromisoformat(created)
        if moment.tzinfo is None:
            raise ValueError("no time zone")
        # Normalised to UTC, so that no offset can carry it out of range.
        return moment.astimezone(datetime.UTC), uuid.UUID(job_id)
    except (ValueError, UnicodeError, OverflowError):
        raise InvalidArgument(f"page_token {token[:60]!r} is not valid") from None


def stats(cur: Cursor) -> pb.StatsResponse:
    cur.execute(COUNT_BY_TOPIC_AND_STATUS)
    by_topic: dict[str, pb.TopicStats] = {}
    for topic, status, count in cur.fetchall():
        entry = by_topic.setdefault(topic, pb.TopicStats(topic=topic))
        setattr(entry, status, count)
    response = pb.StatsResponse(topics=list(by_topic.values()))
    cur.execute(OLDEST_PENDING)
    row = cur.fetchone()
    if row is not None:
        response.oldest_pending.CopyFrom(row_to_job(row))
        response.oldest_pending_age_ms = max(0, int(float(row[17]) * 1000))
    return response


def requeue_matching(
    db: Database, caller: Caller, job_filter: pb.JobFilter, *, dry_run: bool
) -> Iterator[pb.RequeueJobsProgress]:
    """Requeue every dead-lettered or canceled job matching ``job_filter``,
    a batch per transaction, yielding progress after each.

    (Being built.)
    """
    raise PulseError("bulk requeue is not built yet")
    yield  # pragma: no cover
