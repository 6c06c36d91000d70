"""A worker given two replicas carries on through the other when the one it
streams from dies, and re-sends the results it could not deliver."""

from __future__ import annotations

import signal
from collections.abc import Callable

from pulse_client import JobStatus, NewJob, Pulse
from tests.e2e.conftest import Deployment, WorkerProcess, wait_for_status


def _connections(worker: WorkerProcess) -> list[str]:
    """The replicas the worker's streams connected to, in order."""
    return [
        line.rsplit("addr=", 1)[1].strip()
        for line in worker.log().splitlines()
        if "worker.connected" in line
    ]


def test_a_worker_fails_over_to_the_other_replica_and_resends_results_from_the_outage(
    start_test_deployment: Callable[..., Deployment],
    start_worker: Callable[..., WorkerProcess],
    make_client: Callable[..., Pulse],
) -> None:
    # Leases outlast the outage, so only the re-sent results can finish the
    # jobs that ran through it.
    deployment = start_test_deployment(
        replicas=2, lease_seconds=5, watchdog_seconds=0.2, backoff_base_seconds=0.1
    )
    doomed, survivor = deployment.servers
    both = f"{doomed.addr},{survivor.addr}"
    worker = start_worker("reconnect:pulse", db_url=deployment.db_url, addr=both)
    assert _connections(worker) == [doomed.addr]
    client = make_client(both)
    during = client.enqueue_many(
        [NewJob("reconnect.job", {"seconds": 1}) for _ in range(3)]
    )
    deployment.wait_for_runs_of(during, "start", count=3)

    # Frozen first, so that the handlers finish and report into a replica
    # that never answers; then killed.
    doomed.process.send_signal(signal.SIGSTOP)
    deployment.wait_for_runs_of(during, "end", count=3)
    assert deployment.sql.all(
        "SELECT status, count(*) FROM jobs WHERE id = ANY(%s::uuid[]) GROUP BY status",
        (during,),
    ) == [("running", 3)]
    doomed.kill()

    for job_id in during:
        job = wait_for_status(client, job_id, JobStatus.COMPLETED, JobStatus.RETRYING)
        assert (job.status, job.attempt, job.last_error) == (JobStatus.COMPLETED, 1, "")
    worker.wait_connected(streams=2)
    assert _connections(worker) == [doomed.addr, survivor.addr]
    after = client.enqueue_many(
        [NewJob("reconnect.job", {"seconds": 0}) for _ in range(5)]
    )
    for job_id in after:
        job = wait_for_status(client, job_id, JobStatus.COMPLETED)
        assert job.attempt == 1
    assert (
        deployment.sql.scalar("SELECT count(*) FROM jobs WHERE status <> 'completed'")
        == 0
    )
    assert len(deployment.runs(event="start")) == 8
    assert worker.terminate() == 0


def test_a_worker_carries_on_through_the_other_replica_when_its_replica_shuts_down(
    start_test_deployment: Callable[..., Deployment],
    start_worker: Callable[..., WorkerProcess],
    make_client: Callable[..., Pulse],
) -> None:
    deployment = start_test_deployment(
        replicas=2, lease_seconds=5, watchdog_seconds=0.2, backoff_base_seconds=0.1
    )
    leaving, staying = deployment.servers
    both = f"{leaving.addr},{staying.addr}"
    worker = start_worker("reconnect:pulse", db_url=deployment.db_url, addr=both)
    client = make_client(both)
    running = client.enqueue_many(
        [NewJob("reconnect.job", {"seconds": 1}) for _ in range(3)]
    )
    deployment.wait_for_runs_of(running, "start", count=3)

    assert leaving.stop() == []  # SIGTERM: a clean shutdown

    worker.wait_connected(streams=2)
    assert _connections(worker) == [leaving.addr, staying.addr]
    after = client.enqueue_many(
        [NewJob("reconnect.job", {"seconds": 0}) for _ in range(5)]
    )
    for job_id in running + after:
        job = wait_for_status(client, job_id, JobStatus.COMPLETED, JobStatus.RETRYING)
        assert (job.status, job.attempt, job.last_error) == (JobStatus.COMPLETED, 1, "")
    assert len(deployment.runs(event="start")) == 8
    assert worker.terminate() == 0
