"""Schedules in the SDK: the rules (``At``, ``After``, ``Every``, ``Cron``),
the missed-runs policy, and what pulse reports about a schedule
(``Schedule``) and each of its firings (``Occurrence``).

Each occurrence of a schedule fires exactly once, whatever the number of
server replicas and restarts; the server's database clock decides when.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import math
from typing import Any

from google.protobuf import timestamp_pb2

from pulse_client._proto.pulse.v1 import pulse_pb2 as pb
from pulse_client.errors import InvalidArgument
from pulse_client.limits import MAX_DELAY_MS
from pulse_client.models import JobStatus, status_from_proto

# Shorter intervals are a storm, not a schedule (the server refuses them too).
MIN_EVERY_MS = 100


@dataclasses.dataclass(frozen=True)
class At:
    """Once, at ``when`` (an aware datetime). A time in the past fires once,
    right away."""

    when: datetime.datetime

    def __post_init__(self) -> None:
        _check_aware(self.when, "At time")


@dataclasses.dataclass(frozen=True)
class After:
    """Once, ``delay`` (a timedelta or seconds) after the schedule is first
    declared. Declaring the same schedule again does not push it back."""

    delay: datetime.timedelta | float

    def __post_init__(self) -> None:
        object.__setattr__(self, "delay", _duration(self.delay, "After delay", 0))


@dataclasses.dataclass(frozen=True)
class Every:
    """Every ``interval`` (a timedelta or seconds): occurrence k fires at
    ``start_at + k × interval``, however long each firing took, so the
    cadence never drifts. Without ``start_at`` (an aware datetime), the first
    occurrence is one interval after the schedule is first declared."""

    interval: datetime.timedelta | float
    start_at: datetime.datetime | None = None

    def __post_init__(self) -> None:
        interval = _duration(self.interval, "Every interval", MIN_EVERY_MS)
        object.__setattr__(self, "interval", interval)
        if self.start_at is not None:
            _check_aware(self.start_at, "Every start_at")


@dataclasses.dataclass(frozen=True)
class Cron:
    """A five-field cron expression (minute hour day-of-month month
    day-of-week; ``@hourly`` and friends too), evaluated in the IANA time
    zone ``tz``.

    Daylight saving follows classic cron (Vixie cron, cronie). An expression
    whose minute and hour fields are both fixed (``30 2 * * *``) names a
    time of day: when a spring-forward skips that time it fires once, right
    after the jump (03:00 on that day in New York); when a fall-back repeats
    it, it fires once, in the first pass. An expression with ``*`` in the
    minute or hour field (``0 * * * *``, ``*/15 * * * *``) follows real
    elapsed time: it fires in both passes of a repeated hour and not at all
    in a skipped one. Invalid expressions and unknown zones are refused by
    the server with ``InvalidArgument``.
    """

    expression: str
    tz: str = "UTC"

    def __post_init__(self) -> None:
        if not isinstance(self.expression, str) or not self.expression.strip():
            raise InvalidArgument(f"cron expression {self.expression!r} is empty")
        if not isinstance(self.tz, str) or not self.tz:
            raise InvalidArgument(f"cron time zone {self.tz!r} is empty")


Rule = At | After | Every | Cron


class MissedRuns(enum.StrEnum):
    """What a schedule does about occurrences missed while no server ran or
    while it was paused (more than one came due, or any came due while
    paused). A single late occurrence always fires."""

    ONE = "one"  # fire the latest of them, marked catch-up (the default)
    SKIP = "skip"  # fire none; continue with the next future occurrence
    ALL = "all"  # fire each, the latest max_catch_up of them, marked catch-up

    def __str__(self) -> str:
        return self.value


_MISSED_RUNS_TO_PROTO = {
    MissedRuns.ONE: pb.MISSED_RUNS_ONE,
    MissedRuns.SKIP: pb.MISSED_RUNS_SKIP,
    MissedRuns.ALL: pb.MISSED_RUNS_ALL,
}
_MISSED_RUNS_FROM_PROTO = {
    pb.MISSED_RUNS_UNSPECIFIED: MissedRuns.ONE,
    **{value: key for key, value in _MISSED_RUNS_TO_PROTO.items()},
}


def missed_runs_to_proto(policy: MissedRuns | str) -> pb.MissedRuns.ValueType:
    try:
        return _MISSED_RUNS_TO_PROTO[MissedRuns(policy)]
    except ValueError:
        raise InvalidArgument(
            f"missed_runs {policy!r} is not one of one, skip, all"
        ) from None


def rule_to_proto(rule: Rule) -> pb.ScheduleRule:
    """The wire form of a rule."""
    if isinstance(rule, At):
        return pb.ScheduleRule(at=_timestamp(rule.when))
    if isinstance(rule, After):
        return pb.ScheduleRule(after_ms=_ms(rule.delay))
    if isinstance(rule, Every):
        message = pb.ScheduleRule(every_ms=_ms(rule.interval))
        if rule.start_at is not None:
            message.start_at.CopyFrom(_timestamp(rule.start_at))
        return message
    if isinstance(rule, Cron):
        return pb.ScheduleRule(cron=rule.expression, time_zone=rule.tz)
    raise InvalidArgument(
        f"schedule rule {rule!r} is not a rule: use At, After, Every or Cron"
    )


def rule_from_proto(rule: pb.ScheduleRule) -> Rule | None:
    kind = rule.WhichOneof("kind")
    if kind == "at":
        return At(rule.at.ToDatetime(tzinfo=datetime.UTC))
    if kind == "after_ms":
        return After(datetime.timedelta(milliseconds=rule.after_ms))
    if kind == "every_ms":
        return Every(
            datetime.timedelta(milliseconds=rule.every_ms), _when(rule, "start_at")
        )
    if kind == "cron":
        return Cron(rule.cron, rule.time_zone or "UTC")
    return None


@dataclasses.dataclass(frozen=True)
class Schedule:
    """A schedule as stored by pulse, with what it fired last."""

    id: str
    name: str
    topic: str
    payload: bytes
    priority: int
    max_attempts: int
    timeout: datetime.timedelta | None
    rule: Rule | None
    missed_runs: MissedRuns
    max_catch_up: int
    paused: bool
    paused_at: datetime.datetime | None
    # None when nothing more will fire (a one-shot schedule that fired).
    next_fire_at: datetime.datetime | None
    last_occurrence: datetime.datetime | None
    last_job_id: str | None
    # None when nothing fired yet, or the job has been pruned.
    last_job_status: JobStatus | None
    fired_count: int
    created_at: datetime.datetime | None
    updated_at: datetime.datetime | None

    def json(self) -> Any:
        """The payload of the jobs it fires, decoded as JSON."""
        return json.loads(self.payload)

    @classmethod
    def from_proto(cls, schedule: pb.Schedule) -> Schedule:
        return cls(
            id=schedule.id,
            name=schedule.name,
            topic=schedule.topic,
            payload=schedule.payload,
            priority=schedule.priority,
            max_attempts=schedule.max_attempts,
            timeout=datetime.timedelta(milliseconds=schedule.timeout_ms)
            if schedule.timeout_ms
            else None,
            rule=rule_from_proto(schedule.rule),
            missed_runs=_MISSED_RUNS_FROM_PROTO.get(
                schedule.missed_runs, MissedRuns.ONE
            ),
            max_catch_up=schedule.max_catch_up,
            paused=schedule.paused,
            paused_at=_when(schedule, "paused_at"),
            next_fire_at=_when(schedule, "next_fire_at"),
            last_occurrence=_when(schedule, "last_occurrence"),
            last_job_id=schedule.last_job_id or None,
            last_job_status=_status(schedule.last_job_status),
            fired_count=schedule.fired_count,
            created_at=_when(schedule, "created_at"),
            updated_at=_when(schedule, "updated_at"),
        )


@dataclasses.dataclass(frozen=True)
class Occurrence:
    """One firing of a schedule: the instant it was due, when a server fired
    it, the job it made and what became of that job (``job_status`` None once
    the job has been pruned)."""

    occurrence: datetime.datetime | None
    fired_at: datetime.datetime | None
    job_id: str
    job_status: JobStatus | None
    # Fired after downtime or a pause, under the missed-runs policy.
    catch_up: bool
    last_error: str

    @classmethod
    def from_proto(cls, occurrence: pb.Occurrence) -> Occurrence:
        return cls(
            occurrence=_when(occurrence, "occurrence"),
            fired_at=_when(occurrence, "fired_at"),
            job_id=occurrence.job_id,
            job_status=_status(occurrence.job_status),
            catch_up=occurrence.catch_up,
            last_error=occurrence.last_error,
        )


def _status(value: int) -> JobStatus | None:
    return None if value == pb.JOB_STATUS_UNSPECIFIED else status_from_proto(value)


def _when(message: Any, field: str) -> datetime.datetime | None:
    if not message.HasField(field):
        return None
    ts: timestamp_pb2.Timestamp = getattr(message, field)
    return ts.ToDatetime(tzinfo=datetime.UTC)


def _check_aware(moment: object, what: str) -> None:
    if not isinstance(moment, datetime.datetime):
        raise InvalidArgument(f"{what} {moment!r} is not a datetime")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidArgument(
            f"{what} {moment.isoformat()} has no time zone; pass an aware datetime"
        )


def _duration(value: object, what: str, minimum_ms: int) -> datetime.timedelta:
    if isinstance(value, datetime.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise InvalidArgument(f"{what} {value!r} is not a timedelta or seconds")
    if not math.isfinite(seconds):
        raise InvalidArgument(f"{what} {value!r} is not a finite duration")
    milliseconds = round(seconds * 1000)
    if not minimum_ms <= milliseconds <= MAX_DELAY_MS:
        low = f"at least {minimum_ms} ms" if minimum_ms else "0 or more"
        raise InvalidArgument(
            f"{what} of {seconds:g}s is out of range: it must be {low} and at "
            f"most {MAX_DELAY_MS // 1000}s"
        )
    return datetime.timedelta(milliseconds=milliseconds)


def _ms(duration: datetime.timedelta | float) -> int:
    if isinstance(duration, datetime.timedelta):
        return round(duration.total_seconds() * 1000)
    return round(duration * 1000)


def _timestamp(moment: datetime.datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(moment)
    return ts
