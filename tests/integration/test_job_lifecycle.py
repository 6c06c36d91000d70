"""Operator changes to one job: CancelJob and RequeueJob, legal and not."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest

from pulse_client._proto.pulse.v1 import pulse_pb2 as pb
from pulse_client._proto.pulse.v1 import pulse_pb2_grpc
from tests.fixtures.databases import Sql
from tests.fixtures.streams import WorkerStream
from tests.fixtures.wire import (
    RPC_TIMEOUT_SECONDS,
    assert_rpc_error,
    details,
    get_job,
    submit,
    unknown_id,
)

OpenStream = Callable[..., WorkerStream]


def cancel(stub: pulse_pb2_grpc.PulseStub, job_id: str) -> pb.Job:
    return stub.CancelJob(pb.CancelJobRequest(id=job_id), timeout=RPC_TIMEOUT_SECONDS)


def requeue(stub: pulse_pb2_grpc.PulseStub, job_id: str) -> pb.Job:
    return stub.RequeueJob(pb.RequeueJobRequest(id=job_id), timeout=RPC_TIMEOUT_SECONDS)


def claim_one(
    stub: pulse_pb2_grpc.PulseStub, open_stream: OpenStream, topic: str = "t"
) -> tuple[WorkerStream, pb.Assignment]:
    worker = open_stream(stub, "worker-a", [topic], 1)
    (assignment,) = worker.take_assignments(1)
    return worker, assignment


def finish(
    worker: WorkerStream, assignment: pb.Assignment, outcome: pb.Outcome.ValueType
) -> pb.ResultAck:
    worker.report(
        [
            pb.JobResult(
                job_id=assignment.job_id,
                attempt=assignment.attempt,
                outcome=outcome,
                error="" if outcome == pb.OUTCOME_SUCCEEDED else "boom",
            )
        ]
    )
    (ack,) = worker.take_acks(1)
    return ack


def test_cancel_of_a_pending_job_cancels_it_and_it_is_never_dispatched(
    stub: pulse_pb2_grpc.PulseStub, sql: Sql, open_stream: OpenStream
) -> None:
    job = submit(stub)

    canceled = cancel(stub, job.id)

    assert canceled.status == pb.JOB_STATUS_CANCELED
    assert canceled.HasField("finished_at")
    assert not canceled.HasField("cancel_requested_at")
    assert sql.job(job.id)["status"] == "canceled"
    worker = open_stream(stub, "worker-a", ["t"], 5)
    marker = submit(stub)
    assert [a.job_id for a in worker.take_assignments(1)] == [marker.id]


def test_cancel_of_a_scheduled_job_cancels_it(stub: pulse_pb2_grpc.PulseStub) -> None:
    job = submit(stub, delay_ms=60_000)

    assert cancel(stub, job.id).status == pb.JOB_STATUS_CANCELED


@pytest.mark.parametrize(
    "outcome, status",
    [
        (pb.OUTCOME_SUCCEEDED, "completed"),
        (pb.OUTCOME_FAILED_PERMANENTLY, "dead_lettered"),
    ],
)
def test_cancel_of_a_finished_job_is_a_failed_precondition_and_changes_nothing(
    stub: pulse_pb2_grpc.PulseStub,
    sql: Sql,
    open_stream: OpenStream,
    outcome: pb.Outcome.ValueType,
    status: str,
) -> None:
    job = submit(stub)
    worker, assignment = claim_one(stub, open_stream)
    assert finish(worker, assignment, outcome).accepted
    before = sql.job(job.id)

    with pytest.raises(grpc.RpcError) as excinfo:
        cancel(stub, job.id)

    assert_rpc_error(excinfo, grpc.StatusCode.FAILED_PRECONDITION, "invalid_state")
    assert f"with status {status}" in details(excinfo.value)
    assert sql.job(job.id) == before


def test_cancel_of_a_canceled_job_is_a_failed_precondition(
    stub: pulse_pb2_grpc.PulseStub,
) -> None:
    job = submit(stub)
    cancel(stub, job.id)

    with pytest.raises(grpc.RpcError) as excinfo:
        cancel(stub, job.id)

    assert_rpc_error(excinfo, grpc.StatusCode.FAILED_PRECONDITION, "invalid_state")


def test_cancel_of_a_running_job_is_requested_and_its_worker_hears_on_heartbeat(
    stub: pulse_pb2_grpc.PulseStub, sql: Sql, open_stream: OpenStream
) -> None:
    job = submit(stub, max_attempts=5)
    worker, assignment = claim_one(stub, open_stream)

    requested = cancel(stub, job.id)
    worker.heartbeat([(job.id, assignment.attempt)])

    assert requested.status == pb.JOB_STATUS_RUNNING
    assert requested.HasField("cancel_requested_at")
    (lost,) = worker.take_lost(1)
    assert (lost.job_id, lost.attempt, lost.reason) == (
        job.id,
        1,
        pb.LOSS_REASON_CANCEL_REQUESTED,
    )
    # The handler gives up: the job ends canceled, not retrying.
    ack = finish(worker, assignment, pb.OUTCOME_FAILED)
    assert (ack.accepted, ack.status) == (True, pb.JOB_STATUS_CANCELED)
    assert sql.job(job.id)["status"] == "canceled"


def test_a_canceled_running_job_whose_handler_succeeds_ends_completed(
    stub: pulse_pb2_grpc.PulseStub, open_stream: OpenStream
) -> None:
    job = submit(stub)
    worker, assignment = claim_one(stub, open_stream)
    cancel(stub, job.id)

    ack = finish(worker, assignment, pb.OUTCOME_SUCCEEDED)

    assert (ack.accepted, ack.status) == (True, pb.JOB_STATUS_COMPLETED)
    stored = get_job(stub, job.id)
    assert stored.status == pb.JOB_STATUS_COMPLETED
    assert stored.HasField("cancel_requested_at")


def test_requeue_of_a_running_job_is_a_failed_precondition_and_changes_nothing(
    stub: pulse_pb2_grpc.PulseStub, sql: Sql, open_stream: OpenStream
) -> None:
    job = submit(stub)
    claim_one(stub, open_stream)
    before = sql.job(job.id)

    with pytest.raises(grpc.RpcError) as excinfo:
        requeue(stub, job.id)

    assert_rpc_error(excinfo, grpc.StatusCode.FAILED_PRECONDITION, "invalid_state")
    assert "with status running" in details(excinfo.value)
    assert sql.job(job.id) == before


@pytest.mark.parametrize("delay_ms, status", [(0, "pending"), (60_000, "scheduled")])
def test_requeue_of_a_waiting_job_is_a_failed_precondition(
    stub: pulse_pb2_grpc.PulseStub, delay_ms: int, status: str
) -> None:
    job = submit(stub, delay_ms=delay_ms)

    with pytest.raises(grpc.RpcError) as excinfo:
        requeue(stub, job.id)

    assert_rpc_error(excinfo, grpc.StatusCode.FAILED_PRECONDITION, "invalid_state")
    assert f"with status {status}" in details(excinfo.value)


def test_requeue_of_a_dead_lettered_job_puts_it_back_with_a_fresh_budget(
    stub: pulse_pb2_grpc.PulseStub, sql: Sql, open_stream: OpenStream
) -> None:
    job = submit(stub, max_attempts=2)
    worker, assignment = claim_one(stub, open_stream)
    finish(worker, assignment, pb.OUTCOME_FAILED_PERMANENTLY)

    requeued = requeue(stub, job.id)

    assert requeued.status == pb.JOB_STATUS_PENDING
    assert (requeued.attempt, requeued.attempts_used, requeued.max_attempts) == (
        1,
        0,
        2,
    )
    assert requeued.last_error == "boom"
    assert not requeued.HasField("finished_at")
    worker.give_credits(1)
    (again,) = worker.take_assignments(1)
    assert (again.job_id, again.attempt, again.attempts_used) == (job.id, 2, 1)
    assert sql.job(job.id)["attempt_base"] == 1


def test_requeue_of_a_canceled_job_puts_it_back_in_line(
    stub: pulse_pb2_grpc.PulseStub, open_stream: OpenStream
) -> None:
    job = submit(stub)
    cancel(stub, job.id)

    requeued = requeue(stub, job.id)

    assert (requeued.status, requeued.attempt, requeued.attempts_used) == (
        pb.JOB_STATUS_PENDING,
        0,
        0,
    )
    worker = open_stream(stub, "worker-a", ["t"], 1)
    assert worker.take_assignments(1)[0].job_id == job.id


@pytest.mark.parametrize("call", [cancel, requeue], ids=["cancel", "requeue"])
def test_cancel_and_requeue_of_an_unknown_job_are_not_found(
    stub: pulse_pb2_grpc.PulseStub,
    call: Callable[[pulse_pb2_grpc.PulseStub, str], pb.Job],
) -> None:
    with pytest.raises(grpc.RpcError) as excinfo:
        call(stub, unknown_id())

    assert_rpc_error(excinfo, grpc.StatusCode.NOT_FOUND, "job_not_found")


@pytest.mark.parametrize("call", [cancel, requeue], ids=["cancel", "requeue"])
def test_cancel_and_requeue_of_a_malformed_id_are_invalid_argument(
    stub: pulse_pb2_grpc.PulseStub,
    call: Callable[[pulse_pb2_grpc.PulseStub, str], pb.Job],
) -> None:
    with pytest.raises(grpc.RpcError) as excinfo:
        call(stub, "job-1")

    assert_rpc_error(excinfo, grpc.StatusCode.INVALID_ARGUMENT, "invalid_argument")
