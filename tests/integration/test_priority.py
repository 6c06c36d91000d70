"""Higher priority first, FIFO within a priority, across a waiting backlog."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from pulse_client._proto.pulse.v1 import pulse_pb2 as pb
from pulse_client._proto.pulse.v1 import pulse_pb2_grpc
from tests.fixtures.streams import WorkerStream
from tests.fixtures.wire import RPC_TIMEOUT_SECONDS, spec, submit

OpenStream = Callable[..., WorkerStream]
PRIORITIES = [0, 5, -3, 5, 0, 10, -3, 0, 10, 5, 1000, -1000, 0, 5, -3, 10, 0, 1, 1, 0]


def submit_backlog(stub: pulse_pb2_grpc.PulseStub) -> list[str]:
    """Submit a mixed backlog one job at a time, with distractors; returns
    the ids of topic ``t`` in the order they must be dispatched."""
    submitted = []
    for index, priority in enumerate(PRIORITIES):
        job = submit(stub, "t", priority=priority, payload=str(index).encode())
        submitted.append((priority, index, job.id))
        if index % 5 == 0:
            submit(stub, "other", priority=1000)
            submit(stub, "t", priority=1000, delay_ms=60_000)
    return [job_id for _, _, job_id in sorted(submitted, key=lambda x: (-x[0], x[1]))]


def test_one_credit_at_a_time_takes_the_backlog_by_priority_then_fifo(
    stub: pulse_pb2_grpc.PulseStub, open_stream: OpenStream
) -> None:
    expected = submit_backlog(stub)

    worker = open_stream(stub, "w", ["t"], 1)
    order = []
    for _ in expected:
        (assignment,) = worker.take_assignments(1)
        order.append(assignment.job_id)
        worker.succeed([assignment], credits=1)

    assert order == expected


def test_a_large_credit_receives_the_backlog_in_dispatch_order(
    stub: pulse_pb2_grpc.PulseStub, open_stream: OpenStream
) -> None:
    expected = submit_backlog(stub)

    worker = open_stream(stub, "w", ["t"], 100)
    order = [a.job_id for a in worker.take_assignments(len(expected))]

    assert set(order) == set(expected)
    assert order == expected


def test_a_short_credit_takes_the_most_urgent_part_of_the_backlog(
    stub: pulse_pb2_grpc.PulseStub, open_stream: OpenStream
) -> None:
    expected = submit_backlog(stub)

    worker = open_stream(stub, "w", ["t"], 6)
    got = worker.take_assignments(6)

    assert {a.job_id for a in got} == set(expected[:6])


def test_jobs_of_one_batch_with_one_priority_run_in_submission_order(
    stub: pulse_pb2_grpc.PulseStub, open_stream: OpenStream
) -> None:
    batch = [spec("t", str(i).encode()) for i in range(20)]
    stub.SubmitJobs(pb.SubmitJobsRequest(jobs=batch), timeout=RPC_TIMEOUT_SECONDS)

    worker = open_stream(stub, "w", ["t"], 1)
    order = []
    for _ in batch:
        (assignment,) = worker.take_assignments(1)
        order.append(assignment.payload)
        worker.succeed([assignment], credits=1)

    assert order == [job.payload for job in batch]


@pytest.mark.parametrize("topics", [["t", "u"], ["u", "t"]])
def test_a_stream_on_two_topics_takes_the_most_urgent_job_of_either(
    stub: pulse_pb2_grpc.PulseStub, open_stream: OpenStream, topics: list[str]
) -> None:
    low = submit(stub, "t", priority=1)
    high = submit(stub, "u", priority=9)
    middle = submit(stub, "t", priority=5)

    worker = open_stream(stub, "w", topics, 1)
    order = []
    for _ in range(3):
        (assignment,) = worker.take_assignments(1)
        order.append(assignment.job_id)
        worker.succeed([assignment], credits=1)

    assert order == [high.id, middle.id, low.id]
