"""Job ids: canonical UUIDv7 text, unique, and in order within a thread,
since the id breaks ties in dispatch order between jobs of one batch."""

from __future__ import annotations

import threading
import uuid

from pulse_client.ids import new_job_id, new_uuid7


def test_ids_are_canonical_version_7_uuids() -> None:
    job_id = new_job_id()

    parsed = uuid.UUID(job_id)
    assert str(parsed) == job_id
    assert (parsed.version, parsed.variant) == (7, uuid.RFC_4122)


def test_ids_made_in_a_burst_are_unique_and_in_order() -> None:
    ids = [new_job_id() for _ in range(100_000)]

    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_threads_making_ids_at_once_never_share_one() -> None:
    made: list[list[str]] = []

    def make() -> None:
        made.append([new_job_id() for _ in range(20_000)])

    threads = [threading.Thread(target=make) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert all(ids == sorted(ids) for ids in made)
    assert len({job_id for ids in made for job_id in ids}) == 80_000


def test_database_ids_are_standard_library_uuids_of_version_7() -> None:
    value = new_uuid7()

    assert type(value) is uuid.UUID
    assert value.version == 7
