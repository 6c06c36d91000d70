"""SubmitJob, SubmitJobs and GetJob over the raw protocol."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.protobuf import timestamp_pb2

from pulse_client._proto.pulse.v1 import pulse_pb2 as pb
from pulse_client._proto.pulse.v1 import pulse_pb2_grpc
from tests.fixtures.databases import Sql
from tests.fixtures.servers import InProcessServer
from tests.fixtures.wire import (
    RPC_TIMEOUT_SECONDS,
    assert_rpc_error,
    details,
    get_job,
    new_id,
    spec,
    submit,
    unknown_id,
)

MAX_PAYLOAD_BYTES = 64


@pytest.fixture
def stub(start_inprocess: Callable[..., InProcessServer]) -> pulse_pb2_grpc.PulseStub:
    """A server with a small payload limit, so that 'too big' is cheap."""
    return start_inprocess(max_payload_bytes=MAX_PAYLOAD_BYTES).stub()


def _timestamp(moment: datetime.datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(moment)
    return ts


def test_submit_stores_a_pending_job_with_the_defaults(
    stub: pulse_pb2_grpc.PulseStub, sql: Sql
) -> None:
    job_id = new_id()

    job = submit(stub, "emails", b'{"to": "a"}', id=job_id)

    assert (job.id, job.topic, job.payload) == (job_id, "emails", b'{"to": "a"}')
    assert (job.status, job.attempt, job.attempts_used) == (pb.JOB_STATUS_PENDING, 0, 0)
    assert (job.priority, job.max_attempts, job.timeout_ms) == (0, 20, 0)
    row = sql.job(job_id)
    assert (row["status"], row["attempt"], row["max_attempts"]) == ("pending", 0, 20)
    assert bytes(row["payload"]) == b'{"to": "a"}'
    assert row["run_at"] == row["created_at"]


def test_submit_without_an_id_gets_a_server_made_uuid7(
    stub: pulse_pb2_grpc.PulseStub,
) -> None:
    job = submit(stub, id="")

    assert uuid.UUID(job.id).version == 7
    assert get_job(stub, job.id).id == job.id


def test_submit_with_a_delay_is_scheduled_that_far_ahead(
    stub: pulse_pb2_grpc.PulseStub, sql: Sql
) -> None:
    job = submit(stub, delay_ms=60_000)

    assert job.status == pb.JOB_STATUS_SCHEDULED
    delay = sql.scalar(
        "SELECT extract(epoch FROM run_at - created_at) FROM jobs WHERE id = %s",
        (job.id,),
    )
    assert float(delay) == pytest.approx(60.0, abs=0.5)


def test_submit_with_run_at_in_the_past_is_due_now(
    stub: pulse_pb2_grpc.PulseStub,
) -> None:
    past = datetime.datetime(2001, 1, 1, tzinfo=datetime.UTC)

    job = submit(stub, run_at=_timestamp(past))

    assert job.status == pb.JOB_STATUS_PENDING
    assert job.run_at.ToDatetime(tzinfo=datetime.UTC) > past


def test_resubmitting_the_same_job_returns_it_with_existed_and_stores_one_row(
    stub: pulse_pb2_grpc.PulseStub, sql: Sql
) -> None:
    job = spec("emails", b"same")
    first = stub.SubmitJob(pb.SubmitJobRequest(job=job), timeout=RPC_TIMEOUT_SECONDS)

    again = stub.SubmitJob(pb.SubmitJobRequest(job=job), timeout=RPC_TIMEOUT_SECONDS)

    assert (first.existed, again.existed) == (False, True)
    assert again.job.id == job.id
    assert again.job.created_at == first.job.created_at
    assert sql.count_jobs() == 1


@pytest.mark.parametrize(
    "change", [{"payload": b"other"}, {"topic": "other"}], ids=["payload", "topic"]
)
def test_same_id_with_other_content_is_refused_as_a_conflict_and_changes_nothing(
    stub: pulse_pb2_grpc.PulseStub, sql: Sql, change: dict[str, Any]
) -> None:
    job_id = new_id()
    submit(stub, "emails", b"original", id=job_id)
    fields = {"topic": "emails", "payload": b"original", **change}

    with pytest.raises(grpc.RpcError) as excinfo:
        submit(stub, id=job_id, **fields)

    assert_rpc_error(excinfo, grpc.StatusCode.ALREADY_EXISTS, "job_conflict")
    assert job_id in details(excinfo.value)
    row = sql.job(job_id)
    assert (row["topic"], bytes(row["payload"])) == ("emails", b"original")
    assert sql.count_jobs() == 1


def test_submit_jobs_answers_each_job_and_a_refused_one_never_fails_the_others(
    stub: pulse_pb2_grpc.PulseStub, sql: Sql
) -> None:
    existing = submit(stub, "emails", b"stored")
    good, later, repeated = (
        spec("emails", b"1"),
        spec("emails", b"2", delay_ms=60_000),
        spec(),
    )
    batch = [
        good,
        spec(topic="no spaces allowed"),
        later,
        spec("emails", b"changed", id=existing.id),
        spec("emails", b"stored", id=existing.id),
        repeated,
        repeated,
        spec("emails", b"different", id=repeated.id),
    ]

    reply = stub.SubmitJobs(
        pb.SubmitJobsRequest(jobs=batch), timeout=RPC_TIMEOUT_SECONDS
    )

    answers = [(r.job_id, r.existed, r.status, r.error.code) for r in reply.results]
    assert answers == [
        (good.id, False, pb.JOB_STATUS_PENDING, ""),
        (batch[1].id, False, pb.JOB_STATUS_UNSPECIFIED, "invalid_argument"),
        (later.id, False, pb.JOB_STATUS_SCHEDULED, ""),
        (existing.id, False, pb.JOB_STATUS_UNSPECIFIED, "job_conflict"),
        (existing.id, True, pb.JOB_STATUS_PENDING, ""),
        (repeated.id, False, pb.JOB_STATUS_PENDING, ""),
        (repeated.id, True, pb.JOB_STATUS_PENDING, ""),
        (repeated.id, False, pb.JOB_STATUS_UNSPECIFIED, "job_conflict"),
    ]
    assert "'no spaces allowed' is invalid" in reply.results[1].error.message
    stored = dict(sql.all("SELECT id::text, payload FROM jobs"))
    assert {k: bytes(v) for k, v in stored.items()} == {
        existing.id: b"stored",
        good.id: b"1",
        later.id: b"2",
        repeated.id: b"{}",
    }


def test_submit_answers_the_times_it_stored(
    stub: pulse_pb2_grpc.PulseStub, sql: Sql
) -> None:
    later = datetime.datetime(2031, 2, 3, 4, 5, 6, 789_012, tzinfo=datetime.UTC)

    due, scheduled = submit(stub), submit(stub, run_at=_timestamp(later))

    for job in (due, scheduled):
        row = sql.job(job.id)
        assert job.run_at.ToDatetime(tzinfo=datetime.UTC) == row["run_at"]
        assert job.created_at.ToDatetime(tzinfo=datetime.UTC) == row["created_at"]
    assert scheduled.status == pb.JOB_STATUS_SCHEDULED
    assert sql.job(scheduled.id)["run_at"] == later


def test_submit_jobs_stores_run_at_to_the_microsecond_and_past_ones_as_due(
    stub: pulse_pb2_grpc.PulseStub, sql: Sql
) -> None:
    later = datetime.datetime(2031, 2, 3, 4, 5, 6, 789_012, tzinfo=datetime.UTC)
    past = datetime.datetime(2001, 1, 1, tzinfo=datetime.UTC)
    batch = [spec(run_at=_timestamp(later)), spec(run_at=_timestamp(past)), spec()]

    reply = stub.SubmitJobs(
        pb.SubmitJobsRequest(jobs=batch), timeout=RPC_TIMEOUT_SECONDS
    )

    assert [r.status for r in reply.results] == [
        pb.JOB_STATUS_SCHEDULED,
        pb.JOB_STATUS_PENDING,
        pb.JOB_STATUS_PENDING,
    ]
    assert sql.job(batch[0].id)["run_at"] == later
    assert sql.job(batch[1].id)["run_at"] > past


def test_one_id_spelled_two_ways_in_a_batch_is_one_job(
    stub: pulse_pb2_grpc.PulseStub, sql: Sql
) -> None:
    job_id = new_id()
    batch = [spec(id=job_id.upper()), spec(id=job_id), spec(id=job_id.replace("-", ""))]

    reply = stub.SubmitJobs(
        pb.SubmitJobsRequest(jobs=batch), timeout=RPC_TIMEOUT_SECONDS
    )

    assert [(r.job_id, r.existed, r.error.code) for r in reply.results] == [
        (job_id, False, ""),
        (job_id, True, ""),
        (job_id, True, ""),
    ]
    assert sql.count_jobs() == 1


@pytest.mark.parametrize("topic", ["NULL", "null"])
def test_a_topic_spelled_like_null_is_stored_as_that_text(
    stub: pulse_pb2_grpc.PulseStub, sql: Sql, topic: str
) -> None:
    reply = stub.SubmitJobs(
        pb.SubmitJobsRequest(jobs=[spec(topic)]), timeout=RPC_TIMEOUT_SECONDS
    )

    assert reply.results[0].error.code == ""
    assert sql.job(reply.results[0].job_id)["topic"] == topic


def test_submit_jobs_with_an_empty_batch_answers_nothing(
    stub: pulse_pb2_grpc.PulseStub,
) -> None:
    reply = stub.SubmitJobs(pb.SubmitJobsRequest(jobs=[]), timeout=RPC_TIMEOUT_SECONDS)

    assert list(reply.results) == []


_NOW = datetime.datetime.now(datetime.UTC)
BAD_JOBS: dict[str, tuple[dict[str, Any], str]] = {
    "empty topic": ({"topic": ""}, "topic '' is invalid"),
    "201-char topic": ({"topic": "a" * 201}, "is invalid: use 1-200"),
    "topic with a space": ({"topic": "a b"}, "topic 'a b' is invalid"),
    "non-ascii topic": ({"topic": "jöbs"}, "topic 'jöbs' is invalid"),
    "payload over the limit": (
        {"payload": b"x" * (MAX_PAYLOAD_BYTES + 1)},
        f"payload of 65 bytes is over the limit of {MAX_PAYLOAD_BYTES} bytes",
    ),
    "priority 1001": ({"priority": 1001}, "priority 1001 is out of range -1000..1000"),
    "priority -1001": ({"priority": -1001}, "priority -1001 is out of range"),
    "max_attempts -1": (
        {"max_attempts": -1},
        "max_attempts -1 is out of range 1..1000",
    ),
    "max_attempts 1001": ({"max_attempts": 1001}, "max_attempts 1001 is out of range"),
    "malformed job id": ({"id": "not-a-uuid"}, "job id 'not-a-uuid' is not a UUID"),
    "run_at and delay_ms": (
        {"run_at": _timestamp(_NOW), "delay_ms": 1000},
        "give run_at or delay_ms, not both",
    ),
    "negative delay_ms": ({"delay_ms": -1}, "delay_ms -1 is out of range"),
    "negative timeout_ms": ({"timeout_ms": -1}, "timeout_ms -1 is out of range"),
}


@pytest.mark.parametrize("case", sorted(BAD_JOBS))
def test_submit_of_bad_input_gets_invalid_argument_and_changes_nothing(
    stub: pulse_pb2_grpc.PulseStub, sql: Sql, case: str
) -> None:
    fields, message = BAD_JOBS[case]
    submit(stub, "already.there")
    before = sql.all("SELECT * FROM jobs")

    with pytest.raises(grpc.RpcError) as excinfo:
        submit(stub, **{"topic": "t", **fields})

    assert_rpc_error(excinfo, grpc.StatusCode.INVALID_ARGUMENT, "invalid_argument")
    assert message in details(excinfo.value)
    assert sql.all("SELECT * FROM jobs") == before


def test_submit_jobs_refuses_each_bad_job_with_its_reason_and_stores_the_good_ones(
    stub: pulse_pb2_grpc.PulseStub, sql: Sql
) -> None:
    cases = sorted(BAD_JOBS)
    batch = []
    for case in cases:
        batch += [
            spec(**{"topic": "t", **BAD_JOBS[case][0]}),
            spec("good", case.encode()),
        ]

    reply = stub.SubmitJobs(
        pb.SubmitJobsRequest(jobs=batch), timeout=RPC_TIMEOUT_SECONDS
    )

    refused, stored = reply.results[0::2], reply.results[1::2]
    for case, result in zip(cases, refused, strict=True):
        assert result.error.code == "invalid_argument", case
        assert BAD_JOBS[case][1] in result.error.message, case
    assert [result.error.code for result in stored] == [""] * len(cases)
    payloads = sql.all("SELECT payload FROM jobs WHERE topic = 'good'")
    assert sorted(bytes(p) for (p,) in payloads) == sorted(c.encode() for c in cases)
    assert sql.count_jobs() == len(cases)


BOUNDARY_JOBS: dict[str, dict[str, Any]] = {
    "200-char topic": {"topic": "a" * 200},
    "every allowed topic character": {"topic": "Az09._:-"},
    "payload at the limit": {"payload": b"x" * MAX_PAYLOAD_BYTES},
    "empty payload": {"payload": b""},
    "priority 1000": {"priority": 1000},
    "priority -1000": {"priority": -1000},
    "max_attempts 1": {"max_attempts": 1},
    "max_attempts 1000": {"max_attempts": 1000},
}


@pytest.mark.parametrize("case", sorted(BOUNDARY_JOBS))
def test_submit_accepts_values_at_the_limits(
    stub: pulse_pb2_grpc.PulseStub, sql: Sql, case: str
) -> None:
    fields = BOUNDARY_JOBS[case]

    job = submit(stub, **{"topic": "t", **fields})

    row = sql.job(job.id)
    for name, value in fields.items():
        stored = bytes(row[name]) if name == "payload" else row[name]
        assert stored == value


def test_get_job_of_a_malformed_id_is_invalid_argument(
    stub: pulse_pb2_grpc.PulseStub,
) -> None:
    with pytest.raises(grpc.RpcError) as excinfo:
        get_job(stub, "12345")

    assert_rpc_error(excinfo, grpc.StatusCode.INVALID_ARGUMENT, "invalid_argument")


def test_get_job_of_an_unknown_id_is_not_found(stub: pulse_pb2_grpc.PulseStub) -> None:
    job_id = unknown_id()

    with pytest.raises(grpc.RpcError) as excinfo:
        get_job(stub, job_id)

    assert_rpc_error(excinfo, grpc.StatusCode.NOT_FOUND, "job_not_found")
    assert job_id in details(excinfo.value)
