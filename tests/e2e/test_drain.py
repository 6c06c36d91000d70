"""SIGTERM drains ``pulse-worker``: running jobs finish and report, nothing
new starts, and the process exits; a handler that outlives the grace period
is handed back."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from pulse_client import JobStatus, NewJob, Pulse
from tests.e2e.conftest import (
    FAST_KNOBS,
    Deployment,
    WorkerProcess,
    wait_for,
    wait_for_status,
)


@pytest.fixture(scope="module")
def deployment(start_deployment: Callable[..., Deployment]) -> Deployment:
    return start_deployment(**FAST_KNOBS)


def test_sigterm_lets_running_jobs_finish_starts_no_new_ones_and_exits_0(
    client: Pulse, deployment: Deployment, start_worker: Callable[..., WorkerProcess]
) -> None:
    # Two handler threads; five jobs of 1.5 s each.
    worker = start_worker(
        "drain:slow", db_url=deployment.db_url, addr=deployment.addr, grace_seconds=10
    )
    job_ids = client.enqueue_many(
        [NewJob("drain.slow", {"seconds": 1.5}) for _ in range(5)]
    )
    running = deployment.wait_for_runs_of(job_ids, "start", count=2)

    signaled_at = deployment.sql.scalar("SELECT clock_timestamp()")
    started = time.monotonic()
    code = worker.terminate()
    elapsed = time.monotonic() - started

    assert code == 0
    assert elapsed < 10, f"pulse-worker took {elapsed:.1f}s to drain"
    finished = {run.job_id for run in running}
    for job_id in finished:
        job = client.get_job(job_id)
        assert (job.status, job.attempt) == (JobStatus.COMPLETED, 1)
    for job_id in set(job_ids) - finished:
        job = client.get_job(job_id)
        assert (job.status, job.attempt, job.started_at) == (JobStatus.PENDING, 0, None)
    starts = [run for job_id in job_ids for run in deployment.runs(job_id, "start")]
    assert len(starts) == 2
    assert all(run.at < signaled_at for run in starts)
    assert sorted(run.job_id for run in deployment.runs(event="end")) == sorted(
        finished
    )
    assert "worker_cli.stopped exitcodes=[0]" in worker.log()


def test_a_handler_that_outlives_the_grace_period_is_handed_back_and_the_worker_exits(
    client: Pulse, deployment: Deployment, start_worker: Callable[..., WorkerProcess]
) -> None:
    worker = start_worker(
        "drain:stuck", db_url=deployment.db_url, addr=deployment.addr, grace_seconds=1
    )
    job_id = client.enqueue("drain.stuck", {"seconds": 60})
    deployment.wait_for_runs(job_id, "start")

    started = time.monotonic()
    code = worker.terminate()
    elapsed = time.monotonic() - started

    assert code == 0
    # The grace period, then a moment for the hand-back to be acknowledged.
    assert elapsed < 10, f"pulse-worker took {elapsed:.1f}s to exit"
    job = wait_for_status(client, job_id, JobStatus.PENDING)
    assert (job.attempt, job.attempts_used, job.last_error) == (
        1,
        1,
        "worker stopped: the handler did not finish within the 1s grace period",
    )
    assert job.lease_expires_at is None
    assert deployment.runs(job_id, "end") == []


def test_ctrl_c_in_the_terminal_drains_like_sigterm(
    client: Pulse, deployment: Deployment, start_worker: Callable[..., WorkerProcess]
) -> None:
    # Regression: a terminal's Ctrl-C reaches every process of the group, and
    # pulse-worker forwarded SIGTERM on top; each child took the second
    # signal for "stop now" and exited at once with a KeyboardInterrupt,
    # leaving its jobs running until their leases lapsed.
    worker = start_worker(
        "drain:slow", db_url=deployment.db_url, addr=deployment.addr, grace_seconds=10
    )
    worker.expect_clean_exit = False  # asserted below
    job_id = client.enqueue("drain.slow", {"seconds": 1.5})
    deployment.wait_for_runs(job_id, "start")

    worker.interrupt()

    assert worker.process.wait(20) == 0
    assert "Traceback" not in worker.log()
    job = client.get_job(job_id)
    assert (job.status, job.attempt) == (JobStatus.COMPLETED, 1)
    assert [run.attempt for run in deployment.runs(job_id, "end")] == [1]


def test_sigterm_while_the_worker_processes_start_still_exits_0(
    deployment: Deployment, start_worker: Callable[..., WorkerProcess]
) -> None:
    # Regression: the processes were signaled before they had installed
    # their handlers, died of SIGTERM, and pulse-worker exited 1.
    worker = start_worker(
        "drain:slow",
        db_url=deployment.db_url,
        addr=deployment.addr,
        processes=2,
        wait=False,
    )
    worker.expect_clean_exit = False  # asserted below
    wait_for(
        lambda: "worker_cli.started process=pulse-worker-1" in worker.log(),
        "pulse-worker to start its processes",
    )

    code = worker.terminate()

    assert code == 0, worker.log()
