"""Cron expressions in a time zone, with the classic daylight-saving rule.

croniter matches the five fields against wall-clock times; this module walks
those matches as naive local times and decides itself which real instants
they stand for, because that is where cron implementations differ. The rule
is Vixie cron's (and cronie's):

- A *fixed-time* expression (neither the minute nor the hour field starts
  with ``*``) names a time of day. A match that falls in the hour skipped by
  a spring-forward fires once, at the instant of the jump; a match in the
  hour repeated by a fall-back fires once, in its first pass.
- A *wildcard* expression (``0 * * * *``, ``*/15 * * * *``) follows real
  elapsed time: wall-clock times that do not exist are skipped, and those
  that occur twice fire twice.

croniter's own time-zone handling already fires a skipped fixed time at the
jump, but it fires a repeated fixed time twice; the naive walk below needs
neither behaviour to be right.
"""

from __future__ import annotations

import datetime
import heapq
import re
from collections import deque
from collections.abc import Iterator
from zoneinfo import ZoneInfo

from croniter import CroniterBadDateError, CroniterError, croniter

from pulse_client.errors import InvalidArgument

UTC = datetime.UTC
MAX_EXPRESSION_CHARS = 100
MAX_TIME_ZONE_CHARS = 100
# Away from an offset change, wall-clock matches map to instants in order,
# so each can be yielded as soon as it is found. Near one (within this
# distance) a match may stand for an instant up to the size of the change
# earlier or later: those are held back until no later match can precede
# them. Offsets change at most a few times a year, never twice in a day.
_CHANGE_WINDOW = datetime.timedelta(days=1)
_MICROSECOND = datetime.timedelta(microseconds=1)
_EPOCH = datetime.datetime(2000, 1, 1, tzinfo=UTC)
_NOT_ZONES = frozenset({"localtime", "Factory", "posixrules"})

_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_FIELD = re.compile(r"[0-9A-Za-z*?,/#-]+")
# Month and day names, and L (last); croniter's R (random) and H (hashed)
# would pick different times in different replicas.
_MONTHS = "JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC"
_DAYS = "SUN MON TUE WED THU FRI SAT"
_WORDS = frozenset(f"{_MONTHS} {_DAYS} L".split())


def parse_time_zone(name: str) -> ZoneInfo:
    """The IANA zone ``name`` ('' is UTC); InvalidArgument if unknown."""
    if name == "":
        return ZoneInfo("UTC")
    if len(name) > MAX_TIME_ZONE_CHARS:
        raise InvalidArgument(f"time_zone {name[:MAX_TIME_ZONE_CHARS]!r}… is too long")
    # "localtime" and "Factory" are files in the zone database, not zones:
    # the first follows each host's setting, so replicas could disagree.
    if name in _NOT_ZONES:
        raise InvalidArgument(
            f"time_zone {name!r} is not an IANA time zone that means the same "
            "on every host (for example 'UTC' or 'Europe/Berlin')"
        )
    try:
        return ZoneInfo(name)
    except (ValueError, KeyError, OSError):
        raise InvalidArgument(
            f"time_zone {name!r} is not an IANA time zone "
            "(for example 'UTC' or 'Europe/Berlin')"
        ) from None


class CronRule:
    """A five-field cron expression evaluated in an IANA time zone."""

    def __init__(self, expression: str, time_zone: str = "UTC") -> None:
        self.expression = " ".join(expression.split())
        self.zone = parse_time_zone(time_zone)
        self.time_zone = self.zone.key
        self._fields = _check_expression(self.expression)
        minute, hour = self._fields.split()[:2]
        self.follows_elapsed_time = minute[0] in "*?" or hour[0] in "*?"
        # Cron has no year field: what matches once matches again within
        # decades, so any fixed start tells whether it ever fires.
        if self.next_after(_EPOCH) is None:
            raise InvalidArgument(f"cron {expression!r} never fires")

    def next_after(self, moment: datetime.datetime) -> datetime.datetime | None:
        """The first occurrence strictly after ``moment``; None if none."""
        return next(self.occurrences_after(moment), None)

    def occurrences_from(
        self, moment: datetime.datetime
    ) -> Iterator[datetime.datetime]:
        """Occurrences at or after ``moment``, in order."""
        return self.occurrences_after(moment - _MICROSECOND)

    def occurrences_after(
        self, moment: datetime.datetime
    ) -> Iterator[datetime.datetime]:
        """Occurrences strictly after ``moment``, in order, as UTC instants."""
        local = moment.astimezone(self.zone).replace(tzinfo=None)
        matches = croniter(self._fields, local - self._shift_near(local))
        pending: list[datetime.datetime] = []
        last = moment
        while True:
            try:
                naive = matches.get_next(datetime.datetime)
            except (CroniterBadDateError, OverflowError, ValueError):
                horizon = None
            else:
                for instant in self._instants(naive):
                    if instant > moment:
                        heapq.heappush(pending, instant)
                # No later match can stand for an instant before this one.
                horizon = (
                    _as_utc(naive)
                    - self._largest_offset(naive)
                    - self._shift_near(naive)
                )
            while pending and (horizon is None or pending[0] <= horizon):
                instant = heapq.heappop(pending)
                if instant > last:  # two matches can share an instant
                    last = instant
                    yield instant
            if horizon is None:
                return

    def latest(
        self, since: datetime.datetime, until: datetime.datetime, count: int
    ) -> list[datetime.datetime]:
        """Up to ``count`` of the latest occurrences in [since, until], oldest
        first. Looks back in growing windows, so a long gap costs little."""
        if count < 1:
            return []
        window = datetime.timedelta(hours=1)
        while True:
            start = max(since, until - window)
            found: deque[datetime.datetime] = deque(maxlen=count)
            for instant in self.occurrences_from(start):
                if instant > until:
                    break
                found.append(instant)
            if len(found) >= count or start == since:
                return list(found)
            window *= 4

    def _instants(self, naive: datetime.datetime) -> tuple[datetime.datetime, ...]:
        """The instants a wall-clock match stands for, by the rule above."""
        first = naive.replace(tzinfo=self.zone, fold=0).astimezone(UTC)
        second = naive.replace(tzinfo=self.zone, fold=1).astimezone(UTC)
        if first == second:
            return (first,)
        if first < second:  # a fall-back repeats this wall-clock time
            return (first, second) if self.follows_elapsed_time else (first,)
        # A spring-forward skipped it: fold=1 read it with the offset after
        # the jump, fold=0 with the one before, so the jump lies between.
        if self.follows_elapsed_time:
            return ()
        return (self._jump_between(second, first),)

    def _jump_between(
        self, before: datetime.datetime, after: datetime.datetime
    ) -> datetime.datetime:
        """The instant the zone's offset changes, in (before, after]."""
        low, high = int(before.timestamp()), int(after.timestamp())
        offset_before = before.astimezone(self.zone).utcoffset()
        while high - low > 1:
            middle = (low + high) // 2
            at_middle = datetime.datetime.fromtimestamp(middle, self.zone)
            if at_middle.utcoffset() == offset_before:
                low = middle
            else:
                high = middle
        return datetime.datetime.fromtimestamp(high, UTC)

    def _shift_near(self, naive: datetime.datetime) -> datetime.timedelta:
        """How far the zone's offset moves within a day of ``naive`` (zero
        almost always, and in UTC or any zone without daylight saving)."""
        offsets = {
            (naive + step).replace(tzinfo=self.zone, fold=fold).utcoffset()
            for step in (-_CHANGE_WINDOW, datetime.timedelta(), _CHANGE_WINDOW)
            for fold in (0, 1)
        }
        known = [offset for offset in offsets if offset is not None]
        return max(known) - min(known) if known else datetime.timedelta()

    def _largest_offset(self, naive: datetime.datetime) -> datetime.timedelta:
        offsets = [
            naive.replace(tzinfo=self.zone, fold=fold).utcoffset() for fold in (0, 1)
        ]
        return max(offset or datetime.timedelta() for offset in offsets)


def _as_utc(naive: datetime.datetime) -> datetime.datetime:
    return naive.replace(tzinfo=UTC)


def _check_expression(expression: str) -> str:
    """The five fields of a valid expression (aliases expanded)."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise InvalidArgument(
            f"cron {expression[:MAX_EXPRESSION_CHARS]!r}… is too long "
            f"(at most {MAX_EXPRESSION_CHARS} characters)"
        )
    fields = _ALIASES.get(expression.lower(), expression)
    parts = fields.split()
    if len(parts) != 5:
        raise InvalidArgument(
            f"cron {expression!r} is not a five-field expression "
            "(minute hour day-of-month month day-of-week, for example '0 * * * *')"
        )
    for part in parts:
        words = set(re.findall(r"[A-Za-z]+", part.upper()))
        if not _FIELD.fullmatch(part) or not words <= _WORDS:
            raise InvalidArgument(f"cron {expression!r} has an invalid field {part!r}")
    try:
        croniter(fields, datetime.datetime(2000, 1, 1))
    except (CroniterError, ValueError, KeyError, TypeError) as exc:
        raise InvalidArgument(f"cron {expression!r} is invalid: {exc}") from None
    return fields
