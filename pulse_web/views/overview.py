"""Overview: queue composition per topic and status, the oldest waiting job,
the dispatch switch and the last hour's throughput; the panel refreshes
itself by htmx polling."""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

from flask import Blueprint, render_template

from pulse_client import PulseError, TopicStats
from pulse_web.charts import minutes_of, throughput_svg
from pulse_web.errors import UNREACHABLE
from pulse_web.formatting import STATUSES
from pulse_web.sessions import client

blueprint = Blueprint("overview", __name__)

CHART_MINUTES = 60


@dataclasses.dataclass(frozen=True)
class Segment:
    status: str
    count: int
    percent: float


@dataclasses.dataclass(frozen=True)
class Row:
    topic: str
    counts: dict[str, int]
    total: int
    segments: list[Segment]
    paused: bool


@blueprint.get("/")
def index() -> tuple[str, int]:
    try:
        panel = _panel()
    except UNREACHABLE as exc:
        # The page still loads, with the banner in the panel: its polling
        # brings the figures back as soon as pulsed answers.
        return render_template("overview.html", unreachable=str(exc)), 503
    return render_template("overview.html", **panel), 200


@blueprint.get("/overview/panel")
def panel() -> str:
    return render_template("_overview_panel.html", **_panel())


def _panel() -> dict[str, Any]:
    pulse = client()
    stats = pulse.stats()
    dispatch = pulse.dispatch_status()
    chart = None
    chart_error = ""
    try:
        buckets = pulse.throughput(minutes=CHART_MINUTES)
    except UNREACHABLE:
        raise
    except PulseError as exc:
        # An older replica, or one that refuses the report: the rest of the
        # overview is still worth showing.
        chart_error = str(exc)
    else:
        series = minutes_of(
            buckets, minutes=CHART_MINUTES, now=datetime.datetime.now(datetime.UTC)
        )
        chart = throughput_svg(series)
    rows = [_row(t, dispatch.is_paused(t.topic)) for t in stats.topics]
    totals = {s: sum(r.counts[s] for r in rows) for s in STATUSES}
    return {
        "rows": rows,
        "totals": totals,
        "grand_total": sum(totals.values()),
        "stats": stats,
        "dispatch": dispatch,
        "chart": chart,
        "chart_error": chart_error,
        "chart_minutes": CHART_MINUTES,
    }


def _row(topic: TopicStats, paused: bool) -> Row:
    counts = {status: int(getattr(topic, status)) for status in STATUSES}
    total = sum(counts.values())
    segments = [
        Segment(status, count, 100.0 * count / total)
        for status, count in counts.items()
        if count
    ]
    return Row(topic.topic, counts, total, segments, paused)
