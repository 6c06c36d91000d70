"""Streams that never say hello do not hold stream slots.

Regression: StreamJobs waited for the opening message without a limit, so
PULSE_MAX_STREAMS silent connections locked every real worker out with
RESOURCE_EXHAUSTED for as long as they stayed open.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Iterator

import grpc

from pulse_client._proto.pulse.v1 import pulse_pb2 as pb
from pulse_client._proto.pulse.v1 import pulse_pb2_grpc
from tests.fixtures.servers import InProcessServer


def _silent(stop: queue.Queue[None]) -> Iterator[pb.WorkerMessage]:
    stop.get()  # sends nothing until the test ends
    return
    yield


def test_a_stream_without_hello_is_cancelled_and_frees_its_slot(
    start_inprocess: Callable[..., InProcessServer],
) -> None:
    server = start_inprocess(max_streams=1, hello_timeout_seconds=0.5)
    channel = grpc.insecure_channel(server.addr)
    stub = pulse_pb2_grpc.PulseStub(channel)
    stop: queue.Queue[None] = queue.Queue()
    try:
        silent = stub.StreamJobs(_silent(stop))
        started = time.monotonic()
        try:
            next(silent)
            raise AssertionError("a stream without hello got a message")
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.CANCELLED
        assert time.monotonic() - started < 5

        # The slot is free again: a real worker gets in.
        hello = pb.WorkerMessage(hello=pb.Hello(worker_id="w", topics=["t"], credits=1))
        worker = stub.StreamJobs(iter([hello]))
        first = next(worker)
        assert first.lease_ms > 0
        worker.cancel()
    finally:
        stop.put(None)
        channel.close()
