"""``enqueue_many`` splits a batch into SubmitJobs calls by job count and by
bytes, and still names each refused job by its place in the input, whichever
call carried it and whether the SDK or the server refused it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pulse_client import NewJob, Pulse
from pulse_client.client import SubmitRefused
from pulse_client.errors import ClientClosed, InvalidArgument, JobConflict, Unavailable
from tests.fixtures.databases import Sql
from tests.fixtures.servers import InProcessServer, free_port

TOPIC = "batch.chunks"
# Just under the default PULSE_MAX_PAYLOAD_BYTES once JSON adds its quotes,
# so that about 16 jobs fill a call's 16 MiB.
LARGE = "x" * (1024 * 1024 - 2)


@pytest.fixture
def client(server: InProcessServer) -> Iterator[Pulse]:
    pulse = Pulse(server.addr, timeout_seconds=60)
    yield pulse
    pulse.close()


def test_refused_jobs_of_a_batch_of_several_calls_keep_their_input_index(
    client: Pulse, sql: Sql
) -> None:
    first_id = "01a24300-0000-7000-8000-000000000001"
    jobs = [NewJob(TOPIC, {"n": n}) for n in range(2500)]
    jobs[0] = NewJob(TOPIC, {"n": 0}, job_id=first_id)
    # Refused by the SDK in one call, by the server in a later one.
    jobs[1500] = NewJob(TOPIC, {"n": 1500}, priority=5000)
    jobs[2400] = NewJob(TOPIC, {"n": "other"}, job_id=first_id)

    with pytest.raises(SubmitRefused) as caught:
        client.enqueue_many(jobs)

    refused = caught.value
    assert sorted(refused.errors) == [1500, 2400]
    assert isinstance(refused.errors[1500], InvalidArgument)
    assert isinstance(refused.errors[2400], JobConflict)
    assert len(set(refused.job_ids)) == 2499
    assert refused.job_ids[0] == refused.job_ids[2400] == first_id
    stored = {bytes(payload) for (payload,) in sql.all("SELECT payload FROM jobs")}
    expected = {f'{{"n":{n}}}'.encode() for n in range(2500) if n not in (1500, 2400)}
    assert stored == expected


def test_a_batch_too_large_for_one_call_is_split_by_bytes_and_all_stored(
    client: Pulse, sql: Sql
) -> None:
    jobs = [NewJob(TOPIC, LARGE) for _ in range(40)]
    # Refused by the SDK where the first call fills up.
    jobs[16] = NewJob(TOPIC, LARGE, delay=-1)

    with pytest.raises(SubmitRefused) as caught:
        client.enqueue_many(jobs)

    refused = caught.value
    assert list(refused.errors) == [16]
    assert isinstance(refused.errors[16], InvalidArgument)
    others = [job_id for i, job_id in enumerate(refused.job_ids) if i != 16]
    assert sql.all("SELECT id::text FROM jobs ORDER BY id") == sorted(
        (job_id,) for job_id in others
    )


def test_calls_under_way_at_once_fail_over_and_store_every_job_once(
    server: InProcessServer, sql: Sql
) -> None:
    # Nothing listens on the first address: every call started there, more
    # than one at a time, must go again to the second.
    dead = f"127.0.0.1:{free_port()}"
    pulse = Pulse([dead, server.addr], timeout_seconds=30)
    try:
        ids = pulse.enqueue_many(NewJob(TOPIC, {"n": n}) for n in range(2200))
    finally:
        pulse.close()

    assert len(set(ids)) == 2200
    stored = dict(sql.all("SELECT id::text, payload FROM jobs"))
    assert sorted(stored) == sorted(ids)
    assert [bytes(stored[job_id]) for job_id in ids] == [
        f'{{"n":{n}}}'.encode() for n in range(2200)
    ]


def test_a_batch_that_no_replica_takes_raises_unavailable() -> None:
    pulse = Pulse(f"127.0.0.1:{free_port()}", timeout_seconds=30)
    try:
        with pytest.raises(Unavailable):
            pulse.enqueue_many(NewJob(TOPIC, {"n": n}) for n in range(2200))
    finally:
        pulse.close()


def test_an_empty_batch_on_a_closed_client_raises_client_closed(
    server: InProcessServer,
) -> None:
    pulse = Pulse(server.addr)
    pulse.close()

    with pytest.raises(ClientClosed):
        pulse.enqueue_many([])
