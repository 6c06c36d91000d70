"""Schedule rules without a database: cron and daylight saving, interval
arithmetic, the missed-runs plan, validation and the SDK's rule objects."""

from __future__ import annotations

import datetime
import itertools
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from google.protobuf import timestamp_pb2

from pulse_client import After, At, Cron, Every, MissedRuns
from pulse_client._proto.pulse.v1 import pulse_pb2 as pb
from pulse_client.errors import InvalidArgument
from pulse_client.schedules import rule_from_proto, rule_to_proto
from pulsed.config import Config
from pulsed.cron import CronRule
from pulsed.occurrences import (
    Interval,
    OneShot,
    Rule,
    next_after,
    plan_firing,
    upcoming,
)
from pulsed.schedule_rules import (
    RuleColumns,
    first_fire,
    resolve,
    rule_of,
    rule_proto,
    same_rule,
    validate_rule,
)
from pulsed.schedules import validate_definition

UTC = datetime.UTC
NEW_YORK = ZoneInfo("America/New_York")
HOUR = datetime.timedelta(hours=1)
MINUTE = datetime.timedelta(minutes=1)
T0 = datetime.datetime(2031, 1, 6, 9, 0, tzinfo=UTC)


def utc(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text).replace(tzinfo=UTC)


def ts(moment: datetime.datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def first(rule: Rule, moment: datetime.datetime, count: int) -> list[str]:
    """The first ``count`` occurrences at or after ``moment``, in UTC."""
    return [t.strftime("%m-%d %H:%MZ") for t in upcoming(rule, moment, count)]


def in_new_york(rule: Rule, moment: datetime.datetime, count: int) -> list[str]:
    return [
        t.astimezone(NEW_YORK).strftime("%m-%d %H:%M %Z")
        for t in upcoming(rule, moment, count)
    ]


# -- cron and daylight saving ----------------------------------------------------


def test_croniter_alone_fires_a_fixed_time_twice_in_the_repeated_hour() -> None:
    # Why pulsed.cron walks wall-clock times itself: croniter's own time-zone
    # handling runs "30 1 * * *" in both passes of the fall-back hour.
    matches = croniter(
        "30 1 * * *", datetime.datetime(2027, 11, 6, 12, tzinfo=NEW_YORK)
    )
    two = [matches.get_next(datetime.datetime) for _ in range(2)]

    assert [t.astimezone(UTC) for t in two] == [
        utc("2027-11-07 05:30"),
        utc("2027-11-07 06:30"),
    ]


def test_croniter_alone_fires_a_skipped_fixed_time_at_the_jump() -> None:
    matches = croniter(
        "30 2 * * *", datetime.datetime(2027, 3, 13, 12, tzinfo=NEW_YORK)
    )

    assert matches.get_next(datetime.datetime).astimezone(UTC) == utc(
        "2027-03-14 07:00"
    )


@pytest.mark.parametrize(
    ("expression", "start", "expected"),
    [
        (
            "30 2 * * *",
            "2027-03-13 12:00",
            ["03-14 03:00 EDT", "03-15 02:30 EDT", "03-16 02:30 EDT"],
        ),
        (
            "0,30 2 * * *",  # two matches in the skipped hour: one firing
            "2027-03-13 12:00",
            ["03-14 03:00 EDT", "03-15 02:00 EDT", "03-15 02:30 EDT"],
        ),
        (
            "30 1 * * *",
            "2027-11-06 12:00",
            ["11-07 01:30 EDT", "11-08 01:30 EST", "11-09 01:30 EST"],
        ),
        (
            "0 * * * *",
            "2027-11-07 04:30",
            ["11-07 01:00 EDT", "11-07 01:00 EST", "11-07 02:00 EST"],
        ),
        (
            "0 * * * *",
            "2027-03-14 05:30",
            ["03-14 01:00 EST", "03-14 03:00 EDT", "03-14 04:00 EDT"],
        ),
        (
            "*/30 * * * *",
            "2027-11-07 05:10",
            ["11-07 01:30 EDT", "11-07 01:00 EST", "11-07 01:30 EST"],
        ),
        (
            "* 1 * * *",  # a wildcard minute follows elapsed time too
            "2027-11-07 06:58",
            ["11-07 01:58 EST", "11-07 01:59 EST", "11-08 01:00 EST"],
        ),
        (
            "* 2 * * *",  # …and so never runs in a skipped hour
            "2027-03-14 06:58",
            ["03-15 02:00 EDT", "03-15 02:01 EDT", "03-15 02:02 EDT"],
        ),
    ],
)
def test_cron_follows_the_classic_daylight_saving_rule(
    expression: str, start: str, expected: list[str]
) -> None:
    rule = CronRule(expression, "America/New_York")

    assert in_new_york(rule, utc(start), 3) == expected


def test_fixed_and_wildcard_expressions_are_told_apart_by_minute_and_hour() -> None:
    elapsed = {
        expression: CronRule(expression).follows_elapsed_time
        for expression in (
            "30 2 * * *",
            "0 9-17 * * 1-5",
            "0,30 2 * * *",
            "0 * * * *",
            "*/15 * * * *",
            "* 2 * * *",
            "@hourly",
            "@daily",
        )
    }

    assert elapsed == {
        "30 2 * * *": False,
        "0 9-17 * * 1-5": False,
        "0,30 2 * * *": False,
        "0 * * * *": True,
        "*/15 * * * *": True,
        "* 2 * * *": True,
        "@hourly": True,
        "@daily": False,
    }


def test_a_half_hour_shift_and_a_midnight_jump_follow_the_same_rule() -> None:
    # Lord Howe Island moves its clocks by 30 minutes, at 02:00.
    lord_howe = CronRule("15 2 * * *", "Australia/Lord_Howe")
    jump = next_after(lord_howe, utc("2027-10-02 00:00"))
    assert jump is not None
    assert jump.astimezone(lord_howe.zone).strftime("%H:%M %z") == "02:30 +1100"
    # Havana springs forward at midnight: there is no 00:00 that day.
    havana = CronRule("0 0 * * *", "America/Havana")
    assert first(havana, utc("2027-03-13 06:00"), 2) == ["03-14 05:00Z", "03-15 04:00Z"]


def test_cron_occurrences_are_strictly_increasing_over_a_year_of_changes() -> None:
    rule = CronRule("*/20 0-3 * * *", "America/New_York")

    times = upcoming(rule, utc("2027-01-01 00:00"), 365 * 12)

    assert all(a < b for a, b in itertools.pairwise(times))


def test_the_latest_occurrences_of_a_cron_after_a_long_gap_are_found_quickly() -> None:
    rule = CronRule("* * * * *")

    latest = rule.latest(utc("2020-01-01 00:00"), utc("2027-01-01 00:00:30"), 3)

    assert latest == [
        utc("2026-12-31 23:58"),
        utc("2026-12-31 23:59"),
        utc("2027-01-01 00:00"),
    ]


@pytest.mark.parametrize(
    ("expression", "time_zone", "message"),
    [
        ("", "UTC", "cron '' is not a five-field expression"),
        ("* * * * * *", "UTC", "cron '* * * * * *' is not a five-field expression"),
        ("61 * * * *", "UTC", "cron '61 * * * *' is invalid"),
        ("R * * * *", "UTC", "cron 'R * * * *' has an invalid field 'R'"),
        ("H * * * *", "UTC", "cron 'H * * * *' has an invalid field 'H'"),
        ("0 0 31 4 *", "UTC", "cron '0 0 31 4 *' never fires"),
        ("@reboot", "UTC", "cron '@reboot' is not a five-field expression"),
        ("0 * * * *", "Mars/Olympus", "time_zone 'Mars/Olympus' is not an IANA"),
        ("0 * * * *", "../etc/passwd", "time_zone '../etc/passwd' is not an IANA"),
        ("0 * * * *", "utc", "time_zone 'utc' is not an IANA time zone"),
        ("0 * * * *", "localtime", "time_zone 'localtime' is not an IANA time"),
        ("0 * * * *", "Factory", "time_zone 'Factory' is not an IANA time zone"),
    ],
)
def test_a_bad_cron_or_time_zone_is_refused_naming_it(
    expression: str, time_zone: str, message: str
) -> None:
    with pytest.raises(InvalidArgument) as excinfo:
        CronRule(expression, time_zone)

    assert message in str(excinfo.value)


# -- intervals and one-shots -------------------------------------------------------


def test_an_interval_is_anchored_at_its_start_and_never_drifts() -> None:
    every = Interval(T0, datetime.timedelta(seconds=7, milliseconds=250))

    assert upcoming(every, T0 - HOUR, 2) == [T0, T0 + every.every]
    assert upcoming(every, T0 + 1000 * every.every + MINUTE / 60, 1) == [
        T0 + 1001 * every.every
    ]
    assert upcoming(every, T0 + 3 * every.every, 1) == [T0 + 3 * every.every]
    assert every.latest(T0, T0 + 10.5 * every.every, 3) == [
        T0 + k * every.every for k in (8, 9, 10)
    ]
    assert every.latest(T0 + 9 * every.every, T0 + 10.5 * every.every, 5) == [
        T0 + 9 * every.every,
        T0 + 10 * every.every,
    ]
    assert every.latest(T0 - HOUR, T0 - MINUTE, 5) == []


def test_a_one_shot_has_one_occurrence() -> None:
    once = OneShot(T0)

    assert upcoming(once, T0 - HOUR, 5) == [T0]
    assert next_after(once, T0) is None
    assert once.latest(T0, T0 + HOUR, 1) == [T0]


# -- the missed-runs plan --------------------------------------------------------


def plan(due_hours: float, now_hours: float, **kwargs: Any) -> tuple[Any, ...]:
    hourly = Interval(T0, HOUR)
    kwargs.setdefault("missed_runs", "one")
    kwargs.setdefault("max_catch_up", 100)
    result = plan_firing(hourly, T0 + due_hours * HOUR, T0 + now_hours * HOUR, **kwargs)
    fired = [((o - T0) / HOUR, catch_up) for o, catch_up in result.fire]
    assert result.next_fire_at is not None
    return fired, (result.next_fire_at - T0) / HOUR, result.missed


def test_a_late_occurrence_with_no_later_one_due_fires_normally() -> None:
    for policy in ("one", "skip", "all"):
        assert plan(3, 3.99, missed_runs=policy) == ([(3.0, False)], 4.0, False)


@pytest.mark.parametrize(
    ("policy", "max_catch_up", "fired"),
    [
        ("one", 100, [(9.0, True)]),
        ("skip", 100, []),
        ("all", 100, [(float(h), True) for h in range(10)]),
        ("all", 3, [(7.0, True), (8.0, True), (9.0, True)]),
    ],
)
def test_ten_missed_occurrences_follow_the_policy_and_the_cadence_resumes(
    policy: str, max_catch_up: int, fired: list[tuple[float, bool]]
) -> None:
    assert plan(0, 9.5, missed_runs=policy, max_catch_up=max_catch_up) == (
        fired,
        10.0,
        True,
    )


def test_an_occurrence_that_came_due_while_paused_counts_as_missed() -> None:
    resumed_at = T0 + 2.5 * HOUR

    assert plan(2, 2.6, missed_runs="skip", resumed_at=resumed_at) == ([], 3.0, True)
    assert plan(2, 2.6, resumed_at=resumed_at) == ([(2.0, True)], 3.0, True)
    assert plan(3, 3.1, missed_runs="skip", resumed_at=resumed_at) == (
        [(3.0, False)],
        4.0,
        False,
    )


def test_a_one_shot_missed_while_paused_fires_under_one_never_under_skip() -> None:
    once = OneShot(T0)
    resumed = T0 + HOUR

    one = plan_firing(
        once, T0, resumed, missed_runs="one", max_catch_up=5, resumed_at=resumed
    )
    skip = plan_firing(
        once, T0, resumed, missed_runs="skip", max_catch_up=5, resumed_at=resumed
    )

    assert (one.fire, one.next_fire_at) == ([(T0, True)], None)
    assert (skip.fire, skip.next_fire_at) == ([], None)


# -- declared rules --------------------------------------------------------------


def test_a_declared_rule_resolves_against_the_declaration_time() -> None:
    after = resolve(validate_rule(pb.ScheduleRule(after_ms=1500)), T0)
    every = resolve(validate_rule(pb.ScheduleRule(every_ms=60_000)), T0)
    cron = resolve(validate_rule(pb.ScheduleRule(cron="0  *  * * *")), T0 + MINUTE)

    assert (after.at_time, first_fire(after, T0)) == (
        T0 + datetime.timedelta(milliseconds=1500),
    ) * 2
    assert (every.start_at, first_fire(every, T0)) == (T0 + MINUTE, T0 + MINUTE)
    assert (cron.cron, first_fire(cron, T0 + MINUTE)) == ("0 * * * *", T0 + HOUR)
    past = resolve(validate_rule(pb.ScheduleRule(at=ts(T0 - HOUR))), T0)
    assert first_fire(past, T0) == T0 - HOUR  # fires once, right away
    started = resolve(
        validate_rule(
            pb.ScheduleRule(every_ms=3_600_000, start_at=ts(T0 - 2.5 * HOUR))
        ),
        T0,
    )
    assert first_fire(started, T0) == T0 + 0.5 * HOUR  # nothing before now


def test_the_same_rule_keeps_its_cadence_and_any_change_restarts_it() -> None:
    stored_every = RuleColumns("every", every_ms=60_000, start_at=T0)
    stored_after = RuleColumns("at", at_time=T0, after_ms=5000)
    stored_cron = RuleColumns("cron", cron="0 * * * *", time_zone="Europe/Berlin")

    def declared(**rule: Any) -> RuleColumns:
        return validate_rule(pb.ScheduleRule(**rule))

    assert same_rule(declared(every_ms=60_000), stored_every)
    assert same_rule(declared(every_ms=60_000, start_at=ts(T0)), stored_every)
    assert not same_rule(
        declared(every_ms=60_000, start_at=ts(T0 + HOUR)), stored_every
    )
    assert not same_rule(declared(every_ms=30_000), stored_every)
    assert same_rule(declared(after_ms=5000), stored_after)
    assert not same_rule(declared(after_ms=6000), stored_after)
    assert not same_rule(declared(at=ts(T0)), stored_after)
    assert same_rule(declared(cron="0 * * * *", time_zone="Europe/Berlin"), stored_cron)
    assert not same_rule(declared(cron="0 * * * *"), stored_cron)
    assert not same_rule(declared(every_ms=60_000), stored_cron)


def test_a_stored_rule_reads_back_as_the_rule_declared() -> None:
    rules = [
        pb.ScheduleRule(at=ts(T0)),
        pb.ScheduleRule(after_ms=2500),
        pb.ScheduleRule(every_ms=1000, start_at=ts(T0)),
        pb.ScheduleRule(cron="*/5 * * * *", time_zone="Asia/Tokyo"),
    ]

    assert [rule_proto(resolve(validate_rule(r), T0)) for r in rules] == rules
    assert isinstance(rule_of(resolve(validate_rule(rules[3]), T0)), CronRule)


def definition(**fields: Any) -> pb.ScheduleDefinition:
    fields.setdefault("topic", "reports.rollup")
    fields.setdefault("rule", pb.ScheduleRule(every_ms=60_000))
    return pb.ScheduleDefinition(**fields)


@pytest.mark.parametrize(
    ("rule", "name"),
    [
        (
            pb.ScheduleRule(cron="0 * * * *", time_zone="Europe/Berlin"),
            "reports.rollup@cron:0 * * * *@Europe/Berlin",
        ),
        (pb.ScheduleRule(cron="@daily"), "reports.rollup@cron:@daily@UTC"),
        (pb.ScheduleRule(every_ms=60_000), "reports.rollup@every:60000ms"),
        (
            pb.ScheduleRule(every_ms=60_000, start_at=ts(T0)),
            "reports.rollup@every:60000ms",
        ),
        (pb.ScheduleRule(after_ms=5000), "reports.rollup@after:5000ms"),
        (pb.ScheduleRule(at=ts(T0)), "reports.rollup@at:2031-01-06T09:00:00Z"),
    ],
)
def test_the_default_name_is_the_topic_and_the_rule(
    rule: pb.ScheduleRule, name: str
) -> None:
    assert validate_definition(definition(rule=rule), Config()).name == name


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "a\nb"}, "schedule name 'a\\nb' is invalid"),
        ({"name": "x" * 201}, "is invalid: use 1-200 letters"),
        ({"name": "trailing "}, "schedule name 'trailing ' is invalid"),
        ({"topic": "t" * 199}, "is longer than 200 characters; give the schedule"),
        ({"max_catch_up": 1001}, "max_catch_up 1001 is out of range 1..1000"),
        ({"max_catch_up": -1}, "max_catch_up -1 is out of range 1..1000"),
        ({"missed_runs": 7}, "missed_runs 7 is not known"),
        ({"payload": b"x" * 11}, "payload of 11 bytes is over the limit of 10"),
        ({"priority": 1001}, "priority 1001 is out of range -1000..1000"),
        ({"max_attempts": 1001}, "max_attempts 1001 is out of range 1..1000"),
        ({"timeout_ms": -1}, "timeout_ms -1 is out of range"),
        ({"rule": pb.ScheduleRule()}, "schedule rule is empty"),
        (
            {"rule": pb.ScheduleRule(at=ts(T0), start_at=ts(T0))},
            "start_at applies to every_ms rules only",
        ),
        ({"rule": pb.ScheduleRule(every_ms=0)}, "every_ms 0 is out of range 100.."),
        ({"rule": pb.ScheduleRule(every_ms=-5)}, "every_ms -5 is out of range 100.."),
        ({"rule": pb.ScheduleRule(every_ms=99)}, "every_ms 99 is out of range 100.."),
        (
            {"rule": pb.ScheduleRule(at=timestamp_pb2.Timestamp(seconds=-10))},
            "at 1969-12-31T23:59:50+00:00 is out of range",
        ),
    ],
)
def test_a_bad_definition_is_refused_naming_the_value(
    fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidArgument) as excinfo:
        validate_definition(definition(**fields), Config(max_payload_bytes=10))

    assert message in str(excinfo.value)


# -- the SDK's rule objects --------------------------------------------------------


def test_sdk_rules_travel_as_the_wire_rules_and_back() -> None:
    rules = [
        At(T0),
        After(datetime.timedelta(seconds=90)),
        Every(datetime.timedelta(minutes=5), start_at=T0),
        Every(datetime.timedelta(milliseconds=1500)),
        Cron("30 2 * * *", "America/New_York"),
    ]

    assert [rule_from_proto(rule_to_proto(rule)) for rule in rules] == rules
    assert rule_to_proto(Every(1.5)) == pb.ScheduleRule(every_ms=1500)
    assert rule_to_proto(After(0)) == pb.ScheduleRule(after_ms=0)
    assert Every(60) == Every(datetime.timedelta(minutes=1))
    assert rule_from_proto(pb.ScheduleRule()) is None


def test_missed_runs_are_named_as_everywhere_in_pulse() -> None:
    assert [str(policy) for policy in MissedRuns] == ["one", "skip", "all"]
    assert MissedRuns("skip") is MissedRuns.SKIP


@pytest.mark.parametrize(
    ("time_zone", "moment", "most"),
    [
        # Far from any offset change: the next match, nothing more.
        ("UTC", datetime.datetime(2027, 6, 1, 12, 0, 30, tzinfo=datetime.UTC), 2),
        ("Europe/Berlin", datetime.datetime(2027, 6, 1, 12, tzinfo=datetime.UTC), 2),
        # Within a day of one, every match of the shift is looked at.
        (
            "America/New_York",
            datetime.datetime(2027, 11, 7, 5, 30, tzinfo=datetime.UTC),
            2 * 60 + 2,
        ),
    ],
)
def test_a_minutely_cron_walks_only_the_matches_the_offset_shift_needs(
    time_zone: str, moment: datetime.datetime, most: int, monkeypatch: Any
) -> None:
    # Regression: every evaluation used to walk three hours of wall-clock
    # matches each way, which stalled the scheduler loop on minutely crons
    # long enough for other schedules to miss occurrences.
    rule = CronRule("* * * * *", time_zone)
    walked = itertools.count()
    original = croniter.get_next

    def counting(self: croniter, *args: Any, **kwargs: Any) -> Any:
        next(walked)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(croniter, "get_next", counting)

    following = rule.next_after(moment)

    assert following is not None
    assert following - moment <= datetime.timedelta(minutes=1)
    assert next(walked) <= most
