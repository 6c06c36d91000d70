"""Schedules: At, After, Every and Cron, each occurrence fired exactly once.

A schedule is a row of ``schedules``, found by its unique name. Declaring it
again (what an application does on every start) updates it in place: an
unchanged rule keeps its cadence, a changed one restarts from now, and the
job fields apply to later firings. This module holds the calls the service
makes; ``pulsed.scheduler`` fires, ``pulsed.occurrences`` says what, and
``pulsed.schedule_rules`` validates and converts the rules.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import logging
import re
from typing import Any

from pulse_client._proto.pulse.v1 import pulse_pb2 as pb
from pulse_client.errors import InvalidArgument, ScheduleNotFound
from pulse_client.ids import new_uuid7
from pulse_client.limits import (
    MAX_ATTEMPTS_LIMIT,
    MAX_PAGE_SIZE,
    MAX_PRIORITY,
    MAX_TIMEOUT_MS,
    validate_topic,
)
from pulsed.config import Config
from pulsed.database import Cursor
from pulsed.jobs import STATUS_TO_PROTO, to_timestamp
from pulsed.occurrences import MissedRuns, upcoming
from pulsed.schedule_rules import (
    RULE_COLUMNS,
    RuleColumns,
    first_fire,
    resolve,
    rule_of,
    rule_proto,
    rule_text,
    same_rule,
    validate_rule,
)

# The loop has a module of its own; the server and the service import it
# from here, beside the calls they make.
from pulsed.scheduler import Scheduler as Scheduler

log = logging.getLogger(__name__)

NAME_PATTERN = re.compile(r"[A-Za-z0-9._:@*/,#?+ -]{1,200}")
DEFAULT_MAX_CATCH_UP = 100
MAX_CATCH_UP_LIMIT = 1000
DEFAULT_PREVIEW_COUNT = 10
MAX_PREVIEW_COUNT = 1000
DEFAULT_PAGE_SIZE = 100

_MISSED_RUNS: dict[int, MissedRuns] = {
    pb.MISSED_RUNS_UNSPECIFIED: "one",
    pb.MISSED_RUNS_ONE: "one",
    pb.MISSED_RUNS_SKIP: "skip",
    pb.MISSED_RUNS_ALL: "all",
}
_MISSED_RUNS_TO_PROTO = {
    "one": pb.MISSED_RUNS_ONE,
    "skip": pb.MISSED_RUNS_SKIP,
    "all": pb.MISSED_RUNS_ALL,
}

SCHEDULE_COLUMNS = """
    s.id, s.name, s.topic, s.payload, s.priority, s.max_attempts, s.timeout_ms,
    s.kind, s.at_time, s.after_ms, s.every_ms, s.cron, s.time_zone, s.start_at,
    s.missed_runs, s.max_catch_up, s.paused_at, s.next_fire_at,
    s.last_occurrence, s.last_job_id, j.status, s.fired_count, s.created_at,
    s.updated_at
"""

SELECT_SCHEDULE = f"""
SELECT {SCHEDULE_COLUMNS}
FROM schedules s LEFT JOIN jobs j ON j.id = s.last_job_id
WHERE s.name = %(name)s
"""

LIST_SCHEDULES = f"""
SELECT {SCHEDULE_COLUMNS}
FROM schedules s LEFT JOIN jobs j ON j.id = s.last_job_id
WHERE (%(topic)s = '' OR s.topic = %(topic)s)
  AND (%(after_name)s::text IS NULL OR s.name > %(after_name)s)
ORDER BY s.name
LIMIT %(limit)s
"""

# What a re-declaration compares with, locked so that concurrent
# declarations of one name apply one after the other.
LOCK_DECLARED = f"""
SELECT id, topic, payload, priority, max_attempts, timeout_ms, missed_runs,
       max_catch_up, next_fire_at, resumed_at, {RULE_COLUMNS}
FROM schedules WHERE name = %(name)s
FOR UPDATE
"""

# A concurrent first declaration of the same name makes this insert nothing;
# the caller then updates the row that won.
INSERT_SCHEDULE = """
INSERT INTO schedules (id, name, topic, payload, priority, max_attempts,
                       timeout_ms, kind, at_time, after_ms, every_ms, cron,
                       time_zone, start_at, missed_runs, max_catch_up,
                       next_fire_at)
VALUES (%(id)s, %(name)s, %(topic)s, %(payload)s, %(priority)s,
        %(max_attempts)s, %(timeout_ms)s, %(kind)s, %(at_time)s, %(after_ms)s,
        %(every_ms)s, %(cron)s, %(time_zone)s, %(start_at)s, %(missed_runs)s,
        %(max_catch_up)s, %(next_fire_at)s)
ON CONFLICT (name) DO NOTHING
RETURNING id
"""

UPDATE_SCHEDULE = """
UPDATE schedules SET
    topic = %(topic)s, payload = %(payload)s, priority = %(priority)s,
    max_attempts = %(max_attempts)s, timeout_ms = %(timeout_ms)s,
    kind = %(kind)s, at_time = %(at_time)s, after_ms = %(after_ms)s,
    every_ms = %(every_ms)s, cron = %(cron)s, time_zone = %(time_zone)s,
    start_at = %(start_at)s, missed_runs = %(missed_runs)s,
    max_catch_up = %(max_catch_up)s, next_fire_at = %(next_fire_at)s,
    resumed_at = %(resumed_at)s, updated_at = now()
WHERE id = %(id)s
"""

PAUSE_SCHEDULE = """
UPDATE schedules SET paused_at = now(), updated_at = now()
WHERE name = %(name)s AND paused_at IS NULL
"""

# Occurrences due before resumed_at came due while paused: the scheduler
# treats them as missed.
RESUME_SCHEDULE = """
UPDATE schedules SET paused_at = NULL, resumed_at = now(), updated_at = now()
WHERE name = %(name)s AND paused_at IS NOT NULL
"""

DELETE_SCHEDULE = "DELETE FROM schedules WHERE name = %(name)s"

SELECT_FOR_PREVIEW = f"""
SELECT next_fire_at, {RULE_COLUMNS} FROM schedules WHERE name = %(name)s
"""

SELECT_SCHEDULE_ID = "SELECT id FROM schedules WHERE name = %(name)s"

LIST_OCCURRENCES = """
SELECT o.occurrence, o.fired_at, o.job_id, j.status, o.catch_up, j.last_error
FROM schedule_occurrences o LEFT JOIN jobs j ON j.id = o.job_id
WHERE o.schedule_id = %(schedule_id)s
  AND (%(before)s::timestamptz IS NULL OR o.occurrence < %(before)s)
ORDER BY o.occurrence DESC
LIMIT %(limit)s
"""

SELECT_NOW = "SELECT now()"


def validate_name(name: str) -> str:
    """Return ``name`` if pulse accepts it as a schedule name."""
    if not NAME_PATTERN.fullmatch(name) or name != name.strip():
        raise InvalidArgument(
            f"schedule name {name[:220]!r} is invalid: use 1-200 letters, digits, "
            "spaces or '._:-@*/,#?+', not starting or ending with a space"
        )
    return name


def default_name(topic: str, rule: RuleColumns) -> str:
    """The name of a schedule declared without one: topic and rule."""
    return f"{topic}@{rule_text(rule)}"


@dataclasses.dataclass(frozen=True)
class Declared:
    """A validated ScheduleDefinition."""

    name: str
    topic: str
    payload: bytes
    priority: int
    max_attempts: int
    timeout_ms: int
    rule: RuleColumns
    missed_runs: MissedRuns
    max_catch_up: int

    def job_fields(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "payload": self.payload,
            "priority": self.priority,
            "max_attempts": self.max_attempts,
            "timeout_ms": self.timeout_ms,
            "missed_runs": self.missed_runs,
            "max_catch_up": self.max_catch_up,
        }


def validate_definition(definition: pb.ScheduleDefinition, config: Config) -> Declared:
    """Check a definition against every limit; raises InvalidArgument."""
    validate_topic(definition.topic)
    max_attempts = _check_job_fields(definition, config)
    rule = validate_rule(definition.rule)
    if definition.missed_runs not in _MISSED_RUNS:
        raise InvalidArgument(f"missed_runs {definition.missed_runs} is not known")
    max_catch_up = definition.max_catch_up or DEFAULT_MAX_CATCH_UP
    if not 1 <= max_catch_up <= MAX_CATCH_UP_LIMIT:
        raise InvalidArgument(
            f"max_catch_up {definition.max_catch_up} is out of range "
            f"1..{MAX_CATCH_UP_LIMIT}"
        )
    if definition.name:
        name = validate_name(definition.name)
    else:
        name = default_name(definition.topic, rule)
        if len(name) > 200:
            raise InvalidArgument(
                f"the default name {name[:60]!r}… is longer than 200 characters; "
                "give the schedule a name"
            )
        validate_name(name)
    return Declared(
        name=name,
        topic=definition.topic,
        payload=definition.payload,
        priority=definition.priority,
        max_attempts=max_attempts,
        timeout_ms=definition.timeout_ms,
        rule=rule,
        missed_runs=_MISSED_RUNS[definition.missed_runs],
        max_catch_up=max_catch_up,
    )


def _check_job_fields(definition: pb.ScheduleDefinition, config: Config) -> int:
    """The fields of the jobs it fires, checked as a submit checks them;
    returns max_attempts with the server's default applied."""
    if len(definition.payload) > config.max_payload_bytes:
        raise InvalidArgument(
            f"payload of {len(definition.payload)} bytes is over the limit of "
            f"{config.max_payload_bytes} bytes"
        )
    if not -MAX_PRIORITY <= definition.priority <= MAX_PRIORITY:
        raise InvalidArgument(
            f"priority {definition.priority} is out of range "
            f"{-MAX_PRIORITY}..{MAX_PRIORITY}"
        )
    max_attempts = definition.max_attempts or config.default_max_attempts
    if not 1 <= max_attempts <= MAX_ATTEMPTS_LIMIT:
        raise InvalidArgument(
            f"max_attempts {definition.max_attempts} is out of range "
            f"1..{MAX_ATTEMPTS_LIMIT}"
        )
    if not 0 <= definition.timeout_ms <= MAX_TIMEOUT_MS:
        raise InvalidArgument(
            f"timeout_ms {definition.timeout_ms} is out of range 0..{MAX_TIMEOUT_MS}"
        )
    return max_attempts


def put_schedule(
    cur: Cursor, definition: pb.ScheduleDefinition, config: Config
) -> tuple[pb.Schedule, str]:
    """Create or update in place by name; says which: "created", "updated"
    or "unchanged" (the declaration matched what was stored)."""
    declared = validate_definition(definition, config)
    now = _now(cur)

    cur.execute(LOCK_DECLARED, {"name": declared.name})
    row = cur.fetchone()
    created = changed = False
    if row is None:
        rule = resolve(declared.rule, now)
        cur.execute(
            INSERT_SCHEDULE,
            {
                "id": new_uuid7(),
                "name": declared.name,
                **declared.job_fields(),
                **dataclasses.asdict(rule),
                "next_fire_at": first_fire(rule, now),
            },
        )
        created = cur.fetchone() is not None
        if not created:  # declared concurrently: update the winner's row
            cur.execute(LOCK_DECLARED, {"name": declared.name})
            row = cur.fetchone()
    if row is not None:
        changed = _redeclare(cur, declared, row, now)

    # Applications declare their schedules on every start: only news is INFO.
    outcome = "created" if created else "updated" if changed else "unchanged"
    log.log(
        logging.INFO if created or changed else logging.DEBUG,
        "schedule.%s schedule=%s topic=%s rule=%s",
        outcome,
        declared.name,
        declared.topic,
        rule_text(declared.rule),
    )
    return get_schedule(cur, declared.name), outcome


def _redeclare(
    cur: Cursor, declared: Declared, row: tuple[Any, ...], now: datetime.datetime
) -> bool:
    """Update the stored schedule to the declaration; False if it matched."""
    (schedule_id, topic, payload, priority, max_attempts, timeout_ms) = row[:6]
    (missed_runs, max_catch_up, next_fire_at, resumed_at) = row[6:10]
    stored = RuleColumns.from_row(row[10:])
    if same_rule(declared.rule, stored):
        rule, next_fire, resumed = stored, next_fire_at, resumed_at
    else:
        # A new rule starts afresh: nothing before now counts as missed.
        rule = resolve(declared.rule, now)
        next_fire, resumed = first_fire(rule, now), None
    stored_fields = {
        "topic": topic,
        "payload": bytes(payload),
        "priority": priority,
        "max_attempts": max_attempts,
        "timeout_ms": timeout_ms,
        "missed_runs": missed_runs,
        "max_catch_up": max_catch_up,
    }
    if stored_fields == declared.job_fields() and rule == stored:
        return False
    cur.execute(
        UPDATE_SCHEDULE,
        {
            "id": schedule_id,
            **declared.job_fields(),
            **dataclasses.asdict(rule),
            "next_fire_at": next_fire,
            "resumed_at": resumed,
        },
    )
    return True


def get_schedule(cur: Cursor, name: str) -> pb.Schedule:
    cur.execute(SELECT_SCHEDULE, {"name": _known_name(name)})
    row = cur.fetchone()
    if row is None:
        raise ScheduleNotFound(f"schedule {name!r} not found")
    return _row_to_schedule(row)


def list_schedules(
    cur: Cursor, request: pb.ListSchedulesRequest
) -> tuple[list[pb.Schedule], str]:
    """One page by name, and the token of the next ('' at the end)."""
    if request.topic:
        validate_topic(request.topic)
    limit = _page_size(request.page_size)
    cur.execute(
        LIST_SCHEDULES,
        {
            "topic": request.topic,
            "after_name": _decode_token(request.page_token, "schedule"),
            "limit": limit + 1,
        },
    )
    rows = cur.fetchall()
    token = ""
    if len(rows) > limit:
        rows = rows[:limit]
        token = _encode_token("schedule", rows[-1][1])
    return [_row_to_schedule(row) for row in rows], token


def pause_schedule(cur: Cursor, name: str) -> pb.Schedule:
    """Stop firing; pausing a paused schedule changes nothing."""
    cur.execute(PAUSE_SCHEDULE, {"name": _known_name(name)})
    schedule = get_schedule(cur, name)
    log.info("schedule.paused schedule=%s", name)
    return schedule


def resume_schedule(cur: Cursor, name: str) -> pb.Schedule:
    """Fire again; what came due meanwhile follows the missed-runs policy."""
    cur.execute(RESUME_SCHEDULE, {"name": _known_name(name)})
    schedule = get_schedule(cur, name)
    log.info("schedule.resumed schedule=%s", name)
    return schedule


def delete_schedule(cur: Cursor, name: str) -> None:
    """Delete it and its occurrence rows; the jobs it made stay."""
    cur.execute(DELETE_SCHEDULE, {"name": _known_name(name)})
    if cur.rowcount == 0:
        raise ScheduleNotFound(f"schedule {name!r} not found")
    log.info("schedule.deleted schedule=%s", name)


def list_occurrences(
    cur: Cursor, request: pb.ListOccurrencesRequest
) -> tuple[list[pb.Occurrence], str]:
    """One page of what the schedule fired, newest first."""
    limit = _page_size(request.page_size)
    before = _decode_token(request.page_token, "occurrence")
    cur.execute(SELECT_SCHEDULE_ID, {"name": _known_name(request.name)})
    found = cur.fetchone()
    if found is None:
        raise ScheduleNotFound(f"schedule {request.name!r} not found")
    cur.execute(
        LIST_OCCURRENCES,
        {
            "schedule_id": found[0],
            "before": None if before is None else _parse_moment(before),
            "limit": limit + 1,
        },
    )
    rows = cur.fetchall()
    token = ""
    if len(rows) > limit:
        rows = rows[:limit]
        token = _encode_token("occurrence", rows[-1][0].isoformat())
    occurrences = [
        pb.Occurrence(
            occurrence=to_timestamp(occurrence),
            fired_at=to_timestamp(fired_at),
            job_id=str(job_id),
            job_status=STATUS_TO_PROTO.get(status, pb.JOB_STATUS_UNSPECIFIED),
            catch_up=catch_up,
            last_error=last_error or "",
        )
        for occurrence, fired_at, job_id, status, catch_up, last_error in rows
    ]
    return occurrences, token


def preview(cur: Cursor, request: pb.PreviewScheduleRequest) -> list[datetime.datetime]:
    """The next fire times of a stored schedule (from its next unfired
    occurrence on) or of a rule as if declared now."""
    count = request.count or DEFAULT_PREVIEW_COUNT
    if not 1 <= count <= MAX_PREVIEW_COUNT:
        raise InvalidArgument(
            f"count {request.count} is out of range 1..{MAX_PREVIEW_COUNT}"
        )
    has_rule = request.HasField("rule")
    if request.name and has_rule:
        raise InvalidArgument("give a schedule name or a rule to preview, not both")
    if request.name:
        cur.execute(SELECT_FOR_PREVIEW, {"name": _known_name(request.name)})
        row = cur.fetchone()
        if row is None:
            raise ScheduleNotFound(f"schedule {request.name!r} not found")
        next_fire_at, rule = row[0], RuleColumns.from_row(row[1:])
    elif has_rule:
        now = _now(cur)
        rule = resolve(validate_rule(request.rule), now)
        next_fire_at = first_fire(rule, now)
    else:
        raise InvalidArgument("give a schedule name or a rule to preview")
    if next_fire_at is None:
        return []
    return upcoming(rule_of(rule), next_fire_at, count)


def _row_to_schedule(row: tuple[Any, ...]) -> pb.Schedule:
    (schedule_id, name, topic, payload, priority, max_attempts, timeout_ms) = row[:7]
    rule = RuleColumns.from_row(row[7:14])
    (missed_runs, max_catch_up, paused_at, next_fire_at) = row[14:18]
    (last_occurrence, last_job_id, last_job_status, fired_count) = row[18:22]
    created_at, updated_at = row[22:24]
    return pb.Schedule(
        id=str(schedule_id),
        name=name,
        topic=topic,
        payload=bytes(payload),
        priority=priority,
        max_attempts=max_attempts,
        timeout_ms=timeout_ms,
        rule=rule_proto(rule),
        missed_runs=_MISSED_RUNS_TO_PROTO[missed_runs],
        max_catch_up=max_catch_up,
        paused=paused_at is not None,
        paused_at=to_timestamp(paused_at),
        next_fire_at=to_timestamp(next_fire_at),
        last_occurrence=to_timestamp(last_occurrence),
        last_job_id=str(last_job_id) if last_job_id else "",
        last_job_status=STATUS_TO_PROTO.get(last_job_status, pb.JOB_STATUS_UNSPECIFIED),
        fired_count=fired_count,
        created_at=to_timestamp(created_at),
        updated_at=to_timestamp(updated_at),
    )


def _known_name(name: str) -> str:
    if not name:
        raise InvalidArgument("schedule name is empty")
    return validate_name(name)


def _now(cur: Cursor) -> datetime.datetime:
    cur.execute(SELECT_NOW)
    row = cur.fetchone()
    assert row is not None
    return row[0].astimezone(datetime.UTC)  # type: ignore[no-any-return]


def _page_size(page_size: int) -> int:
    size = page_size or DEFAULT_PAGE_SIZE
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise InvalidArgument(
            f"page_size {page_size} is out of range 1..{MAX_PAGE_SIZE}"
        )
    return size


def _encode_token(kind: str, value: str) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{value}".encode()).decode()


def _decode_token(token: str, kind: str) -> str | None:
    if not token:
        return None
    try:
        text = base64.urlsafe_b64decode(token.encode()).decode()
    except (ValueError, UnicodeError):
        text = ""
    found, _, value = text.partition(":")
    if found != kind:
        raise InvalidArgument(f"page_token {token[:60]!r} is not valid")
    return value


def _parse_moment(text: str) -> datetime.datetime:
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise InvalidArgument(f"page_token for {text[:60]!r} is not valid")
    return moment
