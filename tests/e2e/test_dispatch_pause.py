"""A dispatch pause across two pulsed replicas and real workers: running
jobs finish, submits land, nothing new starts for the whole pause (also
across a restart of every replica), and resume drains the backlog."""

from __future__ import annotations

import time
from collections.abc import Callable

from pulse_client import JobStatus, NewJob, Pulse
from tests.e2e.conftest import (
    FAST_KNOBS,
    Deployment,
    WorkerProcess,
    create_handler_runs,
    wait_for_status,
)
from tests.fixtures.servers import PulsedProcess

KNOBS = {**FAST_KNOBS, "gate_poll_seconds": 0.2}
QUIET_SECONDS = 2.0


def test_a_pause_holds_on_every_replica_through_restarts_and_resume_drains(
    db_url: str,
    start_pulsed: Callable[..., PulsedProcess],
    start_worker: Callable[..., WorkerProcess],
) -> None:
    create_handler_runs(db_url)
    first = start_pulsed(db_url=db_url, **KNOBS)
    second = start_pulsed(db_url=db_url, **KNOBS)
    deployment = Deployment(db_url, [first, second])
    # Each worker prefers its own replica and falls back to the other.
    start_worker("pause:pulse", db_url=db_url, addr=f"{first.addr},{second.addr}")
    start_worker("pause:pulse", db_url=db_url, addr=f"{second.addr},{first.addr}")

    with Pulse([first.addr, second.addr]) as client:
        # Given four long jobs running, two in each worker.
        running = client.enqueue_many(
            [NewJob("pause.work", {"seconds": 2.0}) for _ in range(4)]
        )
        starts = deployment.wait_for_runs_of(running, "start", count=4)
        assert len({run.pid for run in starts}) == 2

        # When dispatch is paused and more work is submitted.
        client.pause_dispatch("maintenance window")
        paused_at = deployment.sql.scalar("SELECT clock_timestamp()")
        priorities = [0, 3, 1, 3, 0, 2, 1, 0, 2, 3]
        waiting = client.enqueue_many(
            [NewJob("pause.work", {"seconds": 0.05}, priority=p) for p in priorities]
        )

        # Then the running jobs finish and report.
        for job_id in running:
            wait_for_status(client, job_id, JobStatus.COMPLETED)

        # And the pause outlives a restart of every replica.
        for server in (first, second):
            assert server.stop() == []
        first = start_pulsed(db_url=db_url, addr=first.addr, **KNOBS)
        second = start_pulsed(db_url=db_url, addr=second.addr, **KNOBS)
        status = client.dispatch_status()
        assert status.paused and status.all is not None
        assert status.all.reason == "maintenance window"
        time.sleep(QUIET_SECONDS)

        # And nothing new started for the whole pause.
        assert all(run.at < paused_at for run in deployment.runs(event="start"))
        assert {client.get_job(j).status for j in waiting} == {JobStatus.PENDING}

        # When dispatch resumes, the backlog drains.
        resuming_at = deployment.sql.scalar("SELECT clock_timestamp()")
        client.resume_dispatch()
        for job_id in waiting:
            job = wait_for_status(client, job_id, JobStatus.COMPLETED)
            assert job.attempt == 1
    later = [run for run in deployment.runs(event="start") if run.job_id in waiting]
    assert len(later) == len(waiting)
    assert all(run.at > resuming_at for run in later)
