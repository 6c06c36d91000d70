"""A hung replica must not hold the clients that reach it.

A replica that hangs (stopped, or its host stalled) is not a dead one: it
refuses no connection, it only stops answering, so only call timeouts and
keepalive pings can tell. The fault campaign found two ways it held its
clients while the other replica was healthy; these tests hold both fixes
(``pulse_client/connection.py``):

- a unary call that timed out on it left it the preferred replica, so every
  later call (the application's retry too) timed out on it as well, for as
  long as it hung;
- a worker streaming from it noticed only after about a minute: grpcio
  times keepalive pings out by ``grpc.http2.ping_timeout_ms`` (60 s by
  default), not by the configured ``keepalive_timeout_ms``, and the SDK
  did not set it.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pulse_client import DeadlineExceeded, JobStatus, Pulse, new_job_id
from pulse_client import connection as sdk_connection
from tests.e2e.conftest import wait_for
from tests.fixtures.servers import PulsedProcess

pytestmark = pytest.mark.slow

TOPIC = "hung.replica"
# Every keepalive timing the SDK sets is cut to this here, so that the test
# takes seconds; a timing the SDK leaves to grpcio keeps grpcio's default
# (a minute for the ping timeout), and the test fails.
KEEPALIVE_TIMINGS = (
    "grpc.keepalive_time_ms",
    "grpc.keepalive_timeout_ms",
    "grpc.http2.ping_timeout_ms",
)
TEST_KEEPALIVE_MS = 500
# Two keepalive timings, then the reconnect with its backoff.
WORKER_MOVES_WITHIN_SECONDS = 2 * TEST_KEEPALIVE_MS / 1000 + 4.0


@contextlib.contextmanager
def hung(replica: PulsedProcess) -> Iterator[None]:
    """The replica stopped (SIGSTOP) inside the block, running again after."""
    replica.process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        replica.process.send_signal(signal.SIGCONT)


def two_replicas(start: Callable[..., PulsedProcess]) -> list[PulsedProcess]:
    """Two replicas of one database, started side by side."""
    replicas = [start(wait=False), start(wait=False)]
    for replica in replicas:
        assert replica.wait_until_serving(), f"pulsed {replica.addr} did not serve"
    return replicas


def test_a_client_calls_another_replica_once_a_call_to_a_hung_one_timed_out(
    start_pulsed: Callable[..., PulsedProcess],
) -> None:
    stuck, healthy = two_replicas(start_pulsed)
    job_id = new_job_id()
    with Pulse([stuck.addr, healthy.addr], timeout_seconds=1) as client:
        with hung(stuck):
            with pytest.raises(DeadlineExceeded):
                client.enqueue(TOPIC, job_id=job_id)
            # The documented remedy: the same call with the same id.
            started = time.monotonic()
            assert client.enqueue(TOPIC, job_id=job_id) == job_id
            retry_seconds = time.monotonic() - started
        job = client.get_job(job_id)
    assert retry_seconds < 0.9, "the retry waited on the hung replica again"
    assert (job.id, job.status) == (job_id, JobStatus.PENDING)


def test_a_worker_streaming_from_a_hung_replica_moves_to_another_within_the_keepalive(
    start_pulsed: Callable[..., PulsedProcess], monkeypatch: pytest.MonkeyPatch
) -> None:
    options = [
        (name, TEST_KEEPALIVE_MS if name in KEEPALIVE_TIMINGS else value)
        for name, value in sdk_connection.CHANNEL_OPTIONS
    ]
    monkeypatch.setattr(sdk_connection, "CHANNEL_OPTIONS", options)
    stuck, healthy = two_replicas(start_pulsed)
    done: list[Any] = []
    worker = Pulse([stuck.addr, healthy.addr], concurrency=1, grace_seconds=1)
    worker.register(TOPIC, done.append)
    thread = threading.Thread(target=worker.run, name="hung-replica-worker")
    thread.start()
    try:
        with Pulse(healthy.addr, timeout_seconds=5) as client:
            client.enqueue(TOPIC, "before")
            # The worker streams from the first replica it was given.
            wait_for(lambda: done == ["before"], "the job before the hang", 20)
            with hung(stuck):
                hung_at = time.monotonic()
                client.enqueue(TOPIC, "during")
                wait_for(
                    lambda: done == ["before", "during"],
                    "the worker to move to the healthy replica",
                    WORKER_MOVES_WITHIN_SECONDS,
                )
                moved_seconds = time.monotonic() - hung_at
    finally:
        worker.stop()
        thread.join(10)
        worker.close()
    assert moved_seconds < WORKER_MOVES_WITHIN_SECONDS
