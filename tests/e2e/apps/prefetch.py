"""A worker that holds prefetched jobs behind one busy thread.

Run as ``pulse-worker tests.e2e.apps.prefetch:held``: one handler thread,
two more jobs prefetched.
"""

from __future__ import annotations

import time
from typing import Any

from pulse_client import JobContext, Pulse
from tests.e2e.apps.recorder import record

held = Pulse(concurrency=1, prefetch=2, heartbeat_seconds=0.2, grace_seconds=30)


@held.handler("prefetch.slow")
def slow_job(args: dict[str, Any], ctx: JobContext) -> None:
    """Ignores every request to stop."""
    record(ctx, "start")
    time.sleep(args["seconds"])
    record(ctx, "end")
