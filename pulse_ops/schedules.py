"""Schedule commands: list, get, pause, resume, delete, the next fire times
and the history of occurrences."""

from __future__ import annotations

import datetime
from typing import Any

from pulse_client import After, At, Cron, Every, JobStatus, Schedule
from pulse_client.limits import MAX_PAGE_SIZE
from pulse_client.schedules import Rule
from pulse_ops import arguments, render
from pulse_ops.session import Session

DEFAULT_HISTORY_LIMIT = 100
MAX_HISTORY_LIMIT = MAX_PAGE_SIZE * 10
MAX_PREVIEW_COUNT = 1000


def list_schedules(session: Session) -> int:
    schedules = session.client().list_schedules(topic=session.args["--topic"])
    session.emit(
        {"schedules": [schedule_json(s) for s in schedules]},
        lambda: (
            render.table(
                ("NAME", "TOPIC", "RULE", "STATE", "NEXT FIRE", "FIRED", "LAST JOB"),
                (
                    (
                        s.name,
                        s.topic,
                        rule_text(s.rule),
                        "paused" if s.paused else "active",
                        render.when(s.next_fire_at),
                        s.fired_count,
                        _last_job(s),
                    )
                    for s in schedules
                ),
            )
            if schedules
            else "no schedules"
        ),
    )
    return 0


def get(session: Session) -> int:
    schedule = session.client().get_schedule(session.args["NAME"])
    session.emit(schedule_json(schedule), lambda: details(schedule))
    return 0


def pause(session: Session) -> int:
    schedule = session.client().pause_schedule(session.args["NAME"])
    session.emit(schedule_json(schedule), f"schedule {schedule.name!r} paused")
    return 0


def resume(session: Session) -> int:
    schedule = session.client().resume_schedule(session.args["NAME"])
    next_fire = render.when(schedule.next_fire_at)
    session.emit(schedule, f"schedule {schedule.name!r} resumed; next fire {next_fire}")
    return 0


def delete(session: Session) -> int:
    name = session.args["NAME"]
    session.client().delete_schedule(name)
    session.emit({"deleted": name}, f"schedule {name!r} deleted")
    return 0


def next_fires(session: Session) -> int:
    count = arguments.integer("--count", session.args["--count"], 1, MAX_PREVIEW_COUNT)
    times = session.client().preview_schedule(session.args["NAME"], count=count)
    session.emit(
        {"name": session.args["NAME"], "fire_times": times},
        lambda: (
            "\n".join(render.when(t) for t in times)
            if times
            else "no more fire times: the schedule will not fire again"
        ),
    )
    return 0


def history(session: Session) -> int:
    limit = DEFAULT_HISTORY_LIMIT
    if session.args["--limit"] is not None:
        limit = arguments.integer(
            "--limit", session.args["--limit"], 1, MAX_HISTORY_LIMIT
        )
    occurrences = session.client().schedule_history(session.args["NAME"], limit=limit)
    session.emit(
        {"name": session.args["NAME"], "occurrences": occurrences},
        lambda: (
            render.table(
                ("OCCURRENCE", "FIRED", "JOB", "STATUS", "CATCH-UP", "ERROR"),
                (
                    (
                        render.when(o.occurrence),
                        render.when(o.fired_at),
                        o.job_id or render.NONE,
                        _status(o.job_status),
                        render.yes_no(o.catch_up),
                        render.one_line(o.last_error) if o.last_error else render.NONE,
                    )
                    for o in occurrences
                ),
            )
            if occurrences
            else "no occurrences yet"
        ),
    )
    return 0


def schedule_json(schedule: Schedule) -> dict[str, Any]:
    """Every field; the rule with its ``kind``, the payload as for jobs."""
    data: dict[str, Any] = render.to_json(schedule)
    data.update(render.payload_json(schedule.payload))
    data["timeout_seconds"] = data.pop("timeout")
    if schedule.rule is not None:
        data["rule"] = {"kind": type(schedule.rule).__name__.lower(), **data["rule"]}
    return data


def details(schedule: Schedule) -> str:
    pairs: list[tuple[str, object]] = [
        ("name", schedule.name),
        ("id", schedule.id),
        ("topic", schedule.topic),
        ("rule", rule_text(schedule.rule)),
        ("missed runs", schedule.missed_runs.value),
        ("max catch-up", schedule.max_catch_up),
        ("state", "paused" if schedule.paused else "active"),
        ("paused at", render.when(schedule.paused_at)),
        ("next fire", render.when(schedule.next_fire_at)),
        ("fired", schedule.fired_count),
        ("last occurrence", render.when(schedule.last_occurrence)),
        ("last job", _last_job(schedule)),
        ("priority", schedule.priority),
        ("max attempts", schedule.max_attempts or "server default"),
        ("timeout", render.span(schedule.timeout) if schedule.timeout else render.NONE),
        ("created", render.when(schedule.created_at)),
        ("updated", render.when(schedule.updated_at)),
    ]
    return "\n".join([render.fields(pairs), render.payload_section(schedule.payload)])


def rule_text(rule: Rule | None) -> str:
    """``every 5m``, ``cron '0 3 * * *' Europe/Paris``, ``at 2025-06-01 12:00:00Z``."""
    if isinstance(rule, At):
        return f"at {render.when(rule.when)}"
    if isinstance(rule, After):
        return f"after {render.span(_timedelta(rule.delay))}"
    if isinstance(rule, Every):
        text = f"every {render.span(_timedelta(rule.interval))}"
        if rule.start_at is not None:
            text += f" from {render.when(rule.start_at)}"
        return text
    if isinstance(rule, Cron):
        return f"cron {rule.expression!r} {rule.tz}"
    return render.NONE


def _timedelta(value: datetime.timedelta | float) -> datetime.timedelta:
    # The SDK turns seconds into a timedelta already; this keeps mypy sure.
    if isinstance(value, datetime.timedelta):
        return value
    return datetime.timedelta(seconds=value)


def _status(status: JobStatus | None) -> str:
    return status.value if status is not None else render.NONE


def _last_job(schedule: Schedule) -> str:
    if not schedule.last_job_id:
        return render.NONE
    return f"{schedule.last_job_id} ({_status(schedule.last_job_status)})"
