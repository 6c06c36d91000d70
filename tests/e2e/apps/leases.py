"""Handlers that outlive their lease: kept alive by heartbeats, or by none.

Run as ``pulse-worker tests.e2e.apps.leases:pulse --addr …``.
"""

from __future__ import annotations

import time
from typing import Any

from pulse_client import JobContext, Pulse
from tests.e2e.apps.recorder import record

pulse = Pulse(concurrency=4, heartbeat_seconds=0.2, grace_seconds=5)


@pulse.handler("leases.long")
def long_job(args: dict[str, Any], ctx: JobContext) -> None:
    record(ctx, "start")
    time.sleep(args["seconds"])
    record(ctx, "end")


@pulse.handler("leases.overrun")
def overrun(args: dict[str, Any], ctx: JobContext) -> None:
    """Overruns its timeout on the first attempt only."""
    record(ctx, "start")
    if ctx.attempt == 1:
        seen = False
        end = time.monotonic() + args["seconds"]
        while time.monotonic() < end:
            if ctx.deadline_passed and not seen:
                seen = True
                record(ctx, "deadline_passed")
            time.sleep(0.05)
    record(ctx, "end")
