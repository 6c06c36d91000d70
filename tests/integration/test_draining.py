"""A draining worker hears when nothing more will be assigned to it.

A claim may be under way when a worker's ``draining`` reaches the server;
its jobs are then already running under the worker's id. The server answers
``drained`` only after that claim has been delivered, and the SDK's worker
closes its stream only after that answer, so a graceful stop never leaves a
claimed job unread (it would otherwise sit in ``running`` until its lease
lapsed and count an attempt).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator

from pulse_client import NewJob, Pulse
from pulse_client._proto.pulse.v1 import pulse_pb2 as pb
from tests.fixtures.databases import Sql
from tests.fixtures.servers import InProcessServer, PulsedProcess
from tests.fixtures.streams import WorkerStream
from tests.fixtures.wire import submit

OpenStream = Callable[..., WorkerStream]
WAIT_SECONDS = 30.0


def test_draining_is_answered_and_no_assignment_follows_the_answer(
    start_pulsed: Callable[..., PulsedProcess], open_stream: OpenStream
) -> None:
    server = start_pulsed()
    stub = server.stub()
    worker = open_stream(stub, "w", ["t"], 5)
    for _ in range(3):
        submit(stub)
    taken = worker.take_assignments(3)

    worker.send(pb.WorkerMessage(draining=True))

    assert worker.wait_drained() == 3
    for _ in range(5):
        submit(stub)
    worker.give_credits(5)
    time.sleep(0.5)
    assert worker.untaken_assignments() == []
    # Results are still taken after the answer.
    worker.succeed(taken)
    assert [ack.accepted for ack in worker.take_acks(3)] == [True] * 3


def test_a_draining_stream_under_load_gets_every_claimed_job_before_the_answer(
    start_pulsed: Callable[..., PulsedProcess], open_stream: OpenStream, sql: Sql
) -> None:
    server = start_pulsed(claim_linger_ms=0)
    stub = server.stub()
    stop = threading.Event()

    def keep_submitting() -> None:
        while not stop.is_set():
            stub.SubmitJobs(
                pb.SubmitJobsRequest(
                    jobs=[pb.JobSpec(topic="t", payload=b"{}") for _ in range(50)]
                ),
                timeout=10,
            )

    submitter = threading.Thread(target=keep_submitting, daemon=True)
    submitter.start()
    try:
        for round_ in range(15):
            worker = open_stream(stub, f"w{round_}", ["t"], 200)
            time.sleep(0.01 * (round_ % 5))
            worker.send(pb.WorkerMessage(draining=True))
            received = worker.wait_drained()
            time.sleep(0.2)
            worker.close()
            # Exactly the jobs claimed for this worker reached it, all
            # before the answer.
            assert len(worker.assignments) == received
            claimed = sql.scalar(
                "SELECT count(*) FROM jobs WHERE worker_id = %s", (f"w{round_}",)
            )
            assert claimed == received
    finally:
        stop.set()
        submitter.join(10)


def _jobs(topic: str) -> Iterator[NewJob]:
    return (NewJob(topic, {"n": n}) for n in itertools.count())


def test_a_worker_stopped_under_load_leaves_no_job_running(
    start_inprocess: Callable[..., InProcessServer], sql: Sql
) -> None:
    server = start_inprocess(lease_seconds=60, claim_linger_ms=0)
    client = Pulse(server.addr, timeout_seconds=30)
    stop = threading.Event()

    def keep_submitting() -> None:
        source = _jobs("drain.load")
        while not stop.is_set():
            client.enqueue_many(next(source) for _ in range(50))

    submitter = threading.Thread(target=keep_submitting, daemon=True)
    submitter.start()
    try:
        for round_ in range(10):
            worker = Pulse(
                server.addr,
                concurrency=20,
                grace_seconds=10,
                worker_id=f"drain-{round_}",
            )
            worker.register("drain.load", lambda args: None)
            runner = threading.Thread(target=worker.run, daemon=True)
            runner.start()
            time.sleep(0.05 + 0.02 * (round_ % 4))
            worker.stop()
            runner.join(WAIT_SECONDS)
            worker.close()
            assert not runner.is_alive()
            left = sql.scalar(
                "SELECT count(*) FROM jobs WHERE worker_id = %s AND status = 'running'",
                (f"drain-{round_}",),
            )
            assert left == 0, f"round {round_}: {left} jobs left running"
    finally:
        stop.set()
        submitter.join(10)
        client.close()
