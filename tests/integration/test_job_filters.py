"""ListJobs filtered by text in the last error and by creation time."""

from __future__ import annotations

import datetime
from collections.abc import Iterator

import pytest

from pulse_client import NewJob, Pulse
from tests.fixtures.databases import Sql
from tests.fixtures.servers import InProcessServer
from tests.fixtures.wire import RPC_TIMEOUT_SECONDS


@pytest.fixture
def client(server: InProcessServer) -> Iterator[Pulse]:
    with Pulse(server.addr, timeout_seconds=RPC_TIMEOUT_SECONDS) as pulse:
        yield pulse


def set_errors(sql: Sql, errors: dict[str, str]) -> None:
    for job_id, error in errors.items():
        sql.execute(
            "UPDATE jobs SET status = 'dead_lettered', finished_at = now(),"
            " last_error = %s WHERE id = %s",
            (error, job_id),
        )


def test_error_contains_matches_a_substring_of_the_last_error_in_any_case(
    client: Pulse, sql: Sql
) -> None:
    a, b, c, d = client.enqueue_many([NewJob("t") for _ in range(4)])
    set_errors(
        sql,
        {a: "ConnectionError: REFUSED by 10.0.0.1", b: "refused: 100%_done", c: "ok"},
    )

    found = client.list_jobs(error_contains="refused")
    literal = client.list_jobs(error_contains="100%_")
    wildcard = client.list_jobs(error_contains="%")

    assert {j.id for j in found.jobs} == {a, b}
    assert [j.id for j in literal.jobs] == [b]
    assert [j.id for j in wildcard.jobs] == [b]
    assert d not in {j.id for j in client.list_jobs(error_contains="o").jobs}


def test_since_lists_jobs_created_at_or_after_the_time_across_pages(
    client: Pulse, sql: Sql
) -> None:
    ids = client.enqueue_many([NewJob("t") for _ in range(5)])
    sql.execute(
        "UPDATE jobs SET created_at = now() - interval '2 hours'"
        " WHERE id = ANY(%s::uuid[])",
        (ids[:2],),
    )
    since = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1)

    first = client.list_jobs(since=since, limit=2)
    second = client.list_jobs(since=since, limit=2, page_token=first.next_page_token)

    assert [j.id for j in first.jobs] == [ids[4], ids[3]]
    assert [j.id for j in second.jobs] == [ids[2]]
    assert second.next_page_token == ""


def test_filters_combine_with_status_and_topic(client: Pulse, sql: Sql) -> None:
    a, b = client.enqueue_many([NewJob("one"), NewJob("two")])
    set_errors(sql, {a: "disk full", b: "disk full"})

    page = client.list_jobs(
        status="dead_lettered",
        topic="two",
        error_contains="DISK",
        since=datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5),
    )

    assert [j.id for j in page.jobs] == [b]
