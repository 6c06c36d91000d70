"""Values the SDK cannot send are refused as InvalidArgument, never as a raw
ValueError, TypeError or OverflowError from protobuf or int().

Found by breaking: ``enqueue(priority=2**40)``, ``delay=math.inf`` or
``delay=math.nan`` escaped as built-in exceptions, and in ``enqueue_many``
such a job aborted the whole call before anything was sent, so the valid
jobs of the batch were not stored either (the docstring promises that the
others are stored and ``SubmitRefused`` names the refused ones).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest

from pulse_client import NewJob, Pulse
from pulse_client.client import SubmitRefused
from pulse_client.errors import InvalidArgument, JobNotFound
from tests.fixtures.servers import InProcessServer

TOPIC = "break.values"


@pytest.fixture
def client(server: InProcessServer) -> Iterator[Pulse]:
    pulse = Pulse(server.addr, timeout_seconds=10)
    yield pulse
    pulse.close()


BAD_OPTIONS: list[dict[str, Any]] = [
    {"priority": 2**40},
    {"max_attempts": 2**40},
    {"delay": math.inf},
    {"delay": math.nan},
    {"delay": 1e20},
    {"timeout": math.nan},
    {"timeout": math.inf},
]
IDS = [
    "priority 2**40",
    "max_attempts 2**40",
    "delay inf",
    "delay nan",
    "delay 1e20",
    "timeout nan",
    "timeout inf",
]


@pytest.mark.parametrize("options", BAD_OPTIONS, ids=IDS)
def test_enqueue_refuses_an_unsendable_value_as_invalid_argument(
    client: Pulse, options: dict[str, Any]
) -> None:
    with pytest.raises(InvalidArgument):
        client.enqueue(TOPIC, {}, **options)


@pytest.mark.parametrize("options", BAD_OPTIONS, ids=IDS)
def test_enqueue_many_stores_the_valid_jobs_beside_an_unsendable_one(
    client: Pulse, options: dict[str, Any]
) -> None:
    good = NewJob(TOPIC, {"n": 1})
    bad = NewJob(TOPIC, {"n": 2}, **options)

    with pytest.raises(SubmitRefused) as excinfo:
        client.enqueue_many([good, bad])

    assert set(excinfo.value.errors) == {1}
    assert isinstance(excinfo.value.errors[1], InvalidArgument)
    good_id = excinfo.value.job_ids[0]
    assert client.get_job(good_id).topic == TOPIC


def test_list_jobs_refuses_an_unsendable_limit_as_invalid_argument(
    client: Pulse,
) -> None:
    with pytest.raises(InvalidArgument):
        client.list_jobs(limit=2**40)


def test_nothing_is_stored_for_a_refused_enqueue(client: Pulse) -> None:
    job_id = "01a24300-0000-7000-8000-00000000abcd"
    with pytest.raises(InvalidArgument):
        client.enqueue(TOPIC, {}, priority=2**40, job_id=job_id)
    with pytest.raises(JobNotFound):
        client.get_job(job_id)
