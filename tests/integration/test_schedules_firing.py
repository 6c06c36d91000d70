"""The scheduler's firings on a real database, with the clock driven by the
test: ``fire_next_due(cur, now=…)`` stands in for the database's now(), so
daylight-saving days and hours of downtime pass in milliseconds. No server
runs here, so no background loop fires behind the test's back."""

from __future__ import annotations

import datetime
import itertools
import random
import threading
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from google.protobuf import timestamp_pb2

from pulse_client._proto.pulse.v1 import pulse_pb2 as pb
from pulsed import schedules
from pulsed.config import Config
from pulsed.database import Database
from pulsed.scheduler import Firing, Scheduler, fire_next_due
from tests.fixtures.databases import Sql

UTC = datetime.UTC
NEW_YORK = ZoneInfo("America/New_York")
HOUR = datetime.timedelta(hours=1)
# Far enough ahead that the database's own clock never makes it due.
FUTURE = datetime.datetime(2031, 1, 6, 9, 0, tzinfo=UTC)


def ts(moment: datetime.datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def utc(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text).replace(tzinfo=UTC)


def declare(
    db: Database,
    rule: pb.ScheduleRule,
    *,
    name: str = "s",
    payload: bytes = b"{}",
    missed_runs: pb.MissedRuns.ValueType = pb.MISSED_RUNS_UNSPECIFIED,
    max_catch_up: int = 0,
) -> pb.Schedule:
    definition = pb.ScheduleDefinition(
        name=name,
        topic="t",
        payload=payload,
        rule=rule,
        missed_runs=missed_runs,
        max_catch_up=max_catch_up,
    )
    with db.transaction() as cur:
        schedule, _ = schedules.put_schedule(cur, definition, Config())
    return schedule


def hourly_from(db: Database, start: datetime.datetime, **kwargs: Any) -> None:
    declare(db, pb.ScheduleRule(every_ms=3_600_000, start_at=ts(start)), **kwargs)


def fire_all(db: Database, now: datetime.datetime | None) -> list[Firing]:
    """What an on-time scheduler would fire at ``now``."""
    firings = []
    while True:
        with db.transaction() as cur:
            firing = fire_next_due(cur, now=now)
        if firing is None:
            return firings
        firings.append(firing)


def drive(
    db: Database,
    sql: Sql,
    until: datetime.datetime,
    lateness: Callable[[], datetime.timedelta] = lambda: datetime.timedelta(seconds=1),
) -> list[datetime.datetime]:
    """Fire every occurrence up to ``until``, each a little after it is due,
    as a running scheduler would; the occurrences fired, in order."""
    fired = []
    while True:
        due = sql.scalar("SELECT min(next_fire_at) FROM schedules")
        if due is None or due > until:
            return fired
        for firing in fire_all(db, due + lateness()):
            assert not firing.missed, f"{firing} counted as missed"
            fired += [occurrence for _, occurrence, _ in firing.jobs]


def start_cron_at(sql: Sql, name: str, first: datetime.datetime) -> None:
    """Move a cron schedule's next occurrence to ``first`` (one it names)."""
    sql.execute("UPDATE schedules SET next_fire_at = %s WHERE name = %s", (first, name))


def jobs_by_occurrence(sql: Sql) -> dict[datetime.datetime, dict[str, Any]]:
    rows = sql.all(
        "SELECT j.occurrence, j.id, j.payload, j.status, o.catch_up"
        " FROM jobs j JOIN schedule_occurrences o"
        " ON o.schedule_id = j.schedule_id AND o.occurrence = j.occurrence"
        " AND o.job_id = j.id ORDER BY j.occurrence"
    )
    assert sql.scalar("SELECT count(*) FROM jobs") == len(rows)
    return {
        row[0]: {
            "id": row[1],
            "payload": bytes(row[2]),
            "status": row[3],
            "catch_up": row[4],
        }
        for row in rows
    }


def local(moments: list[datetime.datetime]) -> list[str]:
    return [m.astimezone(NEW_YORK).strftime("%m-%d %H:%M %Z") for m in moments]


# -- cron across daylight saving in America/New_York ---------------------------


def test_a_fixed_time_skipped_by_spring_forward_fires_once_right_after_the_jump(
    db: Database, sql: Sql
) -> None:
    declare(db, pb.ScheduleRule(cron="30 2 * * *", time_zone="America/New_York"))
    start_cron_at(sql, "s", utc("2027-03-13 07:30"))

    fired = drive(db, sql, until=utc("2027-03-15 12:00"))

    assert local(fired) == [
        "03-13 02:30 EST",
        "03-14 03:00 EDT",  # 02:30 never happened that night
        "03-15 02:30 EDT",
    ]
    assert list(jobs_by_occurrence(sql)) == fired


def test_a_fixed_time_repeated_by_fall_back_fires_once(db: Database, sql: Sql) -> None:
    declare(db, pb.ScheduleRule(cron="30 1 * * *", time_zone="America/New_York"))
    start_cron_at(sql, "s", utc("2027-11-06 05:30"))

    fired = drive(db, sql, until=utc("2027-11-08 12:00"))

    assert local(fired) == ["11-06 01:30 EDT", "11-07 01:30 EDT", "11-08 01:30 EST"]
    assert list(jobs_by_occurrence(sql)) == fired


def test_an_hourly_cron_fires_in_both_copies_of_the_repeated_hour(
    db: Database, sql: Sql
) -> None:
    declare(db, pb.ScheduleRule(cron="0 * * * *", time_zone="America/New_York"))
    start_cron_at(sql, "s", utc("2027-11-07 04:00"))

    fired = drive(db, sql, until=utc("2027-11-07 08:00"))

    assert local(fired) == [
        "11-07 00:00 EDT",
        "11-07 01:00 EDT",
        "11-07 01:00 EST",
        "11-07 02:00 EST",
        "11-07 03:00 EST",
    ]
    assert [b - a for a, b in itertools.pairwise(fired)] == [HOUR] * 4


@pytest.mark.parametrize(
    ("first", "until"),
    [
        (utc("2027-11-07 05:00"), utc("2027-11-07 07:00")),  # fall-back
        (utc("2027-03-14 06:00"), utc("2027-03-14 08:00")),  # spring-forward
    ],
    ids=["fall-back", "spring-forward"],
)
def test_every_fifteen_minutes_follows_elapsed_time_across_the_change(
    db: Database, sql: Sql, first: datetime.datetime, until: datetime.datetime
) -> None:
    declare(db, pb.ScheduleRule(cron="*/15 * * * *", time_zone="America/New_York"))
    start_cron_at(sql, "s", first)

    fired = drive(db, sql, until=until)

    quarter = datetime.timedelta(minutes=15)
    assert fired == [first + k * quarter for k in range(9)]
    assert list(jobs_by_occurrence(sql)) == fired


# -- missed runs ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("missed_runs", "max_catch_up", "fired_hours"),
    [
        (pb.MISSED_RUNS_UNSPECIFIED, 0, [9]),
        (pb.MISSED_RUNS_ONE, 0, [9]),
        (pb.MISSED_RUNS_SKIP, 0, []),
        (pb.MISSED_RUNS_ALL, 0, list(range(10))),
        (pb.MISSED_RUNS_ALL, 4, [6, 7, 8, 9]),
    ],
    ids=["default", "one", "skip", "all", "all-bounded"],
)
def test_downtime_of_ten_intervals_follows_the_missed_runs_policy(
    db: Database,
    sql: Sql,
    missed_runs: pb.MissedRuns.ValueType,
    max_catch_up: int,
    fired_hours: list[int],
) -> None:
    hourly_from(db, FUTURE, missed_runs=missed_runs, max_catch_up=max_catch_up)

    # Given no replica ran while ten occurrences came due,
    (firing,) = fire_all(db, FUTURE + 9.5 * HOUR)

    # then the policy decides, and the cadence goes on from the next one.
    fired = jobs_by_occurrence(sql)
    assert list(fired) == [FUTURE + h * HOUR for h in fired_hours]
    assert all(job["catch_up"] for job in fired.values())
    assert firing.missed
    assert firing.next_fire_at == FUTURE + 10 * HOUR
    (after,) = fire_all(db, FUTURE + 10 * HOUR + datetime.timedelta(seconds=2))
    assert [(o, after.missed) for _, o, _ in after.jobs] == [
        (FUTURE + 10 * HOUR, False)
    ]


def test_an_occurrence_fired_late_with_no_later_one_due_is_not_a_catch_up(
    db: Database, sql: Sql
) -> None:
    hourly_from(db, FUTURE, missed_runs=pb.MISSED_RUNS_SKIP)

    (firing,) = fire_all(db, FUTURE + 0.9 * HOUR)

    assert not firing.missed
    assert {o: j["catch_up"] for o, j in jobs_by_occurrence(sql).items()} == {
        FUTURE: False
    }


def test_an_interval_never_drifts_however_late_each_firing_is(
    db: Database, sql: Sql
) -> None:
    every = datetime.timedelta(seconds=7, milliseconds=250)
    declare(db, pb.ScheduleRule(every_ms=7250, start_at=ts(FUTURE)))
    chance = random.Random(5)

    fired = drive(
        db,
        sql,
        until=FUTURE + 49 * every,
        lateness=lambda: every * chance.uniform(0.0, 0.95),
    )

    assert fired == [FUTURE + k * every for k in range(50)]


def test_concurrent_schedulers_fire_each_occurrence_exactly_once(
    db_url: str, db: Database, sql: Sql
) -> None:
    for index in range(20):
        hourly_from(db, FUTURE, name=f"s{index}", missed_runs=pb.MISSED_RUNS_ALL)
    pools = [Database(db_url, 1, application_name="pulse-tests") for _ in range(4)]
    start = threading.Barrier(len(pools))

    def scheduler(pool: Database) -> None:
        start.wait()
        fire_all(pool, FUTURE + 5.5 * HOUR)

    threads = [threading.Thread(target=scheduler, args=(pool,)) for pool in pools]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    finally:
        for pool in pools:
            pool.close()

    per_schedule = sql.all(
        "SELECT schedule_id, count(*), count(DISTINCT occurrence), min(occurrence),"
        " max(occurrence) FROM jobs GROUP BY schedule_id"
    )
    assert len(per_schedule) == 20
    assert {row[1:] for row in per_schedule} == {(6, 6, FUTURE, FUTURE + 5 * HOUR)}
    assert sql.scalar("SELECT count(*) FROM schedule_occurrences") == 120
    assert sql.scalar("SELECT sum(fired_count) FROM schedules") == 120


# -- one-shots, re-declaring, payloads ---------------------------------------------


def test_an_at_in_the_past_fires_once_right_away_and_keeps_its_row(
    db: Database, sql: Sql
) -> None:
    past = datetime.datetime(2020, 5, 1, 12, 0, tzinfo=UTC)
    declare(db, pb.ScheduleRule(at=ts(past)))

    (firing,) = fire_all(db, None)
    assert fire_all(db, None) == []
    declare(db, pb.ScheduleRule(at=ts(past)))  # the application starts again
    assert fire_all(db, None) == []

    assert [(o, s) for _, o, s in firing.jobs] == [(past, "pending")]
    assert firing.next_fire_at is None
    row = sql.one("SELECT next_fire_at, fired_count, last_occurrence FROM schedules")
    assert row == (None, 1, past)


def test_a_payload_declared_again_applies_to_the_next_firing(
    db: Database, sql: Sql
) -> None:
    hourly_from(db, FUTURE, payload=b'{"v":1}')
    fire_all(db, FUTURE)

    hourly_from(db, FUTURE, payload=b'{"v":2}')
    fire_all(db, FUTURE + HOUR)

    payloads = {o: j["payload"] for o, j in jobs_by_occurrence(sql).items()}
    assert payloads == {FUTURE: b'{"v":1}', FUTURE + HOUR: b'{"v":2}'}


def test_a_changed_rule_restarts_from_now(db: Database, sql: Sql) -> None:
    hourly_from(db, FUTURE)

    declare(db, pb.ScheduleRule(every_ms=7_200_000))

    now, next_fire_at, start_at = sql.one(
        "SELECT now(), next_fire_at, start_at FROM schedules"
    )
    assert (
        now < next_fire_at == start_at <= now + 2 * HOUR + datetime.timedelta(seconds=5)
    )


# -- upkeep -----------------------------------------------------------------------


def test_old_occurrence_rows_are_pruned_beyond_the_newest_ten(
    db: Database, sql: Sql
) -> None:
    hourly_from(db, FUTURE)
    drive(db, sql, until=FUTURE + 14 * HOUR)
    # The 12 oldest fired two days ago; the 3 newest just now.
    sql.execute(
        "UPDATE schedule_occurrences SET fired_at = now() - interval '2 days'"
        " WHERE occurrence < %s",
        (FUTURE + 12 * HOUR,),
    )
    scheduler = Scheduler(db, Config(retention_seconds=86400), lambda *_: None)

    assert scheduler.prune() == 5
    assert scheduler.prune() == 0
    kept = [row[0] for row in sql.all("SELECT occurrence FROM schedule_occurrences")]
    assert sorted(kept) == [FUTURE + h * HOUR for h in range(5, 15)]
    assert sql.scalar("SELECT count(*) FROM jobs") == 15  # jobs are the pruner's


def test_a_schedule_whose_rule_no_longer_evaluates_is_paused_not_retried(
    db: Database, sql: Sql
) -> None:
    declare(db, pb.ScheduleRule(cron="0 * * * *", time_zone="Europe/Berlin"))
    sql.execute("UPDATE schedules SET time_zone = 'Mars/Olympus_Mons'")
    start_cron_at(sql, "s", FUTURE)

    (firing,) = fire_all(db, FUTURE + HOUR)

    assert firing.jobs == []
    assert sql.scalar("SELECT paused_at IS NOT NULL FROM schedules") is True
    assert sql.scalar("SELECT count(*) FROM jobs") == 0
