"""Leases with real worker processes: a crashed worker's job is recovered,
heartbeats keep a long job alive, and a timeout lets the lease lapse."""

from __future__ import annotations

import datetime
import os
import signal
from collections.abc import Callable

import pytest

from pulse_client import JobStatus, Pulse
from tests.e2e.conftest import (
    FAST_KNOBS,
    Deployment,
    WorkerProcess,
    wait_for,
    wait_for_status,
)

DONE = (JobStatus.COMPLETED, JobStatus.DEAD_LETTERED, JobStatus.CANCELED)


@pytest.fixture(scope="module")
def deployment(start_deployment: Callable[..., Deployment]) -> Deployment:
    # Leases of 1 s, so that a lapse is quick; the apps heartbeat every 0.2 s.
    return start_deployment(**FAST_KNOBS)


@pytest.fixture(scope="module")
def worker(
    deployment: Deployment, start_module_worker: Callable[..., WorkerProcess]
) -> WorkerProcess:
    return start_module_worker("leases:pulse", deployment)


def test_a_job_of_a_killed_worker_runs_again_as_attempt_2_elsewhere_and_completes_once(
    client: Pulse, deployment: Deployment, start_worker: Callable[..., WorkerProcess]
) -> None:
    # Two worker processes with one slot each: one takes the job, the other
    # is idle and takes it over.
    workers = start_worker(
        "crash:pulse", db_url=deployment.db_url, addr=deployment.addr, processes=2
    )
    job_id = client.enqueue("crash.job", max_attempts=3)
    (first,) = deployment.wait_for_runs(job_id, "start")
    assert first.attempt == 1

    os.kill(first.pid, signal.SIGKILL)

    job = wait_for_status(client, job_id, *DONE)
    assert (job.status, job.attempt, job.attempts_used) == (JobStatus.COMPLETED, 2, 2)
    assert job.last_error.startswith("lease expired (attempt 1, worker ")
    starts = deployment.runs(job_id, "start")
    assert [run.attempt for run in starts] == [1, 2]
    assert starts[1].pid != first.pid
    ends = deployment.runs(job_id, "end")
    assert [(run.attempt, run.pid) for run in ends] == [(2, starts[1].pid)]
    # pulse-worker replaced the killed process; wait for the replacement to
    # connect so that the drain below does not catch it starting up.
    workers.wait_connected(streams=3)
    assert workers.terminate() == 0


def test_a_job_that_kills_its_worker_every_time_ends_dead_lettered(
    client: Pulse, deployment: Deployment, start_worker: Callable[..., WorkerProcess]
) -> None:
    workers = start_worker(
        "crash:pulse", db_url=deployment.db_url, addr=deployment.addr
    )

    job_id = client.enqueue("crash.poison", max_attempts=2)

    job = wait_for_status(client, job_id, *DONE, timeout_seconds=30)
    assert (job.status, job.attempt, job.attempts_used) == (
        JobStatus.DEAD_LETTERED,
        2,
        2,
    )
    assert job.last_error.startswith("lease expired (attempt 2, worker ")
    starts = deployment.runs(job_id, "start")
    assert [run.attempt for run in starts] == [1, 2]
    assert starts[0].pid != starts[1].pid
    # pulse-worker started a new process after each crash.
    workers.wait_connected(streams=3)
    assert workers.log().count("worker_cli.process_died") == 2
    assert workers.terminate() == 0


def test_heartbeats_keep_a_job_running_past_its_lease(
    client: Pulse, deployment: Deployment, worker: WorkerProcess
) -> None:
    # The lease is 1 s and the job runs 4 s.
    job_id = client.enqueue("leases.long", {"seconds": 4})

    job = wait_for_status(client, job_id, *DONE)

    assert (job.status, job.attempt, job.last_error) == (JobStatus.COMPLETED, 1, "")
    assert [run.attempt for run in deployment.runs(job_id, "start")] == [1]
    (end,) = deployment.runs(job_id, "end")
    assert end.attempt == 1
    assert job.started_at is not None and job.finished_at is not None
    assert (job.finished_at - job.started_at).total_seconds() >= 4.0


def test_a_job_past_its_timeout_sees_its_deadline_and_lapses_into_the_retry_path(
    client: Pulse, deployment: Deployment, worker: WorkerProcess
) -> None:
    # The first attempt overruns its 1 s timeout by 4 s; the second is quick.
    job_id = client.enqueue("leases.overrun", {"seconds": 5}, timeout=1, max_attempts=3)

    job = wait_for_status(client, job_id, *DONE)

    assert (job.status, job.attempt, job.timeout) == (
        JobStatus.COMPLETED,
        2,
        datetime.timedelta(seconds=1),
    )
    assert job.last_error.startswith("timed out after 1000 ms (attempt 1, worker ")
    (deadline,) = deployment.runs(job_id, "deadline_passed")
    assert deadline.attempt == 1
    assert [run.attempt for run in deployment.runs(job_id, "start")] == [1, 2]
    # The overrunning attempt still ends, late; its report is refused and
    # the outcome of attempt 2 stands.
    ends = deployment.wait_for_runs(job_id, "end", count=2)
    assert [run.attempt for run in ends] == [2, 1]
    wait_for(
        lambda: f"job.result_refused job_id={job_id} attempt=1" in worker.log(),
        "the worker to hear that its late report was refused",
    )
    late = client.get_job(job_id)
    assert (late.status, late.attempt, late.finished_at) == (
        JobStatus.COMPLETED,
        2,
        job.finished_at,
    )
