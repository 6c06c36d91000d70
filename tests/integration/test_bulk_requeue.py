"""RequeueJobs: every matching dead-lettered or canceled job back to pending,
a batch per transaction, with progress, one audit entry, and wake-ups."""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import Callable, Iterator

import pytest

from pulse_client import InvalidArgument, NewJob, Pulse, RequeueProgress
from pulse_client._proto.pulse.v1 import pulse_pb2 as pb
from pulsed.jobs import REQUEUE_BATCH_SIZE
from tests.fixtures.databases import Sql
from tests.fixtures.servers import InProcessServer
from tests.fixtures.streams import WorkerStream
from tests.fixtures.wire import RPC_TIMEOUT_SECONDS

OpenStream = Callable[..., WorkerStream]


@pytest.fixture
def client(server: InProcessServer) -> Iterator[Pulse]:
    with Pulse(server.addr, timeout_seconds=RPC_TIMEOUT_SECONDS) as pulse:
        yield pulse


def finish(
    sql: Sql,
    job_ids: list[str],
    status: str = "dead_lettered",
    error: str = "boom",
    *,
    finished: str = "now()",
) -> None:
    """Arrange jobs as their last attempt left them: finished, attempt 3."""
    sql.execute(
        f"UPDATE jobs SET status = %(status)s, attempt = 3, finished_at = {finished},"
        " last_error = %(error)s WHERE id = ANY(%(ids)s::uuid[])",
        {"status": status, "error": error, "ids": job_ids},
    )


def statuses(sql: Sql, job_ids: list[str]) -> dict[str, int]:
    rows = sql.all(
        "SELECT status, count(*) FROM jobs WHERE id = ANY(%s::uuid[]) GROUP BY 1",
        (job_ids,),
    )
    return dict(rows)


def requeue_entries(sql: Sql) -> list[tuple[str, str, dict[str, object]]]:
    rows = sql.all(
        "SELECT username, target, detail::text FROM audit_log"
        " WHERE action = 'jobs.requeue' ORDER BY id"
    )
    return [(user, target, json.loads(detail)) for user, target, detail in rows]


def test_every_matching_job_is_requeued_in_batches_beyond_one_page(
    client: Pulse, sql: Sql
) -> None:
    ids = client.enqueue_many([NewJob("bulk") for _ in range(2500)])
    finish(sql, ids)
    seen: list[RequeueProgress] = []

    last = client.requeue_jobs(status="dead_lettered", on_progress=seen.append)

    assert last == RequeueProgress(matched=2500, requeued=2500, done=True)
    assert seen[0] == RequeueProgress(2500, 0, False)
    assert [p.requeued for p in seen[1:-1]] == list(
        range(REQUEUE_BATCH_SIZE, 2501, REQUEUE_BATCH_SIZE)
    )
    assert seen[-1] == last
    assert statuses(sql, ids) == {"pending": 2500}
    row = sql.job(ids[0])
    assert row["attempt"] == 3 and row["attempt_base"] == 3
    assert row["finished_at"] is None and row["worker_id"] is None
    assert requeue_entries(sql) == [
        (
            "anonymous",
            "*",
            {"statuses": ["dead_lettered"], "matched": 2500, "requeued": 2500},
        )
    ]


def test_a_dry_run_counts_and_changes_nothing(client: Pulse, sql: Sql) -> None:
    ids = client.enqueue_many([NewJob("t") for _ in range(3)])
    finish(sql, ids[:2])
    seen: list[RequeueProgress] = []

    last = client.requeue_jobs(dry_run=True, on_progress=seen.append)

    assert seen == [RequeueProgress(matched=2, requeued=0, done=True)]
    assert last == seen[0]
    assert statuses(sql, ids) == {"dead_lettered": 2, "pending": 1}
    assert requeue_entries(sql) == []


def test_without_a_status_both_dead_lettered_and_canceled_jobs_are_requeued(
    client: Pulse, sql: Sql
) -> None:
    ids = client.enqueue_many([NewJob("t") for _ in range(5)])
    finish(sql, ids[:1], "dead_lettered")
    finish(sql, ids[1:2], "canceled")
    finish(sql, ids[2:3], "completed")
    sql.execute("UPDATE jobs SET status = 'running' WHERE id = %s", (ids[3],))

    last = client.requeue_jobs()

    assert last.requeued == 2
    assert [sql.job(i)["status"] for i in ids] == [
        "pending",
        "pending",
        "completed",
        "running",
        "pending",
    ]


def test_the_filter_selects_by_topic_error_text_signature_and_creation_time(
    client: Pulse, sql: Sql
) -> None:
    mail = client.enqueue_many([NewJob("mail") for _ in range(4)])
    sms = client.enqueue_many([NewJob("sms") for _ in range(2)])
    finish(sql, mail[:2], error="SMTP 550 for 'a@x.org'")
    finish(sql, mail[2:], error="Timeout after 30s")
    finish(sql, sms, error="SMTP 550 for 'b@y.org'")
    sql.execute(
        "UPDATE jobs SET created_at = now() - interval '1 day' WHERE id = %s",
        (mail[0],),
    )

    by_topic = client.requeue_jobs(topic="sms", dry_run=True)
    by_text = client.requeue_jobs(error_contains="smtp 550", dry_run=True)
    by_signature = client.requeue_jobs(
        error_signature="SMTP <num> for <str>", topic="mail", dry_run=True
    )
    since = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1)
    recent = client.requeue_jobs(
        topic="mail", error_contains="SMTP", since=since, dry_run=True
    )

    assert by_topic.matched == 2
    assert by_text.matched == 4
    assert by_signature.matched == 2
    assert recent.matched == 1

    client.requeue_jobs(topic="mail", error_contains="smtp", since=since)

    assert [sql.job(i)["status"] for i in mail] == [
        "dead_lettered",
        "pending",
        "dead_lettered",
        "dead_lettered",
    ]
    ((_, target, detail),) = requeue_entries(sql)
    assert target == "mail"
    assert detail["error_contains"] == "smtp"
    assert detail["created_after"].startswith(str(since.date()))


def test_a_status_that_cannot_be_requeued_is_refused_by_name(
    client: Pulse, sql: Sql
) -> None:
    ids = client.enqueue_many([NewJob("t")])
    finish(sql, ids)

    with pytest.raises(InvalidArgument, match="'completed'"):
        client.requeue_jobs(status=["dead_lettered", "completed"])

    assert statuses(sql, ids) == {"dead_lettered": 1}
    assert requeue_entries(sql) == []


def test_a_job_that_finished_after_the_requeue_began_is_left_alone(
    client: Pulse, sql: Sql
) -> None:
    # A job the requeue itself sent back that fails again while it runs has
    # a finished_at after the start: it must not be requeued a second time.
    ids = client.enqueue_many([NewJob("t") for _ in range(2)])
    finish(sql, ids[:1])
    finish(sql, ids[1:], finished="now() + interval '1 hour'")

    last = client.requeue_jobs()

    assert last == RequeueProgress(matched=1, requeued=1, done=True)
    assert [sql.job(i)["status"] for i in ids] == ["pending", "dead_lettered"]


def test_requeued_jobs_are_dispatched_with_a_fresh_budget(
    client: Pulse, sql: Sql, server: InProcessServer, open_stream: OpenStream
) -> None:
    ids = client.enqueue_many([NewJob("t") for _ in range(3)])
    finish(sql, ids)
    worker = open_stream(server.stub(), "worker-a", ["t"], 10)

    client.requeue_jobs()

    assignments = worker.take_assignments(3)
    assert sorted(a.job_id for a in assignments) == sorted(ids)
    assert {a.attempt for a in assignments} == {4}
    assert {client.get_job(i).attempts_used for i in ids} == {1}


def test_a_requeue_matching_nothing_ends_at_once_and_is_audited(
    client: Pulse, sql: Sql
) -> None:
    seen: list[RequeueProgress] = []

    last = client.requeue_jobs(topic="none", on_progress=seen.append)

    assert seen == [RequeueProgress(0, 0, False), RequeueProgress(0, 0, True)]
    assert last.done
    assert requeue_entries(sql) == [
        (
            "anonymous",
            "none",
            {
                "statuses": ["dead_lettered", "canceled"],
                "topic": "none",
                "matched": 0,
                "requeued": 0,
            },
        )
    ]


def test_a_caller_that_goes_away_midway_still_leaves_an_audit_entry(
    client: Pulse, sql: Sql, server: InProcessServer
) -> None:
    ids = client.enqueue_many([NewJob("t") for _ in range(10 * REQUEUE_BATCH_SIZE)])
    finish(sql, ids)
    call = server.stub().RequeueJobs(
        pb.RequeueJobsRequest(filter=pb.JobFilter()), timeout=RPC_TIMEOUT_SECONDS
    )

    first, second = next(call), next(call)
    call.cancel()

    assert (first.matched, first.requeued) == (len(ids), 0)
    assert second.requeued == REQUEUE_BATCH_SIZE
    deadline = time.monotonic() + 5
    while not requeue_entries(sql):
        assert time.monotonic() < deadline, "no audit entry after the cancel"
        time.sleep(0.05)
    ((_, _, detail),) = requeue_entries(sql)
    assert detail["interrupted"] is True
    assert detail["requeued"] == statuses(sql, ids).get("pending")
    assert 0 < detail["requeued"] < len(ids)
