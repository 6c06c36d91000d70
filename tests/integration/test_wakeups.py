"""New work reaches an idle worker at once, not at the next safety poll.

The safety poll is set to 30 s, so a slide back to polling shows up as
waits of many seconds; the precise latency belongs to the benchmark.
"""

from __future__ import annotations

import select
import statistics
import time
from collections.abc import Callable

import psycopg2

from pulse_client._proto.pulse.v1 import pulse_pb2_grpc
from pulsed.notifications import (
    LISTENER_APPLICATION_NAME,
    LISTENERS_TTL_SECONDS,
    POOL_APPLICATION_NAME,
)
from pulsed.submits import NOTIFY_CHANNEL_PENDING
from tests.fixtures.servers import PulsedProcess
from tests.fixtures.streams import WorkerStream
from tests.fixtures.wire import submit

OpenStream = Callable[..., WorkerStream]
SUBMITS = 50
SLOW_POLL = {"poll_seconds": 30}


def dispatch_latencies(
    submit_to: pulse_pb2_grpc.PulseStub, worker: WorkerStream, count: int
) -> list[float]:
    """Seconds from each submit to its assignment, one job at a time."""
    latencies = []
    for _ in range(count):
        started = time.monotonic()
        job = submit(submit_to)
        ((arrived, assignment),) = worker.take_timed_assignments(1, timeout_seconds=5)
        assert assignment.job_id == job.id
        latencies.append(arrived - started)
        worker.succeed([assignment], credits=1)
    return latencies


def test_an_idle_stream_receives_each_new_job_well_within_a_second(
    start_pulsed: Callable[..., PulsedProcess], open_stream: OpenStream
) -> None:
    server = start_pulsed(**SLOW_POLL)
    stub = server.stub()
    worker = open_stream(stub, "w", ["t"], 4)
    time.sleep(0.2)  # the stream is idle before the first submit

    latencies = dispatch_latencies(stub, worker, SUBMITS)

    assert statistics.median(latencies) < 0.2, sorted(latencies)
    assert max(latencies) < 2.0, sorted(latencies)


def test_a_job_submitted_to_one_replica_wakes_a_stream_on_another(
    start_pulsed: Callable[..., PulsedProcess], open_stream: OpenStream
) -> None:
    submitting = start_pulsed(**SLOW_POLL)
    dispatching = start_pulsed(**SLOW_POLL)
    worker = open_stream(dispatching.stub(), "w", ["t"], 4)
    time.sleep(0.2)

    latencies = dispatch_latencies(submitting.stub(), worker, SUBMITS)

    assert statistics.median(latencies) < 0.2, sorted(latencies)
    assert max(latencies) < 2.0, sorted(latencies)


def test_a_delayed_job_is_dispatched_within_tens_of_milliseconds_of_its_time(
    start_pulsed: Callable[..., PulsedProcess], open_stream: OpenStream
) -> None:
    server = start_pulsed(**SLOW_POLL)
    stub = server.stub()
    worker = open_stream(stub, "w", ["t"], 1)
    time.sleep(0.2)

    started = time.monotonic()
    submit(stub, delay_ms=300)
    ((arrived, _),) = worker.take_timed_assignments(1, timeout_seconds=5)

    assert 0.3 <= arrived - started < 0.3 + 0.2


def _listen(db_url: str, application_name: str) -> psycopg2.extensions.connection:
    conn = psycopg2.connect(db_url, application_name=application_name)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"LISTEN {NOTIFY_CHANNEL_PENDING}")
    return conn


def _heard(conn: psycopg2.extensions.connection, seconds: float) -> list[str]:
    """The topics announced on ``conn`` within ``seconds``."""
    deadline = time.monotonic() + seconds
    topics = []
    while (left := deadline - time.monotonic()) > 0:
        if select.select([conn], [], [], left)[0]:
            conn.poll()
            topics += [note.payload for note in conn.notifies]
            conn.notifies.clear()
    return topics


def test_a_lone_replica_announces_nothing_until_another_replica_listens(
    start_pulsed: Callable[..., PulsedProcess], db_url: str
) -> None:
    server = start_pulsed(**SLOW_POLL)
    stub = server.stub()
    observer = _listen(db_url, "test-observer")
    try:
        for _ in range(20):
            submit(stub)
        # Every NOTIFY costs a transaction per listening backend; nobody
        # that would act on one listens yet.
        assert _heard(observer, 0.5) == []

        replica = _listen(db_url, LISTENER_APPLICATION_NAME)
        try:
            time.sleep(LISTENERS_TTL_SECONDS * 2)
            submit(stub)
            assert _heard(replica, 2.0) == ["t"]
        finally:
            replica.close()
    finally:
        observer.close()


def test_a_replica_of_an_older_version_is_still_announced_to(
    start_pulsed: Callable[..., PulsedProcess], db_url: str
) -> None:
    # Before its listener had a name of its own, a replica named every
    # connection 'pulsed': during a rolling upgrade it must still be woken.
    server = start_pulsed(**SLOW_POLL)
    stub = server.stub()
    older = _listen(db_url, POOL_APPLICATION_NAME)
    try:
        time.sleep(LISTENERS_TTL_SECONDS * 2)
        submit(stub)
        assert _heard(older, 2.0) == ["t"]
    finally:
        older.close()
