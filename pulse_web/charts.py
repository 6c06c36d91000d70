"""The throughput chart: completed versus dead-lettered jobs per minute, as
an SVG drawn on the server (no script, no chart library).

Every number and label that enters the SVG is formatted or escaped here, so
the result can be inlined into a page as it is.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
from collections.abc import Callable, Sequence

from markupsafe import Markup, escape

from pulse_client import ThroughputBucket

WIDTH = 720
HEIGHT = 200
_LEFT = 44
_RIGHT = 12
_TOP = 14
_BOTTOM = 40
COMPLETED_COLOR = "#2f9e44"
DEAD_LETTERED_COLOR = "#e03131"
_AXIS_COLOR = "#868e96"
_GRID_COLOR = "#dee2e6"


@dataclasses.dataclass(frozen=True)
class Minute:
    """One minute of the chart, zero when pulsed reported nothing for it."""

    start: datetime.datetime
    completed: int
    dead_lettered: int


def minutes_of(
    buckets: Sequence[ThroughputBucket],
    *,
    minutes: int,
    now: datetime.datetime,
) -> list[Minute]:
    """``minutes`` consecutive minutes ending with the current one, oldest
    first, filled from ``buckets`` (which may leave out empty minutes)."""
    by_minute: dict[datetime.datetime, ThroughputBucket] = {}
    for bucket in buckets:
        if bucket.minute is not None:
            by_minute[_floor(bucket.minute)] = bucket
    # The database's clock may run a little ahead of this process's.
    end = max([_floor(now), *by_minute])
    result = []
    for back in range(minutes - 1, -1, -1):
        start = end - datetime.timedelta(minutes=back)
        found = by_minute.get(start)
        result.append(
            Minute(
                start,
                found.completed if found else 0,
                found.dead_lettered if found else 0,
            )
        )
    return result


def throughput_svg(series: Sequence[Minute]) -> Markup:
    """The chart of ``series`` as an inline ``<svg>`` element."""
    plot_width = WIDTH - _LEFT - _RIGHT
    plot_height = HEIGHT - _TOP - _BOTTOM
    top_value = _nice_ceiling(
        max((max(m.completed, m.dead_lettered) for m in series), default=0)
    )
    slot = plot_width / max(len(series), 1)
    bar = max(slot * 0.4, 1.0)
    total_completed = sum(m.completed for m in series)
    total_dead = sum(m.dead_lettered for m in series)
    summary = (
        f"Jobs finished per minute over the last {len(series)} minutes: "
        f"{total_completed} completed, {total_dead} dead-lettered"
    )

    def y(value: float) -> float:
        return _TOP + plot_height - plot_height * value / top_value

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
        f'role="img" aria-label="{escape(summary)}">',
        f"<title>{escape(summary)}</title>",
    ]
    for value in (0, top_value / 2, top_value):
        parts.append(
            f'<line x1="{_LEFT}" x2="{WIDTH - _RIGHT}" y1="{y(value):.1f}" '
            f'y2="{y(value):.1f}" stroke="{_GRID_COLOR}" stroke-width="1"/>'
            f'<text x="{_LEFT - 6}" y="{y(value) + 4:.1f}" text-anchor="end" '
            f'font-size="11" fill="{_AXIS_COLOR}">{value:g}</text>'
        )
    for index, minute in enumerate(series):
        x = _LEFT + index * slot + (slot - 2 * bar) / 2
        label = f"{minute.start:%H:%M} UTC"
        parts.append(
            _bar(x, bar, y, minute.completed, COMPLETED_COLOR, f"{label}: completed")
        )
        parts.append(
            _bar(
                x + bar,
                bar,
                y,
                minute.dead_lettered,
                DEAD_LETTERED_COLOR,
                f"{label}: dead-lettered",
            )
        )
    if series:
        baseline = _TOP + plot_height
        for index, anchor in ((0, "start"), (len(series) - 1, "end")):
            x = _LEFT + index * slot + (slot if anchor == "end" else 0)
            parts.append(
                f'<text x="{x:.1f}" y="{baseline + 14}" text-anchor="{anchor}" '
                f'font-size="11" fill="{_AXIS_COLOR}">'
                f"{escape(f'{series[index].start:%H:%M} UTC')}</text>"
            )
        legend_y = HEIGHT - 8
        parts.append(
            _legend(_LEFT, legend_y, COMPLETED_COLOR, f"completed ({total_completed})")
        )
        parts.append(
            _legend(
                _LEFT + 170,
                legend_y,
                DEAD_LETTERED_COLOR,
                f"dead-lettered ({total_dead})",
            )
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def _bar(
    x: float,
    width: float,
    y: Callable[[float], float],
    value: int,
    color: str,
    label: str,
) -> str:
    if value <= 0:
        return ""
    top, bottom = y(value), y(0)
    return (
        f'<rect x="{x:.1f}" y="{top:.1f}" width="{width:.1f}" '
        f'height="{max(bottom - top, 1.0):.1f}" fill="{color}">'
        f"<title>{escape(label)} {value}</title></rect>"
    )


def _legend(x: float, y: float, color: str, text: str) -> str:
    return (
        f'<rect x="{x}" y="{y - 9}" width="10" height="10" fill="{color}"/>'
        f'<text x="{x + 14}" y="{y}" font-size="12" fill="#343a40">'
        f"{escape(text)}</text>"
    )


def _nice_ceiling(value: int) -> int:
    """The smallest round number (1, 2, 4 or 5 × 10ⁿ) at or above ``value``;
    at least 2, so that an empty chart still has a scale."""
    if value <= 2:
        return 2
    magnitude = int(10 ** math.floor(math.log10(value)))
    for step in (1, 2, 4, 5):
        if step * magnitude >= value:
            return step * magnitude
    return 10 * magnitude


def _floor(moment: datetime.datetime) -> datetime.datetime:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.astimezone(datetime.UTC).replace(second=0, microsecond=0)
