"""The result and heartbeat fences written as join clauses (j.status = e.held,
j.lease_expires_at >= h.now), against stale reports, lapsed leases and
updates that commit while a statement waits for the row.

Found by breaking: two reports of one attempt in one batch (a success and a
return, say) were said to be applied "once, only the first": in fact
``DISTINCT ON (id, attempt)`` kept whichever the sort put first, which for
batches of more than a handful of jobs was often the second. A job its
worker said succeeded went back to pending and ran again, and the success
was acknowledged as accepted with the status pending.
"""

from __future__ import annotations

import threading
import uuid

import psycopg2

from pulse_client._proto.pulse.v1 import pulse_pb2 as pb
from pulsed import outcomes
from pulsed.config import Config
from pulsed.database import Database
from tests.fixtures.databases import Sql

CONFIG = Config()


def _insert_running(sql: Sql, job_id: uuid.UUID, lease: str = "30 s") -> None:
    sql.execute(
        "INSERT INTO jobs (id, topic, status, attempt, max_attempts, worker_id,"
        " started_at, lease_expires_at)"
        " VALUES (%s, 't', 'running', 1, 3, 'w', now(), now() + %s::interval)",
        (job_id, lease),
    )


def _behind_a_lock(db_url: str, job_id: uuid.UUID, update: str, work) -> list:
    """Run ``work`` while another transaction's ``update`` of the job holds
    its row lock, uncommitted; what it returned once that one commits."""
    holder = psycopg2.connect(db_url)
    out: list = []
    try:
        with holder.cursor() as cur:
            cur.execute(update, (job_id,))
        thread = threading.Thread(target=lambda: out.extend(work()))
        thread.start()
        thread.join(0.5)
        assert thread.is_alive(), "the statement should wait for the row lock"
        holder.commit()
        thread.join(10)
    finally:
        holder.close()
    return out


def test_of_two_reports_of_one_attempt_in_a_batch_the_first_is_applied(
    db: Database, sql: Sql
) -> None:
    ids = [uuid.uuid4() for _ in range(50)]
    for job_id in ids:
        _insert_running(sql, job_id)
    reports = []
    for job_id in ids:
        reports.append(
            outcomes.Report(str(job_id), 1, "w", pb.OUTCOME_SUCCEEDED, "", 0)
        )
        reports.append(
            outcomes.Report(str(job_id), 1, "w", pb.OUTCOME_RETURNED, "back", 0)
        )

    with db.transaction() as cur:
        acks = outcomes.apply_results(cur, reports, CONFIG)

    assert {(a.accepted, a.status) for a in acks[0::2]} == {(True, "completed")}
    assert {a.accepted for a in acks[1::2]} == {False}
    assert sql.all("SELECT status, count(*) FROM jobs GROUP BY status") == [
        ("completed", 50)
    ]


def test_a_heartbeat_for_a_lapsed_lease_is_not_held_even_before_the_watchdog(
    db: Database, sql: Sql
) -> None:
    job_id = uuid.uuid4()
    _insert_running(sql, job_id, "-1 s")
    lease_before = sql.job(str(job_id))["lease_expires_at"]

    with db.transaction() as cur:
        replies = outcomes.extend_leases(
            cur, [outcomes.Beat(str(job_id), 1, "w")], CONFIG
        )

    assert replies == [outcomes.BeatReply(held=False, cancel_requested=False)]
    assert sql.job(str(job_id))["lease_expires_at"] == lease_before


def test_a_heartbeat_waiting_on_the_watchdogs_row_lock_is_not_held_after_it(
    db: Database, db_url: str, sql: Sql
) -> None:
    job_id = uuid.uuid4()
    _insert_running(sql, job_id)

    def beat() -> list[outcomes.BeatReply]:
        with db.transaction() as cur:
            return outcomes.extend_leases(
                cur, [outcomes.Beat(str(job_id), 1, "w")], CONFIG
            )

    replies = _behind_a_lock(
        db_url,
        job_id,
        "UPDATE jobs SET status = 'retrying', lease_expires_at = NULL,"
        " last_error = 'lease expired' WHERE id = %s",
        beat,
    )

    assert replies == [outcomes.BeatReply(held=False, cancel_requested=False)]
    row = sql.job(str(job_id))
    assert (row["status"], row["lease_expires_at"]) == ("retrying", None)


def test_a_heartbeat_waiting_on_a_cancel_request_reports_the_cancel(
    db: Database, db_url: str, sql: Sql
) -> None:
    job_id = uuid.uuid4()
    _insert_running(sql, job_id)

    def beat() -> list[outcomes.BeatReply]:
        with db.transaction() as cur:
            return outcomes.extend_leases(
                cur, [outcomes.Beat(str(job_id), 1, "w")], CONFIG
            )

    replies = _behind_a_lock(
        db_url,
        job_id,
        "UPDATE jobs SET cancel_requested_at = now() WHERE id = %s",
        beat,
    )

    assert replies == [outcomes.BeatReply(held=True, cancel_requested=True)]


def test_a_return_waiting_on_a_cancel_requests_row_lock_ends_canceled(
    db: Database, db_url: str, sql: Sql
) -> None:
    job_id = uuid.uuid4()
    _insert_running(sql, job_id)

    def report() -> list[outcomes.Ack]:
        with db.transaction() as cur:
            return outcomes.apply_results(
                cur,
                [outcomes.Report(str(job_id), 1, "w", pb.OUTCOME_RETURNED, "back", 0)],
                CONFIG,
            )

    acks = _behind_a_lock(
        db_url,
        job_id,
        "UPDATE jobs SET cancel_requested_at = now() WHERE id = %s",
        report,
    )

    assert acks == [outcomes.Ack(accepted=True, status="canceled", topic="t")]
    row = sql.job(str(job_id))
    assert row["status"] == "canceled" and row["finished_at"] is not None


def test_a_result_waiting_on_the_watchdogs_row_lock_is_refused_after_it(
    db: Database, db_url: str, sql: Sql
) -> None:
    job_id = uuid.uuid4()
    _insert_running(sql, job_id)

    def report() -> list[outcomes.Ack]:
        with db.transaction() as cur:
            return outcomes.apply_results(
                cur,
                [outcomes.Report(str(job_id), 1, "w", pb.OUTCOME_RETURNED, "back", 0)],
                CONFIG,
            )

    acks = _behind_a_lock(
        db_url,
        job_id,
        "UPDATE jobs SET status = 'retrying', lease_expires_at = NULL,"
        " last_error = 'lease expired' WHERE id = %s",
        report,
    )

    assert acks == [outcomes.Ack(accepted=False, status="", topic="")]
    row = sql.job(str(job_id))
    assert (row["status"], row["attempt_base"], row["last_error"]) == (
        "retrying",
        0,
        "lease expired",
    )


def test_a_result_waiting_on_a_requeue_after_a_reclaim_is_refused(
    db: Database, db_url: str, sql: Sql
) -> None:
    # The job was taken back and claimed again (attempt 2) while the stale
    # report of attempt 1 waited for the row.
    job_id = uuid.uuid4()
    _insert_running(sql, job_id)

    def report() -> list[outcomes.Ack]:
        with db.transaction() as cur:
            return outcomes.apply_results(
                cur,
                [outcomes.Report(str(job_id), 1, "w", pb.OUTCOME_SUCCEEDED, "", 0)],
                CONFIG,
            )

    acks = _behind_a_lock(
        db_url,
        job_id,
        "UPDATE jobs SET attempt = 2, worker_id = 'w', started_at = now()"
        " WHERE id = %s",
        report,
    )

    assert acks == [outcomes.Ack(accepted=False, status="", topic="")]
    assert sql.job(str(job_id))["status"] == "running"
