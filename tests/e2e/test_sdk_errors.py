"""Submits are idempotent by job id, and bad input through the SDK raises the
matching pulse exception with a readable message and changes nothing."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from pulse_client import (
    ClientClosed,
    InvalidArgument,
    InvalidState,
    JobConflict,
    JobNotFound,
    JobStatus,
    NewJob,
    Pulse,
    PulseError,
    SubmitRefused,
    Unavailable,
)
from tests.e2e.conftest import (
    FAST_KNOBS,
    Deployment,
    WorkerProcess,
    wait_for_status,
)
from tests.fixtures.servers import free_port


@pytest.fixture(scope="module")
def deployment(start_deployment: Callable[..., Deployment]) -> Deployment:
    return start_deployment(**FAST_KNOBS)


@pytest.fixture(scope="module")
def worker(
    deployment: Deployment, start_module_worker: Callable[..., WorkerProcess]
) -> WorkerProcess:
    return start_module_worker("handlers:pulse", deployment)


def _table(deployment: Deployment) -> list[tuple[Any, ...]]:
    return deployment.sql.all("SELECT * FROM jobs ORDER BY id")


# -- idempotent submits --------------------------------------------------------


def test_enqueueing_the_same_job_id_twice_stores_one_job(
    client: Pulse, deployment: Deployment
) -> None:
    job_id = str(uuid.uuid4())

    first = client.enqueue("idem.nobody", {"n": 1}, job_id=job_id)
    second = client.enqueue("idem.nobody", {"n": 1}, job_id=job_id)

    assert first == second == job_id
    assert (
        deployment.sql.scalar("SELECT count(*) FROM jobs WHERE id = %s", (job_id,)) == 1
    )
    assert client.get_job(job_id).json() == {"n": 1}


@pytest.mark.parametrize(
    ("topic", "args"),
    [("idem.nobody", {"n": 2}), ("idem.other", {"n": 1})],
    ids=["other-payload", "other-topic"],
)
def test_enqueueing_a_known_job_id_with_other_content_raises_job_conflict(
    client: Pulse, deployment: Deployment, topic: str, args: Any
) -> None:
    job_id = client.enqueue("idem.nobody", {"n": 1}, job_id=str(uuid.uuid4()))
    before = _table(deployment)

    with pytest.raises(JobConflict) as caught:
        client.enqueue(topic, args, job_id=job_id)

    assert str(caught.value) == (
        f"job '{job_id}' already exists with another topic or payload; "
        "use a new id for new work"
    )
    assert _table(deployment) == before


def test_enqueue_many_with_one_job_id_twice_stores_it_once(
    client: Pulse, deployment: Deployment
) -> None:
    job_id = str(uuid.uuid4())
    same = NewJob("idem.nobody", {"n": 1}, job_id=job_id)

    ids = client.enqueue_many([same, NewJob("idem.nobody", {"n": 2}), same])

    assert ids[0] == ids[2] == job_id
    assert (
        deployment.sql.scalar(
            "SELECT count(*) FROM jobs WHERE id = ANY(%s::uuid[])", (ids,)
        )
        == 2
    )


def test_enqueue_many_with_one_job_id_for_two_payloads_refuses_the_second(
    client: Pulse, deployment: Deployment
) -> None:
    job_id = str(uuid.uuid4())
    jobs = [
        NewJob("idem.nobody", {"n": 1}, job_id=job_id),
        NewJob("idem.nobody", {"n": 2}, job_id=job_id),
    ]

    with pytest.raises(SubmitRefused) as caught:
        client.enqueue_many(jobs)

    assert list(caught.value.errors) == [1]
    assert isinstance(caught.value.errors[1], JobConflict)
    assert client.get_job(job_id).json() == {"n": 1}


# -- bad input -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("topic", "kwargs", "message"),
    [
        ("", {}, "topic '' is invalid: use 1-200 letters, digits or '._:-'"),
        (
            "has space",
            {},
            "topic 'has space' is invalid: use 1-200 letters, digits or '._:-'",
        ),
        (
            "t" * 201,
            {},
            f"topic '{'t' * 201}' is invalid: use 1-200 letters, digits or '._:-'",
        ),
        (
            "bad.priority",
            {"priority": 5000},
            "priority 5000 is out of range -1000..1000",
        ),
        ("bad.attempts", {"max_attempts": 0}, "max_attempts 0 is out of range 1..1000"),
        (
            "bad.attempts",
            {"max_attempts": 2000},
            "max_attempts 2000 is out of range 1..1000",
        ),
    ],
    ids=[
        "empty-topic",
        "topic-with-space",
        "topic-201-chars",
        "priority-5000",
        "max-attempts-0",
        "max-attempts-2000",
    ],
)
def test_enqueue_with_a_bad_value_raises_invalid_argument_and_stores_nothing(
    client: Pulse,
    deployment: Deployment,
    topic: str,
    kwargs: dict[str, Any],
    message: str,
) -> None:
    before = _table(deployment)

    with pytest.raises(InvalidArgument) as caught:
        client.enqueue(topic, {"x": 1}, **kwargs)

    assert str(caught.value) == message
    assert _table(deployment) == before


def test_get_job_with_a_malformed_id_raises_invalid_argument(client: Pulse) -> None:
    with pytest.raises(InvalidArgument) as caught:
        client.get_job("nope")

    assert str(caught.value) == "job id 'nope' is not a UUID"


def test_get_job_with_an_unknown_id_raises_job_not_found(client: Pulse) -> None:
    unknown = str(uuid.uuid4())

    with pytest.raises(JobNotFound) as caught:
        client.get_job(unknown)

    assert str(caught.value) == f"job '{unknown}' not found"


def test_cancel_of_a_completed_job_raises_invalid_state_and_changes_nothing(
    client: Pulse, deployment: Deployment, worker: WorkerProcess
) -> None:
    job_id = client.enqueue("typed.dict", {"done": True})
    wait_for_status(client, job_id, JobStatus.COMPLETED)
    before = _table(deployment)

    with pytest.raises(InvalidState) as caught:
        client.cancel(job_id)

    assert str(caught.value) == (
        f"cannot cancel job '{job_id}' with status completed: it has already finished"
    )
    assert _table(deployment) == before


def test_requeue_of_a_running_job_raises_invalid_state_and_changes_nothing(
    client: Pulse, deployment: Deployment, worker: WorkerProcess
) -> None:
    job_id = client.enqueue("cancel.then_return")
    deployment.wait_for_runs(job_id, "start")
    before = client.get_job(job_id)
    assert before.status == JobStatus.RUNNING

    with pytest.raises(InvalidState) as caught:
        client.requeue(job_id)

    assert str(caught.value) == (
        f"cannot requeue job '{job_id}' with status running: "
        "only dead_lettered or canceled jobs can be"
    )
    after = client.get_job(job_id)
    assert (after.status, after.attempt, after.worker_id, after.started_at) == (
        JobStatus.RUNNING,
        1,
        before.worker_id,
        before.started_at,
    )
    client.cancel(job_id)  # lets the handler return
    wait_for_status(client, job_id, JobStatus.COMPLETED)


def test_a_client_of_an_address_where_nothing_listens_raises_unavailable_quickly(
    make_client: Callable[..., Pulse],
) -> None:
    addr = f"127.0.0.1:{free_port()}"
    nowhere = make_client(addr, timeout_seconds=3)

    started = time.monotonic()
    with pytest.raises(Unavailable) as caught:
        nowhere.enqueue("any.topic", {})
    elapsed = time.monotonic() - started

    assert str(caught.value).startswith(f"server unavailable at {addr}: ")
    assert elapsed < 6, f"took {elapsed:.1f}s to give up"


def test_a_closed_client_raises_client_closed(
    deployment: Deployment, make_client: Callable[..., Pulse]
) -> None:
    closed = make_client(deployment.addr)
    closed.close()

    for call in (
        lambda: closed.enqueue("any.topic", {}),
        lambda: closed.get_job(str(uuid.uuid4())),
        lambda: closed.stats(),
    ):
        with pytest.raises(ClientClosed) as caught:
            call()
        assert str(caught.value) == "the Pulse client is closed"


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (
            NewJob("batch nobody", {"n": 1}),
            "topic 'batch nobody' is invalid: use 1-200 letters, digits or '._:-'",
        ),
        # Regression: these are caught in the SDK, which raised
        # InvalidArgument for the whole batch and stored none of it.
        (
            NewJob("batch.nobody", {"n": 1}, max_attempts=0),
            "max_attempts 0 is out of range 1..1000",
        ),
        (
            NewJob("batch.nobody", {"n": {1, 2}}),
            "payload is not JSON-serialisable: Object of type set is not JSON "
            "serializable",
        ),
    ],
    ids=["refused-by-the-server", "refused-by-the-sdk", "payload-not-json"],
)
def test_enqueue_many_with_one_bad_job_stores_the_others_and_lists_the_bad_one(
    client: Pulse, deployment: Deployment, bad: NewJob, error: str
) -> None:
    jobs = [NewJob("batch.nobody", {"n": 0}), bad, NewJob("batch.nobody", {"n": 2})]

    with pytest.raises(SubmitRefused) as caught:
        client.enqueue_many(jobs)

    refused = caught.value
    assert str(refused) == f"1 of 3 jobs refused; first, job 1: {error}"
    assert isinstance(refused, PulseError)
    assert list(refused.errors) == [1]
    assert isinstance(refused.errors[1], InvalidArgument)
    assert len(refused.job_ids) == 3
    stored = [client.get_job(refused.job_ids[i]) for i in (0, 2)]
    assert [(job.topic, job.json(), job.status) for job in stored] == [
        ("batch.nobody", {"n": 0}, JobStatus.PENDING),
        ("batch.nobody", {"n": 2}, JobStatus.PENDING),
    ]
    with pytest.raises(JobNotFound):
        client.get_job(refused.job_ids[1])
