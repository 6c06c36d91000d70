"""AuthInterceptor without a server: the caller is set for the whole call,
also while a streaming handler's generator runs in another thread, and
never leaks into the next call."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from typing import Any, NoReturn

import grpc
import pytest

from pulsed.auth import (
    Authenticator,
    AuthInterceptor,
    Caller,
    User,
    _caller,
    current_caller,
)

PEER = "ipv4:127.0.0.1:5555"
OPS = Caller("ops", "operator", PEER, True)


class Aborted(Exception):
    pass


class FakeContext:
    def __init__(self) -> None:
        self.trailing: tuple[tuple[str, str], ...] = ()
        self.aborted: tuple[grpc.StatusCode, str] | None = None

    def peer(self) -> str:
        return PEER

    def set_trailing_metadata(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self.trailing = metadata

    def abort(self, code: grpc.StatusCode, details: str) -> NoReturn:
        self.aborted = (code, details)
        raise Aborted(details)


class Details:
    def __init__(self, method: str, metadata: tuple[tuple[str, str], ...]) -> None:
        self.method = method
        self.invocation_metadata = metadata


def basic(user: str, password: str) -> tuple[tuple[str, str], ...]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return (("authorization", f"Basic {token}"),)


def guard(
    handler: grpc.RpcMethodHandler[Any, Any],
    method: str = "/pulse.v1.Pulse/StreamJobs",
    metadata: tuple[tuple[str, str], ...] = basic("ops", "pw"),
) -> grpc.RpcMethodHandler[Any, Any]:
    interceptor = AuthInterceptor(Authenticator([User("ops", "pw", "operator")]))
    guarded = interceptor.intercept_service(
        lambda details: handler, Details(method, metadata)
    )
    assert guarded is not None
    return guarded


def callers_in_steps(requests: Iterator[Any], context: Any) -> Iterator[Caller]:
    for _ in range(3):
        yield current_caller(context)


def test_a_stream_stream_handler_sees_its_caller_in_every_step_in_any_thread() -> None:
    guarded = guard(grpc.stream_stream_rpc_method_handler(callers_in_steps))
    assert guarded.stream_stream is not None
    steps = guarded.stream_stream(iter(()), FakeContext())
    seen: list[Caller] = []

    # gRPC may iterate from another thread, which starts with an empty context.
    worker = threading.Thread(target=lambda: seen.extend(steps))
    worker.start()
    worker.join(5)

    assert seen == [OPS, OPS, OPS]
    assert _caller.get() is None


def test_a_unary_handler_sees_its_caller_and_it_does_not_leak() -> None:
    guarded = guard(
        grpc.unary_unary_rpc_method_handler(lambda request, context: _caller.get()),
        method="/pulse.v1.Pulse/CancelJob",
    )
    assert guarded.unary_unary is not None

    assert guarded.unary_unary(object(), FakeContext()) == OPS
    assert _caller.get() is None


def test_a_closed_stream_closes_the_handler_inside_the_call_context() -> None:
    seen_at_close: list[Caller | None] = []

    def handler(requests: Iterator[Any], context: Any) -> Iterator[int]:
        try:
            yield 1
            yield 2
        finally:
            seen_at_close.append(_caller.get())

    guarded = guard(grpc.stream_stream_rpc_method_handler(handler))
    assert guarded.stream_stream is not None
    steps = guarded.stream_stream(iter(()), FakeContext())
    assert next(steps) == 1

    steps.close()  # type: ignore[attr-defined]

    assert seen_at_close == [OPS]


def test_a_streaming_call_is_refused_when_it_starts_not_at_its_first_item() -> None:
    context = FakeContext()
    guarded = guard(
        grpc.unary_stream_rpc_method_handler(callers_in_steps),
        method="/pulse.v1.Pulse/RequeueJobs",
        metadata=basic("ops", "wrong"),
    )
    assert guarded.unary_stream is not None

    with pytest.raises(Aborted):
        guarded.unary_stream(object(), context)

    assert context.aborted is not None
    assert context.aborted[0] == grpc.StatusCode.UNAUTHENTICATED
    assert context.trailing == (("pulse-error-code", "unauthenticated"),)


def test_the_health_service_is_passed_through_untouched() -> None:
    handler = grpc.unary_unary_rpc_method_handler(lambda request, context: "ok")

    assert guard(handler, method="/grpc.health.v1.Health/Check", metadata=()) is (
        handler
    )
