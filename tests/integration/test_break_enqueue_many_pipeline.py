"""``enqueue_many`` with calls under way when something goes wrong.

Found by breaking the pipelined ``enqueue_many``:

- A generator that raises midway: before the pipeline every job was
  encoded before the first call, so nothing was stored. Now the chunks sent
  before the exception are committed, and the exception said nothing of
  them: the ids were made inside the SDK, so a caller that fixed its
  generator and enqueued again stored those jobs twice. The same holds for
  an item that is not a ``NewJob``, and for a call that fails for good
  (``Unavailable``) after earlier chunks were stored. The exception now
  carries ``job_ids``, the ids of every job read so far, and sending them
  again with those ids stores each job once.
- An exception raised while ``enqueue_many`` waits for a call (a signal
  handler's, as Ctrl-C's KeyboardInterrupt) left that call running after
  ``enqueue_many`` had raised: its future was taken off the pipeline
  before the wait, so ``finish`` never waited for it.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import pulsed.submits
from pulse_client import NewJob, Pulse
from pulse_client.connection import Connection, StartedCall
from pulse_client.errors import ClientClosed, Unavailable
from tests.fixtures.databases import Sql
from tests.fixtures.servers import InProcessServer, PulsedProcess

TOPIC = "batch.pipeline"


@pytest.fixture
def client(server: InProcessServer) -> Iterator[Pulse]:
    pulse = Pulse(server.addr, timeout_seconds=30)
    yield pulse
    pulse.close()


class Broken(Exception):
    pass


def _stored(sql: Sql) -> list[str]:
    return [job_id for (job_id,) in sql.all("SELECT id::text FROM jobs ORDER BY id")]


def test_a_generator_that_raises_midway_tells_which_jobs_may_be_stored(
    client: Pulse, sql: Sql
) -> None:
    def jobs() -> Iterator[NewJob]:
        for n in range(600):
            yield NewJob(TOPIC, {"n": n})
        raise Broken("the source of the batch failed")

    with pytest.raises(Broken) as caught:
        client.enqueue_many(jobs())

    # Some chunks went before the generator failed: the exception names
    # every job read, so that sending them again stores each one once.
    job_ids = getattr(caught.value, "job_ids", None)
    assert job_ids is not None and len(job_ids) == 600
    assert set(_stored(sql)) <= set(job_ids)
    again = [NewJob(TOPIC, {"n": n}, job_id=job_ids[n]) for n in range(600)]
    assert client.enqueue_many(again) == job_ids
    assert _stored(sql) == sorted(job_ids)


def test_an_item_that_is_not_a_job_midway_tells_which_jobs_may_be_stored(
    client: Pulse, sql: Sql
) -> None:
    jobs: list[Any] = [NewJob(TOPIC, {"n": n}) for n in range(600)]
    jobs.append(("not", "a", "job"))

    with pytest.raises((TypeError, AttributeError)) as caught:
        client.enqueue_many(jobs)

    job_ids = getattr(caught.value, "job_ids", None)
    assert job_ids is not None and len(job_ids) == 600
    assert set(_stored(sql)) <= set(job_ids)


def test_a_batch_whose_only_replica_dies_midway_tells_which_jobs_may_be_stored(
    start_pulsed: Callable[..., PulsedProcess], sql: Sql
) -> None:
    replica = start_pulsed()
    pulse = Pulse(replica.addr, timeout_seconds=10)
    killed = threading.Event()

    def jobs() -> Iterator[NewJob]:
        for n in range(3000):
            if n == 2000:
                # Calls of the first chunks are done or under way.
                replica.kill()
                killed.set()
            yield NewJob(TOPIC, {"n": n})

    try:
        with pytest.raises(Unavailable) as caught:
            pulse.enqueue_many(jobs())
    finally:
        pulse.close()
    replica.expect_clean_exit = False

    assert killed.is_set()
    job_ids = getattr(caught.value, "job_ids", None)
    assert job_ids is not None and 0 < len(job_ids) <= 3000
    stored = _stored(sql)
    assert stored, "the chunks sent before the kill were stored"
    assert set(stored) <= set(job_ids)


def test_an_exception_while_waiting_for_a_call_leaves_no_call_running(
    client: Pulse, sql: Sql, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first call takes a while on the server; an alarm's exception hits
    # the SDK while it waits for that call.
    validate = pulsed.submits.validate

    def slow_validate(spec: Any, config: Any) -> Any:
        if spec.topic == "batch.slow":
            time.sleep(0.01)
        return validate(spec, config)

    monkeypatch.setattr(pulsed.submits, "validate", slow_validate)
    futures: list[StartedCall[Any]] = []
    start = Connection.start

    def recording_start(self: Connection, method: Any, request: Any) -> Any:
        call = start(self, method, request)
        futures.append(call)
        return call

    monkeypatch.setattr(Connection, "start", recording_start)

    def alarm(signum: int, frame: object) -> None:
        raise Broken("interrupted")

    previous = signal.signal(signal.SIGALRM, alarm)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.5)
        with pytest.raises(Broken):
            client.enqueue_many(
                [NewJob("batch.slow", {"n": n}) for n in range(250)]
                + [NewJob(TOPIC, {"n": n}) for n in range(250)]
            )
        running = [future for future in futures if not future.done()]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        for future in futures:
            future.cancel()
        time.sleep(3)  # the server's handler finishes before teardown

    assert len(futures) == 2
    assert running == [], "a SubmitJobs call outlived enqueue_many"


def test_a_client_closed_while_its_calls_are_under_way_raises_client_closed(
    client: Pulse, sql: Sql
) -> None:
    # Closing the client cancels the calls under way; the caller must hear
    # ClientClosed, as from any call of a closed client, not a bare
    # PulseError("Channel closed!").
    def jobs() -> Iterator[NewJob]:
        for n in range(2000):
            if n == 600:
                client.close()  # two calls are under way by now
            yield NewJob(TOPIC, {"n": n})

    with pytest.raises(ClientClosed) as caught:
        client.enqueue_many(jobs())

    assert caught.value.job_ids is not None
    assert set(_stored(sql)) <= set(caught.value.job_ids)
