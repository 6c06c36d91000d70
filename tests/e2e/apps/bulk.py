"""A quick handler for the many-jobs test; it records when each run started
and ended.

Run as ``pulse-worker tests.e2e.apps.bulk:pulse --processes N --addr …``.
"""

from __future__ import annotations

from typing import Any

from pulse_client import JobContext, Pulse
from tests.e2e.apps.recorder import record

pulse = Pulse(concurrency=8, heartbeat_seconds=2)


@pulse.handler("bulk.job")
def job(args: Any, ctx: JobContext) -> None:
    record(ctx, "start")
    record(ctx, "end")
