"""When a schedule's occurrences fall, and which due ones fire.

Pure logic, no database: the scheduler hands in the database's clock.

An occurrence is one instant a rule names (a UTC timestamp; with the
schedule's id, the unique key of what it fired). The scheduler keeps each
schedule's next unfired occurrence (``next_fire_at``) and, once it is due,
looks at everything due up to now:

- One occurrence due: it fires, however late, and the cadence continues
  from it. (A loop that woke a few milliseconds after the due time is
  merely late.)
- More than one due, or any that came due while the schedule was paused:
  runs were missed, and the schedule's missed-runs policy decides. ``one``
  (the default) fires the latest of them, marked catch-up; ``skip`` fires
  none; ``all`` fires each of them (the latest ``max_catch_up`` when there
  are more), marked catch-up. Either way the cadence continues with the
  first occurrence after now, so downtime never turns into a storm.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Iterator
from typing import Literal

from pulsed.cron import CronRule

MissedRuns = Literal["one", "skip", "all"]
MISSED_RUNS: tuple[MissedRuns, ...] = ("one", "skip", "all")
_MICROSECOND = datetime.timedelta(microseconds=1)


@dataclasses.dataclass(frozen=True)
class OneShot:
    """Fires once, at ``at`` (what At and After both come to)."""

    at: datetime.datetime

    def occurrences_from(
        self, moment: datetime.datetime
    ) -> Iterator[datetime.datetime]:
        if self.at >= moment:
            yield self.at

    def latest(
        self, since: datetime.datetime, until: datetime.datetime, count: int
    ) -> list[datetime.datetime]:
        return [self.at] if since <= self.at <= until and count > 0 else []


@dataclasses.dataclass(frozen=True)
class Interval:
    """Occurrence k falls at ``start_at + k × every``, k = 0, 1, 2, …: the
    cadence never drifts, however long each firing took."""

    start_at: datetime.datetime
    every: datetime.timedelta

    def occurrences_from(
        self, moment: datetime.datetime
    ) -> Iterator[datetime.datetime]:
        k = max(0, _ceil_div(moment - self.start_at, self.every))
        while True:
            try:
                instant = self.start_at + k * self.every
            except OverflowError:  # past the year 9999
                return
            yield instant
            k += 1

    def latest(
        self, since: datetime.datetime, until: datetime.datetime, count: int
    ) -> list[datetime.datetime]:
        last = (until - self.start_at) // self.every
        first = max(0, _ceil_div(since - self.start_at, self.every), last - count + 1)
        return [self.start_at + k * self.every for k in range(first, last + 1)]


# A cron expression in a time zone: see pulsed.cron for its daylight-saving
# rule.
Rule = OneShot | Interval | CronRule


def next_after(rule: Rule, moment: datetime.datetime) -> datetime.datetime | None:
    """The rule's first occurrence strictly after ``moment``."""
    return next(rule.occurrences_from(moment + _MICROSECOND), None)


def upcoming(
    rule: Rule, moment: datetime.datetime, count: int
) -> list[datetime.datetime]:
    """The rule's first ``count`` occurrences at or after ``moment``."""
    found: list[datetime.datetime] = []
    for instant in rule.occurrences_from(moment):
        if len(found) == count:
            break
        found.append(instant)
    return found


@dataclasses.dataclass(frozen=True)
class Plan:
    """What one firing does: the occurrences to fire (each with its catch-up
    mark) and the next occurrence to wait for (None: nothing more fires)."""

    fire: list[tuple[datetime.datetime, bool]]
    next_fire_at: datetime.datetime | None
    missed: bool


def plan_firing(
    rule: Rule,
    due: datetime.datetime,
    now: datetime.datetime,
    *,
    missed_runs: MissedRuns,
    max_catch_up: int,
    resumed_at: datetime.datetime | None = None,
) -> Plan:
    """What to fire now that occurrence ``due`` (<= ``now``) has come due."""
    following = next_after(rule, due)
    came_due_while_paused = resumed_at is not None and due < resumed_at
    if (following is None or following > now) and not came_due_while_paused:
        return Plan([(due, False)], following, missed=False)
    if missed_runs == "skip":
        fired = []
    elif missed_runs == "one":
        fired = rule.latest(due, now, 1)
    else:
        fired = rule.latest(due, now, max_catch_up)
    return Plan([(o, True) for o in fired], next_after(rule, now), missed=True)


def _ceil_div(numerator: datetime.timedelta, denominator: datetime.timedelta) -> int:
    return -(-numerator // denominator)
