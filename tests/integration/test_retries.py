"""Failures retry with base × n² backoff, then dead-letter; requeue starts over."""

from __future__ import annotations

import datetime
import itertools
from collections.abc import Callable

from pulse_client._proto.pulse.v1 import pulse_pb2 as pb
from tests.fixtures.databases import Sql
from tests.fixtures.servers import InProcessServer
from tests.fixtures.streams import WorkerStream
from tests.fixtures.wire import RPC_TIMEOUT_SECONDS, submit

OpenStream = Callable[..., WorkerStream]
BACKOFF_BASE_SECONDS = 0.3
# Jitter adds up to 10%; promotion and dispatch add a little latency.
SLACK_SECONDS = 0.5


def fail_every_attempt(
    worker: WorkerStream, sql: Sql, job_id: str, attempts: int, first_error: int = 1
) -> tuple[list[pb.Assignment], list[datetime.datetime], list[pb.ResultAck]]:
    """Run and fail ``attempts`` attempts; their assignments, the database's
    started_at of each, and the acks."""
    assignments, started, acks = [], [], []
    for number in range(first_error, first_error + attempts):
        (assignment,) = worker.take_assignments(1, timeout_seconds=15)
        # started_at is set by the claim and kept until the next claim.
        started.append(sql.job(job_id)["started_at"])
        worker.fail(assignment, f"boom {number}", credits=1)
        acks += worker.take_acks(1)
        assignments.append(assignment)
    return assignments, started, acks


def gaps_seconds(started: list[datetime.datetime]) -> list[float]:
    return [(b - a).total_seconds() for a, b in itertools.pairwise(started)]


def assert_backoff(gaps: list[float], base: float) -> None:
    for n, gap in enumerate(gaps, start=1):
        expected = base * n * n
        assert 0.9 * expected <= gap <= expected * 1.1 + SLACK_SECONDS, (
            f"gap after attempt {n} was {gap:.3f}s, expected about {expected:.3f}s"
        )


def test_failed_attempts_back_off_by_n_squared_then_dead_letter_with_the_last_error(
    start_inprocess: Callable[..., InProcessServer], sql: Sql, open_stream: OpenStream
) -> None:
    stub = start_inprocess(backoff_base_seconds=BACKOFF_BASE_SECONDS).stub()
    job = submit(stub, max_attempts=3)
    worker = open_stream(stub, "w", ["t"], 1)

    assignments, started, acks = fail_every_attempt(worker, sql, job.id, 3)

    assert [(a.attempt, a.attempts_used, a.max_attempts) for a in assignments] == [
        (1, 1, 3),
        (2, 2, 3),
        (3, 3, 3),
    ]
    assert [(a.accepted, a.status) for a in acks] == [
        (True, pb.JOB_STATUS_RETRYING),
        (True, pb.JOB_STATUS_RETRYING),
        (True, pb.JOB_STATUS_DEAD_LETTERED),
    ]
    assert_backoff(gaps_seconds(started), BACKOFF_BASE_SECONDS)
    row = sql.job(job.id)
    assert (row["status"], row["attempt"], row["last_error"]) == (
        "dead_lettered",
        3,
        "boom 3",
    )
    assert row["finished_at"] is not None and row["lease_expires_at"] is None


def test_requeue_of_a_dead_job_gives_three_more_attempts_with_backoff_from_the_start(
    start_inprocess: Callable[..., InProcessServer], sql: Sql, open_stream: OpenStream
) -> None:
    stub = start_inprocess(backoff_base_seconds=BACKOFF_BASE_SECONDS).stub()
    job = submit(stub, max_attempts=3)
    worker = open_stream(stub, "w", ["t"], 1)
    fail_every_attempt(worker, sql, job.id, 3)

    stub.RequeueJob(pb.RequeueJobRequest(id=job.id), timeout=RPC_TIMEOUT_SECONDS)
    assignments, started, acks = fail_every_attempt(
        worker, sql, job.id, 3, first_error=4
    )

    assert [(a.attempt, a.attempts_used) for a in assignments] == [
        (4, 1),
        (5, 2),
        (6, 3),
    ]
    assert [a.status for a in acks] == [
        pb.JOB_STATUS_RETRYING,
        pb.JOB_STATUS_RETRYING,
        pb.JOB_STATUS_DEAD_LETTERED,
    ]
    assert_backoff(gaps_seconds(started), BACKOFF_BASE_SECONDS)
    row = sql.job(job.id)
    assert (row["status"], row["attempt"], row["attempt_base"], row["last_error"]) == (
        "dead_lettered",
        6,
        3,
        "boom 6",
    )


def test_a_requested_retry_delay_replaces_the_backoff(
    start_inprocess: Callable[..., InProcessServer], sql: Sql, open_stream: OpenStream
) -> None:
    stub = start_inprocess(backoff_base_seconds=60).stub()
    job = submit(stub, max_attempts=2)
    worker = open_stream(stub, "w", ["t"], 1)
    (first,) = worker.take_assignments(1)
    started = [sql.job(job.id)["started_at"]]

    worker.report(
        [
            pb.JobResult(
                job_id=job.id,
                attempt=first.attempt,
                outcome=pb.OUTCOME_FAILED,
                error="try again soon",
                retry_delay_ms=200,
            )
        ],
        credits=1,
    )
    (second,) = worker.take_assignments(1, timeout_seconds=5)
    started.append(sql.job(job.id)["started_at"])

    assert second.attempt == 2
    assert 0.2 <= gaps_seconds(started)[0] <= 0.2 + SLACK_SECONDS


def test_the_backoff_never_exceeds_its_ceiling(
    start_inprocess: Callable[..., InProcessServer], sql: Sql, open_stream: OpenStream
) -> None:
    stub = start_inprocess(backoff_base_seconds=100, backoff_ceiling_seconds=0.3).stub()
    job = submit(stub, max_attempts=3)
    worker = open_stream(stub, "w", ["t"], 1)

    _, started, _ = fail_every_attempt(worker, sql, job.id, 3)

    for gap in gaps_seconds(started):
        assert 0.3 <= gap <= 0.3 + SLACK_SECONDS


def test_a_job_whose_worker_goes_silent_every_time_ends_dead_lettered(
    start_inprocess: Callable[..., InProcessServer], sql: Sql, open_stream: OpenStream
) -> None:
    stub = start_inprocess(
        lease_seconds=0.5, watchdog_seconds=0.1, backoff_base_seconds=0.1
    ).stub()
    job = submit(stub, max_attempts=2)

    # The worker takes each attempt and never heartbeats nor reports.
    worker = open_stream(stub, "silent", ["t"], 2)
    assignments = worker.take_assignments(2, timeout_seconds=5)

    row = sql.wait_for_status(job.id, "dead_lettered")
    assert [a.attempt for a in assignments] == [1, 2]
    assert row["attempt"] == 2
    assert row["last_error"] == "lease expired (attempt 2, worker silent)"
