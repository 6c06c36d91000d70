"""StreamJobs over the raw protocol: opening, credits, results, fencing."""

from __future__ import annotations

import time
from collections.abc import Callable

import grpc
import pytest

from pulse_client._proto.pulse.v1 import pulse_pb2 as pb
from pulse_client._proto.pulse.v1 import pulse_pb2_grpc
from tests.fixtures.databases import Sql
from tests.fixtures.servers import InProcessServer, PulsedProcess
from tests.fixtures.streams import WorkerStream
from tests.fixtures.wire import (
    RPC_TIMEOUT_SECONDS,
    describe,
    details,
    pulse_error_code,
    spec,
    submit,
    unknown_id,
)

OpenStream = Callable[..., WorkerStream]
# Long enough for a claim to have happened if it was going to.
SETTLE_SECONDS = 0.5


def submit_many(
    stub: pulse_pb2_grpc.PulseStub, count: int, topic: str = "t"
) -> list[str]:
    reply = stub.SubmitJobs(
        pb.SubmitJobsRequest(jobs=[spec(topic) for _ in range(count)]),
        timeout=RPC_TIMEOUT_SECONDS,
    )
    return [result.job_id for result in reply.results]


def assert_ended_with(worker: WorkerStream, status: grpc.StatusCode, code: str) -> str:
    error = worker.wait_for_end(timeout_seconds=5)
    assert error is not None, "the stream ended without an error"
    assert error.code() == status, describe(error)
    assert pulse_error_code(error) == code
    return details(error)


def test_a_stream_whose_first_message_lacks_hello_is_refused_with_invalid_argument(
    stub: pulse_pb2_grpc.PulseStub, open_stream: OpenStream
) -> None:
    worker = open_stream(stub, "w", ["t"], 0, first=pb.WorkerMessage(credits=5))

    details = assert_ended_with(
        worker, grpc.StatusCode.INVALID_ARGUMENT, "invalid_argument"
    )

    assert "first message on a stream must carry hello" in details


def test_a_second_hello_ends_the_stream_with_invalid_argument(
    stub: pulse_pb2_grpc.PulseStub, open_stream: OpenStream
) -> None:
    worker = open_stream(stub, "w", ["t"], 1)

    worker.send(
        pb.WorkerMessage(hello=pb.Hello(worker_id="w", topics=["t"], credits=1))
    )

    assert_ended_with(worker, grpc.StatusCode.INVALID_ARGUMENT, "invalid_argument")


@pytest.mark.parametrize(
    "hello",
    [
        pb.Hello(worker_id="", topics=["t"], credits=1),
        pb.Hello(worker_id="w" * 201, topics=["t"], credits=1),
        pb.Hello(worker_id="w", topics=[], credits=1),
        pb.Hello(worker_id="w", topics=["bad topic"], credits=1),
        pb.Hello(worker_id="w", topics=[f"t{i}" for i in range(1001)], credits=1),
    ],
    ids=["no worker id", "long worker id", "no topics", "bad topic", "1001 topics"],
)
def test_a_bad_hello_is_refused_with_invalid_argument(
    stub: pulse_pb2_grpc.PulseStub, open_stream: OpenStream, hello: pb.Hello
) -> None:
    worker = open_stream(stub, "w", [], 0, first=pb.WorkerMessage(hello=hello))

    assert_ended_with(worker, grpc.StatusCode.INVALID_ARGUMENT, "invalid_argument")


def test_a_worker_id_holding_nul_is_refused_at_hello(
    stub: pulse_pb2_grpc.PulseStub, open_stream: OpenStream
) -> None:
    # Regression: Postgres text cannot hold NUL, and such an id once failed
    # every claim statement of its topic group, for every worker in it.
    hello = pb.Hello(worker_id="bad\x00id", topics=["t"], credits=1)

    worker = open_stream(stub, "w", [], 0, first=pb.WorkerMessage(hello=hello))

    assert_ended_with(worker, grpc.StatusCode.INVALID_ARGUMENT, "invalid_argument")


def test_a_worker_id_holding_nul_does_not_stop_other_workers_of_its_topic(
    stub: pulse_pb2_grpc.PulseStub, open_stream: OpenStream
) -> None:
    hello = pb.Hello(worker_id="bad\x00id", topics=["t"], credits=1)
    open_stream(stub, "bad", [], 0, first=pb.WorkerMessage(hello=hello))
    good = open_stream(stub, "good", ["t"], 1)

    job = submit(stub)

    assert [a.job_id for a in good.take_assignments(1, timeout_seconds=3)] == [job.id]


def test_the_first_server_message_states_the_lease(
    start_inprocess: Callable[..., InProcessServer], open_stream: OpenStream
) -> None:
    stub = start_inprocess(lease_seconds=7.5).stub()

    worker = open_stream(stub, "w", ["t"], 1)
    submit(stub)
    worker.take_assignments(1)

    assert worker.lease_ms == 7500


def test_the_server_never_sends_more_assignments_than_credits(
    stub: pulse_pb2_grpc.PulseStub, sql: Sql, open_stream: OpenStream
) -> None:
    submit_many(stub, 20)

    worker = open_stream(stub, "w", ["t"], 3)
    first = worker.take_assignments(3)
    time.sleep(SETTLE_SECONDS)
    extra_after_hello = worker.untaken_assignments()

    worker.succeed(first)  # results without credits free nothing
    worker.take_acks(3)
    time.sleep(SETTLE_SECONDS)
    extra_after_results = worker.untaken_assignments()

    worker.give_credits(2)
    second = worker.take_assignments(2)
    time.sleep(SETTLE_SECONDS)
    extra_after_credits = worker.untaken_assignments()

    assert (extra_after_hello, extra_after_results, extra_after_credits) == ([], [], [])
    assert len({a.job_id for a in first + second}) == 5
    counts = dict(sql.all("SELECT status, count(*) FROM jobs GROUP BY status"))
    assert counts == {"completed": 3, "running": 2, "pending": 15}


def test_credits_are_shared_by_the_streams_of_a_worker_group(
    stub: pulse_pb2_grpc.PulseStub, open_stream: OpenStream
) -> None:
    submit_many(stub, 10)

    one = open_stream(stub, "w1", ["t"], 2)
    two = open_stream(stub, "w2", ["t"], 3)
    got = one.take_assignments(2) + two.take_assignments(3)
    time.sleep(SETTLE_SECONDS)

    assert (one.untaken_assignments(), two.untaken_assignments()) == ([], [])
    assert len({a.job_id for a in got}) == 5


def test_each_stream_of_a_group_holds_the_jobs_it_was_sent(
    stub: pulse_pb2_grpc.PulseStub, sql: Sql, open_stream: OpenStream
) -> None:
    one = open_stream(stub, "w1", ["t"], 2)
    two = open_stream(stub, "w2", ["t"], 3)
    # The streams are open before the jobs arrive, so that one claim
    # usually serves both, its rows shared out between them.
    submit_many(stub, 5)
    got = {"w1": one.take_assignments(2), "w2": two.take_assignments(3)}

    held = {
        a.job_id: sql.job(a.job_id)["worker_id"]
        for assignments in got.values()
        for a in assignments
    }
    one.succeed(got["w1"])
    two.succeed(got["w2"])

    assert held == {
        a.job_id: worker_id
        for worker_id, assignments in got.items()
        for a in assignments
    }
    assert [ack.accepted for ack in one.take_acks(2) + two.take_acks(3)] == [True] * 5


def test_a_stream_only_receives_jobs_of_its_topics(
    stub: pulse_pb2_grpc.PulseStub, open_stream: OpenStream
) -> None:
    submit_many(stub, 3, topic="other")
    mine = submit_many(stub, 2, topic="mine")

    worker = open_stream(stub, "w", ["mine", "unused"], 10)
    got = worker.take_assignments(2)
    time.sleep(SETTLE_SECONDS)

    assert sorted(a.job_id for a in got) == sorted(mine)
    assert worker.untaken_assignments() == []


def test_results_for_jobs_the_stream_never_held_are_refused_and_change_nothing(
    stub: pulse_pb2_grpc.PulseStub, sql: Sql, open_stream: OpenStream
) -> None:
    waiting = submit(stub, "waiting")
    held_by_other = submit(stub, "other")
    other = open_stream(stub, "other-worker", ["other"], 1)
    (other_assignment,) = other.take_assignments(1)
    mine = submit(stub, "mine")
    worker = open_stream(stub, "w", ["mine"], 1)
    (my_assignment,) = worker.take_assignments(1)
    ids = [waiting.id, held_by_other.id, unknown_id(), mine.id]
    before = {job_id: sql.job(job_id) for job_id in ids if job_id != ids[2]}

    worker.report(
        [
            pb.JobResult(job_id=waiting.id, attempt=1, outcome=pb.OUTCOME_SUCCEEDED),
            pb.JobResult(
                job_id=held_by_other.id,
                attempt=other_assignment.attempt,
                outcome=pb.OUTCOME_FAILED,
                error="not mine",
            ),
            pb.JobResult(job_id=ids[2], attempt=1, outcome=pb.OUTCOME_SUCCEEDED),
            # My own job, but an attempt I never ran.
            pb.JobResult(
                job_id=mine.id,
                attempt=my_assignment.attempt + 1,
                outcome=pb.OUTCOME_SUCCEEDED,
            ),
        ]
    )

    acks = worker.take_acks(4)
    assert [(a.job_id, a.accepted, a.status) for a in acks] == [
        (job_id, False, pb.JOB_STATUS_UNSPECIFIED) for job_id in ids
    ]
    assert {job_id: sql.job(job_id) for job_id in before} == before
    assert sql.count_jobs() == 3


def test_a_repeated_result_is_acknowledged_as_refused_and_the_first_stands(
    stub: pulse_pb2_grpc.PulseStub, sql: Sql, open_stream: OpenStream
) -> None:
    job = submit(stub, max_attempts=5)
    worker = open_stream(stub, "w", ["t"], 1)
    (assignment,) = worker.take_assignments(1)
    worker.succeed([assignment])
    first = worker.take_acks(1)

    worker.fail(assignment, "too late")

    again = worker.take_acks(1)
    assert [(a.accepted, a.status) for a in first + again] == [
        (True, pb.JOB_STATUS_COMPLETED),
        (False, pb.JOB_STATUS_UNSPECIFIED),
    ]
    assert (sql.job(job.id)["status"], sql.job(job.id)["last_error"]) == (
        "completed",
        None,
    )


def test_a_result_with_a_malformed_job_id_ends_the_stream_with_invalid_argument(
    stub: pulse_pb2_grpc.PulseStub, open_stream: OpenStream
) -> None:
    worker = open_stream(stub, "w", ["t"], 1)

    worker.report(
        [pb.JobResult(job_id="nope", attempt=1, outcome=pb.OUTCOME_SUCCEEDED)]
    )

    assert_ended_with(worker, grpc.StatusCode.INVALID_ARGUMENT, "invalid_argument")


def test_a_malformed_job_id_ends_only_its_own_stream_and_is_named(
    stub: pulse_pb2_grpc.PulseStub, sql: Sql, open_stream: OpenStream
) -> None:
    # Ids reach the result statement as text cast there: a malformed one
    # must be refused before it joins a batch shared with other streams.
    job = submit(stub)
    good = open_stream(stub, "good", ["t"], 1)
    (assignment,) = good.take_assignments(1)
    bad = open_stream(stub, "bad", ["other"], 1)

    bad.report(
        [pb.JobResult(job_id="not-a-uuid", attempt=1, outcome=pb.OUTCOME_SUCCEEDED)]
    )
    good.succeed([assignment])

    message = assert_ended_with(
        bad, grpc.StatusCode.INVALID_ARGUMENT, "invalid_argument"
    )
    assert "'not-a-uuid'" in message
    (ack,) = good.take_acks(1)
    assert (ack.job_id, ack.accepted) == (job.id, True)
    assert sql.job(job.id)["status"] == "completed"


@pytest.mark.parametrize(
    "spell",
    [str.upper, lambda text: "{" + text + "}", lambda text: text.replace("-", "")],
    ids=["capitals", "braces", "no hyphens"],
)
def test_a_result_naming_its_job_in_another_spelling_is_applied(
    stub: pulse_pb2_grpc.PulseStub,
    sql: Sql,
    open_stream: OpenStream,
    spell: Callable[[str], str],
) -> None:
    job = submit(stub)
    worker = open_stream(stub, "w", ["t"], 1)
    (assignment,) = worker.take_assignments(1)

    worker.report(
        [
            pb.JobResult(
                job_id=spell(job.id),
                attempt=assignment.attempt,
                outcome=pb.OUTCOME_SUCCEEDED,
            )
        ]
    )

    (ack,) = worker.take_acks(1)
    # Acknowledged under the id as pulsed writes it.
    assert (ack.job_id, ack.accepted, ack.status) == (
        job.id,
        True,
        pb.JOB_STATUS_COMPLETED,
    )
    assert sql.job(job.id)["status"] == "completed"


def test_a_result_without_an_outcome_ends_the_stream_with_invalid_argument(
    stub: pulse_pb2_grpc.PulseStub, open_stream: OpenStream
) -> None:
    job = submit(stub)
    worker = open_stream(stub, "w", ["t"], 1)
    (assignment,) = worker.take_assignments(1)

    worker.report([pb.JobResult(job_id=job.id, attempt=assignment.attempt)])

    assert_ended_with(worker, grpc.StatusCode.INVALID_ARGUMENT, "invalid_argument")


def test_a_heartbeat_for_jobs_never_held_reports_them_lost(
    stub: pulse_pb2_grpc.PulseStub, open_stream: OpenStream
) -> None:
    waiting = submit(stub, "waiting")
    worker = open_stream(stub, "w", ["t"], 1)
    stranger = unknown_id()

    worker.heartbeat([(waiting.id, 1), (stranger, 3)])

    lost = worker.take_lost(2)
    assert [(x.job_id, x.attempt, x.reason) for x in lost] == [
        (waiting.id, 1, pb.LOSS_REASON_LEASE_LOST),
        (stranger, 3, pb.LOSS_REASON_LEASE_LOST),
    ]


def test_streams_beyond_the_limit_are_refused_with_resource_exhausted(
    start_inprocess: Callable[..., InProcessServer], open_stream: OpenStream
) -> None:
    stub = start_inprocess(max_streams=1).stub()
    first = open_stream(stub, "w1", ["t"], 1)
    submit(stub)
    first.take_assignments(1)

    second = open_stream(stub, "w2", ["t"], 1)

    details = assert_ended_with(
        second, grpc.StatusCode.RESOURCE_EXHAUSTED, "resource_exhausted"
    )
    assert "PULSE_MAX_STREAMS" in details


def test_heartbeats_keep_a_job_past_its_lease_on_the_same_attempt(
    start_inprocess: Callable[..., InProcessServer], sql: Sql, open_stream: OpenStream
) -> None:
    # A lease eight heartbeats long, kept for over two leases: a lapse
    # needs eight heartbeats in a row to go missing, not a busy moment.
    stub = start_inprocess(
        lease_seconds=2, watchdog_seconds=0.1, backoff_base_seconds=0.1
    ).stub()
    job = submit(stub)
    worker = open_stream(stub, "w", ["t"], 1)
    (assignment,) = worker.take_assignments(1)
    # Opened once the job is out: had both streams been waiting when it was
    # claimed, the claim could have served either of them.
    other = open_stream(stub, "other", ["t"], 1)

    end = time.monotonic() + 4.5
    while time.monotonic() < end:
        worker.heartbeat([(job.id, assignment.attempt)])
        time.sleep(0.25)

    row = sql.job(job.id)
    assert (row["status"], row["attempt"], row["worker_id"]) == ("running", 1, "w")
    assert other.untaken_assignments() == []
    assert worker.lost == []
    worker.succeed([assignment])
    assert worker.take_acks(1)[0].accepted


def test_a_zombie_report_after_the_lease_lapsed_is_refused_and_the_new_attempt_stands(
    start_pulsed: Callable[..., PulsedProcess], sql: Sql, open_stream: OpenStream
) -> None:
    server = start_pulsed(
        lease_seconds=1, watchdog_seconds=0.2, backoff_base_seconds=0.2
    )
    stub = server.stub()
    job = submit(stub, max_attempts=5)
    zombie = open_stream(stub, "worker-a", ["t"], 1)
    (first,) = zombie.take_assignments(1)
    # Worker B waits with a free slot; worker A goes silent (no heartbeat).
    healthy = open_stream(stub, "worker-b", ["t"], 1)

    (second,) = healthy.take_assignments(1, timeout_seconds=5)
    zombie.succeed([first])
    zombie.heartbeat([(job.id, first.attempt)])
    (zombie_ack,) = zombie.take_acks(1)
    (zombie_lost,) = zombie.take_lost(1)
    healthy.fail(second, "B failed for real", permanently=True)
    (healthy_ack,) = healthy.take_acks(1)
    zombie.succeed([first])
    (late_ack,) = zombie.take_acks(1)

    assert (first.attempt, second.attempt, second.job_id) == (1, 2, job.id)
    assert (zombie_ack.accepted, late_ack.accepted) == (False, False)
    assert zombie_lost.reason == pb.LOSS_REASON_LEASE_LOST
    assert (healthy_ack.accepted, healthy_ack.status) == (
        True,
        pb.JOB_STATUS_DEAD_LETTERED,
    )
    row = sql.job(job.id)
    assert (row["status"], row["attempt"], row["worker_id"], row["last_error"]) == (
        "dead_lettered",
        2,
        "worker-b",
        "B failed for real",
    )


def test_an_assignment_carries_the_claimed_row_to_the_microsecond(
    stub: pulse_pb2_grpc.PulseStub, open_stream: OpenStream, sql: Sql
) -> None:
    (job_id,) = submit_many(stub, 1, topic="exact")
    sql.execute(
        "UPDATE jobs SET priority = 7, timeout_ms = 90000, max_attempts = 5,"
        " created_at = '2026-01-02 03:04:05.123456+00' WHERE id = %s",
        (job_id,),
    )
    worker = open_stream(stub, "w-exact", ["exact"], 1)

    (assignment,) = worker.take_assignments(1)

    row = sql.one(
        "SELECT topic, payload, attempt, max_attempts, priority, timeout_ms,"
        " (extract(epoch FROM lease_expires_at) * 1000000)::bigint,"
        " (extract(epoch FROM created_at) * 1000000)::bigint"
        " FROM jobs WHERE id = %s",
        (job_id,),
    )
    assert (
        assignment.topic,
        assignment.payload,
        assignment.attempt,
        assignment.max_attempts,
        assignment.priority,
        assignment.timeout_ms,
        assignment.lease_expires_at.ToMicroseconds(),
        assignment.created_at.ToMicroseconds(),
    ) == (row[0], bytes(row[1]), 1, 5, 7, 90000, row[6], row[7])
    assert row[7] == 1767323045123456
    assert (assignment.job_id, assignment.attempts_used) == (job_id, 1)
