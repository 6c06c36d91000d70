"""The throughput chart, drawn without a server."""

from __future__ import annotations

import datetime
import xml.etree.ElementTree as ET

from pulse_client import ThroughputBucket
from pulse_web.charts import (
    COMPLETED_COLOR,
    DEAD_LETTERED_COLOR,
    minutes_of,
    throughput_svg,
)

NOW = datetime.datetime(2024, 5, 1, 12, 30, 40, tzinfo=datetime.UTC)
SVG = "{http://www.w3.org/2000/svg}"


def _minute(minutes_ago: int) -> datetime.datetime:
    return NOW.replace(second=0) - datetime.timedelta(minutes=minutes_ago)


def test_missing_minutes_are_zero_and_the_last_minute_is_the_current_one() -> None:
    series = minutes_of(
        [ThroughputBucket(_minute(2), 5, 1), ThroughputBucket(_minute(0), 3, 0)],
        minutes=60,
        now=NOW,
    )

    assert len(series) == 60
    assert series[-1].start == _minute(0)
    assert series[0].start == _minute(59)
    assert (series[-3].completed, series[-3].dead_lettered) == (5, 1)
    assert (series[-2].completed, series[-2].dead_lettered) == (0, 0)


def test_a_database_clock_ahead_of_ours_moves_the_window_with_it() -> None:
    ahead = ThroughputBucket(_minute(-1), 4, 0)

    series = minutes_of([ahead], minutes=10, now=NOW)

    assert series[-1].start == _minute(-1)
    assert series[-1].completed == 4


def test_the_svg_is_well_formed_with_one_bar_per_nonzero_value() -> None:
    series = minutes_of(
        [ThroughputBucket(_minute(1), 40, 2), ThroughputBucket(_minute(0), 7, 0)],
        minutes=60,
        now=NOW,
    )

    svg = ET.fromstring(str(throughput_svg(series)))

    bars = [r for r in svg.iter(f"{SVG}rect") if r.find(f"{SVG}title") is not None]
    fills = sorted(r.get("fill") or "" for r in bars)
    assert fills == sorted([COMPLETED_COLOR, COMPLETED_COLOR, DEAD_LETTERED_COLOR])
    heights = {
        r.find(f"{SVG}title").text: float(r.get("height") or 0)  # type: ignore[union-attr]
        for r in bars
    }
    assert heights["12:29 UTC: completed 40"] > heights["12:30 UTC: completed 7"]
    assert svg.get("aria-label") == (
        "Jobs finished per minute over the last 60 minutes: "
        "47 completed, 2 dead-lettered"
    )
    labels = [t.text for t in svg.iter(f"{SVG}text")]
    assert "11:31 UTC" in labels and "12:30 UTC" in labels
    assert "completed (47)" in labels and "dead-lettered (2)" in labels


def test_an_empty_hour_still_has_a_scale() -> None:
    svg = ET.fromstring(str(throughput_svg(minutes_of([], minutes=60, now=NOW))))

    labels = [t.text for t in svg.iter(f"{SVG}text")]
    assert {"0", "1", "2"} <= set(labels)
