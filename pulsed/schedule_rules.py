"""A schedule's rule as declared on the wire, as stored, and as evaluated.

The ``schedules`` table stores one of three kinds: ``at`` (a one-shot at
``at_time``; an After rule also keeps its ``after_ms``), ``every``
(``every_ms`` anchored at ``start_at``) and ``cron`` (with ``time_zone``).
A declared rule is *resolved* against the database's clock when it starts
counting: After becomes a time, an Every without ``start_at`` starts one
interval from now.
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

from google.protobuf import timestamp_pb2

from pulse_client._proto.pulse.v1 import pulse_pb2 as pb
from pulse_client.errors import InvalidArgument
from pulse_client.limits import MAX_DELAY_MS
from pulsed.cron import CronRule
from pulsed.jobs import to_timestamp
from pulsed.occurrences import Interval, OneShot, Rule

UTC = datetime.UTC
# The columns RuleColumns.from_row reads, in its order.
# Shorter intervals are a storm of jobs, not a schedule.
MIN_EVERY_MS = 100
RULE_COLUMNS = "kind, at_time, after_ms, every_ms, cron, time_zone, start_at"


@dataclasses.dataclass(frozen=True)
class RuleColumns:
    """A rule as the schedules table stores it."""

    kind: str
    at_time: datetime.datetime | None = None
    after_ms: int | None = None
    every_ms: int | None = None
    cron: str | None = None
    time_zone: str = "UTC"
    start_at: datetime.datetime | None = None

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> RuleColumns:
        """From (kind, at_time, after_ms, every_ms, cron, time_zone, start_at)."""
        kind, at_time, after_ms, every_ms, cron, time_zone, start_at = row
        return cls(
            kind=kind,
            at_time=_utc(at_time),
            after_ms=after_ms,
            every_ms=every_ms,
            cron=cron,
            time_zone=time_zone,
            start_at=_utc(start_at),
        )


def validate_rule(rule: pb.ScheduleRule) -> RuleColumns:
    """Check a declared rule; raises InvalidArgument naming the bad value."""
    kind = rule.WhichOneof("kind")
    if kind is None:
        raise InvalidArgument(
            "schedule rule is empty: give one of at, after_ms, every_ms or cron"
        )
    if rule.time_zone and kind != "cron":
        raise InvalidArgument(
            f"time_zone {rule.time_zone!r} applies to cron rules only"
        )
    if rule.HasField("start_at") and kind != "every_ms":
        raise InvalidArgument("start_at applies to every_ms rules only")
    if kind == "at":
        return RuleColumns("at", at_time=_moment(rule.at, "at"))
    if kind == "after_ms":
        _check_ms("after_ms", rule.after_ms, 0)
        return RuleColumns("at", after_ms=rule.after_ms)
    if kind == "every_ms":
        _check_ms("every_ms", rule.every_ms, MIN_EVERY_MS)
        start_at = (
            _moment(rule.start_at, "start_at") if rule.HasField("start_at") else None
        )
        return RuleColumns("every", every_ms=rule.every_ms, start_at=start_at)
    cron = CronRule(rule.cron, rule.time_zone)
    return RuleColumns("cron", cron=cron.expression, time_zone=cron.time_zone)


def resolve(rule: RuleColumns, now: datetime.datetime) -> RuleColumns:
    """The rule as it starts counting at ``now``."""
    if rule.kind == "at" and rule.after_ms is not None and rule.at_time is None:
        return dataclasses.replace(rule, at_time=now + _ms(rule.after_ms))
    if rule.kind == "every" and rule.start_at is None:
        assert rule.every_ms is not None
        return dataclasses.replace(rule, start_at=now + _ms(rule.every_ms))
    return rule


def first_fire(rule: RuleColumns, now: datetime.datetime) -> datetime.datetime | None:
    """The first occurrence of a resolved rule declared at ``now``: an At in
    the past fires at once; nothing else before now ever fires."""
    evaluated = rule_of(rule)
    if isinstance(evaluated, OneShot):
        return evaluated.at
    return next(evaluated.occurrences_from(now), None)


def same_rule(declared: RuleColumns, stored: RuleColumns) -> bool:
    """Whether a re-declaration keeps the stored cadence."""
    if declared.kind != stored.kind or declared.after_ms != stored.after_ms:
        return False
    if declared.kind == "at":
        # After: the same delay keeps the time it resolved to at first.
        return declared.after_ms is not None or declared.at_time == stored.at_time
    if declared.kind == "every":
        # Without start_at, an Every keeps whatever anchor it has.
        return declared.every_ms == stored.every_ms and declared.start_at in (
            None,
            stored.start_at,
        )
    return declared.cron == stored.cron and declared.time_zone == stored.time_zone


def rule_of(rule: RuleColumns) -> Rule:
    """The evaluable form of a resolved rule."""
    if rule.kind == "at" and rule.at_time is not None:
        return OneShot(rule.at_time)
    if rule.kind == "every" and rule.start_at is not None and rule.every_ms:
        return Interval(rule.start_at, _ms(rule.every_ms))
    if rule.kind == "cron" and rule.cron is not None:
        return CronRule(rule.cron, rule.time_zone)
    raise InvalidArgument(f"schedule rule {rule} is incomplete")


def rule_proto(rule: RuleColumns) -> pb.ScheduleRule:
    if rule.kind == "at" and rule.after_ms is not None:
        return pb.ScheduleRule(after_ms=rule.after_ms)
    if rule.kind == "at":
        return pb.ScheduleRule(at=to_timestamp(rule.at_time))
    if rule.kind == "every":
        return pb.ScheduleRule(
            every_ms=rule.every_ms or 0, start_at=to_timestamp(rule.start_at)
        )
    return pb.ScheduleRule(cron=rule.cron or "", time_zone=rule.time_zone)


def rule_text(rule: RuleColumns) -> str:
    """The rule in a few characters, as default names use it."""
    if rule.kind == "at" and rule.after_ms is not None:
        return f"after:{rule.after_ms}ms"
    if rule.kind == "at" and rule.at_time is not None:
        return "at:" + rule.at_time.isoformat().replace("+00:00", "Z")
    if rule.kind == "every":
        return f"every:{rule.every_ms}ms"
    return f"cron:{rule.cron}@{rule.time_zone}"


def _moment(ts: timestamp_pb2.Timestamp, name: str) -> datetime.datetime:
    try:
        moment = ts.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError) as exc:
        raise InvalidArgument(f"{name} is not a valid time: {exc}") from None
    if not 1970 <= moment.year <= 9999:
        raise InvalidArgument(f"{name} {moment.isoformat()} is out of range")
    return moment


def _check_ms(name: str, value: int, minimum: int) -> None:
    if not minimum <= value <= MAX_DELAY_MS:
        raise InvalidArgument(
            f"{name} {value} is out of range {minimum}..{MAX_DELAY_MS}"
        )


def _ms(milliseconds: int) -> datetime.timedelta:
    return datetime.timedelta(milliseconds=milliseconds)


def _utc(moment: datetime.datetime | None) -> datetime.datetime | None:
    return None if moment is None else moment.astimezone(UTC)
