"""Any request to any RPC gets a correct answer or a clear refusal, the server
stays up, and nothing already stored changes (issue 8, "bad input at the
edges").

Requests are built from the service descriptor, so every field of every
request message is fuzzed, and a new RPC fails
``test_every_rpc_is_classified`` until someone says how its calls are kept
away from the seeded rows.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from hypothesis import given, settings
from hypothesis import strategies as st

from pulse_client._proto.pulse.v1 import pulse_pb2 as pb
from pulse_client._proto.pulse.v1 import pulse_pb2_grpc
from pulse_client.errors import ERROR_CODE_METADATA_KEY
from tests.property.conftest import Stored
from tests.property.strategies import TRICKY_TEXT, integers, messages, texts

SERVICE = pb.DESCRIPTOR.services_by_name["Pulse"]
ALLOWED = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.OUT_OF_RANGE,
}
CALL_TIMEOUT_SECONDS = 30.0
EXAMPLES_PER_RPC = 20


def _reads(request: _message.Message, stored: Stored) -> _message.Message:
    return request


def _adds(request: _message.Message, stored: Stored) -> _message.Message:
    # A submit may name a seeded id: it is answered "existed" or refused as
    # a conflict, and the stored job must not change either way.
    return request


def _away_from_seeded(request: _message.Message, stored: Stored) -> _message.Message:
    """The request with every seeded id, name or topic replaced: these calls
    change what they name, and the seeded rows must stay as they are."""
    for field, value in request.ListFields():
        if field.type == field.TYPE_MESSAGE:
            items = value if field.is_repeated else [value]
            for item in items:
                _away_from_seeded(item, stored)
        elif field.type == field.TYPE_STRING:
            if field.is_repeated:
                value[:] = [_other(v, stored) for v in value]
            else:
                setattr(request, field.name, _other(value, stored))
    return request


def _other(value: str, stored: Stored) -> str:
    return value + "-other" if stored.is_seeded(value) else value


def _requeue_away_from_seeded(
    request: _message.Message, stored: Stored
) -> _message.Message:
    assert isinstance(request, pb.RequeueJobsRequest)
    _away_from_seeded(request, stored)
    if not request.filter.topic:
        # Every topic would take in the seeded dead letters: only count them.
        request.dry_run = True
    return request


# How each RPC's requests are kept from changing the seeded rows.
CLASSIFIED: dict[str, Callable[[_message.Message, Stored], _message.Message]] = {
    "SubmitJob": _adds,
    "SubmitJobs": _adds,
    "GetJob": _reads,
    "ListJobs": _reads,
    "CancelJob": _away_from_seeded,
    "RequeueJob": _away_from_seeded,
    "Stats": _reads,
    "RequeueJobs": _requeue_away_from_seeded,
    "ListDeadLetterGroups": _reads,
    "Throughput": _reads,
    "PutSchedule": _away_from_seeded,
    "GetSchedule": _reads,
    "ListSchedules": _reads,
    "PauseSchedule": _away_from_seeded,
    "ResumeSchedule": _away_from_seeded,
    "DeleteSchedule": _away_from_seeded,
    "ListOccurrences": _reads,
    "PreviewSchedule": _reads,
    "PauseDispatch": _away_from_seeded,
    "ResumeDispatch": _away_from_seeded,
    "GetDispatchStatus": _reads,
    "WhoAmI": _reads,
    "ListAudit": _reads,
    # Its own properties below: a stream is a conversation, not one request.
    "StreamJobs": _away_from_seeded,
}
_UNARY_OR_SERVER_STREAMING = sorted(
    m.name for m in SERVICE.methods if not m.client_streaming
)


def test_every_rpc_is_classified() -> None:
    assert {m.name for m in SERVICE.methods} == set(CLASSIFIED)


@pytest.fixture(scope="module")
def stub(stored: Stored) -> Iterator[pulse_pb2_grpc.PulseStub]:
    with grpc.insecure_channel(stored.addr) as channel:
        yield pulse_pb2_grpc.PulseStub(channel)


def seeded_values(stored: Stored) -> tuple[str, ...]:
    return (*stored.job_ids.values(), *stored.schedule_names, *stored.topics)


def assert_clear_refusal(error: grpc.RpcError) -> None:
    """An allowed status, the pulse error code, and a message for people."""
    assert isinstance(error, grpc.Call)
    assert error.code() in ALLOWED, (error.code(), error.details())
    codes = [
        v for k, v in error.trailing_metadata() or () if k == ERROR_CODE_METADATA_KEY
    ]
    assert codes and codes[0], f"no {ERROR_CODE_METADATA_KEY}: {error.details()!r}"
    details = error.details() or ""
    assert details.strip(), f"{error.code()} without a message"
    assert "Traceback" not in details and 'File "' not in details, details


def call(stub: pulse_pb2_grpc.PulseStub, name: str, request: _message.Message) -> Any:
    method = getattr(stub, name)
    answer = method(request, timeout=CALL_TIMEOUT_SECONDS)
    if SERVICE.methods_by_name[name].server_streaming:
        return list(answer)
    return answer


@pytest.mark.parametrize("name", _UNARY_OR_SERVER_STREAMING)
def test_any_request_is_answered_or_clearly_refused_and_changes_no_seeded_row(
    name: str, stored: Stored, stub: pulse_pb2_grpc.PulseStub
) -> None:
    method: _descriptor.MethodDescriptor = SERVICE.methods_by_name[name]
    steer = CLASSIFIED[name]
    before = stored.snapshot()

    @settings(max_examples=EXAMPLES_PER_RPC)
    @given(request=messages(method.input_type, seeded_values(stored)))
    def check(request: _message.Message) -> None:
        request = steer(request, stored)
        stored.new_log()
        try:
            call(stub, name, request)
        except grpc.RpcError as error:
            assert_clear_refusal(error)
        stored.assert_healthy()
        assert stored.snapshot() == before

    check()


# Each alone in an otherwise empty request, so that no earlier check in the
# server hides the one under test.
_TEXT_EDGES = ("a\x00b", "x" * 1_000_000, "\u202e\n\t", "not-a-uuid")


def _text_fields(
    descriptor: _descriptor.Descriptor, path: tuple[str, ...] = ()
) -> Iterator[tuple[str, ...]]:
    for field in descriptor.fields:
        if field.type == field.TYPE_STRING:
            yield (*path, field.name)
        elif (
            field.type == field.TYPE_MESSAGE and field.message_type.name != "Timestamp"
        ):
            yield from _text_fields(field.message_type, (*path, field.name))


def _with_text(name: str, path: tuple[str, ...], text: str) -> _message.Message:
    request = getattr(pb, SERVICE.methods_by_name[name].input_type.name)()
    target = request
    for part in path[:-1]:
        if target.DESCRIPTOR.fields_by_name[part].is_repeated:
            target = getattr(target, part).add()
        else:
            target = getattr(target, part)
    field = target.DESCRIPTOR.fields_by_name[path[-1]]
    if field.is_repeated:
        getattr(target, path[-1]).append(text)
    else:
        setattr(target, path[-1], text)
    return request


@pytest.mark.parametrize("name", _UNARY_OR_SERVER_STREAMING)
def test_each_text_field_alone_holding_edge_text_is_answered_or_clearly_refused(
    name: str, stored: Stored, stub: pulse_pb2_grpc.PulseStub
) -> None:
    before = stored.snapshot()
    steer = CLASSIFIED[name]
    method = SERVICE.methods_by_name[name]
    for path in _text_fields(method.input_type):
        for text in _TEXT_EDGES:
            stored.new_log()
            request = steer(_with_text(name, path, text), stored)
            try:
                call(stub, name, request)
            except grpc.RpcError as error:
                assert_clear_refusal(error)
            stored.assert_healthy()
    assert stored.snapshot() == before


# -- the worker stream ---------------------------------------------------------

_END = object()


def _hellos(stored: Stored) -> st.SearchStrategy[pb.WorkerMessage]:
    """Opening messages: mostly a hello of arbitrary values, sometimes none."""
    hello = st.builds(
        pb.Hello,
        worker_id=texts(),
        topics=st.lists(texts(), max_size=4),
        credits=integers((0, 2**32 - 1)),
    )
    with_hello = st.builds(
        lambda h, c: pb.WorkerMessage(hello=h, credits=c),
        hello,
        integers((0, 2**32 - 1)),
    )
    return st.one_of(with_hello, messages(pb.WorkerMessage.DESCRIPTOR)).map(
        lambda m: _away_from_seeded(m, stored)
    )


def _follow_ups(stored: Stored) -> st.SearchStrategy[list[pb.WorkerMessage]]:
    ids = st.one_of(st.uuids().map(str), st.sampled_from(TRICKY_TEXT))
    result = st.builds(
        pb.JobResult,
        job_id=ids,
        attempt=integers((-(2**31), 2**31 - 1)),
        outcome=st.integers(-1, 5),
        error=texts(),
        retry_delay_ms=integers((-(2**63), 2**63 - 1)),
    )
    running = st.builds(pb.RunningJob, job_id=ids, attempt=st.integers(-1, 3))
    message = st.one_of(
        messages(pb.WorkerMessage.DESCRIPTOR),
        st.builds(
            pb.WorkerMessage,
            results=st.lists(result, max_size=3),
            heartbeat=st.lists(running, max_size=3),
            has_heartbeat=st.booleans(),
            credits=integers((0, 2**32 - 1)),
            draining=st.booleans(),
        ),
    )
    # Seeded ids are left in results and heartbeats: they name no running
    # attempt of this worker, so the fenced updates must not touch them.
    return st.lists(message, max_size=4)


class _Conversation:
    """One StreamJobs call whose messages the test writes one by one."""

    def __init__(self, stub: pulse_pb2_grpc.PulseStub) -> None:
        self.outbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.call = stub.StreamJobs(
            iter(self.outbox.get, _END), timeout=CALL_TIMEOUT_SECONDS
        )
        self.received: list[pb.ServerMessage] = []
        self.error: grpc.RpcError | None = None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        try:
            for message in self.call:
                self.received.append(message)
        except grpc.RpcError as error:
            self.error = error

    def finish(self) -> None:
        """Half-close after a moment for the server to answer; wait for the end."""
        self._reader.join(0.2)
        self.outbox.put(_END)
        self._reader.join(CALL_TIMEOUT_SECONDS)
        assert not self._reader.is_alive(), "the stream did not end after half-close"


def test_any_worker_stream_works_or_ends_with_a_clear_refusal(
    stored: Stored, stub: pulse_pb2_grpc.PulseStub
) -> None:
    before = stored.snapshot()

    @settings(max_examples=40)
    @given(first=_hellos(stored), rest=_follow_ups(stored))
    def check(first: pb.WorkerMessage, rest: list[pb.WorkerMessage]) -> None:
        stored.new_log()
        conversation = _Conversation(stub)
        for message in [first, *rest]:
            conversation.outbox.put(message)
        conversation.finish()

        if conversation.error is not None:
            if conversation.error.code() == grpc.StatusCode.CANCELLED:
                pytest.fail(f"stream cancelled: {conversation.error.details()}")
            assert_clear_refusal(conversation.error)
        else:
            # It opened: the server sent the lease length first.
            assert conversation.received, "a stream ended OK without a word"
            assert conversation.received[0].lease_ms > 0
        stored.assert_healthy()
        assert stored.snapshot() == before

    check()
