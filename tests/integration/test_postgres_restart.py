"""pulsed rides out a Postgres restart by itself, losing nothing.

Each test runs its own throwaway cluster (``tests.pgcluster``); the shared
server on 5432 is never stopped.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import grpc
import pytest

from pulse_client._proto.pulse.v1 import pulse_pb2 as pb
from pulse_client._proto.pulse.v1 import pulse_pb2_grpc
from tests.fixtures.databases import Sql
from tests.fixtures.servers import PulsedProcess
from tests.fixtures.streams import WorkerStream
from tests.fixtures.wire import describe, pulse_error_code, spec
from tests.pgcluster import PgCluster

pytestmark = pytest.mark.slow

OpenStream = Callable[..., WorkerStream]
# A hang shows up as DEADLINE_EXCEEDED instead of UNAVAILABLE.
OUTAGE_CALL_TIMEOUT_SECONDS = 15.0
RECOVERY_SECONDS = 10.0
SERVER_KNOBS = {
    "db_connect_timeout_seconds": 2,
    "lease_seconds": 3,
    "watchdog_seconds": 0.2,
    "backoff_base_seconds": 0.1,
}


def submit_until_accepted(stub: pulse_pb2_grpc.PulseStub, job: pb.JobSpec) -> float:
    """Retry one submit, as a client would, until the server takes it;
    returns the seconds it took."""
    started = time.monotonic()
    while True:
        try:
            stub.SubmitJob(pb.SubmitJobRequest(job=job), timeout=5)
            return time.monotonic() - started
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.UNAVAILABLE:
                raise
            if time.monotonic() - started > RECOVERY_SECONDS:
                raise AssertionError(
                    f"submits still refused {RECOVERY_SECONDS}s after the restart: "
                    + describe(exc)
                ) from exc
            time.sleep(0.2)


def test_an_idle_server_refuses_submits_during_an_outage_and_recovers_after_it(
    pg_cluster: PgCluster,
    start_pulsed: Callable[..., PulsedProcess],
    open_stream: OpenStream,
) -> None:
    url = pg_cluster.create_database("pulse")
    server = start_pulsed(db_url=url, **SERVER_KNOBS)
    stub = server.stub()
    before = [spec("t", str(i).encode()) for i in range(20)]
    stub.SubmitJobs(pb.SubmitJobsRequest(jobs=before), timeout=10)

    pg_cluster.stop("fast")
    refused = []
    for _ in range(3):
        job = spec("t", b"during the outage")
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as excinfo:
            stub.SubmitJob(
                pb.SubmitJobRequest(job=job), timeout=OUTAGE_CALL_TIMEOUT_SECONDS
            )
        refused.append((job.id, time.monotonic() - started, excinfo.value))
    pg_cluster.start()
    after = spec("t", b"after the restart")
    recovery_seconds = submit_until_accepted(stub, after)

    for _, seconds, error in refused:
        assert error.code() == grpc.StatusCode.UNAVAILABLE, describe(error)
        assert pulse_error_code(error) == "unavailable"
        assert seconds < 5.0
    assert recovery_seconds < RECOVERY_SECONDS
    worker = open_stream(stub, "w", ["t"], 50)
    delivered = {a.job_id for a in worker.take_assignments(len(before) + 1)}
    assert delivered == {job.id for job in before} | {after.id}
    check = Sql(url)
    try:
        stored = {row[0] for row in check.all("SELECT id::text FROM jobs")}
    finally:
        check.close()
    assert stored == delivered
    assert not {job_id for job_id, _, _ in refused} & stored


def test_a_working_server_and_its_worker_carry_on_after_a_restart_and_lose_nothing(
    pg_cluster: PgCluster,
    start_pulsed: Callable[..., PulsedProcess],
    open_stream: OpenStream,
) -> None:
    url = pg_cluster.create_database("pulse")
    server = start_pulsed(db_url=url, **SERVER_KNOBS)
    stub = server.stub()
    jobs = [spec("t", str(i).encode()) for i in range(300)]
    stub.SubmitJobs(pb.SubmitJobsRequest(jobs=jobs), timeout=10)
    worker = _ReconnectingWorker(stub, open_stream)

    worker.run_until(lambda: worker.acked >= 100, timeout_seconds=10)
    pg_cluster.stop("fast")
    worker.run_for(seconds=1.5)
    pg_cluster.start()
    check = Sql(url)
    try:
        # Counted in the database: an ack lost with the stream leaves the
        # worker unsure, and its resent result is refused as a repeat.
        worker.run_until(
            _every(
                0.2,
                lambda: (
                    check.scalar("SELECT count(*) FROM jobs WHERE status = 'completed'")
                    == len(jobs)
                ),
            ),
            timeout_seconds=30,
        )
        statuses = dict(check.all("SELECT status, count(*) FROM jobs GROUP BY status"))
        ids = {row[0] for row in check.all("SELECT id::text FROM jobs")}
    finally:
        check.close()
    assert statuses == {"completed": len(jobs)}
    assert ids == {job.id for job in jobs}
    assert worker.reconnects >= 1


def _every(seconds: float, check: Callable[[], bool]) -> Callable[[], bool]:
    """``check``, asked at most once per ``seconds``."""
    last = [0.0]

    def throttled() -> bool:
        now = time.monotonic()
        if now - last[0] < seconds:
            return False
        last[0] = now
        return check()

    return throttled


class _ReconnectingWorker:
    """A worker as the SDK behaves: it runs each job at once, reports it,
    reconnects under the same worker id when the stream breaks, and sends
    again every result that was not acknowledged."""

    CAPACITY = 10

    def __init__(self, stub: pulse_pb2_grpc.PulseStub, open_stream: OpenStream) -> None:
        self._stub = stub
        self._open_stream = open_stream
        self._stream: WorkerStream | None = None
        self._unacked: dict[tuple[str, int], pb.JobResult] = {}
        self.acked = 0
        self.reconnects = -1

    def run_until(self, done: Callable[[], bool], timeout_seconds: float) -> None:
        deadline = time.monotonic() + timeout_seconds
        while not done():
            assert time.monotonic() < deadline, (
                f"{self.acked} acknowledged, {len(self._unacked)} not yet"
            )
            self._step()

    def run_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self._step()

    def _step(self) -> None:
        stream = self._stream
        if stream is None or stream.ended:
            self._reconnect()
            return
        for assignment in stream.untaken_assignments():
            result = pb.JobResult(
                job_id=assignment.job_id,
                attempt=assignment.attempt,
                outcome=pb.OUTCOME_SUCCEEDED,
            )
            self._unacked[(result.job_id, result.attempt)] = result
            stream.report([result], credits=1)
        for ack in stream.untaken_acks():
            if self._unacked.pop((ack.job_id, ack.attempt), None) is not None:
                self.acked += 1
        time.sleep(0.01)

    def _reconnect(self) -> None:
        if self._stream is not None:
            self._stream.close()
            time.sleep(0.2)  # reconnect backoff
        self.reconnects += 1
        # Every job ran at once, so every slot is free again.
        self._stream = self._open_stream(
            self._stub, "restart-worker", ["t"], self.CAPACITY
        )
        if self._unacked:
            self._stream.report(list(self._unacked.values()))
