"""Handlers in a real worker process: how payloads are decoded, how each way
of ending a job is recorded, and how a cancel reaches a running handler."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from pulse_client import JobContext, JobStatus, Pulse
from tests.e2e.apps.shapes import Address, Line, Order
from tests.e2e.conftest import (
    FAST_KNOBS,
    Deployment,
    WorkerProcess,
    wait_for_status,
)

DONE = (JobStatus.COMPLETED, JobStatus.DEAD_LETTERED, JobStatus.CANCELED)


@pytest.fixture(scope="module")
def deployment(start_deployment: Callable[..., Deployment]) -> Deployment:
    return start_deployment(**FAST_KNOBS)


@pytest.fixture(scope="module")
def worker(
    deployment: Deployment, start_module_worker: Callable[..., WorkerProcess]
) -> WorkerProcess:
    return start_module_worker("handlers:pulse", deployment)


# -- typed payloads ------------------------------------------------------------


def test_a_dataclass_handler_gets_nested_dataclasses_and_lists_of_them(
    client: Pulse, deployment: Deployment, worker: WorkerProcess
) -> None:
    order = Order(
        order_id=7,
        ship_to=Address(city="Oslo", postcode="0150"),
        lines=[Line(sku="a-1", quantity=2), Line(sku="b-2", quantity=1)],
    )

    job_id = client.enqueue("typed.dataclass", order)

    job = wait_for_status(client, job_id, *DONE)
    assert (job.status, job.attempt) == (JobStatus.COMPLETED, 1)
    (run,) = deployment.runs(job_id, "decoded")
    assert run.detail == (
        "Order(order_id=7, ship_to=Address(city='Oslo', postcode='0150'), "
        "lines=[Line(sku='a-1', quantity=2), Line(sku='b-2', quantity=1)], note=None)"
    )


def test_a_dataclass_handler_also_takes_the_same_fields_sent_as_a_dict(
    client: Pulse, deployment: Deployment, worker: WorkerProcess
) -> None:
    payload = {
        "order_id": 8,
        "ship_to": {"city": "Bergen", "postcode": "5003"},
        "lines": [],
        "note": "leave at the door",
    }

    job_id = client.enqueue("typed.dataclass", payload)

    assert wait_for_status(client, job_id, *DONE).status == JobStatus.COMPLETED
    (run,) = deployment.runs(job_id, "decoded")
    assert run.detail == (
        "Order(order_id=8, ship_to=Address(city='Bergen', postcode='5003'), "
        "lines=[], note='leave at the door')"
    )


def test_a_dataclass_handler_gets_an_optional_list_of_dataclasses_as_dataclasses(
    client: Pulse, deployment: Deployment, worker: WorkerProcess
) -> None:
    # Regression: a ``list[Parcel] | None`` field came through as a list of
    # dicts; only dataclass options of a union were converted.
    job_id = client.enqueue(
        "typed.shipment", {"parcels": [{"label": "p1", "grams": 300}]}
    )

    assert wait_for_status(client, job_id, *DONE).status == JobStatus.COMPLETED
    (run,) = deployment.runs(job_id, "decoded")
    assert run.detail == "Shipment(parcels=[Parcel(label='p1', grams=300)])"


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (
            {
                "order_id": 9,
                "ship_to": {"city": "Oslo", "postcode": "0150"},
                "lines": [],
                "coupon": "FREE",
            },
            "PayloadError: payload has fields Order does not know: ['coupon']",
        ),
        (
            {"order_id": 9, "lines": []},
            "PayloadError: payload does not fit Order: "
            "Order.__init__() missing 1 required positional argument: 'ship_to'",
        ),
        (
            {"order_id": 9, "ship_to": "Oslo", "lines": []},
            "PayloadError: payload for Address must be a JSON object, got str",
        ),
        (
            [1, 2, 3],
            "PayloadError: payload for Order must be a JSON object, got list",
        ),
    ],
    ids=["unknown-field", "missing-field", "nested-not-an-object", "not-an-object"],
)
def test_a_payload_that_does_not_fit_the_dataclass_is_dead_lettered_at_once(
    client: Pulse,
    deployment: Deployment,
    worker: WorkerProcess,
    payload: Any,
    error: str,
) -> None:
    job_id = client.enqueue("typed.dataclass", payload, max_attempts=5)

    job = wait_for_status(client, job_id, *DONE)
    assert (job.status, job.attempt, job.last_error) == (
        JobStatus.DEAD_LETTERED,
        1,
        error,
    )
    assert deployment.runs(job_id) == []


def test_a_typeddict_handler_gets_a_plain_dict(
    client: Pulse, deployment: Deployment, worker: WorkerProcess
) -> None:
    job_id = client.enqueue("typed.typeddict", {"x": 3, "y": -4})

    assert wait_for_status(client, job_id, *DONE).status == JobStatus.COMPLETED
    (run,) = deployment.runs(job_id, "decoded")
    assert run.detail == 'dict {"x": 3, "y": -4}'


def test_a_dict_handler_gets_the_decoded_json_unchanged(
    client: Pulse, deployment: Deployment, worker: WorkerProcess
) -> None:
    payload = {"name": "Zoë ✓", "tags": ["a", "b"], "nested": {"n": None, "f": 1.5}}

    job_id = client.enqueue("typed.dict", payload)

    assert wait_for_status(client, job_id, *DONE).status == JobStatus.COMPLETED
    (run,) = deployment.runs(job_id, "decoded")
    assert run.detail == (
        'dict {"name": "Zo\\u00eb \\u2713", "nested": {"f": 1.5, "n": null}, '
        '"tags": ["a", "b"]}'
    )


def test_an_unannotated_handler_gets_whatever_json_value_was_sent(
    client: Pulse, deployment: Deployment, worker: WorkerProcess
) -> None:
    job_id = client.enqueue("typed.unannotated", [1, "two", None, {"three": 3.0}])

    assert wait_for_status(client, job_id, *DONE).status == JobStatus.COMPLETED
    (run,) = deployment.runs(job_id, "decoded")
    assert run.detail == "[1, 'two', None, {'three': 3.0}]"


def test_a_bytes_handler_gets_nul_bytes_and_invalid_utf8_exactly_as_sent(
    client: Pulse, deployment: Deployment, worker: WorkerProcess
) -> None:
    payload = b"\x00start\xff\xfe\x00\x80 not utf-8 \xc3\x28\x00" + bytes(range(256))

    job_id = client.enqueue("typed.bytes", payload)

    job = wait_for_status(client, job_id, *DONE)
    assert (job.status, job.payload) == (JobStatus.COMPLETED, payload)
    (run,) = deployment.runs(job_id, "decoded")
    assert (run.detail, run.data) == ("bytes", payload)


# -- outcomes ------------------------------------------------------------------


def test_a_permanent_error_dead_letters_at_once_with_its_text(
    client: Pulse, deployment: Deployment, worker: WorkerProcess
) -> None:
    job_id = client.enqueue(
        "outcome.permanent", {"reason": "card declined for order 7"}, max_attempts=5
    )

    job = wait_for_status(client, job_id, *DONE)
    assert (job.status, job.attempt, job.attempts_used, job.last_error) == (
        JobStatus.DEAD_LETTERED,
        1,
        1,
        "PermanentError: card declined for order 7",
    )
    assert [run.attempt for run in deployment.runs(job_id, "start")] == [1]


def test_retry_later_runs_the_next_attempt_after_the_asked_delay(
    client: Pulse, deployment: Deployment, worker: WorkerProcess
) -> None:
    # The backoff would wait 0.1 s here (base 0.1 × 1²); the handler asks
    # for 1.5 s.
    job_id = client.enqueue("outcome.retry_later", {"delay_seconds": 1.5})

    job = wait_for_status(client, job_id, *DONE)
    assert (job.status, job.attempt) == (JobStatus.COMPLETED, 2)
    assert job.last_error == "RetryLater: retry requested in 1.5s"
    (asked,) = deployment.runs(job_id, "asked_to_retry")
    starts = deployment.runs(job_id, "start")
    assert [run.attempt for run in starts] == [1, 2]
    # Both times come from the database clock; the result was applied after
    # the handler asked, so the retry cannot have come due any sooner.
    gap = (starts[1].at - asked.at).total_seconds()
    assert 1.5 <= gap < 6.0


def test_an_ordinary_exception_records_its_type_text_and_traceback(
    client: Pulse, deployment: Deployment, worker: WorkerProcess
) -> None:
    job_id = client.enqueue("outcome.error", {"value": 42}, max_attempts=1)

    job = wait_for_status(client, job_id, *DONE)
    assert (job.status, job.attempt) == (JobStatus.DEAD_LETTERED, 1)
    lines = job.last_error.splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert lines[-1] == "ValueError: bad value 42"
    assert any('apps/handlers.py", line' in line for line in lines)


def test_a_job_out_of_attempts_is_dead_lettered_with_its_last_error(
    client: Pulse, deployment: Deployment, worker: WorkerProcess
) -> None:
    job_id = client.enqueue(
        "outcome.fails_until", {"succeed_at_attempt": 99}, max_attempts=3
    )

    job = wait_for_status(client, job_id, *DONE)
    assert (job.status, job.attempt, job.attempts_used, job.max_attempts) == (
        JobStatus.DEAD_LETTERED,
        3,
        3,
        3,
    )
    assert job.last_error.splitlines()[-1] == "RuntimeError: attempt 3 failed"
    assert [run.attempt for run in deployment.runs(job_id, "start")] == [1, 2, 3]


def test_requeue_gives_a_fresh_attempt_budget_while_attempt_keeps_growing(
    client: Pulse, deployment: Deployment, worker: WorkerProcess
) -> None:
    job_id = client.enqueue(
        "outcome.fails_until", {"succeed_at_attempt": 5}, max_attempts=3
    )
    dead = wait_for_status(client, job_id, *DONE)
    assert (dead.status, dead.attempt, dead.attempts_used) == (
        JobStatus.DEAD_LETTERED,
        3,
        3,
    )

    requeued = client.requeue(job_id)

    assert (requeued.status, requeued.attempt, requeued.attempts_used) == (
        JobStatus.PENDING,
        3,
        0,
    )
    # Attempt 4 fails and is retried (a stale budget would dead-letter it);
    # attempt 5 succeeds.
    job = wait_for_status(client, job_id, *DONE)
    assert (job.status, job.attempt, job.attempts_used) == (JobStatus.COMPLETED, 5, 2)
    assert job.last_error.splitlines()[-1] == "RuntimeError: attempt 4 failed"
    starts = deployment.runs(job_id, "start")
    assert [(run.attempt, run.attempts_used) for run in starts] == [
        (1, 1),
        (2, 2),
        (3, 3),
        (4, 1),
        (5, 2),
    ]


def test_an_error_text_with_a_nul_byte_and_a_lone_surrogate_is_stored_safely(
    client: Pulse, deployment: Deployment, worker: WorkerProcess
) -> None:
    job_id = client.enqueue("outcome.unclean_error")

    job = wait_for_status(client, job_id, *DONE)
    assert (job.status, job.last_error) == (
        JobStatus.DEAD_LETTERED,
        "PermanentError: a NUL \\x00 and a lone surrogate \\udcff in the text",
    )


# -- cancel --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("topic", "final_status"),
    [
        ("cancel.then_raise", JobStatus.CANCELED),
        ("cancel.then_return", JobStatus.COMPLETED),
    ],
    ids=["handler-gives-up", "handler-finishes"],
)
def test_a_canceled_running_job_ends_by_how_its_handler_ends(
    client: Pulse,
    deployment: Deployment,
    worker: WorkerProcess,
    topic: str,
    final_status: JobStatus,
) -> None:
    job_id = client.enqueue(topic)
    deployment.wait_for_runs(job_id, "start")

    asked = client.cancel(job_id)

    assert asked.status == JobStatus.RUNNING
    assert asked.cancel_requested_at is not None
    # Heartbeats go every 0.2 s; "a few heartbeats" is generously bounded.
    (saw,) = deployment.wait_for_runs(job_id, "saw_cancel", timeout_seconds=10)
    job = wait_for_status(client, job_id, *DONE)
    assert (job.status, job.attempt) == (final_status, 1)
    assert job.cancel_requested_at == asked.cancel_requested_at
    assert job.finished_at is not None
    assert (saw.at - asked.cancel_requested_at).total_seconds() < 5.0
    if final_status == JobStatus.CANCELED:
        assert job.last_error.splitlines()[-1] == (
            "RuntimeError: stopped because the job was canceled"
        )
    else:
        assert job.last_error == ""


def test_a_canceled_pending_job_never_runs(
    client: Pulse, deployment: Deployment, make_client: Callable[..., Pulse]
) -> None:
    # No worker serves this topic yet, so the job waits as pending.
    victim = client.enqueue("cancel.pending", {"name": "victim"})
    assert client.get_job(victim).status == JobStatus.PENDING

    canceled = client.cancel(victim)

    assert (canceled.status, canceled.attempt) == (JobStatus.CANCELED, 0)
    assert canceled.cancel_requested_at is None
    # A witness submitted after the victim: FIFO would have run the victim
    # first, had it still been in line.
    witness = client.enqueue("cancel.pending", {"name": "witness"})
    seen: list[str] = []
    runner = make_client(deployment.addr, concurrency=1, heartbeat_seconds=0.2)

    @runner.handler("cancel.pending")
    def record(args: dict[str, str], ctx: JobContext) -> None:
        seen.append(args["name"])

    thread = threading.Thread(target=runner.run, name="e2e-inprocess-worker")
    thread.start()
    try:
        wait_for_status(client, witness, JobStatus.COMPLETED)
    finally:
        runner.stop()
        thread.join(10)
    assert not thread.is_alive()
    assert seen == ["witness"]
    job = client.get_job(victim)
    assert (job.status, job.attempt, job.started_at) == (JobStatus.CANCELED, 0, None)


def test_a_canceled_scheduled_job_stays_canceled_when_it_comes_due(
    client: Pulse, deployment: Deployment, worker: WorkerProcess
) -> None:
    job_id = client.enqueue("typed.dict", {"late": True}, delay=0.5)
    assert client.get_job(job_id).status == JobStatus.SCHEDULED

    assert client.cancel(job_id).status == JobStatus.CANCELED

    time.sleep(1.5)  # past its due time, the promoter and the worker idle
    job = client.get_job(job_id)
    assert (job.status, job.attempt) == (JobStatus.CANCELED, 0)
    assert deployment.runs(job_id) == []
