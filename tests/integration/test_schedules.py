"""Schedules through the SDK against an in-process pulsed whose scheduler
runs at the database's real clock: declaring, re-declaring, one-shots,
pause and resume, delete, preview, history, bad input and the audit log."""

from __future__ import annotations

import datetime
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from zoneinfo import ZoneInfo

import grpc
import pytest

from pulse_client import (
    After,
    At,
    Cron,
    Every,
    InvalidArgument,
    JobStatus,
    MissedRuns,
    Pulse,
    Schedule,
    ScheduleNotFound,
)
from pulse_client._proto.pulse.v1 import pulse_pb2 as pb
from pulse_client._proto.pulse.v1 import pulse_pb2_grpc
from tests.fixtures.databases import Sql
from tests.fixtures.servers import InProcessServer
from tests.fixtures.wire import RPC_TIMEOUT_SECONDS, assert_rpc_error

UTC = datetime.UTC
SECOND = datetime.timedelta(seconds=1)
NEW_YORK = ZoneInfo("America/New_York")


@pytest.fixture
def client(server: InProcessServer) -> Iterator[Pulse]:
    with Pulse(server.addr, timeout_seconds=RPC_TIMEOUT_SECONDS) as pulse:
        yield pulse


def wait_for(condition: Callable[[], Any], what: str, seconds: float = 10.0) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds}s waiting for {what}")
        time.sleep(0.02)


def scheduled_jobs(sql: Sql) -> list[tuple[Any, ...]]:
    """(occurrence, catch_up, job id) of every firing, oldest first."""
    return sql.all(
        "SELECT o.occurrence, o.catch_up, j.id FROM schedule_occurrences o"
        " JOIN jobs j ON j.id = o.job_id ORDER BY o.occurrence"
    )


def test_a_schedule_without_a_name_is_named_after_its_topic_and_rule(
    client: Pulse,
) -> None:
    schedule = client.schedule(
        "reports.rollup", {"scope": "all"}, Cron("0 * * * *", "Europe/Berlin")
    )

    assert schedule.name == "reports.rollup@cron:0 * * * *@Europe/Berlin"
    assert schedule.rule == Cron("0 * * * *", "Europe/Berlin")
    assert schedule.json() == {"scope": "all"}
    assert schedule.missed_runs == MissedRuns.ONE
    assert schedule.max_catch_up == 100
    assert schedule.max_attempts == 20
    assert schedule.next_fire_at is not None
    assert schedule.next_fire_at.minute == schedule.next_fire_at.second == 0
    assert schedule.created_at is not None
    assert schedule.next_fire_at - schedule.created_at <= datetime.timedelta(hours=1)
    assert (schedule.fired_count, schedule.last_job_id, schedule.paused) == (
        0,
        None,
        False,
    )
    assert client.get_schedule(schedule.name) == schedule


def test_declaring_the_same_schedule_again_updates_it_in_place_and_keeps_its_cadence(
    client: Pulse, sql: Sql
) -> None:
    first = client.schedule("t", {"v": 1}, Every(3600), name="hourly")

    for _ in range(100):
        again = client.schedule("t", {"v": 1}, Every(3600), name="hourly")

    assert again == first  # not even updated_at moved
    changed = client.schedule(
        "t", {"v": 2}, Every(3600), name="hourly", priority=5, timeout=30
    )
    assert changed.next_fire_at == first.next_fire_at
    assert (changed.json(), changed.priority, changed.timeout) == (
        {"v": 2},
        5,
        30 * SECOND,
    )
    assert changed.updated_at > first.updated_at  # type: ignore[operator]
    assert sql.scalar("SELECT count(*) FROM schedules") == 1


def test_concurrent_declarations_leave_one_schedule_with_one_cadence(
    client: Pulse, sql: Sql
) -> None:
    results: list[Schedule] = []
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def declare_many() -> None:
        start.wait()
        try:
            for _ in range(25):
                results.append(client.schedule("t", None, Every(60)))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=declare_many) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert errors == []
    assert len(results) == 200
    assert {(s.id, s.name, s.next_fire_at) for s in results} == {
        (results[0].id, "t@every:60000ms", results[0].next_fire_at)
    }
    assert sql.scalar("SELECT count(*) FROM schedules") == 1


def test_an_at_in_the_past_fires_once_right_away_and_stays_listed(
    client: Pulse, sql: Sql
) -> None:
    past = datetime.datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC)

    schedule = client.schedule("t", {"n": 1}, At(past), name="once")
    wait_for(lambda: scheduled_jobs(sql), "the firing")
    client.schedule("t", {"n": 1}, At(past), name="once")  # the app restarts
    time.sleep(0.3)

    ((occurrence, catch_up, job_id),) = scheduled_jobs(sql)
    assert (occurrence, catch_up) == (past, False)
    job = client.get_job(str(job_id))
    assert (job.topic, job.json(), job.status) == ("t", {"n": 1}, JobStatus.PENDING)
    fired = client.get_schedule("once")
    assert fired.next_fire_at is None
    assert (fired.fired_count, fired.last_occurrence) == (1, past)
    assert (fired.last_job_id, fired.last_job_status) == (
        str(job_id),
        JobStatus.PENDING,
    )
    assert [s.name for s in client.list_schedules()] == [schedule.name]


def test_an_after_is_not_pushed_back_by_declaring_it_again(client: Pulse) -> None:
    first = client.schedule("t", None, After(60), name="later")
    time.sleep(0.05)

    again = client.schedule(
        "t", None, After(datetime.timedelta(seconds=60)), name="later"
    )
    sooner = client.schedule("t", None, After(30), name="later")

    assert first.rule == After(60)
    assert again.next_fire_at == first.next_fire_at
    assert first.next_fire_at - first.created_at == 60 * SECOND  # type: ignore[operator]
    assert sooner.next_fire_at < first.next_fire_at  # type: ignore[operator]


def test_a_paused_schedule_fires_nothing_and_resuming_fires_one_catch_up(
    client: Pulse, sql: Sql
) -> None:
    client.schedule("t", None, Every(0.3), name="fast")
    wait_for(lambda: len(scheduled_jobs(sql)) >= 2, "two firings")

    paused = client.pause_schedule("fast")
    assert client.pause_schedule("fast") == paused  # pausing again changes nothing
    before = len(scheduled_jobs(sql))
    time.sleep(1.5)  # about five occurrences come due meanwhile
    assert len(scheduled_jobs(sql)) == before
    resumed = client.resume_schedule("fast")
    wait_for(lambda: len(scheduled_jobs(sql)) >= before + 3, "firings after resume")

    assert paused.paused and paused.paused_at is not None
    assert not resumed.paused and resumed.paused_at is None
    after_pause = scheduled_jobs(sql)[before:]
    assert [catch_up for _, catch_up, _ in after_pause[:2]] == [True, False]
    # The catch-up is the latest missed occurrence; then the cadence goes on.
    step = after_pause[1][0] - after_pause[0][0]
    assert step == datetime.timedelta(milliseconds=300)
    assert sum(catch_up for _, catch_up, _ in scheduled_jobs(sql)) == 1


def test_deleting_a_schedule_deletes_its_history_and_keeps_its_jobs(
    client: Pulse, sql: Sql
) -> None:
    client.schedule("t", None, At(datetime.datetime(2020, 1, 1, tzinfo=UTC)), name="d")
    wait_for(lambda: scheduled_jobs(sql), "the firing")

    client.delete_schedule("d")

    with pytest.raises(ScheduleNotFound, match="schedule 'd' not found"):
        client.get_schedule("d")
    with pytest.raises(ScheduleNotFound, match="schedule 'd' not found"):
        client.delete_schedule("d")
    assert sql.scalar("SELECT count(*) FROM schedule_occurrences") == 0
    assert sql.scalar("SELECT count(*) FROM jobs WHERE schedule_id IS NOT NULL") == 1


def test_preview_shows_the_next_fire_times_of_a_rule_or_a_stored_schedule(
    client: Pulse,
) -> None:
    start = datetime.datetime(2031, 3, 1, 12, 0, tzinfo=UTC)

    assert client.preview_schedule(Every(90, start_at=start), count=3) == [
        start,
        start + 90 * SECOND,
        start + 180 * SECOND,
    ]
    assert client.preview_schedule(At(start)) == [start]
    this_year = datetime.datetime.now(UTC).year
    assert client.preview_schedule(Cron("0 9 1 1 *", "Asia/Tokyo"), count=2) == [
        datetime.datetime(this_year + 1, 1, 1, 0, 0, tzinfo=UTC),
        datetime.datetime(this_year + 2, 1, 1, 0, 0, tzinfo=UTC),
    ]
    daily = client.schedule("t", None, Cron("30 2 * * *", "America/New_York"))
    times = client.preview_schedule(daily.name, count=400)
    assert times[0] == daily.next_fire_at
    local = [t.astimezone(NEW_YORK) for t in times]
    # One a day, the spring-forward days too: at 03:00, right after the jump.
    assert [(b.date() - a.date()).days for a, b in itertools.pairwise(local)] == [
        1
    ] * 399
    jumps = [t for t in local if (t.hour, t.minute) != (2, 30)]
    assert jumps
    assert all((t.month, t.weekday(), t.hour, t.minute) == (3, 6, 3, 0) for t in jumps)


def test_history_lists_firings_newest_first_with_their_job_status(
    client: Pulse, sql: Sql
) -> None:
    start = datetime.datetime.now(UTC)
    client.schedule("t", None, Every(0.2, start_at=start), name="h")
    wait_for(lambda: len(scheduled_jobs(sql)) >= 3, "three firings")
    client.pause_schedule("h")
    fired = scheduled_jobs(sql)
    newest_job = str(fired[-1][2])
    client.cancel(newest_job)
    sql.execute("UPDATE jobs SET last_error = 'boom' WHERE id = %s", (newest_job,))
    sql.execute("DELETE FROM jobs WHERE id = %s", (str(fired[0][2]),))  # pruned

    history = client.schedule_history("h")
    two = client.schedule_history("h", limit=2)

    assert [o.occurrence for o in history] == [o for o, _, _ in reversed(fired)]
    assert history[0].job_id == newest_job
    assert (history[0].job_status, history[0].last_error) == (
        JobStatus.CANCELED,
        "boom",
    )
    assert history[-1].job_status is None
    assert {o.job_status for o in history[1:-1]} == {JobStatus.PENDING}
    assert all(o.fired_at is not None for o in history)
    assert two == history[:2]
    schedule = client.get_schedule("h")
    assert (schedule.last_job_id, schedule.last_job_status) == (
        newest_job,
        JobStatus.CANCELED,
    )
    assert schedule.fired_count == len(fired)


def test_schedules_are_listed_by_name_a_page_at_a_time(
    client: Pulse, stub: pulse_pb2_grpc.PulseStub
) -> None:
    for name in ("c", "a", "b"):
        client.schedule("t", None, Every(60), name=name)
    client.schedule("other", None, Every(60), name="z")

    first = stub.ListSchedules(
        pb.ListSchedulesRequest(page_size=2), timeout=RPC_TIMEOUT_SECONDS
    )
    second = stub.ListSchedules(
        pb.ListSchedulesRequest(page_size=2, page_token=first.next_page_token),
        timeout=RPC_TIMEOUT_SECONDS,
    )

    assert [s.name for s in first.schedules] == ["a", "b"]
    assert [s.name for s in second.schedules] == ["c", "z"]
    assert second.next_page_token == ""
    assert [s.name for s in client.list_schedules(topic="t")] == ["a", "b", "c"]
    assert [s.name for s in client.list_schedules()] == ["a", "b", "c", "z"]


def test_schedule_changes_but_not_unchanged_declarations_are_audited(
    client: Pulse, sql: Sql
) -> None:
    client.schedule("t", None, Every(60), name="audited")
    client.schedule("t", None, Every(60), name="audited")  # unchanged: no row
    client.schedule("t", None, Every(120), name="audited")
    client.pause_schedule("audited")
    client.resume_schedule("audited")
    client.delete_schedule("audited")

    rows = sql.all("SELECT action, target, detail FROM audit_log ORDER BY id")

    assert [(action, target) for action, target, _ in rows] == [
        ("schedule.create", "audited"),
        ("schedule.update", "audited"),
        ("schedule.pause", "audited"),
        ("schedule.resume", "audited"),
        ("schedule.delete", "audited"),
    ]
    assert rows[1][2] == {"topic": "t", "rule": "every_ms 120000"}


# -- bad input ---------------------------------------------------------------------

# Each call, and the text its InvalidArgument must contain. One server serves
# them all: starting one per case would cost more than the cases.
BAD_CALLS: list[tuple[str, Callable[[Pulse], Any], str]] = [
    (
        "four fields",
        lambda c: c.schedule("t", None, Cron("0 * * *")),
        "cron '0 * * *' is not a five-field expression",
    ),
    (
        "out of range",
        lambda c: c.schedule("t", None, Cron("61 * * * *")),
        "cron '61 * * * *' is invalid",
    ),
    (
        "never fires",
        lambda c: c.schedule("t", None, Cron("0 0 30 2 *")),
        "cron '0 0 30 2 *' never fires",
    ),
    (
        "time zone",
        lambda c: c.schedule("t", None, Cron("0 * * * *", "Mars/Olympus")),
        "time_zone 'Mars/Olympus' is not an IANA time zone",
    ),
    (
        "name",
        lambda c: c.schedule("t", None, Every(60), name=" padded"),
        "schedule name ' padded' is invalid",
    ),
    (
        "topic",
        lambda c: c.schedule("bad topic", None, Every(60)),
        "topic 'bad topic' is invalid",
    ),
    (
        "missed runs",
        lambda c: c.schedule("t", None, Every(60), missed_runs="sometimes"),
        "missed_runs 'sometimes' is not one of one, skip, all",
    ),
    (
        "max catch-up",
        lambda c: c.schedule("t", None, Every(60), max_catch_up=1001),
        "max_catch_up 1001 is out of range 1..1000",
    ),
    (
        "not a rule",
        lambda c: c.schedule("t", None, "hourly"),
        "'hourly' is not a rule",
    ),
    (
        "preview count",
        lambda c: c.preview_schedule(Every(60), count=0),
        "count 0 is out of range",
    ),
    (
        "preview cron",
        lambda c: c.preview_schedule(Cron("0 0 * * 1#6")),
        "cron '0 0 * * 1#6' is invalid",
    ),
]


def test_bad_input_is_refused_by_name_and_changes_nothing(
    client: Pulse, sql: Sql
) -> None:
    for case, call, message in BAD_CALLS:
        with pytest.raises(InvalidArgument) as excinfo:
            call(client)
        assert message in str(excinfo.value), case

    assert sql.scalar("SELECT count(*) FROM schedules") == 0
    assert sql.scalar("SELECT count(*) FROM audit_log") == 0


@pytest.mark.parametrize(
    ("make_rule", "message"),
    [
        (lambda: Every(0), "Every interval of 0s is out of range"),
        (lambda: Every(-5), "Every interval of -5s is out of range"),
        (
            lambda: Every(0.0011),
            "Every interval of 0.0011s is out of range: it must be at least 100 ms",
        ),
        (
            lambda: Every(datetime.timedelta(microseconds=100)),
            "Every interval of 0.0001s is out of range",
        ),
        (lambda: After(-1), "After delay of -1s is out of range"),
        (
            lambda: At(datetime.datetime(2030, 1, 1)),
            "At time 2030-01-01T00:00:00 has no time zone; pass an aware datetime",
        ),
        (
            lambda: Every(60, start_at=datetime.datetime(2030, 1, 1)),
            "Every start_at 2030-01-01T00:00:00 has no time zone",
        ),
        (lambda: Cron(""), "cron expression '' is empty"),
    ],
    ids=[
        "zero",
        "negative",
        "under-the-minimum",
        "sub-millisecond",
        "after",
        "naive-at",
        "naive-start",
        "empty-cron",
    ],
)
def test_a_bad_rule_is_refused_when_made(
    make_rule: Callable[[], Any], message: str
) -> None:
    with pytest.raises(InvalidArgument) as excinfo:
        make_rule()

    assert message in str(excinfo.value)


def test_the_server_refuses_a_bad_rule_with_invalid_argument_and_its_code(
    stub: pulse_pb2_grpc.PulseStub, sql: Sql
) -> None:
    definition = pb.ScheduleDefinition(topic="t", rule=pb.ScheduleRule(every_ms=0))

    with pytest.raises(grpc.RpcError) as excinfo:
        stub.PutSchedule(
            pb.PutScheduleRequest(schedule=definition), timeout=RPC_TIMEOUT_SECONDS
        )

    assert_rpc_error(excinfo, grpc.StatusCode.INVALID_ARGUMENT, "invalid_argument")
    assert (excinfo.value.details() or "").startswith(
        "every_ms 0 is out of range 100.."
    )
    assert sql.scalar("SELECT count(*) FROM schedules") == 0


def test_an_unknown_name_is_schedule_not_found_everywhere(
    client: Pulse, stub: pulse_pb2_grpc.PulseStub, sql: Sql
) -> None:
    calls: list[Callable[[Pulse], Any]] = [
        lambda c: c.get_schedule("nope"),
        lambda c: c.pause_schedule("nope"),
        lambda c: c.resume_schedule("nope"),
        lambda c: c.delete_schedule("nope"),
        lambda c: c.schedule_history("nope"),
        lambda c: c.preview_schedule("nope"),
    ]
    for call in calls:
        with pytest.raises(ScheduleNotFound, match="schedule 'nope' not found"):
            call(client)
    with pytest.raises(grpc.RpcError) as excinfo:
        stub.GetSchedule(pb.GetScheduleRequest(name="nope"), timeout=5)

    assert_rpc_error(excinfo, grpc.StatusCode.NOT_FOUND, "schedule_not_found")
    assert sql.scalar("SELECT count(*) FROM audit_log") == 0
