"""A handler that takes a while, for the replica failover test.

Run as ``pulse-worker tests.e2e.apps.reconnect:pulse --addr A,B``.
"""

from __future__ import annotations

import time
from typing import Any

from pulse_client import JobContext, Pulse
from tests.e2e.apps.recorder import record

pulse = Pulse(concurrency=4, heartbeat_seconds=0.2, grace_seconds=5)


@pulse.handler("reconnect.job")
def job(args: dict[str, Any], ctx: JobContext) -> None:
    record(ctx, "start")
    time.sleep(args["seconds"])
    record(ctx, "end")
