"""Who is calling: the identity every RPC acts under.

On an open server (no PULSE_AUTH_USERS) every caller is "anonymous" with
the admin role. The authentication interceptor sets the caller for the
duration of each call; the service reads it through ``current_caller``.
"""

from __future__ import annotations

import contextvars
import dataclasses

import grpc

ANONYMOUS = "anonymous"


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
    """The caller of the RPC running in this thread."""
    caller = _caller.get()
    if caller is not None:
        return caller
    return Caller(ANONYMOUS, "admin", context.peer() or "", False)
