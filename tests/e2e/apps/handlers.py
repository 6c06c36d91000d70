"""One worker process for the handler tests: typed payloads, outcomes, cancel.

Run as ``pulse-worker tests.e2e.apps.handlers:pulse --addr …``.
"""

from __future__ import annotations

import json
import time
from typing import Any

from pulse_client import JobContext, PermanentError, Pulse, RetryLater
from tests.e2e.apps.recorder import record
from tests.e2e.apps.shapes import Order, Point, Shipment

pulse = Pulse(concurrency=8, heartbeat_seconds=0.2, grace_seconds=5)

# How long a cancel test's handler waits for the cancel before giving up.
_CANCEL_WAIT_SECONDS = 20.0


# -- typed payloads ------------------------------------------------------------


@pulse.handler("typed.dataclass")
def typed_dataclass(order: Order, ctx: JobContext) -> None:
    record(ctx, "decoded", repr(order))


@pulse.handler("typed.shipment")
def typed_shipment(shipment: Shipment, ctx: JobContext) -> None:
    record(ctx, "decoded", repr(shipment))


@pulse.handler("typed.typeddict")
def typed_typeddict(point: Point, ctx: JobContext) -> None:
    record(
        ctx, "decoded", f"{type(point).__name__} {json.dumps(point, sort_keys=True)}"
    )


@pulse.handler("typed.dict")
def typed_dict(args: dict[str, Any], ctx: JobContext) -> None:
    record(ctx, "decoded", f"{type(args).__name__} {json.dumps(args, sort_keys=True)}")


@pulse.handler("typed.bytes")
def typed_bytes(data: bytes, ctx: JobContext) -> None:
    record(ctx, "decoded", type(data).__name__, data=data)


@pulse.handler("typed.unannotated")
def typed_unannotated(args, ctx):  # type: ignore[no-untyped-def]
    record(ctx, "decoded", repr(args))


# -- outcomes ------------------------------------------------------------------


@pulse.handler("outcome.permanent")
def permanent(args: dict[str, Any], ctx: JobContext) -> None:
    record(ctx, "start")
    raise PermanentError(args["reason"])


@pulse.handler("outcome.retry_later")
def retry_later(args: dict[str, Any], ctx: JobContext) -> None:
    record(ctx, "start")
    if ctx.attempt == 1:
        record(ctx, "asked_to_retry")
        raise RetryLater(args["delay_seconds"])


@pulse.handler("outcome.error")
def error(args: dict[str, Any], ctx: JobContext) -> None:
    record(ctx, "start")
    raise ValueError(f"bad value {args['value']}")


@pulse.handler("outcome.fails_until")
def fails_until(args: dict[str, Any], ctx: JobContext) -> None:
    record(ctx, "start")
    if ctx.attempt < args["succeed_at_attempt"]:
        raise RuntimeError(f"attempt {ctx.attempt} failed")


@pulse.handler("outcome.unclean_error")
def unclean_error(args: Any, ctx: JobContext) -> None:
    record(ctx, "start")
    raise PermanentError("a NUL \x00 and a lone surrogate \udcff in the text")


# -- cancel ----------------------------------------------------------------------


def _wait_for_cancel(ctx: JobContext) -> None:
    record(ctx, "start")
    deadline = time.monotonic() + _CANCEL_WAIT_SECONDS
    while not ctx.canceled and time.monotonic() < deadline:
        ctx.wait(0.05)
    record(ctx, "saw_cancel" if ctx.canceled else "no_cancel")


@pulse.handler("cancel.then_raise")
def cancel_then_raise(args: Any, ctx: JobContext) -> None:
    _wait_for_cancel(ctx)
    raise RuntimeError("stopped because the job was canceled")


@pulse.handler("cancel.then_return")
def cancel_then_return(args: Any, ctx: JobContext) -> None:
    _wait_for_cancel(ctx)
