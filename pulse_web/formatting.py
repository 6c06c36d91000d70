"""How values look on the pages: times, durations, ids, statuses.

Registered as Jinja filters; every one returns plain text for the template
to escape.
"""

from __future__ import annotations

import datetime
import json
from typing import Any

from flask import Flask

from pulse_client import After, At, Cron, Every, JobStatus

STATUSES = [status.value for status in JobStatus]
# Statuses a job can be canceled or requeued from.
CANCELABLE = frozenset({"scheduled", "pending", "running", "retrying"})
REQUEUEABLE = frozenset({"dead_lettered", "canceled"})


def when(moment: datetime.datetime | None) -> str:
    """``2024-05-01 12:03:04 UTC``; a dash for no time."""
    if moment is None:
        return "—"
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def iso(moment: datetime.datetime | None) -> str:
    return "" if moment is None else moment.astimezone(datetime.UTC).isoformat()


def ago(moment: datetime.datetime | None, now: datetime.datetime | None = None) -> str:
    """``3m 12s ago`` or ``in 5s``, by this process's clock."""
    if moment is None:
        return ""
    now = now or datetime.datetime.now(datetime.UTC)
    delta = now - moment
    if delta >= datetime.timedelta(0):
        return f"{duration(delta)} ago"
    return f"in {duration(-delta)}"


def duration(delta: datetime.timedelta | None) -> str:
    """The two largest units: ``2d 3h``, ``4m 10s``, ``0.3s``."""
    if delta is None:
        return "—"
    seconds = delta.total_seconds()
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    units = [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")]
    shown = [(value, unit) for value, unit in units if value]
    return " ".join(f"{value}{unit}" for value, unit in shown[:2]) or "0s"


def short_id(value: str) -> str:
    """The last 12 characters of a UUID, enough to tell jobs apart on a page
    (UUIDv7 ids share their leading, time-ordered part)."""
    return value[-12:] if len(value) > 12 else value


def status_label(status: Any) -> str:
    """``dead_lettered`` reads ``dead-lettered`` on the page."""
    return str(status or "unknown").replace("_", "-")


def first_line(text: str | None, limit: int = 160) -> str:
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def rule_text(rule: Any) -> str:
    """A schedule's rule in words: ``every 5m``, ``cron 0 * * * * (UTC)``."""
    if isinstance(rule, Every):
        text = f"every {duration(_as_delta(rule.interval))}"
        if rule.start_at is not None:
            text += f" from {when(rule.start_at)}"
        return text
    if isinstance(rule, Cron):
        return f"cron {rule.expression} ({rule.tz})"
    if isinstance(rule, At):
        return f"once at {when(rule.when)}"
    if isinstance(rule, After):
        return f"once, {duration(_as_delta(rule.delay))} after it was declared"
    return "—" if rule is None else str(rule)


def _as_delta(value: datetime.timedelta | float) -> datetime.timedelta:
    if isinstance(value, datetime.timedelta):
        return value
    return datetime.timedelta(seconds=value)


def compact_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def register(app: Flask) -> None:
    app.add_template_filter(when)
    app.add_template_filter(iso)
    app.add_template_filter(ago)
    app.add_template_filter(duration)
    app.add_template_filter(short_id)
    app.add_template_filter(status_label)
    app.add_template_filter(first_line)
    app.add_template_filter(compact_json)
    app.add_template_filter(rule_text)
    app.jinja_env.globals.update(
        STATUSES=STATUSES, CANCELABLE=CANCELABLE, REQUEUEABLE=REQUEUEABLE
    )
