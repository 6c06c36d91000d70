"""Many worker processes on two replicas of one database: every job runs and
completes exactly once."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import psutil

from pulse_client import NewJob, Pulse
from tests.e2e.conftest import Deployment, WorkerProcess, wait_for

JOBS = 5000


def _child_pids(worker: WorkerProcess) -> set[int]:
    return {child.pid for child in psutil.Process(worker.pid).children()}


def test_four_worker_processes_on_two_replicas_complete_5000_jobs_exactly_once(
    start_test_deployment: Callable[..., Deployment],
    start_worker: Callable[..., WorkerProcess],
    make_client: Callable[..., Pulse],
) -> None:
    deployment = start_test_deployment(replicas=2)
    first, second = deployment.servers
    # Two processes prefer each replica; each knows both.
    workers = [
        start_worker(
            "bulk:pulse",
            db_url=deployment.db_url,
            addr=f"{preferred.addr},{other.addr}",
            processes=2,
        )
        for preferred, other in ((first, second), (second, first))
    ]
    client = make_client(first.addr)

    job_ids = client.enqueue_many(NewJob("bulk.job", {"n": n}) for n in range(JOBS))

    wait_for(
        lambda: (
            deployment.sql.scalar(
                "SELECT count(*) FROM jobs WHERE status = 'completed'"
            )
            == JOBS
        ),
        f"{JOBS} jobs to complete",
        timeout_seconds=90,
    )
    assert deployment.sql.all(
        "SELECT status, attempt, count(*) FROM jobs GROUP BY status, attempt"
    ) == [("completed", 1, JOBS)]
    runs = deployment.runs()
    starts = [(run.job_id, run.attempt) for run in runs if run.event == "start"]
    ends = [(run.job_id, run.attempt) for run in runs if run.event == "end"]
    # One run per job, as attempt 1: no job ran on two workers, at once or
    # one after the other.
    assert len(starts) == len(ends) == JOBS
    assert set(starts) == set(ends) == {(job_id, 1) for job_id in job_ids}

    # Both pairs of processes did work, each through its own replica.
    by_pid = Counter(run.pid for run in runs if run.event == "end")
    for worker in workers:
        assert sum(by_pid[pid] for pid in _child_pids(worker)) > 0
    assert set(by_pid) <= _child_pids(workers[0]) | _child_pids(workers[1])
    for server in (first, second):
        assert server.log().count("stream.opened") == 2

    for worker in workers:
        assert worker.terminate() == 0
