"""Reading jobs and the operator's changes to them: cancel and requeue, one
job or every job that matches a filter."""

from __future__ import annotations

import base64
import datetime
import logging
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from google.protobuf import timestamp_pb2

from pulse_client._proto.pulse.v1 import pulse_pb2 as pb
from pulse_client.errors import InvalidArgument, InvalidState, JobNotFound
from pulse_client.limits import MAX_PAGE_SIZE, validate_text, validate_topic
from pulsed.database import Cursor, Database
from pulsed.submits import NOTIFY_CHANNEL_PENDING, parse_job_id

if TYPE_CHECKING:
    from pulsed.auth import Caller

log = logging.getLogger(__name__)

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
REQUEUED = """
    status = 'pending', attempt_base = attempt, run_at = now(),
    finished_at = NULL, cancel_requested_at = NULL, lease_expires_at = NULL,
    worker_id = NULL
"""

REQUEUE_JOB = f"""
UPDATE jobs SET {REQUEUED}
WHERE id = %(id)s AND status IN ('dead_lettered', 'canceled')
RETURNING {JOB_COLUMNS}
"""

# The error signature: the first line of last_error with what varies between
# occurrences of one failure replaced by placeholders, so that "no row 17 in
# 'a'" and "no row 18 in 'b'" group together. Quoted values go first (they
# may hold anything), then uuids and hex ids, whose digits the last step
# would otherwise turn into numbers. A hex id is a word of 8 or more hex
# digits with at least one digit and one letter among them.
ERROR_SIGNATURE = r"""
left(
    regexp_replace(
        regexp_replace(
            regexp_replace(
                regexp_replace(
                    regexp_replace(
                        btrim(split_part(coalesce(last_error, ''), E'\n', 1),
                              E' \t\r'),
                        $q$'[^']*'|"[^"]*"$q$, '<str>', 'g'),
                    '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}',
                    '<uuid>', 'gi'),
                '\m0x[0-9a-f]+\M', '<hex>', 'gi'),
            '\m(?=[0-9a-f]*[0-9])(?=[0-9]*[a-f])[0-9a-f]{8,}\M', '<hex>', 'gi'),
        '[0-9]+(\.[0-9]+)?', '<num>', 'g'),
    500)
"""

# The fields of a JobFilter (and of ListJobsRequest); an empty field matches
# every job. psycopg2 sends the values inline, so the planner folds the
# unused conditions away and plans the rest with their values.
JOB_FILTER = f"""
    (cardinality(%(statuses)s::text[]) = 0 OR status = ANY(%(statuses)s::text[]))
    AND (%(topic)s = '' OR topic = %(topic)s)
    AND (%(error_contains)s = ''
         OR strpos(lower(last_error), lower(%(error_contains)s)) > 0)
    AND (%(error_signature)s = '' OR {ERROR_SIGNATURE} = %(error_signature)s)
    AND (%(created_after)s::timestamptz IS NULL
         OR created_at >= %(created_after)s::timestamptz)
"""

# Newest first; the page token is the (created_at, id) of the last job seen.
# The only index in creation order leads with the status (an index of all
# jobs by creation time would cost every claim and result another entry),
# so each wanted status is read newest first on its own, at most a page of
# rows each, and the pages are merged.
LIST_JOBS = f"""
SELECT {JOB_COLUMNS} FROM unnest(%(list_statuses)s::text[]) AS wanted(status_name)
CROSS JOIN LATERAL (
    SELECT {JOB_COLUMNS} FROM jobs
    WHERE jobs.status = wanted.status_name AND {JOB_FILTER}
      AND (%(after_id)s::uuid IS NULL
           OR (created_at, id) < (%(after_created)s::timestamptz, %(after_id)s::uuid))
    ORDER BY created_at DESC, id DESC
    LIMIT %(limit)s
) AS j
ORDER BY j.created_at DESC, j.id DESC
LIMIT %(limit)s
"""

# A bulk requeue takes the jobs that had finished when it began: one that it
# requeued and that fails (or is canceled) again meanwhile finishes later, so
# no job is requeued twice by one operation and the operation always ends.
COUNT_REQUEUABLE = f"""
SELECT count(*), now() FROM jobs WHERE {JOB_FILTER} AND finished_at <= now()
"""

REQUEUE_BATCH = f"""
WITH batch AS (
    SELECT id FROM jobs
    WHERE {JOB_FILTER} AND finished_at <= %(cutoff)s
    LIMIT %(batch_size)s
    FOR UPDATE SKIP LOCKED
)
UPDATE jobs SET {REQUEUED}
FROM batch
WHERE jobs.id = batch.id AND jobs.status IN ('dead_lettered', 'canceled')
RETURNING jobs.topic
"""

NOTIFY_TOPICS = """
SELECT pg_notify(%(channel)s, topic) FROM unnest(%(topics)s::text[]) AS topic
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
REQUEUE_BATCH_SIZE = 500
REQUEUABLE = ("dead_lettered", "canceled")


def to_timestamp(moment: datetime.datetime | None) -> timestamp_pb2.Timestamp | None:
    if moment is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(moment)
    return ts


def from_timestamp(ts: timestamp_pb2.Timestamp, name: str) -> datetime.datetime:
    """The time a request's field ``name`` holds; InvalidArgument when its
    seconds or nanos are outside what a Timestamp may hold."""
    try:
        return ts.ToDatetime(tzinfo=datetime.UTC)
    except (ValueError, OverflowError) as exc:
        raise InvalidArgument(f"{name} is not a valid time: {exc}") from None


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
    error_contains: str = "",
    created_after: datetime.datetime | None = None,
) -> tuple[list[pb.Job], str]:
    """One page of jobs, newest first, and the token of the next page."""
    if not 0 <= page_size <= MAX_PAGE_SIZE:
        raise InvalidArgument(
            f"page_size {page_size} is out of range 0..{MAX_PAGE_SIZE}"
        )
    limit = page_size or DEFAULT_PAGE_SIZE
    after_created, after_id = None, None
    if page_token:
        after_created, after_id = _decode_page_token(page_token)
    params = {
        **_filter_params(
            status_names(statuses), topic, error_contains, "", created_after
        ),
        "after_created": after_created,
        "after_id": after_id,
        "limit": limit + 1,
    }
    params["list_statuses"] = list(dict.fromkeys(params["statuses"] or STATUS_TO_PROTO))
    cur.execute(LIST_JOBS, params)
    rows = cur.fetchall()
    next_token = ""
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        next_token = _encode_page_token(last[9], last[0])
    return [row_to_job(row) for row in rows], next_token


def status_names(statuses: list[int]) -> list[str]:
    """The status words of proto status values; InvalidArgument if unknown."""
    unknown = [s for s in statuses if s not in PROTO_TO_STATUS]
    if unknown:
        raise InvalidArgument(f"unknown status value {unknown[0]}")
    return [PROTO_TO_STATUS[s] for s in statuses]


def _filter_params(
    statuses: list[str],
    topic: str,
    error_contains: str,
    error_signature: str,
    created_after: datetime.datetime | None,
) -> dict[str, Any]:
    if topic:
        validate_topic(topic)
    validate_text("error_contains", error_contains)
    validate_text("error_signature", error_signature)
    return {
        "statuses": statuses,
        "topic": topic,
        "error_contains": error_contains,
        "error_signature": error_signature,
        "created_after": created_after,
    }


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

    The first message counts the matching jobs; a dry run ends there. One
    audit entry records the filter and how many jobs were requeued, also
    when the caller goes away midway.
    """
    params = _requeue_params(job_filter)

    with db.transaction() as cur:
        cur.execute(COUNT_REQUEUABLE, params)
        matched, cutoff = cur.fetchone() or (0, None)
    if dry_run:
        yield pb.RequeueJobsProgress(matched=matched, done=True)
        return
    yield pb.RequeueJobsProgress(matched=matched)

    requeued = 0
    finished = False
    try:
        while not finished:
            with db.transaction() as cur:
                count = _requeue_batch(cur, {**params, "cutoff": cutoff})
                requeued += count
                if not count:
                    _record_requeue(cur, caller, params, matched, requeued)
                    finished = True
            if not finished:
                yield pb.RequeueJobsProgress(matched=matched, requeued=requeued)
    finally:
        if not finished and requeued:
            # The caller went away (or the database did) after some batches
            # committed: those changes are still the caller's to answer for.
            with db.transaction() as cur:
                _record_requeue(
                    cur, caller, params, matched, requeued, interrupted=True
                )

    log.info(
        "jobs.requeue matched=%d requeued=%d topic=%s",
        matched,
        requeued,
        params["topic"] or "*",
    )
    yield pb.RequeueJobsProgress(matched=matched, requeued=requeued, done=True)


def _requeue_params(job_filter: pb.JobFilter) -> dict[str, Any]:
    statuses = status_names(list(job_filter.statuses)) or list(REQUEUABLE)
    refused = [status for status in statuses if status not in REQUEUABLE]
    if refused:
        raise InvalidArgument(
            f"cannot requeue jobs with status {refused[0]!r}: "
            "only dead_lettered and canceled jobs can be requeued"
        )
    created_after = None
    if job_filter.HasField("created_after"):
        created_after = from_timestamp(job_filter.created_after, "filter.created_after")
    return _filter_params(
        statuses,
        job_filter.topic,
        job_filter.error_contains,
        job_filter.error_signature,
        created_after,
    )


def _requeue_batch(cur: Cursor, params: dict[str, Any]) -> int:
    """Requeue one batch; how many jobs it took (0: none are left)."""
    cur.execute(REQUEUE_BATCH, {**params, "batch_size": REQUEUE_BATCH_SIZE})
    topics = [topic for (topic,) in cur.fetchall()]
    if topics:
        cur.execute(
            NOTIFY_TOPICS,
            {"channel": NOTIFY_CHANNEL_PENDING, "topics": sorted(set(topics))},
        )
    return len(topics)


def _record_requeue(
    cur: Cursor,
    caller: Caller,
    params: dict[str, Any],
    matched: int,
    requeued: int,
    *,
    interrupted: bool = False,
) -> None:
    # Imported here: the audit module uses this module's timestamp helper.
    from pulsed import audit

    detail = {key: value for key, value in params.items() if value not in ("", None)}
    detail.update(matched=matched, requeued=requeued)
    if interrupted:
        detail["interrupted"] = True
    audit.record(cur, caller, "jobs.requeue", params["topic"] or "*", detail)
