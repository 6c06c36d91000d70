"""Batching is real: claims and results share commits across many jobs.

Commits are counted as the growth of ``xact_commit`` in ``pg_stat_database``
for the test's own database. A backend flushes its statistics when it
exits, so counts are read after pulsed has stopped and every connection to
the database has closed. pulsed's own start-up and shutdown (about 17
commits: migration check, first loop steps) are measured by an idle run
and subtracted, so what remains is the cost of the jobs.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import psycopg2

from pulse_client._proto.pulse.v1 import pulse_pb2 as pb
from tests.fixtures.databases import PostgresServer
from tests.fixtures.servers import PulsedProcess
from tests.fixtures.streams import WorkerStream

OpenStream = Callable[..., WorkerStream]
JOBS = 1000
# The loops must not add commits of their own while we count.
QUIET = {
    "poll_seconds": 30,
    "watchdog_seconds": 30,
    "prune_seconds": 600,
    "vacuum_seconds": 0,
}


def insert_pending_jobs(db_url: str, count: int) -> None:
    conn = psycopg2.connect(db_url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                "INSERT INTO jobs (id, topic, status, max_attempts)"
                " SELECT gen_random_uuid(), 't', 'pending', 3"
                " FROM generate_series(1, %s)",
                (count,),
            )
    finally:
        conn.close()


def committed_transactions(server: PostgresServer, dbname: str) -> int:
    """xact_commit of ``dbname`` once nobody is connected to it."""
    deadline = time.monotonic() + 10
    while server.connections_to(dbname):
        assert time.monotonic() < deadline, server.connections_to(dbname)
        time.sleep(0.05)
    conn = server.connect()  # to the admin database: it adds no commits here
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_stat_clear_snapshot()")
            cur.execute(
                "SELECT xact_commit FROM pg_stat_database WHERE datname = %s", (dbname,)
            )
            row = cur.fetchone()
            assert row is not None
            return int(row[0])
    finally:
        conn.close()


def commits_of(
    run: Callable[[PulsedProcess], None],
    db_url: str,
    postgres_server: PostgresServer,
    start_pulsed: Callable[..., PulsedProcess],
) -> int:
    """Commits that ``run(server)`` costs a freshly started pulsed, beyond
    what the same server costs when it starts and stops idle."""
    dbname = db_url.rsplit("/", 1)[1]
    before = committed_transactions(postgres_server, dbname)
    assert start_pulsed(**QUIET).stop() == []
    idle = committed_transactions(postgres_server, dbname)
    server = start_pulsed(**QUIET)
    run(server)
    assert server.stop() == []
    after = committed_transactions(postgres_server, dbname)
    return (after - idle) - (idle - before)


def count_completed(db_url: str) -> int:
    conn = psycopg2.connect(db_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM jobs WHERE status = 'completed'")
            row = cur.fetchone()
            return int(row[0]) if row else 0
    finally:
        conn.close()


def test_completing_1000_jobs_answered_batch_by_batch_costs_fewer_than_100_commits(
    db_url: str,
    postgres_server: PostgresServer,
    start_pulsed: Callable[..., PulsedProcess],
    open_stream: OpenStream,
) -> None:
    insert_pending_jobs(db_url, JOBS)
    acks: list[pb.ResultAck] = []

    def run(server: PulsedProcess) -> None:
        worker = open_stream(server.stub(), "w", ["t"], 100)
        done = 0
        while done < JOBS:
            # Answer everything that arrived in one message, as a worker
            # that coalesces its results would.
            batch = worker.take_assignments(1) + worker.untaken_assignments()
            worker.succeed(batch, credits=len(batch))
            done += len(batch)
        acks.extend(worker.take_acks(JOBS))
        worker.close()

    commits = commits_of(run, db_url, postgres_server, start_pulsed)

    assert all(ack.accepted for ack in acks)
    assert count_completed(db_url) == JOBS
    assert commits < 100, f"{commits} commits for {JOBS} jobs"


def test_completing_1000_jobs_reported_one_per_message_costs_fewer_than_100_commits(
    db_url: str,
    postgres_server: PostgresServer,
    start_pulsed: Callable[..., PulsedProcess],
    open_stream: OpenStream,
) -> None:
    # The proto's own advice: send credits = 1 with each result. The
    # server must batch claims and results across such messages.
    insert_pending_jobs(db_url, JOBS)
    acks: list[pb.ResultAck] = []

    def run(server: PulsedProcess) -> None:
        worker = open_stream(server.stub(), "w", ["t"], 100)
        for _ in range(JOBS):
            worker.succeed(worker.take_assignments(1), credits=1)
        acks.extend(worker.take_acks(JOBS))
        worker.close()

    commits = commits_of(run, db_url, postgres_server, start_pulsed)

    assert [a.status for a in acks] == [pb.JOB_STATUS_COMPLETED] * JOBS
    assert count_completed(db_url) == JOBS
    assert commits < 100, f"{commits} commits for {JOBS} jobs"
