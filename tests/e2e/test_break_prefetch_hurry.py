"""A second SIGTERM while ``pulse-worker --prefetch`` holds jobs it never
started.

Found by breaking: the hurry hands back everything the worker holds as a
failed attempt ("the handler did not finish within the 30s grace period",
after a fraction of a second). For the jobs still waiting in the worker's
queue no handler ever ran, yet each lost an attempt of its budget: one with
``max_attempts=1`` was dead-lettered without ever having run. A job the
worker never started should go back in line with its budget untouched.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from pulse_client import JobStatus, NewJob, Pulse
from tests.e2e.conftest import FAST_KNOBS, Deployment, WorkerProcess, wait_for


@pytest.fixture(scope="module")
def deployment(start_deployment: Callable[..., Deployment]) -> Deployment:
    return start_deployment(**FAST_KNOBS)


def test_a_hurried_stop_gives_back_prefetched_jobs_without_spending_attempts(
    client: Pulse, deployment: Deployment, start_worker: Callable[..., WorkerProcess]
) -> None:
    worker = start_worker(
        "prefetch:held", db_url=deployment.db_url, addr=deployment.addr
    )
    blocker = client.enqueue("prefetch.slow", {"seconds": 60}, max_attempts=5)
    deployment.wait_for_runs(blocker, "start")
    waiting = client.enqueue_many(
        [NewJob("prefetch.slow", {"seconds": 0}, max_attempts=1) for _ in range(2)]
    )
    wait_for(
        lambda: all(client.get_job(j).status == JobStatus.RUNNING for j in waiting),
        "the two jobs to be prefetched",
    )

    worker.process.send_signal(15)
    wait_for(lambda: "worker.draining" in worker.log(), "the drain to begin")
    worker.process.send_signal(15)
    assert worker.process.wait(20) == 0

    for job_id in waiting:
        assert deployment.runs(job_id) == []
        job = client.get_job(job_id)
        assert (job.status, job.attempts_used) == (JobStatus.PENDING, 0), job
