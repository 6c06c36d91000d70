"""A worker heartbeats at a third of the server's lease from its first job on.

Found by breaking: the worker's heartbeat thread starts before the stream
tells it the lease (``lease_ms``) and sleeps a third of a 30 s default
first, so for its first 10 s a new worker sends no heartbeat at all. With
PULSE_LEASE_SECONDS below that, every job a fresh worker (or one that
pulse-worker just restarted) takes in its first seconds and that runs past
the lease lapses, is run a second time, and the first run's result is
refused.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from pulse_client import JobContext, Pulse
from pulse_client.models import JobStatus
from tests.fixtures.servers import InProcessServer

LEASE_SECONDS = 1.0
# Several leases long, far below the worker's 10 s first sleep.
RUN_SECONDS = 3.0
TOPIC = "break.heartbeat"


def test_a_job_taken_right_after_the_worker_starts_keeps_its_lease(
    start_inprocess: Callable[..., InProcessServer],
) -> None:
    server = start_inprocess(lease_seconds=LEASE_SECONDS, backoff_base_seconds=0.1)
    starts: list[int] = []
    worker = Pulse(server.addr, concurrency=1, grace_seconds=10)

    @worker.handler(TOPIC)
    def slow(args: dict[str, int], ctx: JobContext) -> None:
        starts.append(ctx.attempt)
        deadline = time.monotonic() + RUN_SECONDS
        while time.monotonic() < deadline:  # busy, not watching ctx
            time.sleep(0.05)

    runner = threading.Thread(target=worker.run, name="break-worker", daemon=True)
    client = Pulse(server.addr, timeout_seconds=10)
    try:
        runner.start()
        job_id = client.enqueue(TOPIC, {"n": 1})
        deadline = time.monotonic() + 30
        job = client.get_job(job_id)
        while job.status != JobStatus.COMPLETED and time.monotonic() < deadline:
            time.sleep(0.1)
            job = client.get_job(job_id)

        assert (job.status, job.attempt, job.last_error) == (
            JobStatus.COMPLETED,
            1,
            "",
        )
        assert starts == [1]
    finally:
        worker.stop()
        runner.join(20)
        worker.close()
        client.close()
