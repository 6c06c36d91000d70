"""What the SDK hands back: jobs, pages of jobs, statistics, new-job specs."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
from typing import Any

from google.protobuf import timestamp_pb2

from pulse_client._proto.pulse.v1 import pulse_pb2 as pb
from pulse_client.errors import InvalidArgument


class JobStatus(enum.StrEnum):
    """A job's status; the value is the word used everywhere in pulse."""

    SCHEDULED = "scheduled"
    PENDING = "pending"
    RUNNING = "running"
    RETRYING = "retrying"
    COMPLETED = "completed"
    DEAD_LETTERED = "dead_lettered"
    CANCELED = "canceled"

    def __str__(self) -> str:
        return self.value


_FROM_PROTO = {
    pb.JOB_STATUS_SCHEDULED: JobStatus.SCHEDULED,
    pb.JOB_STATUS_PENDING: JobStatus.PENDING,
    pb.JOB_STATUS_RUNNING: JobStatus.RUNNING,
    pb.JOB_STATUS_RETRYING: JobStatus.RETRYING,
    pb.JOB_STATUS_COMPLETED: JobStatus.COMPLETED,
    pb.JOB_STATUS_DEAD_LETTERED: JobStatus.DEAD_LETTERED,
    pb.JOB_STATUS_CANCELED: JobStatus.CANCELED,
}
_TO_PROTO = {status: value for value, status in _FROM_PROTO.items()}


def status_from_proto(value: int) -> JobStatus:
    return _FROM_PROTO[value]  # type: ignore[index]


def status_to_proto(status: JobStatus | str) -> pb.JobStatus.ValueType:
    try:
        return _TO_PROTO[JobStatus(status)]
    except ValueError:
        names = ", ".join(s.value for s in JobStatus)
        raise InvalidArgument(
            f"unknown status {status!r}; use one of {names}"
        ) from None


@dataclasses.dataclass(frozen=True)
class NewJob:
    """One job for ``Pulse.enqueue_many``; the arguments mean what they mean
    for ``Pulse.enqueue``."""

    topic: str
    args: Any = None
    priority: int = 0
    delay: datetime.timedelta | float | None = None
    run_at: datetime.datetime | None = None
    max_attempts: int | None = None
    job_id: str | None = None
    timeout: datetime.timedelta | float | None = None


@dataclasses.dataclass(frozen=True)
class Job:
    """A job as stored by pulse."""

    id: str
    topic: str
    payload: bytes
    priority: int
    status: JobStatus
    attempt: int
    max_attempts: int
    attempts_used: int
    run_at: datetime.datetime | None
    created_at: datetime.datetime | None
    started_at: datetime.datetime | None
    finished_at: datetime.datetime | None
    lease_expires_at: datetime.datetime | None
    worker_id: str
    last_error: str
    timeout: datetime.timedelta | None
    cancel_requested_at: datetime.datetime | None

    def json(self) -> Any:
        """The payload decoded as JSON."""
        return json.loads(self.payload)

    @classmethod
    def from_proto(cls, job: pb.Job) -> Job:
        return cls(
            id=job.id,
            topic=job.topic,
            payload=job.payload,
            priority=job.priority,
            status=status_from_proto(job.status),
            attempt=job.attempt,
            max_attempts=job.max_attempts,
            attempts_used=job.attempts_used,
            run_at=_when(job, "run_at"),
            created_at=_when(job, "created_at"),
            started_at=_when(job, "started_at"),
            finished_at=_when(job, "finished_at"),
            lease_expires_at=_when(job, "lease_expires_at"),
            worker_id=job.worker_id,
            last_error=job.last_error,
            timeout=datetime.timedelta(milliseconds=job.timeout_ms)
            if job.timeout_ms
            else None,
            cancel_requested_at=_when(job, "cancel_requested_at"),
        )


@dataclasses.dataclass(frozen=True)
class JobPage:
    """One page of ``Pulse.list_jobs``; pass ``next_page_token`` for the next."""

    jobs: list[Job]
    next_page_token: str


@dataclasses.dataclass(frozen=True)
class TopicStats:
    topic: str
    scheduled: int
    pending: int
    running: int
    retrying: int
    completed: int
    dead_lettered: int
    canceled: int

    @property
    def total(self) -> int:
        return (
            self.scheduled
            + self.pending
            + self.running
            + self.retrying
            + self.completed
            + self.dead_lettered
            + self.canceled
        )


@dataclasses.dataclass(frozen=True)
class Stats:
    """Counts per topic and status, and the job that has waited longest."""

    topics: list[TopicStats]
    oldest_pending: Job | None
    oldest_pending_age: datetime.timedelta | None

    @classmethod
    def from_proto(cls, response: pb.StatsResponse) -> Stats:
        has_oldest = response.HasField("oldest_pending")
        return cls(
            topics=[
                TopicStats(
                    topic=t.topic,
                    scheduled=t.scheduled,
                    pending=t.pending,
                    running=t.running,
                    retrying=t.retrying,
                    completed=t.completed,
                    dead_lettered=t.dead_lettered,
                    canceled=t.canceled,
                )
                for t in response.topics
            ],
            oldest_pending=Job.from_proto(response.oldest_pending)
            if has_oldest
            else None,
            oldest_pending_age=datetime.timedelta(
                milliseconds=response.oldest_pending_age_ms
            )
            if has_oldest
            else None,
        )


def _when(message: Any, field: str) -> datetime.datetime | None:
    if not message.HasField(field):
        return None
    ts: timestamp_pb2.Timestamp = getattr(message, field)
    return ts.ToDatetime(tzinfo=datetime.UTC)


@dataclasses.dataclass(frozen=True)
class DispatchPause:
    """One paused scope: every topic (``topic`` None) or one topic."""

    topic: str | None
    reason: str
    paused_by: str
    paused_at: datetime.datetime | None

    @classmethod
    def from_proto(cls, pause: pb.DispatchPause) -> DispatchPause:
        return cls(
            topic=pause.topic or None,
            reason=pause.reason,
            paused_by=pause.paused_by,
            paused_at=_when(pause, "paused_at"),
        )


@dataclasses.dataclass(frozen=True)
class DispatchStatus:
    """The dispatch pause: ``paused`` when every topic is paused (``all``
    says by whom and why); ``topics`` lists the topics paused on their own."""

    paused: bool
    all: DispatchPause | None
    topics: list[DispatchPause]

    def is_paused(self, topic: str) -> bool:
        """Whether jobs of ``topic`` are held back now."""
        return self.paused or any(p.topic == topic for p in self.topics)

    @classmethod
    def from_proto(cls, status: pb.DispatchStatus) -> DispatchStatus:
        return cls(
            paused=status.paused,
            all=DispatchPause.from_proto(status.all) if status.paused else None,
            topics=[DispatchPause.from_proto(p) for p in status.topics],
        )


@dataclasses.dataclass(frozen=True)
class Identity:
    """What the server makes of this client's credentials."""

    auth_required: bool
    authenticated: bool
    user: str
    role: str


@dataclasses.dataclass(frozen=True)
class AuditEntry:
    """One operator action."""

    id: int
    at: datetime.datetime | None
    user: str
    action: str
    target: str
    detail: dict[str, Any]
    peer: str

    @classmethod
    def from_proto(cls, entry: pb.AuditEntry) -> AuditEntry:
        try:
            detail = json.loads(entry.detail) if entry.detail else {}
        except ValueError:
            detail = {"raw": entry.detail}
        return cls(
            id=entry.id,
            at=_when(entry, "at"),
            user=entry.user,
            action=entry.action,
            target=entry.target,
            detail=detail,
            peer=entry.peer,
        )


@dataclasses.dataclass(frozen=True)
class AuditPage:
    """One page of ``Pulse.list_audit``; pass ``next_page_token`` for the next."""

    entries: list[AuditEntry]
    next_page_token: str


@dataclasses.dataclass(frozen=True)
class RequeueProgress:
    """How far a bulk requeue got: ``matched`` when it started, ``requeued``
    so far (0 on a dry run)."""

    matched: int
    requeued: int
    done: bool


@dataclasses.dataclass(frozen=True)
class DeadLetterGroup:
    """Dead-lettered jobs of one topic whose errors share a signature."""

    topic: str
    error_signature: str
    sample_error: str
    sample_job_id: str
    count: int
    first_seen: datetime.datetime | None
    last_seen: datetime.datetime | None

    @classmethod
    def from_proto(cls, group: pb.DeadLetterGroup) -> DeadLetterGroup:
        return cls(
            topic=group.topic,
            error_signature=group.error_signature,
            sample_error=group.sample_error,
            sample_job_id=group.sample_job_id,
            count=group.count,
            first_seen=_when(group, "first_seen"),
            last_seen=_when(group, "last_seen"),
        )


@dataclasses.dataclass(frozen=True)
class ThroughputBucket:
    """Jobs that finished in one minute."""

    minute: datetime.datetime | None
    completed: int
    dead_lettered: int
