"""A prefetched job that no handler thread has started yet.

Found by breaking ``Pulse(prefetch=N)``: a job waiting in the worker's
queue is already ``running`` on the server, and the worker hears about it
(a cancel, a lost lease, its timeout) before any thread takes it. The
worker then started it all the same:

- a job canceled while it waited ran to completion and ended ``completed``
  instead of ``canceled``, though its handler had not begun;
- a job whose lease was lost while it waited (so the server had already
  handed it to the retry path) was run by this worker too: two runs of one
  job, the stale one's result refused;
- a job whose timeout passed while it waited (the timeout counts from the
  claim) was run past its deadline, after the server had timed it out and
  retried it: again a run for nothing, and one beside the next attempt.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from pulse_client import JobContext, Pulse
from tests.fixtures.databases import Sql
from tests.fixtures.servers import InProcessServer

WAIT_SECONDS = 30.0


@pytest.fixture
def server(start_inprocess: Callable[..., InProcessServer]) -> InProcessServer:
    # A short lease: heartbeats (and so the replies that carry cancels and
    # lost leases) every half second or so; the watchdog looks often.
    return start_inprocess(
        lease_seconds=1.5, watchdog_seconds=0.1, backoff_base_seconds=0.05
    )


@pytest.fixture
def client(server: InProcessServer) -> Iterator[Pulse]:
    pulse = Pulse(server.addr, timeout_seconds=30)
    yield pulse
    pulse.close()


def _wait(condition: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class _Worker:
    """One thread busy with a blocker job, one more job prefetched."""

    def __init__(self, server: InProcessServer, worker_id: str) -> None:
        self.release = threading.Event()
        self.started: list[tuple[str, int]] = []
        self.pulse = Pulse(
            server.addr,
            concurrency=1,
            prefetch=1,
            worker_id=worker_id,
            grace_seconds=10,
        )

        @self.pulse.handler("held.block")
        def block(args: object, ctx: JobContext) -> None:
            self.started.append((ctx.job_id, ctx.attempt))
            assert self.release.wait(WAIT_SECONDS)

        @self.pulse.handler("held.next")
        def next_job(args: object, ctx: JobContext) -> None:
            self.started.append((ctx.job_id, ctx.attempt))

        self.runner = threading.Thread(target=self.pulse.run, daemon=True)

    def __enter__(self) -> _Worker:
        self.runner.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.pulse.stop()
        self.runner.join(WAIT_SECONDS)
        self.pulse.close()
        assert not self.runner.is_alive(), "run() did not return after stop()"


def _held(sql: Sql, worker_id: str) -> int:
    return int(
        sql.scalar(
            "SELECT count(*) FROM jobs WHERE status = 'running' AND worker_id = %s",
            (worker_id,),
        )
    )


def test_a_prefetched_job_canceled_before_it_starts_is_not_run(
    server: InProcessServer, client: Pulse, sql: Sql
) -> None:
    with _Worker(server, "held-cancel") as worker:
        blocker = client.enqueue("held.block")
        _wait(lambda: worker.started, "the blocker to start")
        waiting = client.enqueue("held.next")
        _wait(lambda: _held(sql, "held-cancel") == 2, "the next job to be prefetched")

        client.cancel(waiting)
        # The next heartbeat's reply tells the worker of the cancel.
        time.sleep(2)
        worker.release.set()
        _wait(
            lambda: client.get_job(waiting).status in ("completed", "canceled"),
            "the canceled job to finish",
        )

    assert client.get_job(blocker).status == "completed"
    assert client.get_job(waiting).status == "canceled"
    assert [job_id for job_id, _ in worker.started] == [blocker]


def test_a_prefetched_job_whose_lease_was_lost_is_not_run_by_this_worker(
    server: InProcessServer, client: Pulse, sql: Sql
) -> None:
    with _Worker(server, "held-lost") as worker:
        client.enqueue("held.block")
        _wait(lambda: worker.started, "the blocker to start")
        waiting = client.enqueue("held.next")
        _wait(lambda: _held(sql, "held-lost") == 2, "the next job to be prefetched")

        # Its lease lapses (as it would after a stall longer than the
        # lease): the watchdog sends it to the retry path, and the next
        # heartbeat's reply tells the worker it lost it.
        sql.execute(
            "UPDATE jobs SET lease_expires_at = now() - interval '1 second'"
            " WHERE id = %s",
            (waiting,),
        )
        _wait(
            lambda: (
                client.get_job(waiting).status != "running"
                or client.get_job(waiting).attempt > 1
            ),
            "the watchdog to take the job back",
        )
        time.sleep(2)
        worker.release.set()
        _wait(
            lambda: client.get_job(waiting).status == "completed",
            "the job's next attempt to complete",
        )

    # Attempt 1 was lost before it started: only attempt 2 runs.
    assert [run for run in worker.started if run[0] == waiting] == [(waiting, 2)]


def test_a_prefetched_job_whose_timeout_passed_while_it_waited_is_not_run(
    server: InProcessServer, client: Pulse, sql: Sql
) -> None:
    with _Worker(server, "held-timeout") as worker:
        client.enqueue("held.block")
        _wait(lambda: worker.started, "the blocker to start")
        waiting = client.enqueue("held.next", timeout=1)
        _wait(lambda: _held(sql, "held-timeout") == 2, "the next job to be prefetched")

        # Its timeout counts from the claim: it passes while the job waits,
        # and the server times the attempt out.
        _wait(
            lambda: client.get_job(waiting).status != "running",
            "the attempt to time out",
        )
        worker.release.set()
        _wait(
            lambda: client.get_job(waiting).status == "completed",
            "the job's next attempt to complete",
        )

    # Attempt 1 timed out before it started: running it would be a run the
    # server had already given up on.
    assert [run for run in worker.started if run[0] == waiting] == [(waiting, 2)]


def test_a_stop_that_hands_back_a_prefetched_job_does_not_spend_its_attempt(
    server: InProcessServer, client: Pulse, sql: Sql
) -> None:
    # The grace period ends while the one thread is still busy: the job
    # still waiting for it never started, so handing it back must not count
    # an attempt against its budget (max_attempts=1 would dead-letter it).
    worker = _Worker(server, "held-stop")
    worker.pulse.grace_seconds = 0.5
    with worker:
        blocker = client.enqueue("held.block", max_attempts=5)
        _wait(lambda: worker.started, "the blocker to start")
        waiting = client.enqueue("held.next", max_attempts=1)
        _wait(lambda: _held(sql, "held-stop") == 2, "the next job to be prefetched")
        worker.pulse.stop()
        worker.runner.join(WAIT_SECONDS)
        assert not worker.runner.is_alive()

    assert [job_id for job_id, _ in worker.started] == [blocker]
    job = client.get_job(waiting)
    assert (job.status, job.attempts_used) == ("pending", 0), job


def test_a_prefetched_job_handed_back_by_a_stop_is_not_said_to_have_run(
    server: InProcessServer, client: Pulse, sql: Sql
) -> None:
    # Its last error said "the handler did not finish within the grace
    # period", of a job no handler ever ran.
    worker = _Worker(server, "held-said")
    worker.pulse.grace_seconds = 0.5
    with worker:
        blocker = client.enqueue("held.block")
        _wait(lambda: worker.started, "the blocker to start")
        waiting = client.enqueue("held.next")
        _wait(lambda: _held(sql, "held-said") == 2, "the next job to be prefetched")
        worker.pulse.stop()
        worker.runner.join(WAIT_SECONDS)

    assert client.get_job(blocker).last_error == (
        "worker stopped: the handler did not finish within the 0.5s grace period"
    )
    assert client.get_job(waiting).last_error == (
        "worker stopped before the job started: the 0.5s grace period ended"
    )
