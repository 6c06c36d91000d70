"""Handlers that end their worker process: the test kills it, or they do.

Run as ``pulse-worker tests.e2e.apps.crash:pulse --addr …``.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from pulse_client import JobContext, Pulse
from tests.e2e.apps.recorder import record

pulse = Pulse(concurrency=1, heartbeat_seconds=0.2, grace_seconds=5)


@pulse.handler("crash.job")
def job(args: Any, ctx: JobContext) -> None:
    record(ctx, "start")
    if ctx.attempt == 1:
        time.sleep(120)  # the test kills this process long before
    record(ctx, "end")


@pulse.handler("crash.poison")
def poison(args: Any, ctx: JobContext) -> None:
    """Kills its own worker process, every time."""
    record(ctx, "start")
    os.kill(os.getpid(), signal.SIGKILL)
