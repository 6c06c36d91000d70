"""How a worker spreads its jobs over its handler threads.

An idle handler thread is woken only for queued work that no other woken
thread is on its way to. Slow jobs must still run ``concurrency`` at a time,
and a burst of short ones must not wake every thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from pulse_client import NewJob, Pulse
from pulse_client.errors import InvalidArgument
from tests.fixtures.databases import Sql
from tests.fixtures.servers import InProcessServer

WAIT_SECONDS = 30.0


@pytest.fixture
def server(start_inprocess: Callable[..., InProcessServer]) -> InProcessServer:
    return start_inprocess(lease_seconds=30, backoff_base_seconds=0.1)


@pytest.fixture
def client(server: InProcessServer) -> Iterator[Pulse]:
    pulse = Pulse(server.addr, timeout_seconds=30)
    yield pulse
    pulse.close()


def _run_until(worker: Pulse, done: Callable[[], bool]) -> None:
    runner = threading.Thread(target=worker.run, name="test-worker", daemon=True)
    runner.start()
    try:
        deadline = time.monotonic() + WAIT_SECONDS
        while not done() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        worker.stop()
        runner.join(WAIT_SECONDS)
        worker.close()
    assert not runner.is_alive(), "run() did not return after stop()"


def _completed_first_time(sql: Sql, topic: str) -> int:
    return int(
        sql.scalar(
            "SELECT count(*) FROM jobs"
            " WHERE topic = %s AND status = 'completed' AND attempt = 1",
            (topic,),
        )
    )


def test_slow_handlers_run_side_by_side_as_many_as_the_concurrency(
    server: InProcessServer, client: Pulse, sql: Sql
) -> None:
    concurrency = 6
    jobs = 2 * concurrency
    # Each job waits until `concurrency` of them run at once: if a queued
    # job waited for a busy thread instead of waking an idle one, the
    # barrier would break and the jobs fail.
    barrier = threading.Barrier(concurrency, timeout=WAIT_SECONDS / 2)
    lock = threading.Lock()
    running = 0
    most = 0
    client.enqueue_many(NewJob("threads.slow", {"n": n}) for n in range(jobs))
    worker = Pulse(server.addr, concurrency=concurrency, grace_seconds=5)

    @worker.handler("threads.slow")
    def slow(args: dict[str, int]) -> None:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        try:
            barrier.wait()
            time.sleep(0.05)
        finally:
            with lock:
                running -= 1

    _run_until(worker, lambda: _completed_first_time(sql, "threads.slow") == jobs)

    assert _completed_first_time(sql, "threads.slow") == jobs
    assert most == concurrency


def test_a_burst_of_short_jobs_runs_on_a_few_of_the_threads(
    server: InProcessServer, client: Pulse, sql: Sql
) -> None:
    concurrency = 50
    jobs = 500
    threads: set[str] = set()
    client.enqueue_many(NewJob("threads.short", {"n": n}) for n in range(jobs))
    worker = Pulse(server.addr, concurrency=concurrency, grace_seconds=5)

    @worker.handler("threads.short")
    def short(args: dict[str, int]) -> None:
        threads.add(threading.current_thread().name)

    _run_until(worker, lambda: _completed_first_time(sql, "threads.short") == jobs)

    assert _completed_first_time(sql, "threads.short") == jobs
    # A thread that finds more work queued wakes one other; a short job is
    # done before that one gets the interpreter, so few threads ever run
    # (two, as a rule; waking a thread per queued job used ten or more).
    assert len(threads) <= concurrency // 10, sorted(threads)


def _held_by(sql: Sql, worker_id: str) -> int:
    return int(
        sql.scalar(
            "SELECT count(*) FROM jobs WHERE status = 'running' AND worker_id = %s",
            (worker_id,),
        )
    )


@pytest.mark.parametrize("prefetch", [0, 2])
def test_prefetch_holds_that_many_jobs_beyond_the_busy_threads(
    server: InProcessServer, client: Pulse, sql: Sql, prefetch: int
) -> None:
    jobs = 6
    release = threading.Event()
    started: list[int] = []
    client.enqueue_many(NewJob("threads.held", {"n": n}) for n in range(jobs))
    worker = Pulse(
        server.addr,
        concurrency=1,
        prefetch=prefetch,
        worker_id=f"held-{prefetch}",
        grace_seconds=5,
    )

    @worker.handler("threads.held")
    def held(args: dict[str, int]) -> None:
        started.append(args["n"])
        assert release.wait(WAIT_SECONDS)

    holding: list[int] = []

    def settled() -> bool:
        # The one thread is busy and the claims have had time to land.
        if len(started) == 1 and not holding:
            time.sleep(0.5)
            holding.append(_held_by(sql, f"held-{prefetch}"))
            holding.append(len(started))
            release.set()
        return _completed_first_time(sql, "threads.held") == jobs

    _run_until(worker, settled)

    # Running on the thread, plus `prefetch` waiting for it; the rest pending.
    assert holding == [1 + prefetch, 1]
    assert _completed_first_time(sql, "threads.held") == jobs
    assert sorted(started) == list(range(jobs))


def test_a_graceful_stop_runs_the_prefetched_jobs_instead_of_handing_them_back(
    server: InProcessServer, client: Pulse, sql: Sql
) -> None:
    release = threading.Event()
    started: list[int] = []
    client.enqueue_many(NewJob("threads.stop", {"n": n}) for n in range(3))
    worker = Pulse(
        server.addr, concurrency=1, prefetch=2, worker_id="held-stop", grace_seconds=20
    )

    @worker.handler("threads.stop")
    def slow(args: dict[str, int]) -> None:
        started.append(args["n"])
        assert release.wait(WAIT_SECONDS)

    runner = threading.Thread(target=worker.run, name="test-worker", daemon=True)
    runner.start()
    deadline = time.monotonic() + WAIT_SECONDS
    while _held_by(sql, "held-stop") < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _held_by(sql, "held-stop") == 3
    worker.stop()
    release.set()
    runner.join(WAIT_SECONDS)
    worker.close()

    assert not runner.is_alive(), "run() did not return after stop()"
    assert sorted(started) == [0, 1, 2]
    assert sql.all(
        "SELECT status, attempt, count(*) FROM jobs WHERE topic = 'threads.stop'"
        " GROUP BY status, attempt"
    ) == [("completed", 1, 3)]


@pytest.mark.parametrize("prefetch", [-1, 10_001, 1.5, True])
def test_a_prefetch_out_of_range_is_refused(
    server: InProcessServer, prefetch: object
) -> None:
    with pytest.raises(InvalidArgument, match="prefetch"):
        Pulse(server.addr, prefetch=prefetch)  # type: ignore[arg-type]


def test_concurrency_and_prefetch_beyond_what_a_stream_holds_are_refused(
    server: InProcessServer,
) -> None:
    with pytest.raises(InvalidArgument, match=r"at most 10000.*got 100 \+ 9950"):
        Pulse(server.addr, concurrency=100, prefetch=9950)
    # pulse-worker sets both on a made client: run() checks them again.
    worker = Pulse(server.addr, concurrency=8, prefetch=10)
    worker.register("threads.cap", lambda args: None)
    worker.prefetch = 10_000
    worker.stop()  # so that run() returns at once if it does not refuse
    try:
        with pytest.raises(InvalidArgument, match=r"got 8 \+ 10000"):
            worker.run()
    finally:
        worker.close()
