"""Assignments are sent in messages a worker can receive, however many
credits it has and however large the payloads are.

Found by breaking: the dispatcher hands all of one claim's jobs for a stream
to it in one ServerMessage. A worker with 100 free slots and a backlog of
1 MiB payloads (the default PULSE_MAX_PAYLOAD_BYTES) got a 100 MiB message;
gRPC refused to send it ("Sent message larger than max (104866385 vs.
67108864)"), the stream broke, and the claimed jobs sat "running" until
their leases lapsed, each losing an attempt without having run. With a
deeper backlog every reconnect claimed and lost the next batch the same way.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from pulse_client import NewJob, Pulse
from tests.fixtures.databases import Sql
from tests.fixtures.servers import InProcessServer

TOPIC = "break.large"
JOBS = 80
# Just under the default PULSE_MAX_PAYLOAD_BYTES once JSON adds its quotes.
PAYLOAD = "x" * (1024 * 1024 - 2)


def test_a_worker_with_many_slots_gets_a_backlog_of_large_payloads(
    start_inprocess: Callable[..., InProcessServer], sql: Sql
) -> None:
    server = start_inprocess(lease_seconds=5, backoff_base_seconds=0.1)
    client = Pulse(server.addr, timeout_seconds=60)
    job_ids = client.enqueue_many(NewJob(TOPIC, PAYLOAD) for _ in range(JOBS))

    ran: list[str] = []
    worker = Pulse(server.addr, concurrency=JOBS, grace_seconds=5)

    @worker.handler(TOPIC)
    def take(args: bytes) -> None:
        ran.append("x")

    runner = threading.Thread(target=worker.run, name="break-worker", daemon=True)
    try:
        runner.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            done = sql.scalar("SELECT count(*) FROM jobs WHERE status = 'completed'")
            if done == JOBS:
                break
            time.sleep(0.2)

        # Every job ran once, as its first attempt: none was claimed into a
        # message that could not be sent.
        assert sql.all(
            "SELECT status, attempt, count(*) FROM jobs GROUP BY status, attempt"
        ) == [("completed", 1, JOBS)]
        assert len(job_ids) == JOBS
    finally:
        worker.stop()
        runner.join(20)
        worker.close()
        client.close()
