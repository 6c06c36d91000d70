"""The pulse exception tree, shared by the server and the SDK.

Every error that crosses the wire has a stable ``code``. The server sends it
beside the gRPC status (trailing metadata ``pulse-error-code``); the SDK maps
it back to the same class, so both sides speak one vocabulary.
"""

from __future__ import annotations

import grpc

ERROR_CODE_METADATA_KEY = "pulse-error-code"


class PulseError(Exception):
    """Root of every error pulse raises."""

    code = "internal"
    status = grpc.StatusCode.INTERNAL
    # Set by Pulse.enqueue: the id of the job the failed call submitted.
    job_id: str | None = None
    # Set by Pulse.enqueue_many: the ids of the jobs read before it failed.
    job_ids: list[str] | None = None


class InvalidArgument(PulseError):
    """A request carried a value pulse does not accept; nothing was changed."""

    code = "invalid_argument"
    status = grpc.StatusCode.INVALID_ARGUMENT


class JobNotFound(PulseError):
    """No job has the given id."""

    code = "job_not_found"
    status = grpc.StatusCode.NOT_FOUND


class ScheduleNotFound(PulseError):
    """No schedule has the given name."""

    code = "schedule_not_found"
    status = grpc.StatusCode.NOT_FOUND


class JobConflict(PulseError):
    """A job with this id already exists with another topic or payload."""

    code = "job_conflict"
    status = grpc.StatusCode.ALREADY_EXISTS


class InvalidState(PulseError):
    """The job's status does not allow the operation."""

    code = "invalid_state"
    status = grpc.StatusCode.FAILED_PRECONDITION


class Unavailable(PulseError):
    """The server or its database cannot be reached; the call may be retried."""

    code = "unavailable"
    status = grpc.StatusCode.UNAVAILABLE


class ResourceExhausted(PulseError):
    """A server limit was reached (for example the number of open streams)."""

    code = "resource_exhausted"
    status = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unauthenticated(PulseError):
    """Missing or wrong credentials."""

    code = "unauthenticated"
    status = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(PulseError):
    """The credentials are valid but their role does not allow the call."""

    code = "permission_denied"
    status = grpc.StatusCode.PERMISSION_DENIED


class DeadlineExceeded(PulseError):
    """The call did not finish within its deadline."""

    code = "deadline_exceeded"
    status = grpc.StatusCode.DEADLINE_EXCEEDED


class ClientClosed(PulseError):
    """The client was used after close()."""

    code = "client_closed"
    status = grpc.StatusCode.CANCELLED


_BY_CODE: dict[str, type[PulseError]] = {
    cls.code: cls
    for cls in (
        PulseError,
        InvalidArgument,
        JobNotFound,
        ScheduleNotFound,
        JobConflict,
        InvalidState,
        Unavailable,
        ResourceExhausted,
        Unauthenticated,
        PermissionDenied,
        DeadlineExceeded,
    )
}
_BY_STATUS: dict[grpc.StatusCode, type[PulseError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: JobNotFound,
    grpc.StatusCode.ALREADY_EXISTS: JobConflict,
    grpc.StatusCode.FAILED_PRECONDITION: InvalidState,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
}


def error_class(code: str) -> type[PulseError]:
    """The exception class for a pulse error code (PulseError if unknown)."""
    return _BY_CODE.get(code, PulseError)


def from_rpc_error(exc: grpc.RpcError) -> PulseError:
    """Translate a failed gRPC call into the matching pulse exception."""
    code = None
    details = ""
    status = None
    if isinstance(exc, grpc.Call):
        for key, value in exc.trailing_metadata() or ():
            if key == ERROR_CODE_METADATA_KEY:
                code = value if isinstance(value, str) else value.decode()
        details = exc.details() or ""
        status = exc.code()
    if code is not None:
        cls = error_class(code)
    else:
        cls = _BY_STATUS.get(status, PulseError) if status else PulseError
    error = cls(details or (status.name if status else str(exc)))
    error.__cause__ = exc
    return error
