"""Payloads are opaque bytes and error texts are stored whatever they hold."""

from __future__ import annotations

import queue
from collections.abc import Callable

import grpc
import pytest

from pulse_client._proto.pulse.v1 import pulse_pb2 as pb
from pulse_client._proto.pulse.v1 import pulse_pb2_grpc
from pulsed.outcomes import MAX_ERROR_CHARS
from tests.fixtures.databases import Sql
from tests.fixtures.servers import InProcessServer
from tests.fixtures.streams import WorkerStream
from tests.fixtures.wire import RPC_TIMEOUT_SECONDS, get_job, spec, submit

OpenStream = Callable[..., WorkerStream]

# NUL bytes, bytes that are never valid UTF-8, a truncated sequence, and
# every byte value once.
AWKWARD_PAYLOAD = b"\x00\xff\xfe\x00abc\x80\xc3(\xed\xa0\x80" + bytes(range(256))


def test_payload_bytes_round_trip_exactly_through_submit_get_and_assignment(
    stub: pulse_pb2_grpc.PulseStub, sql: Sql, open_stream: OpenStream
) -> None:
    single = submit(stub, payload=AWKWARD_PAYLOAD)
    batch = stub.SubmitJobs(
        pb.SubmitJobsRequest(jobs=[spec(payload=AWKWARD_PAYLOAD[::-1])]),
        timeout=RPC_TIMEOUT_SECONDS,
    )
    batched_id = batch.results[0].job_id

    worker = open_stream(stub, "worker-a", ["t"], 2)

    assert get_job(stub, single.id).payload == AWKWARD_PAYLOAD
    assert get_job(stub, batched_id).payload == AWKWARD_PAYLOAD[::-1]
    assert bytes(sql.job(single.id)["payload"]) == AWKWARD_PAYLOAD
    delivered = {a.job_id: a.payload for a in worker.take_assignments(2)}
    assert delivered == {single.id: AWKWARD_PAYLOAD, batched_id: AWKWARD_PAYLOAD[::-1]}


def test_resubmitting_an_awkward_payload_is_recognised_as_the_same_job(
    stub: pulse_pb2_grpc.PulseStub,
) -> None:
    job = spec(payload=AWKWARD_PAYLOAD)
    stub.SubmitJob(pb.SubmitJobRequest(job=job), timeout=RPC_TIMEOUT_SECONDS)

    again = stub.SubmitJob(pb.SubmitJobRequest(job=job), timeout=RPC_TIMEOUT_SECONDS)

    assert again.existed
    assert again.job.payload == AWKWARD_PAYLOAD


@pytest.mark.parametrize(
    "permanently, status, stored",
    [
        (False, "retrying", pb.JOB_STATUS_RETRYING),
        (True, "dead_lettered", pb.JOB_STATUS_DEAD_LETTERED),
    ],
)
def test_an_error_text_with_nul_is_stored_safely_and_the_job_moves_on(
    stub: pulse_pb2_grpc.PulseStub,
    sql: Sql,
    open_stream: OpenStream,
    permanently: bool,
    status: str,
    stored: int,
) -> None:
    job = submit(stub, max_attempts=3)
    worker = open_stream(stub, "worker-a", ["t"], 1)
    (assignment,) = worker.take_assignments(1)

    worker.fail(assignment, "bad\x00byte 💥", permanently=permanently)

    (ack,) = worker.take_acks(1)
    assert (ack.accepted, ack.status) == (True, stored)
    row = sql.job(job.id)
    assert row["status"] == status
    assert row["last_error"] == "bad\\x00byte 💥"
    assert row["lease_expires_at"] is None


def test_an_overlong_error_text_is_cut_to_the_limit_with_a_note(
    stub: pulse_pb2_grpc.PulseStub, sql: Sql, open_stream: OpenStream
) -> None:
    job = submit(stub, max_attempts=1)
    worker = open_stream(stub, "worker-a", ["t"], 1)
    (assignment,) = worker.take_assignments(1)

    worker.fail(assignment, "e" * (MAX_ERROR_CHARS + 500))

    assert worker.take_acks(1)[0].status == pb.JOB_STATUS_DEAD_LETTERED
    assert (
        sql.job(job.id)["last_error"] == "e" * MAX_ERROR_CHARS + "... [500 more chars]"
    )


def _raw_result_with_invalid_utf8(job_id: str, attempt: int) -> bytes:
    # What a non-conforming client could put on the wire: field 4 (error)
    # of JobResult as raw bytes that are not UTF-8.
    result = pb.JobResult(job_id=job_id, attempt=attempt, outcome=pb.OUTCOME_FAILED)
    error = b"\xff\xfe broken"
    result_bytes = result.SerializeToString() + bytes([0x22, len(error)]) + error
    return bytes([0x1A, len(result_bytes)]) + result_bytes


def test_a_stream_sending_an_error_text_that_is_not_utf8_is_closed_and_its_job_retries(
    start_inprocess: Callable[..., InProcessServer], sql: Sql
) -> None:
    server = start_inprocess(
        lease_seconds=1, watchdog_seconds=0.1, backoff_base_seconds=60
    )
    server.allow_errors = True  # grpcio logs the message it could not parse
    stub = server.stub()
    job = submit(stub, max_attempts=3)
    raw = server.channel().stream_stream(
        "/pulse.v1.Pulse/StreamJobs",
        request_serializer=lambda message: message,
        response_deserializer=pb.ServerMessage.FromString,
    )
    requests: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
    hello = pb.WorkerMessage(hello=pb.Hello(worker_id="raw", topics=["t"], credits=1))
    requests.put(hello.SerializeToString())
    call = raw(iter(requests.get, None))
    try:
        assignment = next(m for m in call if m.assignments).assignments[0]

        requests.put(_raw_result_with_invalid_utf8(job.id, assignment.attempt))

        with pytest.raises(grpc.RpcError):
            for _ in call:
                pass
    finally:
        requests.put(None)
        call.cancel()
    row = sql.wait_for_status(job.id, "retrying")
    assert row["last_error"].startswith("lease expired (attempt 1, worker raw)")
