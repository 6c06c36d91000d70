"""The campaign's worker: a short handler that records each run it makes.

Run as ``pulse-worker tests.faults.apps.steady:pulse --addr A,B``. Every run
adds a ``start`` and an ``end`` row (job id and attempt) to ``handler_runs``
in the database ``E2E_DB_URL`` names, which is not the database pulse uses:
the faults that break pulse's Postgres must not break the record of what
the handlers did.
"""

from __future__ import annotations

import time
from typing import Any

from pulse_client import JobContext, Pulse
from tests.e2e.apps.recorder import record

TOPIC = "faults.steady"

# Heartbeats follow the server's lease (a third of it).
pulse = Pulse(concurrency=4, grace_seconds=5)


@pulse.handler(TOPIC)
def steady(args: dict[str, Any], ctx: JobContext) -> None:
    record(ctx, "start")
    time.sleep(args["ms"] / 1000)
    record(ctx, "end")
