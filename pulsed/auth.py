"""Who is calling: credentials, roles, and the identity every RPC acts under.

On an open server (no PULSE_AUTH_USERS) there is no interceptor and every
caller is "anonymous" with the admin role. With users configured,
``AuthInterceptor`` checks each call's Basic credentials (the SDK sends
``authorization: Basic base64(user:password)``), refuses missing or wrong
ones with UNAUTHENTICATED and a role too low for the method with
PERMISSION_DENIED, and sets the caller for the duration of the call; the
service reads it through ``current_caller``. Only the gRPC health service
answers without credentials, and WhoAmI, which says who the caller is.
"""

from __future__ import annotations

import base64
import collections
import contextvars
import dataclasses
import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NoReturn

import grpc

from pulse_client.errors import (
    ERROR_CODE_METADATA_KEY,
    PermissionDenied,
    PulseError,
    Unauthenticated,
)
from pulsed import passwords

log = logging.getLogger(__name__)

ANONYMOUS = "anonymous"

# Roles from least to most: each includes what the ones before it may do.
VIEWER = "viewer"
WORKER = "worker"
OPERATOR = "operator"
ADMIN = "admin"
ROLES = (VIEWER, WORKER, OPERATOR, ADMIN)
DEFAULT_ROLE = ADMIN

PULSE_SERVICE = "pulse.v1.Pulse"
# Load balancers and orchestrators probe it without credentials.
OPEN_SERVICES = frozenset({"grpc.health.v1.Health"})
REFLECTION_SERVICE = "grpc.reflection.v1alpha.ServerReflection"

# The least role each RPC of pulse.v1.Pulse needs: the one place access is
# decided. A method missing here needs admin, and a test holds that every
# RPC of the service has a row.
REQUIRED_ROLE: dict[str, str] = {
    # Reading jobs, statistics, reports, schedules and the pause.
    "GetJob": VIEWER,
    "ListJobs": VIEWER,
    "Stats": VIEWER,
    "ListDeadLetterGroups": VIEWER,
    "Throughput": VIEWER,
    "GetSchedule": VIEWER,
    "ListSchedules": VIEWER,
    "ListOccurrences": VIEWER,
    "PreviewSchedule": VIEWER,
    "GetDispatchStatus": VIEWER,
    # Also answers without credentials (see AuthInterceptor).
    "WhoAmI": VIEWER,
    # Producing and consuming work.
    "SubmitJob": WORKER,
    "SubmitJobs": WORKER,
    "StreamJobs": WORKER,
    # Steering other people's work, and reading who steered it.
    "CancelJob": OPERATOR,
    "RequeueJob": OPERATOR,
    "RequeueJobs": OPERATOR,
    "PutSchedule": OPERATOR,
    "PauseSchedule": OPERATOR,
    "ResumeSchedule": OPERATOR,
    "DeleteSchedule": OPERATOR,
    "PauseDispatch": OPERATOR,
    "ResumeDispatch": OPERATOR,
    "ListAudit": OPERATOR,
}
# Answered without credentials; wrong credentials are still refused.
ANSWERS_ANONYMOUS = frozenset({f"/{PULSE_SERVICE}/WhoAmI"})

REFUSED_MESSAGE = (
    "missing or wrong credentials: this server requires a user and password "
    "(Pulse(user=..., password=...), or PULSE_USER and PULSE_PASSWORD)"
)


@dataclasses.dataclass(frozen=True)
class User:
    """One entry of PULSE_AUTH_USERS: the password is plaintext or a bcrypt
    hash, and never shown by ``repr``."""

    name: str
    password: str = dataclasses.field(repr=False)
    role: str = DEFAULT_ROLE


@dataclasses.dataclass(frozen=True)
class Caller:
    user: str
    role: str
    peer: str
    authenticated: bool


_caller: contextvars.ContextVar[Caller | None] = contextvars.ContextVar(
    "pulse_caller", default=None
)


def current_caller(context: grpc.ServicerContext) -> Caller:
    """The caller of the RPC being served, as the interceptor set it; on an
    open server, "anonymous" with the admin role."""
    caller = _caller.get()
    if caller is not None:
        return caller
    return Caller(ANONYMOUS, ADMIN, context.peer() or "", False)


def required_role(method: str) -> str | None:
    """The least role a full method name (``/pkg.Service/Method``) needs;
    None for the open services."""
    service, _, name = method.lstrip("/").rpartition("/")
    if service in OPEN_SERVICES:
        return None
    if service == PULSE_SERVICE:
        return REQUIRED_ROLE.get(name, ADMIN)
    if service == REFLECTION_SERVICE:
        # It only describes the public contract, but anonymous callers
        # learn nothing from this server.
        return VIEWER
    return ADMIN


def role_allows(role: str, required: str) -> bool:
    """Whether ``role`` includes ``required``."""
    return role in ROLES and ROLES.index(role) >= ROLES.index(required)


class FailureThrottle:
    """Slows down peers whose recent attempts failed. Thread-safe.

    A peer's next unverified attempt waits ``first × 2^(n-1)`` seconds, at
    most ``max_delay_seconds``, for its ``n`` failures within the window.
    Peers are told apart by host, not port: a new connection starts no
    fresh count.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        window_seconds: float = 60.0,
        first_delay_seconds: float = 0.1,
        max_delay_seconds: float = 2.0,
        max_hosts: int = 10_000,
    ) -> None:
        self._clock = clock
        self.window_seconds = window_seconds
        self.first_delay_seconds = first_delay_seconds
        self.max_delay_seconds = max_delay_seconds
        self._max_hosts = max_hosts
        self._lock = threading.Lock()
        # Oldest failure first; a host moves to the end on each failure.
        self._failures: dict[str, collections.deque[float]] = {}

    def recent_failures(self, host: str) -> int:
        with self._lock:
            return self._count(host, self._clock())

    def delay_seconds(self, host: str) -> float:
        failures = self.recent_failures(host)
        if failures == 0:
            return 0.0
        # The exponent is capped so that float arithmetic never overflows.
        return min(
            self.max_delay_seconds,
            self.first_delay_seconds * 2.0 ** min(failures - 1, 32),
        )

    def record(self, host: str) -> int:
        """Count one failure; returns the host's recent failures."""
        now = self._clock()
        with self._lock:
            times = self._failures.pop(host, None)
            if times is None:
                times = collections.deque(maxlen=64)
            times.append(now)
            self._failures[host] = times
            while len(self._failures) > self._max_hosts:
                del self._failures[next(iter(self._failures))]
            return self._count(host, now)

    def _count(self, host: str, now: float) -> int:
        times = self._failures.get(host)
        if times is None:
            return 0
        while times and times[0] <= now - self.window_seconds:
            times.popleft()
        if not times:
            del self._failures[host]
            return 0
        return len(times)


class _Malformed(Exception):
    """The authorization metadata is not ``Basic base64(user:password)``."""


@dataclasses.dataclass(frozen=True)
class _Account:
    name: str
    role: str
    # One of the two: the keyed digest of a plaintext password, or a hash.
    digest: bytes | None
    bcrypt_hash: str | None


class Authenticator:
    """Checks Basic credentials against the configured users. Thread-safe.

    A verified credential is remembered as an HMAC under a key made for
    this process, never as the password, so bcrypt runs once per credential
    instead of once per call; plaintext passwords are kept only as such
    digests too. A wrong credential is never remembered, and the next
    unverified attempt from its peer waits (``FailureThrottle``).
    """

    def __init__(
        self,
        users: Sequence[User],
        *,
        throttle: FailureThrottle | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._key = secrets.token_bytes(32)
        self._accounts = {user.name: self._account(user) for user in users}
        # An unknown user costs as much as a known one, so timing does not
        # tell which names exist (plaintext users aside: they are cheap).
        self._decoy_hash = next(
            (a.bcrypt_hash for a in self._accounts.values() if a.bcrypt_hash),
            None,
        )
        self._verified: dict[bytes, _Account] = {}
        self._lock = threading.Lock()
        # Credentials being checked now, and the event their check sets.
        self._in_flight: dict[bytes, threading.Event] = {}
        self.throttle = throttle or FailureThrottle()
        self._sleep = sleep

    def authenticate(self, metadata: Any, peer: str) -> Caller | None:
        """The caller the call's credentials name; None when it has none.

        Raises ``Unauthenticated`` for malformed or wrong credentials.
        """
        try:
            credentials = _basic_credentials(metadata)
        except _Malformed:
            self._wait_out_failures(peer)
            self._fail(peer, "", "malformed credentials")
        if credentials is None:
            return None
        name, password = credentials

        digest = self._digest(name, password)
        account = self._verified.get(digest)
        if account is not None:
            return Caller(account.name, account.role, peer, True)

        # Before the check, so that an answer's speed never tells a guess
        # that was right from one that was wrong.
        self._wait_out_failures(peer)
        account = self._verify_once(name, password, digest, peer)
        if account is None:
            known = name in self._accounts
            self._fail(peer, name, "wrong password" if known else "unknown user")
        return Caller(account.name, account.role, peer, True)

    def _verify_once(
        self, name: str, password: str, digest: bytes, peer: str
    ) -> _Account | None:
        """Check a credential that is not cached. Concurrent calls with the
        same credential share one check: a fleet of workers reconnecting
        after a restart costs one bcrypt run, not one per worker."""
        with self._lock:
            account = self._verified.get(digest)
            if account is not None:
                return account
            done = self._in_flight.get(digest)
            if done is not None:
                leader = False
            else:
                leader = True
                done = self._in_flight[digest] = threading.Event()
        if not leader:
            done.wait()
            return self._verified.get(digest)

        try:
            account = self._accounts.get(name)
            if account is None:
                self._spend_like_a_check(password)
                return None
            if not self._matches(account, password, digest):
                return None
            self._verified[digest] = account
        finally:
            with self._lock:
                del self._in_flight[digest]
            done.set()
        log.info("auth.verified user=%s role=%s peer=%s", name, account.role, peer)
        return account

    def _account(self, user: User) -> _Account:
        if passwords.is_bcrypt_hash(user.password):
            return _Account(user.name, user.role, None, user.password)
        return _Account(
            user.name, user.role, self._digest(user.name, user.password), None
        )

    def _digest(self, name: str, password: str) -> bytes:
        # Unambiguous: a user name never contains ':' (Basic splits there).
        message = name.encode() + b":" + password.encode()
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def _matches(self, account: _Account, password: str, digest: bytes) -> bool:
        if account.digest is not None:
            return hmac.compare_digest(digest, account.digest)
        assert account.bcrypt_hash is not None
        return passwords.verify_password(password, account.bcrypt_hash)

    def _spend_like_a_check(self, password: str) -> None:
        if self._decoy_hash is not None:
            passwords.verify_password(password, self._decoy_hash)
        else:
            hmac.compare_digest(secrets.token_bytes(32), secrets.token_bytes(32))

    def _wait_out_failures(self, peer: str) -> None:
        delay = self.throttle.delay_seconds(_peer_host(peer))
        if delay > 0:
            self._sleep(delay)

    def _fail(self, peer: str, name: str, reason: str) -> NoReturn:
        failures = self.throttle.record(_peer_host(peer))
        log.warning(
            "auth.failed peer=%s user=%r reason=%s recent_failures=%d",
            peer,
            name[:64],
            reason,
            failures,
        )
        raise Unauthenticated(REFUSED_MESSAGE)


def _basic_credentials(metadata: Any) -> tuple[str, str] | None:
    values = [value for key, value in metadata or () if key == "authorization"]
    if not values:
        return None
    if len(values) > 1 or not isinstance(values[0], str):
        raise _Malformed
    scheme, _, token = values[0].strip().partition(" ")
    if scheme.lower() != "basic":
        raise _Malformed
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode()
    except (ValueError, UnicodeDecodeError):  # binascii.Error is a ValueError
        raise _Malformed from None
    name, colon, password = decoded.partition(":")
    if not colon or not name:
        raise _Malformed
    return name, password


def _peer_host(peer: str) -> str:
    """``ipv4:10.0.0.5:41234`` → ``ipv4:10.0.0.5`` (likewise ipv6)."""
    if peer.startswith(("ipv4:", "ipv6:")):
        return peer.rsplit(":", 1)[0]
    return peer


class AuthInterceptor(grpc.ServerInterceptor):  # type: ignore[type-arg]
    """Checks every call's credentials and role, then runs its handler with
    the caller set (also while a streaming handler's generator runs)."""

    def __init__(self, authenticator: Authenticator) -> None:
        self.authenticator = authenticator

    def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        required = required_role(method)
        if handler is None or required is None:
            return handler
        metadata = handler_call_details.invocation_metadata

        def admit(context: grpc.ServicerContext) -> contextvars.Context:
            caller = self._admit(method, required, metadata, context)
            call_context = contextvars.copy_context()
            call_context.run(_caller.set, caller)
            return call_context

        return _guarded(handler, admit)

    def _admit(
        self,
        method: str,
        required: str,
        metadata: Any,
        context: grpc.ServicerContext,
    ) -> Caller:
        peer = context.peer() or ""
        try:
            caller = self.authenticator.authenticate(metadata, peer)
            if caller is None:
                if method in ANSWERS_ANONYMOUS:
                    return Caller("", "", peer, False)
                log.warning(
                    "auth.failed peer=%s user='' reason=no credentials method=%s",
                    peer,
                    method,
                )
                raise Unauthenticated(REFUSED_MESSAGE)
            if not role_allows(caller.role, required):
                log.warning(
                    "auth.denied peer=%s user=%s role=%s method=%s required=%s",
                    peer,
                    caller.user,
                    caller.role,
                    method,
                    required,
                )
                raise PermissionDenied(
                    f"{method.rpartition('/')[2]} needs the {required} role; user "
                    f"{caller.user!r} has the {caller.role} role"
                )
        except PulseError as exc:
            context.set_trailing_metadata(((ERROR_CODE_METADATA_KEY, exc.code),))
            context.abort(exc.status, str(exc))
        return caller


def _guarded(
    handler: grpc.RpcMethodHandler[Any, Any],
    admit: Callable[[grpc.ServicerContext], contextvars.Context],
) -> grpc.RpcMethodHandler[Any, Any]:
    """``handler`` with ``admit`` first and every step run in its context."""
    serializers = (handler.request_deserializer, handler.response_serializer)
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(
            _unary(handler.unary_unary, admit), *serializers
        )
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(
            _unary(handler.stream_unary, admit), *serializers
        )
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(
            _streaming(handler.unary_stream, admit), *serializers
        )
    assert handler.stream_stream is not None
    return grpc.stream_stream_rpc_method_handler(
        _streaming(handler.stream_stream, admit), *serializers
    )


def _unary(
    behavior: Callable[[Any, grpc.ServicerContext], Any],
    admit: Callable[[grpc.ServicerContext], contextvars.Context],
) -> Callable[[Any, grpc.ServicerContext], Any]:
    def guarded(request: Any, context: grpc.ServicerContext) -> Any:
        return admit(context).run(behavior, request, context)

    return guarded


def _streaming(
    behavior: Callable[[Any, grpc.ServicerContext], Iterator[Any]],
    admit: Callable[[grpc.ServicerContext], contextvars.Context],
) -> Callable[[Any, grpc.ServicerContext], Iterator[Any]]:
    def guarded(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        # Admitted (or aborted) when the call starts, not at its first item.
        call_context = admit(context)
        return _run_each_step(
            call_context, call_context.run(behavior, request, context)
        )

    return guarded


def _run_each_step(
    call_context: contextvars.Context, steps: Iterator[Any]
) -> Iterator[Any]:
    """Iterate ``steps`` with ``call_context`` entered for each step.

    A handler's generator runs only while it is iterated, possibly in
    another thread or context than the one that created it; entering the
    call's context around every step (and the final close) is what keeps
    its caller set.
    """
    try:
        while True:
            try:
                item = call_context.run(next, steps)
            except StopIteration:
                return
            yield item
    finally:
        close = getattr(steps, "close", None)
        if close is not None:
            call_context.run(close)
