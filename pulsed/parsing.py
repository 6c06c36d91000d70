"""Requests whose bytes do not parse as their message get INVALID_ARGUMENT.

grpcio deserializes a request before any handler runs and, when that fails,
answers INTERNAL ("Exception deserializing request!") and logs a traceback.
Only a hand-made client can send such bytes, but a server must still say it
was the request that was wrong, in pulse's words. This interceptor wraps
each method's deserializer so that a failure becomes a marker, and the
handler then refuses the call (or, on a stream, the message) as any other
invalid argument.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from pulse_client.errors import ERROR_CODE_METADATA_KEY, InvalidArgument

log = logging.getLogger(__name__)


class _Undecodable:
    """Stands in for a request message whose bytes did not parse."""

    def __init__(self, error: str) -> None:
        self.error = error


def _refusal(method: str, undecodable: _Undecodable) -> InvalidArgument:
    log.warning("rpc.undecodable method=%s error=%s", method, undecodable.error)
    return InvalidArgument(
        f"the request is not a valid {method.rpartition('/')[2]} message "
        "(its bytes do not parse)"
    )


class RequestParsing(grpc.ServerInterceptor):  # type: ignore[type-arg]
    """Turns undecodable requests into INVALID_ARGUMENT; installed first."""

    def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        method = handler_call_details.method
        parse = handler.request_deserializer

        def deserialize(data: bytes) -> Any:
            try:
                return parse(data)
            except Exception as exc:  # any parser failure is the client's
                return _Undecodable(str(exc) or type(exc).__name__)

        serializers = (deserialize, handler.response_serializer)
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                _unary(method, handler.unary_unary), *serializers
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                _unary(method, handler.unary_stream), *serializers
            )
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                _stream(method, handler.stream_unary), *serializers
            )
        assert handler.stream_stream is not None
        return grpc.stream_stream_rpc_method_handler(
            _stream(method, handler.stream_stream), *serializers
        )


def _unary(
    method: str, behavior: Callable[[Any, grpc.ServicerContext], Any]
) -> Callable[[Any, grpc.ServicerContext], Any]:
    def checked(request: Any, context: grpc.ServicerContext) -> Any:
        if isinstance(request, _Undecodable):
            error = _refusal(method, request)
            context.set_trailing_metadata(((ERROR_CODE_METADATA_KEY, error.code),))
            context.abort(error.status, str(error))
        return behavior(request, context)

    return checked


def _stream(
    method: str, behavior: Callable[[Iterator[Any], grpc.ServicerContext], Any]
) -> Callable[[Iterator[Any], grpc.ServicerContext], Any]:
    def checked(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
        return behavior(_refusing(method, requests), context)

    return checked


def _refusing(method: str, requests: Iterator[Any]) -> Iterator[Any]:
    """The stream's messages; an undecodable one raises InvalidArgument where
    the handler reads it, which ends the stream like any invalid message."""
    for request in requests:
        if isinstance(request, _Undecodable):
            raise _refusal(method, request)
        yield request
