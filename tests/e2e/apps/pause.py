"""Handlers for the dispatch pause tests: jobs that take a while.

Run as ``pulse-worker tests.e2e.apps.pause:pulse``.
"""

from __future__ import annotations

import time
from typing import Any

from pulse_client import JobContext, Pulse
from tests.e2e.apps.recorder import record

pulse = Pulse(concurrency=2, heartbeat_seconds=0.2, grace_seconds=30)


@pulse.handler("pause.work")
def work(args: dict[str, Any], ctx: JobContext) -> None:
    record(ctx, "start")
    time.sleep(args["seconds"])
    record(ctx, "end")
