"""Concurrent enqueue() calls with large payloads are each stored.

Found by breaking: the SDK's submitter coalesces the enqueue() calls of many
threads into one SubmitJobs of up to 500 jobs with no bound on its size.
100 threads each enqueueing a valid 1 MiB payload (the default
PULSE_MAX_PAYLOAD_BYTES) made a ~99 MiB request; gRPC refused to send it
("CLIENT: Sent message larger than max (103814172 vs. 67108864)") and 99 of
the 100 calls failed with ResourceExhausted, though every job was valid.
(``enqueue_many`` already chunks by bytes; the shared path does not.)
"""

from __future__ import annotations

import threading

from pulse_client import Pulse
from pulse_client.errors import PulseError
from tests.fixtures.databases import Sql
from tests.fixtures.servers import InProcessServer

THREADS = 100
# Just under the default PULSE_MAX_PAYLOAD_BYTES once JSON adds its quotes.
PAYLOAD = "x" * (1024 * 1024 - 2)


def test_a_hundred_threads_enqueue_a_mebibyte_each(
    server: InProcessServer, sql: Sql
) -> None:
    client = Pulse(server.addr, timeout_seconds=60)
    barrier = threading.Barrier(THREADS)
    errors: list[str] = []
    ids: list[str] = []
    lock = threading.Lock()

    def enqueue() -> None:
        barrier.wait()
        try:
            job_id = client.enqueue("break.concurrent", PAYLOAD)
        except PulseError as exc:
            with lock:
                errors.append(f"{type(exc).__name__}: {exc}")
            return
        with lock:
            ids.append(job_id)

    threads = [threading.Thread(target=enqueue) for _ in range(THREADS)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    finally:
        client.close()

    assert errors == []
    assert len(set(ids)) == THREADS
    assert sql.scalar("SELECT count(*) FROM jobs") == THREADS
