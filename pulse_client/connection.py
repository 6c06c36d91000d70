"""Channels to one or more pulsed replicas, credentials, and error mapping.

Unary calls go to the current replica; when it is unavailable the call is
tried once on each other replica before the error reaches the caller. Every
RPC pulse exposes is safe to repeat (submits are idempotent by job id). A
call that times out is not repeated (its time is spent), but the next call
goes to another replica: a hung replica refuses nothing, it only stops
answering, and would otherwise take every call until it recovered.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pulse_client._proto.pulse.v1 import pulse_pb2_grpc
from pulse_client.errors import (
    ClientClosed,
    InvalidArgument,
    PulseError,
    Unavailable,
    from_rpc_error,
)

DEFAULT_ADDR = "localhost:50051"
DEFAULT_TIMEOUT_SECONDS = 30.0
_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
KEEPALIVE_TIME_MS = 20_000
KEEPALIVE_TIMEOUT_MS = 10_000

# Every channel to a replica. A replica that hangs (stopped, or its host
# stalled) refuses no connection and answers no ping: only the keepalive
# notices, after about KEEPALIVE_TIME_MS + KEEPALIVE_TIMEOUT_MS, and a
# worker then moves its stream to another replica.
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
    ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
    # grpcio times a keepalive ping out by this one (default 60 s), not by
    # keepalive_timeout_ms: without it a hung replica was noticed after a
    # minute or more.
    ("grpc.http2.ping_timeout_ms", KEEPALIVE_TIMEOUT_MS),
    ("grpc.keepalive_permit_without_calls", 1),
    # Reconnect quickly after a replica restarts.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2_000),
]

_T = TypeVar("_T")
_Req = TypeVar("_Req")


def parse_addresses(addr: str | Sequence[str] | None) -> list[str]:
    """``"a:1,b:2"``, ``["a:1", "b:2"]`` or None (the default address)."""
    if addr is None:
        return [DEFAULT_ADDR]
    parts = addr.split(",") if isinstance(addr, str) else list(addr)
    addresses = [part.strip() for part in parts if part and part.strip()]
    if not addresses:
        raise InvalidArgument(f"no server address in {addr!r}")
    return addresses


class Connection:
    """Channels and stubs for every address. Thread-safe."""

    def __init__(
        self,
        addresses: list[str],
        *,
        user: str | None = None,
        password: str | None = None,
        tls: bool = False,
        ca_file: str | None = None,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        if (user is None) != (password is None):
            raise InvalidArgument("give both user and password, or neither")
        self.addresses = addresses
        self.timeout_seconds = timeout_seconds
        self._metadata: tuple[tuple[str, str], ...] = ()
        if user is not None and password is not None:
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            self._metadata = (("authorization", f"Basic {token}"),)
        self._credentials = None
        if tls or ca_file:
            root = None
            if ca_file:
                try:
                    with open(ca_file, "rb") as f:
                        root = f.read()
                except OSError as exc:
                    raise InvalidArgument(
                        f"cannot read ca_file {ca_file!r}: {exc}"
                    ) from None
            self._credentials = grpc.ssl_channel_credentials(root_certificates=root)
        self._lock = threading.Lock()
        self._channels: dict[str, grpc.Channel] = {}
        # One stub per channel: building one binds every method of the
        # service (tens of microseconds), too much to pay per call.
        self._stubs: dict[str, pulse_pb2_grpc.PulseStub] = {}
        self._current = 0
        self._closed = False

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    def check_open(self) -> None:
        """Raise ClientClosed once ``close()`` has run."""
        if self._closed:
            raise ClientClosed("the Pulse client is closed")

    def stub(self, index: int | None = None) -> tuple[str, pulse_pb2_grpc.PulseStub]:
        """The stub of the current (or the given) replica and its address."""
        with self._lock:
            if self._closed:
                raise ClientClosed("the Pulse client is closed")
            i = self._current if index is None else index
            address = self.addresses[i % len(self.addresses)]
            stub = self._stubs.get(address)
            if stub is None:
                channel = self._open(address)
                self._channels[address] = channel
                stub = self._stubs[address] = pulse_pb2_grpc.PulseStub(channel)
        return address, stub

    def rotate(self, away_from: str | None = None) -> None:
        """Prefer the next replica from now on; with ``away_from``, only if
        that address is still the preferred one (so that many calls failing
        on one replica at once move away from it, not round the ring)."""
        with self._lock:
            if away_from is not None and (
                self.addresses[self._current % len(self.addresses)] != away_from
            ):
                return
            self._current = (self._current + 1) % len(self.addresses)

    def call(self, invoke: Callable[[pulse_pb2_grpc.PulseStub], _T]) -> _T:
        """Run a unary call, failing over to other replicas when unavailable."""
        tried = []
        last: grpc.RpcError | None = None
        for _ in self.addresses:
            address, stub = self.stub()
            try:
                return invoke(stub)
            except grpc.RpcError as exc:
                self._fail_over(exc, address)
                tried.append(address)
                last = exc
        assert last is not None
        details = last.details() if isinstance(last, grpc.Call) else str(last)
        raise Unavailable(
            f"server unavailable at {', '.join(tried)}: {details}"
        ) from last

    def start(
        self,
        method: Callable[
            [pulse_pb2_grpc.PulseStub], grpc.UnaryUnaryMultiCallable[_Req, _T]
        ],
        request: _Req,
    ) -> StartedCall[_T]:
        """Start the unary call ``method`` (``lambda stub: stub.Method``)
        without waiting for it; the returned call's ``result()`` waits and
        gives its answer. If the replica turns out to be unavailable, the
        call is made again through ``call``, failing over."""
        address, stub = self.stub()
        future = method(stub).future(request, **self.kwargs())
        return StartedCall(
            self,
            address,
            future,
            lambda other: method(other)(request, **self.kwargs()),
        )

    def _fail_over(self, exc: grpc.RpcError, address: str) -> None:
        """Prefer another replica after ``exc`` from ``address``; raise the
        error unless the replica was unavailable (the call may go again)."""
        if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            # Not repeated (its time is spent), but the next call goes
            # elsewhere: a hung replica only stops answering.
            self.rotate(away_from=address)
        if exc.code() != grpc.StatusCode.UNAVAILABLE:
            raise self.error(exc) from None
        self.rotate(away_from=address)

    def error(self, exc: grpc.RpcError) -> PulseError:
        """The pulse error of a failed call: ``ClientClosed`` for a call
        that ``close()`` cancelled."""
        if self._closed and exc.code() == grpc.StatusCode.CANCELLED:
            return ClientClosed("the Pulse client is closed")
        return from_rpc_error(exc)

    def kwargs(self, timeout_seconds: float | None = None) -> dict[str, Any]:
        return {
            "timeout": self.timeout_seconds
            if timeout_seconds is None
            else timeout_seconds,
            "metadata": self._metadata,
        }

    def close(self) -> None:
        with self._lock:
            self._closed = True
            channels, self._channels = list(self._channels.values()), {}
            self._stubs = {}
        for channel in channels:
            channel.close()

    def _open(self, address: str) -> grpc.Channel:
        if self._credentials is not None:
            return grpc.secure_channel(
                address, self._credentials, options=CHANNEL_OPTIONS
            )
        return grpc.insecure_channel(address, options=CHANNEL_OPTIONS)


def wait_until_serving(
    addr: str,
    timeout_seconds: float,
    alive: Callable[[], bool] = lambda: True,
    *,
    poll_seconds: float = 0.05,
) -> bool:
    """Poll the server's gRPC health service until it answers SERVING.

    False when ``timeout_seconds`` pass or ``alive()`` (for example, "the
    server process has not exited") turns false first.
    """
    deadline = time.monotonic() + timeout_seconds
    with grpc.insecure_channel(addr) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline and alive():
            try:
                reply = health.Check(health_pb2.HealthCheckRequest(), timeout=1)
            except grpc.RpcError:
                time.sleep(poll_seconds)
                continue
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                return True
            time.sleep(poll_seconds)
    return False


class StartedCall(Generic[_T]):
    """A unary call under way, from ``Connection.start``."""

    def __init__(
        self,
        connection: Connection,
        address: str,
        future: grpc.Future[_T],
        retry: Callable[[pulse_pb2_grpc.PulseStub], _T],
    ) -> None:
        self._connection = connection
        self._address = address
        self._future = future
        self._retry = retry

    def result(self) -> _T:
        """The answer; a PulseError if the call failed (after failing over
        when the replica was unavailable)."""
        try:
            return self._future.result()
        except grpc.RpcError as exc:
            self._connection._fail_over(exc, self._address)
        except grpc.FutureCancelledError:
            raise PulseError("the call was cancelled") from None
        return self._connection.call(self._retry)

    def done(self) -> bool:
        """Whether the call has ended (answered, failed or cancelled)."""
        return bool(self._future.done())

    def cancel(self) -> None:
        """End the call now if it is still under way; ``result()`` then
        raises at once."""
        self._future.cancel()
