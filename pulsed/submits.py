"""Submitting jobs: validation, the idempotent multi-row insert, the wake-up.

A submit is idempotent by job id: the insert skips ids that exist, and the
existing row is then compared with the request. Same topic and payload: the
caller gets that job back (``existed``). Different content: ``JobConflict``
for that job alone.
"""

from __future__ import annotations

import dataclasses
import datetime
import uuid
from typing import Any

import uuid6
from google.protobuf import timestamp_pb2

from pulse_client._proto.pulse.v1 import pulse_pb2 as pb
from pulse_client.errors import InvalidArgument, JobConflict, PulseError
from pulse_client.limits import (
    MAX_ATTEMPTS_LIMIT,
    MAX_DELAY_MS,
    MAX_PRIORITY,
    MAX_TIMEOUT_MS,
    validate_topic,
)
from pulsed.config import Config
from pulsed.database import Cursor, Prepared

NOTIFY_CHANNEL_PENDING = "pulse_pending"
NOTIFY_CHANNEL_DUE = "pulse_due"


@dataclasses.dataclass(frozen=True)
class NewJob:
    """A validated job, ready to insert."""

    id: uuid.UUID
    topic: str
    payload: bytes
    priority: int
    max_attempts: int
    run_at: datetime.datetime | None
    delay_ms: int
    timeout_ms: int


@dataclasses.dataclass(frozen=True)
class SubmitOutcome:
    job_id: str
    status: str = ""
    existed: bool = False
    error: PulseError | None = None
    # Set for jobs this submit inserted.
    run_at: datetime.datetime | None = None
    created_at: datetime.datetime | None = None


def parse_job_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except (ValueError, TypeError):
        raise InvalidArgument(f"job id {text[:100]!r} is not a UUID") from None


def validate(spec: pb.JobSpec, config: Config) -> NewJob:
    """Check a JobSpec against the limits; raises InvalidArgument."""
    job_id = parse_job_id(spec.id) if spec.id else uuid6.uuid7()
    validate_topic(spec.topic)
    if len(spec.payload) > config.max_payload_bytes:
        raise InvalidArgument(
            f"payload of {len(spec.payload)} bytes is over the limit of "
            f"{config.max_payload_bytes} bytes"
        )
    if not -MAX_PRIORITY <= spec.priority <= MAX_PRIORITY:
        raise InvalidArgument(
            f"priority {spec.priority} is out of range {-MAX_PRIORITY}..{MAX_PRIORITY}"
        )
    max_attempts = spec.max_attempts or config.default_max_attempts
    if not 1 <= max_attempts <= MAX_ATTEMPTS_LIMIT:
        raise InvalidArgument(
            f"max_attempts {spec.max_attempts} is out of range 1..{MAX_ATTEMPTS_LIMIT}"
        )
    if not 0 <= spec.delay_ms <= MAX_DELAY_MS:
        raise InvalidArgument(
            f"delay_ms {spec.delay_ms} is out of range 0..{MAX_DELAY_MS}"
        )
    if not 0 <= spec.timeout_ms <= MAX_TIMEOUT_MS:
        raise InvalidArgument(
            f"timeout_ms {spec.timeout_ms} is out of range 0..{MAX_TIMEOUT_MS}"
        )
    run_at = None
    if spec.HasField("run_at"):
        if spec.delay_ms:
            raise InvalidArgument("give run_at or delay_ms, not both")
        run_at = _timestamp_to_datetime(spec.run_at)
    return NewJob(
        id=job_id,
        topic=spec.topic,
        payload=spec.payload,
        priority=spec.priority,
        max_attempts=max_attempts,
        run_at=run_at,
        delay_ms=spec.delay_ms,
        timeout_ms=spec.timeout_ms,
    )


def _timestamp_to_datetime(ts: timestamp_pb2.Timestamp) -> datetime.datetime:
    try:
        moment = ts.ToDatetime(tzinfo=datetime.UTC)
    except (ValueError, OverflowError) as exc:
        raise InvalidArgument(f"run_at is not a valid time: {exc}") from None
    if not 1970 <= moment.year <= 9999:
        raise InvalidArgument(f"run_at {moment.isoformat()} is out of range")
    return moment


# Due jobs land pending (claimable at once), the rest scheduled. ON CONFLICT
# skips ids that exist; the caller compares those rows with the request.
INSERT_JOBS = """
WITH input AS (
    SELECT i.id, i.topic, i.payload, i.priority, i.max_attempts, i.timeout_ms,
           greatest(now(), coalesce(i.run_at,
                    now() + i.delay_ms * interval '1 millisecond')) AS run_at
    FROM unnest(%(ids)s::uuid[], %(topics)s::text[], %(payloads)s::bytea[],
                %(priorities)s::int[], %(max_attempts)s::int[],
                %(timeouts_ms)s::bigint[], %(run_ats)s::timestamptz[],
                %(delays_ms)s::bigint[])
         AS i(id, topic, payload, priority, max_attempts, timeout_ms, run_at,
              delay_ms)
)
INSERT INTO jobs (id, topic, payload, priority, status, max_attempts,
                  timeout_ms, run_at)
SELECT id, topic, payload, priority,
       CASE WHEN run_at <= now() THEN 'pending' ELSE 'scheduled' END,
       max_attempts, timeout_ms, run_at
FROM input
ON CONFLICT (id) DO NOTHING
RETURNING id, status, run_at, created_at
"""

SELECT_EXISTING = """
SELECT id, topic, payload, status FROM jobs WHERE id = ANY(%(ids)s::uuid[])
"""

_INSERT_JOBS = Prepared("pulse_insert_jobs", INSERT_JOBS)


def insert_jobs(
    cur: Cursor, jobs: list[NewJob]
) -> tuple[list[SubmitOutcome], set[str], bool]:
    """Insert jobs in one statement.

    Returns the outcome per job (in order), the topics that got pending work
    and whether any job was scheduled for later: the caller announces those
    once the transaction has committed.
    """
    _INSERT_JOBS.execute(
        cur,
        {
            "ids": [job.id for job in jobs],
            "topics": [job.topic for job in jobs],
            "payloads": [job.payload for job in jobs],
            "priorities": [job.priority for job in jobs],
            "max_attempts": [job.max_attempts for job in jobs],
            "timeouts_ms": [job.timeout_ms for job in jobs],
            "run_ats": [job.run_at for job in jobs],
            "delays_ms": [job.delay_ms for job in jobs],
        },
    )
    rows = {row[0]: row for row in cur.fetchall()}
    inserted = {job_id: row[1] for job_id, row in rows.items()}
    pending_topics = {job.topic for job in jobs if inserted.get(job.id) == "pending"}
    any_scheduled = "scheduled" in inserted.values()

    existing = {}
    if len(inserted) < len(jobs):
        missing = [job.id for job in jobs if job.id not in inserted]
        cur.execute(SELECT_EXISTING, {"ids": missing})
        existing = {row[0]: row for row in cur.fetchall()}

    first_by_id: dict[uuid.UUID, NewJob] = {}
    for job in jobs:
        first_by_id.setdefault(job.id, job)
    outcomes = [_outcome(job, first_by_id[job.id], rows, existing) for job in jobs]

    return outcomes, pending_topics, any_scheduled


def _outcome(
    job: NewJob,
    first: NewJob,
    inserted: dict[uuid.UUID, tuple[Any, ...]],
    existing: dict[uuid.UUID, tuple[uuid.UUID, str, memoryview, str]],
) -> SubmitOutcome:
    if job.id in inserted:
        _, status, run_at, created_at = inserted[job.id]
        if first is job:
            return SubmitOutcome(
                str(job.id), status, run_at=run_at, created_at=created_at
            )
        # The same id came earlier in this very batch.
        topic, payload = first.topic, first.payload
    elif job.id in existing:
        _, topic, stored_payload, status = existing[job.id]
        payload = bytes(stored_payload)
    else:
        return SubmitOutcome(
            str(job.id),
            error=PulseError(
                f"job {str(job.id)!r} was deleted during the submit; retry"
            ),
        )
    if topic == job.topic and payload == job.payload:
        return SubmitOutcome(str(job.id), status, existed=True)
    return SubmitOutcome(
        str(job.id),
        error=JobConflict(
            f"job {str(job.id)!r} already exists with another topic or payload; "
            "use a new id for new work"
        ),
    )
