"""Oversized messages are refused by size limits, not by running out of
memory, and streams beyond PULSE_MAX_STREAMS are refused without taking a
slot (issue 8, "bad input at the edges").

That the refusal of a stream past the limit is RESOURCE_EXHAUSTED naming
PULSE_MAX_STREAMS is held by tests/integration/test_stream.py
(``test_streams_beyond_the_limit_are_refused_with_resource_exhausted``);
that a stream which never says hello frees its slot, by
tests/integration/test_silent_streams.py. Here: a refused stream takes no
slot, and closing an open one lets the next worker in.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator

import grpc
import psutil
import pytest

from pulse_client._proto.pulse.v1 import pulse_pb2 as pb
from pulse_client._proto.pulse.v1 import pulse_pb2_grpc
from pulsed.server import MAX_MESSAGE_BYTES
from tests.fixtures.servers import InProcessServer, PulsedProcess
from tests.fixtures.streams import WorkerStream
from tests.property.test_rpc_inputs import assert_clear_refusal

MAX_STREAMS = 3
MAX_PAYLOAD_BYTES = 4096
OPEN_WAIT_SECONDS = 10.0


@pytest.fixture(scope="module")
def limited(
    start_package_pulsed: Callable[..., tuple[PulsedProcess, str]],
) -> PulsedProcess:
    server, _ = start_package_pulsed(
        max_streams=MAX_STREAMS, max_payload_bytes=MAX_PAYLOAD_BYTES
    )
    return server


@pytest.fixture
def stub(limited: PulsedProcess) -> Iterator[pulse_pb2_grpc.PulseStub]:
    with grpc.insecure_channel(limited.addr) as channel:
        yield pulse_pb2_grpc.PulseStub(channel)


def _submit(stub: pulse_pb2_grpc.PulseStub, payload: bytes) -> pb.SubmitJobResponse:
    spec = pb.JobSpec(id=str(uuid.uuid4()), topic="limits", payload=payload)
    return stub.SubmitJob(pb.SubmitJobRequest(job=spec), timeout=60)


def test_a_payload_over_the_configured_limit_is_refused_as_invalid_argument(
    stub: pulse_pb2_grpc.PulseStub,
) -> None:
    _submit(stub, b"x" * MAX_PAYLOAD_BYTES)

    with pytest.raises(grpc.RpcError) as caught:
        _submit(stub, b"x" * (MAX_PAYLOAD_BYTES + 1))

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert_clear_refusal(caught.value)
    assert f"over the limit of {MAX_PAYLOAD_BYTES} bytes" in caught.value.details()


def test_a_message_over_the_grpc_limit_is_refused_without_the_memory_it_would_take(
    limited: PulsedProcess, stub: pulse_pb2_grpc.PulseStub
) -> None:
    size_bytes = MAX_MESSAGE_BYTES + 6 * 1024 * 1024
    process = psutil.Process(limited.pid)
    baseline = process.memory_info().rss
    peak = [baseline]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.01):
            peak[0] = max(peak[0], process.memory_info().rss)

    sampler = threading.Thread(target=sample, name="rss-sampler")
    sampler.start()
    try:
        with pytest.raises(grpc.RpcError) as caught:
            _submit(stub, b"x" * size_bytes)
    finally:
        done.set()
        sampler.join()

    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert str(MAX_MESSAGE_BYTES) in (caught.value.details() or "")
    grown = peak[0] - baseline
    assert grown < size_bytes, f"pulsed grew by {grown} bytes for the message"
    # Still serving, and a normal submit still lands.
    assert limited.alive()
    assert _submit(stub, b"{}").job.topic == "limits"


def _open(stub: pulse_pb2_grpc.PulseStub, worker_id: str) -> WorkerStream:
    return WorkerStream(stub, worker_id, ["limits.idle"], 1)


def _wait_until_open(stream: WorkerStream) -> None:
    deadline = time.monotonic() + OPEN_WAIT_SECONDS
    while not stream.lease_ms and not stream.ended:
        assert time.monotonic() < deadline, "the stream did not open"
        time.sleep(0.01)
    assert stream.lease_ms, f"the stream was refused: {stream.error}"


def test_a_refused_stream_takes_no_slot_and_closing_one_lets_the_next_in(
    stub: pulse_pb2_grpc.PulseStub,
) -> None:
    streams = [_open(stub, f"w{n}") for n in range(MAX_STREAMS)]
    try:
        for stream in streams:
            _wait_until_open(stream)

        for attempt in range(2):
            refused = _open(stub, f"refused{attempt}")
            streams.append(refused)
            error = refused.wait_for_end(OPEN_WAIT_SECONDS)
            assert error is not None
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert_clear_refusal(error)
            assert "PULSE_MAX_STREAMS" in (error.details() or "")

        streams[0].close()
        # The slot frees when the server has wound the stream up: retry
        # until it has, within a few seconds.
        deadline = time.monotonic() + OPEN_WAIT_SECONDS
        while True:
            newcomer = _open(stub, "newcomer")
            streams.append(newcomer)
            newcomer_error = None
            try:
                _wait_until_open(newcomer)
                break
            except AssertionError:
                newcomer_error = newcomer.error
                if time.monotonic() > deadline:
                    raise
            assert newcomer_error is not None
            assert newcomer_error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            time.sleep(0.05)
    finally:
        for stream in streams:
            stream.close()


def test_an_undecodable_request_is_invalid_argument_and_the_server_stays_up(
    start_inprocess: Callable[..., InProcessServer],
) -> None:
    """Bytes that do not parse as the request message (invalid UTF-8 in a
    string field, a truncated field) are refused in pulse's words, on unary
    calls and on the worker stream. No SDK can send them (protobuf refuses
    to serialize invalid UTF-8); a hand-made client can. grpcio alone
    answered INTERNAL "Exception deserializing request!" and logged a
    traceback."""
    server = start_inprocess()
    channel = server.channel()
    get_job = channel.unary_unary(
        "/pulse.v1.Pulse/GetJob",
        request_serializer=lambda raw: raw,
        response_deserializer=pb.Job.FromString,
    )
    stream_jobs = channel.stream_stream(
        "/pulse.v1.Pulse/StreamJobs",
        request_serializer=lambda raw: raw,
        response_deserializer=pb.ServerMessage.FromString,
    )

    refusals = []
    for raw in (b"\x0a\x02\xff\xfe", b"\x0a\x7f"):
        with pytest.raises(grpc.RpcError) as caught:
            get_job(raw, timeout=10)
        refusals.append(caught.value)
        with pytest.raises(grpc.RpcError) as caught:
            list(stream_jobs(iter([raw]), timeout=10))
        refusals.append(caught.value)

    # And mid-stream, after a valid hello.
    hello = pb.WorkerMessage(
        hello=pb.Hello(worker_id="w", topics=["t"], credits=1)
    ).SerializeToString()
    with pytest.raises(grpc.RpcError) as caught:
        list(stream_jobs(iter([hello, b"\x0a\x7f"]), timeout=10))
    refusals.append(caught.value)

    for error in refusals:
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "is not a valid" in (error.details() or "")
        assert dict(error.trailing_metadata() or ())["pulse-error-code"] == (
            "invalid_argument"
        )
    answer = pulse_pb2_grpc.PulseStub(channel).WhoAmI(pb.WhoAmIRequest(), timeout=10)
    assert answer.role == "admin"
