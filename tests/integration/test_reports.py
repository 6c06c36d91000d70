"""Operator reports computed in the database: dead letters grouped by error
signature, and completed and dead-lettered jobs per minute."""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest

from pulse_client import InvalidArgument, NewJob, Pulse
from pulse_client._proto.pulse.v1 import pulse_pb2 as pb
from pulse_client._proto.pulse.v1 import pulse_pb2_grpc
from pulsed.jobs import ERROR_SIGNATURE
from pulsed.reports import THROUGHPUT
from tests.fixtures.databases import Sql
from tests.fixtures.servers import InProcessServer
from tests.fixtures.streams import WorkerStream
from tests.fixtures.wire import RPC_TIMEOUT_SECONDS, assert_rpc_error

OpenStream = Callable[..., WorkerStream]


@pytest.fixture
def client(server: InProcessServer) -> Iterator[Pulse]:
    with Pulse(server.addr, timeout_seconds=RPC_TIMEOUT_SECONDS) as pulse:
        yield pulse


def dead_letter(
    sql: Sql, job_ids: list[str], errors: list[str], *, finished: str = "now()"
) -> None:
    """Arrange jobs as the result writer leaves a job that failed for good."""
    sql.execute(
        "UPDATE jobs SET status = 'dead_lettered', attempt = attempt + 1,"
        f" finished_at = {finished}, last_error = e.error"
        " FROM unnest(%(ids)s::uuid[], %(errors)s::text[]) AS e(id, error)"
        " WHERE jobs.id = e.id",
        {"ids": job_ids, "errors": errors},
    )


def signature(sql: Sql, error: str) -> str:
    return str(
        sql.scalar(
            f"SELECT {ERROR_SIGNATURE} FROM (VALUES (%(e)s)) AS v(last_error)",
            {"e": error},
        )
    )


def fail_permanently(
    stub: pulse_pb2_grpc.PulseStub,
    open_stream: OpenStream,
    topic: str,
    errors: list[str],
) -> list[str]:
    """Claim one job of ``topic`` per error and fail each for good with it."""
    worker = open_stream(stub, f"worker-{topic}", [topic], len(errors))
    assignments = worker.take_assignments(len(errors))
    for assignment, error in zip(assignments, errors, strict=True):
        worker.fail(assignment, error, permanently=True)
    worker.take_acks(len(errors))
    return [a.job_id for a in assignments]


# -- the error signature ---------------------------------------------------


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        ("SMTP 550 for 'a@example.com'", "SMTP <num> for <str>"),
        ('KeyError: "user_id" in row 17', "KeyError: <str> in row <num>"),
        (
            "job 0189c6a4-7d6e-7c3a-9b1e-3f2d1c0b9a8e not found",
            "job <uuid> not found",
        ),
        ("object at 0x7f3a2b1c freed twice", "object at <hex> freed twice"),
        (
            "commit 9fceb02d0ae598e95dc970b74767f19372d61af8 is bad",
            "commit <hex> is bad",
        ),
        (
            "timed out after 2.5s\nTraceback (most recent call last):",
            "timed out after <num>s",
        ),
        ("  padded  \r\nsecond", "padded"),
        ("a facade of deadbeefcafe words", "a facade of deadbeefcafe words"),
        ("", ""),
    ],
)
def test_the_error_signature_keeps_the_first_line_with_placeholders_for_values(
    sql: Sql, error: str, expected: str
) -> None:
    assert signature(sql, error) == expected


# -- dead-letter groups ------------------------------------------------------


def test_dead_letters_are_grouped_by_topic_and_error_signature(
    client: Pulse, stub: pulse_pb2_grpc.PulseStub, open_stream: OpenStream
) -> None:
    client.enqueue_many([NewJob("mail") for _ in range(3)] + [NewJob("sms")])
    mail = fail_permanently(
        stub,
        open_stream,
        "mail",
        ["SMTP 550 for 'a@x.org'", "SMTP 550 for 'b@y.org'", "timeout after 30s"],
    )
    (sms,) = fail_permanently(stub, open_stream, "sms", ["SMTP 550 for 'c@z.org'"])

    groups = client.dead_letter_groups()

    summary = [(g.topic, g.error_signature, g.count) for g in groups]
    assert summary[0] == ("mail", "SMTP <num> for <str>", 2)
    assert sorted(summary[1:]) == [
        ("mail", "timeout after <num>s", 1),
        ("sms", "SMTP <num> for <str>", 1),
    ]
    first = groups[0]
    assert first.sample_job_id in mail[:2]
    assert first.sample_error in ("SMTP 550 for 'a@x.org'", "SMTP 550 for 'b@y.org'")
    assert first.first_seen is not None and first.last_seen is not None
    assert first.first_seen <= first.last_seen
    (sms_group,) = [g for g in groups if g.topic == "sms"]
    assert sms_group.sample_job_id == sms
    assert sms_group.sample_error == "SMTP 550 for 'c@z.org'"


def test_groups_count_every_dead_letter_not_one_page(client: Pulse, sql: Sql) -> None:
    ids = client.enqueue_many([NewJob("bulk") for _ in range(1500)])
    errors = [f"row {i} of batch {i * 7} failed" for i in range(1499)]
    dead_letter(sql, ids, [*errors, "other failure"])

    groups = client.dead_letter_groups()

    assert [(g.error_signature, g.count) for g in groups] == [
        ("row <num> of batch <num> failed", 1499),
        ("other failure", 1),
    ]
    assert groups[1].sample_job_id == ids[-1]
    assert groups[1].first_seen == groups[1].last_seen


def test_groups_are_filtered_by_topic_and_limited_largest_first(
    client: Pulse, sql: Sql
) -> None:
    a = client.enqueue_many([NewJob("a") for _ in range(6)])
    b = client.enqueue_many([NewJob("b")])
    dead_letter(sql, a, ["x 1", "x 2", "x 3", "y 1", "y 2", "z"])
    dead_letter(sql, b, ["x 1"])

    assert [
        (g.topic, g.error_signature, g.count)
        for g in client.dead_letter_groups(limit=2)
    ] == [("a", "x <num>", 3), ("a", "y <num>", 2)]
    assert [(g.topic, g.count) for g in client.dead_letter_groups(topic="b")] == [
        ("b", 1)
    ]
    assert client.dead_letter_groups(topic="nothing") == []


def test_jobs_that_are_not_dead_lettered_form_no_group(client: Pulse, sql: Sql) -> None:
    ids = client.enqueue_many([NewJob("t") for _ in range(2)])
    sql.execute(
        "UPDATE jobs SET status = 'canceled', finished_at = now(), last_error = 'x'"
        " WHERE id = %s",
        (ids[0],),
    )

    assert client.dead_letter_groups() == []


def test_a_group_limit_out_of_range_is_refused(
    stub: pulse_pb2_grpc.PulseStub,
) -> None:
    with pytest.raises(grpc.RpcError) as excinfo:
        stub.ListDeadLetterGroups(
            pb.ListDeadLetterGroupsRequest(limit=1001), timeout=RPC_TIMEOUT_SECONDS
        )
    assert_rpc_error(excinfo, grpc.StatusCode.INVALID_ARGUMENT, "invalid_argument")
    assert "1001" in (excinfo.value.details() or "")


# -- throughput ------------------------------------------------------------------


def test_throughput_counts_each_minute_of_the_window_oldest_first(
    client: Pulse, sql: Sql
) -> None:
    ids = client.enqueue_many([NewJob("t") for _ in range(7)])
    # Finished 5 minutes before the current one, 10 s into that minute.
    five_ago = "date_trunc('minute', now()) - interval '5 minutes' + interval '10 s'"
    sql.execute(
        "UPDATE jobs SET status = 'completed', finished_at = "
        f"{five_ago} WHERE id = ANY(%s::uuid[])",
        (ids[:3],),
    )
    dead_letter(sql, ids[3:4], ["boom"], finished=five_ago)
    dead_letter(sql, ids[4:5], ["boom"], finished="now() - interval '2 hours'")
    sql.execute(
        "UPDATE jobs SET status = 'canceled', finished_at = now() WHERE id = %s",
        (ids[5],),
    )
    minute = sql.scalar(f"SELECT date_trunc('minute', {five_ago})")

    now_minute = "SELECT date_trunc('minute', now())"
    before = sql.scalar(now_minute)
    buckets = client.throughput(minutes=10)
    after = sql.scalar(now_minute)

    assert len(buckets) == 10
    assert buckets[-1].minute in (before, after)
    assert [b.minute for b in buckets] == [
        buckets[-1].minute - datetime.timedelta(minutes=9 - i)  # type: ignore[operator]
        for i in range(10)
    ]
    counts = {b.minute: (b.completed, b.dead_lettered) for b in buckets}
    assert counts[minute] == (3, 1)
    assert sum(c + d for c, d in counts.values()) == 4


def test_throughput_defaults_to_the_last_hour(client: Pulse) -> None:
    buckets = client.throughput()

    assert len(buckets) == 60
    assert all(b.completed == 0 and b.dead_lettered == 0 for b in buckets)


def test_throughput_minutes_out_of_range_are_refused(
    client: Pulse, stub: pulse_pb2_grpc.PulseStub
) -> None:
    with pytest.raises(InvalidArgument):
        client.throughput(minutes=1441)
    with pytest.raises(grpc.RpcError) as excinfo:
        stub.Throughput(pb.ThroughputRequest(minutes=-1), timeout=RPC_TIMEOUT_SECONDS)
    assert_rpc_error(excinfo, grpc.StatusCode.INVALID_ARGUMENT, "invalid_argument")


def test_throughput_reads_only_the_window_of_the_finished_index(sql: Sql) -> None:
    # Given a day of finished jobs and a few in the last minutes
    sql.execute(
        "INSERT INTO jobs (id, topic, status, max_attempts, finished_at)"
        " SELECT gen_random_uuid(), 't', 'completed', 1,"
        "        now() - interval '2 hours' - g * interval '1 second'"
        " FROM generate_series(1, 50000) AS g"
    )
    sql.execute(
        "INSERT INTO jobs (id, topic, status, max_attempts, finished_at)"
        " SELECT gen_random_uuid(), 't', 'dead_lettered', 1, now()"
        " FROM generate_series(1, 20)"
    )
    sql.execute("ANALYZE jobs")

    plan = explain(sql, THROUGHPUT, {"minutes": 60})

    assert "jobs_finished_idx" in str(plan)
    assert buffers(plan) < 100, plan


def explain(sql: Sql, statement: str, params: dict[str, Any]) -> dict[str, Any]:
    (result,) = sql.one("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + statement, params)
    plan: dict[str, Any] = result[0]["Plan"]
    return plan


def buffers(node: dict[str, Any]) -> int:
    """Shared buffers a plan node touched, its children included."""
    return int(node.get("Shared Hit Blocks", 0)) + int(
        node.get("Shared Read Blocks", 0)
    )
