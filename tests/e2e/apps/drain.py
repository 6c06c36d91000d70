"""Handlers for the SIGTERM drain tests, one Pulse object per test.

Run as ``pulse-worker tests.e2e.apps.drain:slow`` (jobs that finish within
the grace period) or ``tests.e2e.apps.drain:stuck`` (a job that does not).
"""

from __future__ import annotations

import time
from typing import Any

from pulse_client import JobContext, Pulse
from tests.e2e.apps.recorder import record

slow = Pulse(concurrency=2, heartbeat_seconds=0.2, grace_seconds=30)
stuck = Pulse(concurrency=1, heartbeat_seconds=0.2, grace_seconds=30)


@slow.handler("drain.slow")
def slow_job(args: dict[str, Any], ctx: JobContext) -> None:
    record(ctx, "start")
    time.sleep(args["seconds"])
    record(ctx, "end")


@stuck.handler("drain.stuck")
def stuck_job(args: dict[str, Any], ctx: JobContext) -> None:
    """Ignores every request to stop."""
    record(ctx, "start")
    time.sleep(args["seconds"])
    record(ctx, "end")
