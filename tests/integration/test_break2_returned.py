"""OUTCOME_RETURNED over the raw protocol: what a worker may give back.

A returned attempt is one the worker never started; the server puts the job
back to pending with its budget untouched. These tests check the edges of
that promise: a cancel requested meanwhile, reports that must match nothing,
how the job looks afterwards, how soon another worker gets it, and whether a
worker can keep a job forever out of its budget by returning it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from pulse_client._proto.pulse.v1 import pulse_pb2 as pb
from pulse_client._proto.pulse.v1 import pulse_pb2_grpc
from tests.fixtures.databases import Sql
from tests.fixtures.servers import InProcessServer
from tests.fixtures.streams import WorkerStream
from tests.fixtures.wire import RPC_TIMEOUT_SECONDS, get_job, submit

OpenStream = Callable[..., WorkerStream]
SETTLE_SECONDS = 0.5


@pytest.fixture
def server(start_inprocess: Callable[..., InProcessServer]) -> InProcessServer:
    # A slow safety poll: a returned job must reach an idle worker without it.
    return start_inprocess(poll_seconds=60, backoff_base_seconds=0.05)


def returned(assignment: pb.Assignment, error: str = "never started") -> pb.JobResult:
    return pb.JobResult(
        job_id=assignment.job_id,
        attempt=assignment.attempt,
        outcome=pb.OUTCOME_RETURNED,
        error=error,
    )


def drain(worker: WorkerStream) -> None:
    worker.send(pb.WorkerMessage(draining=True))
    worker.wait_drained()


def test_a_returned_job_whose_cancel_was_requested_ends_canceled(
    stub: pulse_pb2_grpc.PulseStub, open_stream: OpenStream, sql: Sql
) -> None:
    job = submit(stub, max_attempts=1)
    worker = open_stream(stub, "w-cancel", ["t"], 1)
    (assignment,) = worker.take_assignments(1)
    stub.CancelJob(pb.CancelJobRequest(id=job.id), timeout=RPC_TIMEOUT_SECONDS)
    drain(worker)

    worker.report([returned(assignment)])
    (ack,) = worker.take_acks(1)

    assert (ack.accepted, ack.status) == (True, pb.JOB_STATUS_CANCELED)
    stored = get_job(stub, job.id)
    assert stored.status == pb.JOB_STATUS_CANCELED
    assert stored.HasField("finished_at")
    assert stored.attempts_used == 0
    row = sql.job(job.id)
    assert row["lease_expires_at"] is None


def test_a_returned_job_is_pending_in_its_old_place_with_its_budget_whole(
    stub: pulse_pb2_grpc.PulseStub, open_stream: OpenStream, sql: Sql
) -> None:
    job = submit(stub, max_attempts=1)
    run_at = sql.job(job.id)["run_at"]
    worker = open_stream(stub, "w-back", ["t"], 1)
    (assignment,) = worker.take_assignments(1)
    drain(worker)

    worker.report([returned(assignment, "handed back")])
    (ack,) = worker.take_acks(1)

    assert (ack.accepted, ack.status) == (True, pb.JOB_STATUS_PENDING)
    stored = get_job(stub, job.id)
    assert (stored.status, stored.attempt, stored.attempts_used) == (
        pb.JOB_STATUS_PENDING,
        1,
        0,
    )
    assert not stored.HasField("finished_at")
    assert stored.last_error == "handed back"
    row = sql.job(job.id)
    assert (row["run_at"], row["lease_expires_at"]) == (run_at, None)
    # Neither a requeue (it is not finished) nor anything but a cancel.
    stats = stub.Stats(pb.StatsRequest(), timeout=RPC_TIMEOUT_SECONDS)
    assert [(t.topic, t.pending, t.running) for t in stats.topics] == [("t", 1, 0)]


def _row(sql: Sql, job_id: str) -> dict[str, object]:
    return sql.job(job_id)


def test_a_returned_report_for_a_finished_job_is_refused_and_changes_nothing(
    stub: pulse_pb2_grpc.PulseStub, open_stream: OpenStream, sql: Sql
) -> None:
    job = submit(stub)
    worker = open_stream(stub, "w-done", ["t"], 1)
    (assignment,) = worker.take_assignments(1)
    worker.succeed([assignment])
    assert worker.take_acks(1)[0].accepted
    before = _row(sql, job.id)
    drain(worker)

    worker.report([returned(assignment)])
    (ack,) = worker.take_acks(1)

    assert not ack.accepted
    assert _row(sql, job.id) == before


def test_a_returned_report_of_a_stale_attempt_or_another_worker_is_refused(
    stub: pulse_pb2_grpc.PulseStub, open_stream: OpenStream, sql: Sql
) -> None:
    job = submit(stub, max_attempts=5)
    first_worker = open_stream(stub, "w-first", ["t"], 1)
    (first,) = first_worker.take_assignments(1)
    first_worker.fail(first, "boom")
    assert first_worker.take_acks(1)[0].accepted
    second_worker = open_stream(stub, "w-second", ["t"], 1)
    (second,) = second_worker.take_assignments(1)
    assert (second.job_id, second.attempt) == (job.id, 2)
    before = _row(sql, job.id)
    drain(first_worker)

    # The stale attempt, and the current attempt from a worker that is not
    # holding it.
    first_worker.report([returned(first), returned(second)])
    acks = first_worker.take_acks(2)

    assert [a.accepted for a in acks] == [False, False]
    assert _row(sql, job.id) == before


def test_a_returned_job_goes_to_an_idle_worker_at_once(
    stub: pulse_pb2_grpc.PulseStub, open_stream: OpenStream, sql: Sql
) -> None:
    job = submit(stub)
    holder = open_stream(stub, "w-holder", ["t"], 1)
    (assignment,) = holder.take_assignments(1)
    # Opened once the job is out: its claim finds nothing and the group
    # goes idle until something wakes it (the safety poll is a minute).
    idle = open_stream(stub, "w-idle", ["t"], 1)
    time.sleep(SETTLE_SECONDS)
    drain(holder)

    holder.report([returned(assignment)])
    assert holder.take_acks(1)[0].accepted
    (again,) = idle.take_assignments(1, timeout_seconds=3)

    assert (again.job_id, again.attempt, again.attempts_used) == (job.id, 2, 1)


def test_a_worker_that_is_not_stopping_cannot_keep_returning_a_job(
    stub: pulse_pb2_grpc.PulseStub, open_stream: OpenStream, sql: Sql
) -> None:
    # A job with one attempt, run and "returned" again and again by a
    # buggy (or greedy) worker that never stops: each return gives the
    # budget back, so it would never be dead-lettered however often it
    # ran. OUTCOME_RETURNED is for jobs held when a worker stops; from a
    # stream that has not said draining it must be refused.
    job = submit(stub, max_attempts=1)
    worker = open_stream(stub, "w-greedy", ["t"], 1)
    (assignment,) = worker.take_assignments(1)

    worker.report([returned(assignment)], credits=1)
    (ack,) = worker.take_acks(1)

    assert not ack.accepted
    row = sql.job(job.id)
    assert (row["status"], row["attempt"], row["attempt_base"]) == ("running", 1, 0)


def test_a_job_returned_over_and_over_by_a_live_worker_runs_out_of_budget(
    stub: pulse_pb2_grpc.PulseStub, open_stream: OpenStream, sql: Sql
) -> None:
    # The same abuse seen from the job's side: ten rounds of claim and
    # return by a worker that keeps asking for more.
    job = submit(stub, max_attempts=1)
    worker = open_stream(stub, "w-loop", ["t"], 1)
    for _ in range(10):
        try:
            (assignment,) = worker.take_assignments(1, timeout_seconds=2)
        except AssertionError:
            break
        worker.report([returned(assignment)], credits=1)
        worker.take_acks(1)

    row = sql.job(job.id)
    assert row["attempt"] == 1, f"claimed {row['attempt']} times on a budget of 1"
    assert row["attempt"] - row["attempt_base"] == 1


def test_a_stream_opened_while_stopping_returns_what_its_hello_carries(
    stub: pulse_pb2_grpc.PulseStub, open_stream: OpenStream, sql: Sql
) -> None:
    # The SDK sends unacknowledged results again in the hello of its next
    # stream, with draining in the same message when it is stopping: those
    # returns are a stopping worker's and must be taken.
    job = submit(stub, max_attempts=1)
    first = open_stream(stub, "w-again", ["t"], 1)
    (assignment,) = first.take_assignments(1)
    first.close()

    again = open_stream(
        stub,
        "w-again",
        ["t"],
        0,
        first=pb.WorkerMessage(
            hello=pb.Hello(worker_id="w-again", topics=["t"], credits=0),
            results=[returned(assignment)],
            draining=True,
        ),
    )
    (ack,) = again.take_acks(1)

    assert (ack.accepted, ack.status) == (True, pb.JOB_STATUS_PENDING)
    row = sql.job(job.id)
    assert (row["status"], row["attempt"] - row["attempt_base"]) == ("pending", 0)


def test_a_job_returned_on_one_replica_goes_to_an_idle_worker_of_another_at_once(
    start_inprocess: Callable[..., InProcessServer],
    open_stream: OpenStream,
    sql: Sql,
) -> None:
    first = start_inprocess(poll_seconds=60).stub()
    second = start_inprocess(poll_seconds=60).stub()
    job = submit(first)
    holder = open_stream(first, "w-holder-1", ["t"], 1)
    (assignment,) = holder.take_assignments(1)
    idle = open_stream(second, "w-idle-2", ["t"], 1)
    time.sleep(SETTLE_SECONDS)
    drain(holder)

    holder.report([returned(assignment)])
    assert holder.take_acks(1)[0].accepted
    (again,) = idle.take_assignments(1, timeout_seconds=3)

    assert (again.job_id, again.attempt) == (job.id, 2)
