"""A handler asking for a retry delay the server would refuse fails that
attempt alone: the worker's other jobs carry on."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from pulse_client import NewJob, Pulse, RetryLater
from tests.fixtures.databases import Sql
from tests.fixtures.servers import InProcessServer

WAIT_SECONDS = 30.0


@pytest.mark.parametrize("delay", [1e17, float("inf"), float("nan"), 31 * 86400.0])
def test_an_out_of_range_retry_delay_fails_its_attempt_and_nothing_else(
    start_inprocess: Callable[..., InProcessServer], sql: Sql, delay: float
) -> None:
    server = start_inprocess(lease_seconds=30, backoff_base_seconds=30)
    client = Pulse(server.addr, timeout_seconds=30)
    (bad,) = client.enqueue_many([NewJob("limits.bad", {})])
    client.enqueue_many(NewJob("limits.good", {"n": n}) for n in range(50))
    worker = Pulse(server.addr, concurrency=4, grace_seconds=5)
    worker.register("limits.bad", lambda args: (_ for _ in ()).throw(RetryLater(delay)))
    worker.register("limits.good", lambda args: None)
    runner = threading.Thread(target=worker.run, daemon=True)
    runner.start()
    try:
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            done = sql.scalar(
                "SELECT count(*) FROM jobs WHERE topic = 'limits.good' "
                "AND status = 'completed'"
            )
            failed = sql.scalar(
                "SELECT count(*) FROM jobs WHERE id = %s AND status = 'retrying'",
                (bad,),
            )
            if done == 50 and failed == 1:
                break
            time.sleep(0.05)
    finally:
        worker.stop()
        runner.join(WAIT_SECONDS)
        worker.close()
        client.close()
    assert done == 50
    assert failed == 1
    error = sql.scalar("SELECT last_error FROM jobs WHERE id = %s", (bad,))
    assert "retry delay must be 0 to 2592000 seconds" in error
