"""Submitting jobs: validation, the idempotent multi-row insert, the wake-up.

A submit is idempotent by job id: the insert skips ids that exist, and the
existing row is then compared with the request. Same topic and payload: the
caller gets that job back (``existed``). Different content: ``JobConflict``
for that job alone.
"""

from __future__ import annotations

import datetime
import re
import uuid
from typing import NamedTuple

from google.protobuf import timestamp_pb2

from pulse_client._proto.pulse.v1 import pulse_pb2 as pb
from pulse_client.errors import InvalidArgument, JobConflict, PulseError
from pulse_client.ids import new_job_id
from pulse_client.limits import (
    MAX_ATTEMPTS_LIMIT,
    MAX_DELAY_MS,
    MAX_PRIORITY,
    MAX_TIMEOUT_MS,
    validate_topic,
)
from pulsed.config import Config
from pulsed.database import Cursor, Prepared, array_literal

NOTIFY_CHANNEL_PENDING = "pulse_pending"
NOTIFY_CHANNEL_DUE = "pulse_due"


class NewJob(NamedTuple):
    """A validated job, ready to insert."""

    # Canonical text form: the key by which a batch's rows are matched.
    id: str
    topic: str
    payload: bytes
    priority: int
    max_attempts: int
    run_at: datetime.datetime | None
    delay_ms: int
    timeout_ms: int


class SubmitOutcome(NamedTuple):
    job_id: str
    status: str = ""
    # Set for jobs this submit inserted, in microseconds since the epoch.
    run_at_us: int = 0
    created_at_us: int = 0
    existed: bool = False
    error: PulseError | None = None


# The form ``str(uuid.UUID(text))`` gives: such an id needs no parsing.
_CANONICAL_ID = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
)


# What is left of an accepted spelling (upper case, braces, a urn:uuid:
# prefix, hyphens anywhere) once uuid.UUID has dropped its decorations:
# 32 ASCII hex digits. uuid.UUID reads those through int(), which would
# also take underscores and non-ASCII digits, so that '8b30_369…' named
# another job.
_HEX_DIGITS = re.compile(r"[0-9a-fA-F]{32}", re.ASCII)


def parse_job_id(text: str) -> uuid.UUID:
    bare = text.replace("urn:", "").replace("uuid:", "").strip("{}").replace("-", "")
    if not _HEX_DIGITS.fullmatch(bare):
        raise InvalidArgument(f"job id {text[:100]!r} is not a UUID")
    try:
        return uuid.UUID(text)
    except (ValueError, TypeError):
        raise InvalidArgument(f"job id {text[:100]!r} is not a UUID") from None


def canonical_job_id(text: str) -> str:
    """The canonical text form of a job id; raises InvalidArgument."""
    if _CANONICAL_ID.fullmatch(text):
        return text
    return str(parse_job_id(text))


def validate(spec: pb.JobSpec, config: Config) -> NewJob:
    """Check a JobSpec against the limits; raises InvalidArgument."""
    # Each field is read once: every read of a protobuf field builds a new
    # Python object.
    job_id = spec.id
    job_id = canonical_job_id(job_id) if job_id else new_job_id()
    topic = validate_topic(spec.topic)
    payload = spec.payload
    if len(payload) > config.max_payload_bytes:
        raise InvalidArgument(
            f"payload of {len(payload)} bytes is over the limit of "
            f"{config.max_payload_bytes} bytes"
        )
    priority = spec.priority
    if not -MAX_PRIORITY <= priority <= MAX_PRIORITY:
        raise InvalidArgument(
            f"priority {priority} is out of range {-MAX_PRIORITY}..{MAX_PRIORITY}"
        )
    max_attempts = spec.max_attempts or config.default_max_attempts
    if not 1 <= max_attempts <= MAX_ATTEMPTS_LIMIT:
        raise InvalidArgument(
            f"max_attempts {spec.max_attempts} is out of range 1..{MAX_ATTEMPTS_LIMIT}"
        )
    delay_ms = spec.delay_ms
    if not 0 <= delay_ms <= MAX_DELAY_MS:
        raise InvalidArgument(f"delay_ms {delay_ms} is out of range 0..{MAX_DELAY_MS}")
    timeout_ms = spec.timeout_ms
    if not 0 <= timeout_ms <= MAX_TIMEOUT_MS:
        raise InvalidArgument(
            f"timeout_ms {timeout_ms} is out of range 0..{MAX_TIMEOUT_MS}"
        )
    run_at = None
    if spec.HasField("run_at"):
        if delay_ms:
            raise InvalidArgument("give run_at or delay_ms, not both")
        run_at = _timestamp_to_datetime(spec.run_at)
    return NewJob(
        job_id, topic, payload, priority, max_attempts, run_at, delay_ms, timeout_ms
    )


def _timestamp_to_datetime(ts: timestamp_pb2.Timestamp) -> datetime.datetime:
    try:
        moment = ts.ToDatetime(tzinfo=datetime.UTC)
    except (ValueError, OverflowError) as exc:
        raise InvalidArgument(f"run_at is not a valid time: {exc}") from None
    if not 1970 <= moment.year <= 9999:
        raise InvalidArgument(f"run_at {moment.isoformat()} is out of range")
    return moment


def timestamp_from_us(microseconds: int) -> timestamp_pb2.Timestamp:
    """A time INSERT_JOBS returned, as a Timestamp."""
    ts = timestamp_pb2.Timestamp()
    ts.FromMicroseconds(microseconds)
    return ts


# Due jobs land pending (claimable at once), the rest scheduled. ON CONFLICT
# skips ids that exist; the caller compares those rows with the request.
# RETURNING lists SubmitOutcome's leading fields, times as epoch microseconds
# (no datetime object per row).
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
RETURNING id::text, status, (extract(epoch FROM run_at) * 1000000)::bigint,
          (extract(epoch FROM created_at) * 1000000)::bigint
"""

SELECT_EXISTING = """
SELECT id::text, topic, payload, status FROM jobs WHERE id = ANY(%(ids)s::uuid[])
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
    if not jobs:
        return [], set(), False
    _INSERT_JOBS.execute(cur, insert_parameters(jobs))
    inserted: dict[str, tuple[str, str, int, int]] = {
        row[0]: row for row in cur.fetchall()
    }

    if len(inserted) == len(jobs):
        # No id repeated or already stored: every job is a row of its own.
        outcomes = [SubmitOutcome(*inserted[job.id]) for job in jobs]
    else:
        outcomes = _outcomes_with_existing(cur, jobs, inserted)

    pending_topics = {
        job.topic
        for job, outcome in zip(jobs, outcomes, strict=True)
        if outcome.status == "pending" and not outcome.existed
    }
    any_scheduled = any(row[1] == "scheduled" for row in inserted.values())
    return outcomes, pending_topics, any_scheduled


def insert_parameters(jobs: list[NewJob]) -> dict[str, str]:
    """INSERT_JOBS's columns as Postgres array literals.

    See ``pulsed.database.array_literal`` for why.
    """
    ids, topics, payloads, priorities, max_attempts, run_ats, delays_ms, timeouts_ms = (
        zip(*jobs, strict=True)
    )
    return {
        # Canonical ids and valid topics hold no character that needs
        # escaping; topics are quoted so that one named NULL is no null.
        "ids": array_literal(ids),
        "topics": '{"' + '","'.join(topics) + '"}',
        # Each element is a quoted hex bytea: "\\x..." in the literal.
        "payloads": '{"\\\\x' + '","\\\\x'.join([p.hex() for p in payloads]) + '"}',
        "priorities": array_literal(priorities),
        "max_attempts": array_literal(max_attempts),
        "timeouts_ms": array_literal(timeouts_ms),
        "run_ats": array_literal(
            [
                "NULL" if run_at is None else f'"{run_at.isoformat()}"'
                for run_at in run_ats
            ]
        ),
        "delays_ms": array_literal(delays_ms),
    }


def _outcomes_with_existing(
    cur: Cursor, jobs: list[NewJob], inserted: dict[str, tuple[str, str, int, int]]
) -> list[SubmitOutcome]:
    missing = [job.id for job in jobs if job.id not in inserted]
    cur.execute(SELECT_EXISTING, {"ids": array_literal(missing)})
    existing = {row[0]: row for row in cur.fetchall()}

    first_by_id: dict[str, NewJob] = {}
    for job in jobs:
        first_by_id.setdefault(job.id, job)
    return [_outcome(job, first_by_id[job.id], inserted, existing) for job in jobs]


def _outcome(
    job: NewJob,
    first: NewJob,
    inserted: dict[str, tuple[str, str, int, int]],
    existing: dict[str, tuple[str, str, memoryview, str]],
) -> SubmitOutcome:
    if job.id in inserted:
        status = inserted[job.id][1]
        if first is job:
            return SubmitOutcome(*inserted[job.id])
        # The same id came earlier in this very batch.
        topic, payload = first.topic, first.payload
    elif job.id in existing:
        _, topic, stored_payload, status = existing[job.id]
        payload = bytes(stored_payload)
    else:
        return SubmitOutcome(
            job.id,
            error=PulseError(f"job {job.id!r} was deleted during the submit; retry"),
        )
    if topic == job.topic and payload == job.payload:
        return SubmitOutcome(job.id, status, existed=True)
    return SubmitOutcome(
        job.id,
        error=JobConflict(
            f"job {job.id!r} already exists with another topic or payload; "
            "use a new id for new work"
        ),
    )
