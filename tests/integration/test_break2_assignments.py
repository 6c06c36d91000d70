"""Assignments built in place from the claim's row (seconds and nanos from
SQL, message sizes estimated): unusual values, sizes near the limits."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from google.protobuf import timestamp_pb2

from pulse_client._proto.pulse.v1 import pulse_pb2 as pb
from pulse_client._proto.pulse.v1 import pulse_pb2_grpc
from pulse_client.limits import MAX_TIMEOUT_MS
from pulsed.dispatch import MAX_ASSIGNMENT_MESSAGE_BYTES, assignment_messages
from tests.fixtures.databases import Sql
from tests.fixtures.servers import InProcessServer
from tests.fixtures.streams import WorkerStream
from tests.fixtures.wire import RPC_TIMEOUT_SECONDS, spec

OpenStream = Callable[..., WorkerStream]


def _row(payload: bytes, **over: int) -> tuple:
    values = {
        "attempt": 2**31 - 1,
        "max_attempts": 2**31 - 1,
        "priority": -1000,
        "lease_seconds": -62135596800,
        "lease_nanos": 999_999_000,
        "timeout_ms": -(2**63),
        "created_seconds": -62135596800,
        "created_nanos": 999_999_000,
        "attempts_used": -(2**31),
    }
    values.update(over)
    return (
        0,
        "0190f2a4-8c3e-7b1d-9f00-123456789abc",
        "t" * 200,
        memoryview(payload),
        values["attempt"],
        values["max_attempts"],
        values["priority"],
        values["lease_seconds"],
        values["lease_nanos"],
        values["timeout_ms"],
        values["created_seconds"],
        values["created_nanos"],
        values["attempts_used"],
        0.0,
    )


@pytest.mark.parametrize(
    "payload_bytes", [0, 1, 127, 128, 2**20, 2**21 - 300, 2**22 - 400]
)
def test_no_message_of_several_assignments_exceeds_the_limit(
    payload_bytes: int,
) -> None:
    # Every field at its widest encoding; enough rows for three messages.
    count = max(3, 3 * MAX_ASSIGNMENT_MESSAGE_BYTES // (payload_bytes + 364) + 1)
    rows = [_row(b"x" * payload_bytes)] * count

    messages = assignment_messages(rows)

    assert sum(len(m.assignments) for m in messages) == len(rows)
    assert len(messages) >= 3
    for message in messages:
        if len(message.assignments) > 1:
            assert message.ByteSize() <= MAX_ASSIGNMENT_MESSAGE_BYTES


@pytest.mark.parametrize(
    "created_at",
    [
        "0001-01-01 00:00:00+00",
        "1969-12-31 23:59:59.999999+00",
        "1900-06-15 12:00:00.000001+00",
        "1970-01-01 00:00:00+00",
        "9999-12-31 23:59:59.999999+00",
    ],
)
def test_an_assignment_carries_a_far_created_at_to_the_microsecond(
    stub: pulse_pb2_grpc.PulseStub, open_stream: OpenStream, sql: Sql, created_at: str
) -> None:
    # Due at the earliest time a submit takes: claimed at once.
    earliest = timestamp_pb2.Timestamp(seconds=0, nanos=1000)
    reply = stub.SubmitJobs(
        pb.SubmitJobsRequest(
            jobs=[spec("far", b"\x00\xff" * 10, priority=-1000, run_at=earliest)]
        ),
        timeout=RPC_TIMEOUT_SECONDS,
    )
    job_id = reply.results[0].job_id
    sql.execute(
        "UPDATE jobs SET created_at = %s, timeout_ms = %s, max_attempts = 1000"
        " WHERE id = %s",
        (created_at, MAX_TIMEOUT_MS, job_id),
    )
    worker = open_stream(stub, "w-far", ["far"], 1)

    (assignment,) = worker.take_assignments(1)

    row = sql.one(
        "SELECT payload, priority, timeout_ms, max_attempts,"
        " (extract(epoch FROM created_at) * 1000000)::bigint,"
        " (extract(epoch FROM lease_expires_at) * 1000000)::bigint"
        " FROM jobs WHERE id = %s",
        (job_id,),
    )
    assert (
        assignment.payload,
        assignment.priority,
        assignment.timeout_ms,
        assignment.max_attempts,
        assignment.created_at.ToMicroseconds(),
        assignment.lease_expires_at.ToMicroseconds(),
    ) == (bytes(row[0]), row[1], row[2], row[3], row[4], row[5])
    assert 0 <= assignment.created_at.nanos < 10**9


def test_a_claim_of_many_payloads_at_the_servers_limit_arrives_whole(
    start_inprocess: Callable[..., InProcessServer], open_stream: OpenStream, sql: Sql
) -> None:
    limit = 3 * 1024 * 1024
    server = start_inprocess(max_payload_bytes=limit)
    stub = server.stub()
    payloads = [bytes([i]) * limit for i in range(4)]
    topic = "big." + "x" * 196
    for payload in payloads:
        stub.SubmitJobs(
            pb.SubmitJobsRequest(jobs=[spec(topic, payload)]),
            timeout=RPC_TIMEOUT_SECONDS,
        )
    worker = open_stream(stub, "w" * 200, [topic], 4)

    got = worker.take_assignments(4, timeout_seconds=20)

    assert sorted(a.payload[:1] for a in got) == [bytes([i]) for i in range(4)]
    assert all(a.payload == bytes(a.payload[:1]) * limit for a in got)
    assert sql.scalar("SELECT count(*) FROM jobs WHERE status = 'running'") == 4
