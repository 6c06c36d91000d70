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

import uuid

from pulse_client._proto.pulse.v1 import pulse_pb2 as pb
from pulsed import outcomes
from pulsed.database import Database
from tests.fixtures.databases import Sql
from tests.fixtures.row_locks import (
    CONFIG,
    beat_behind_a_lock,
    insert_running_job,
    report_behind_a_lock,
)


def test_of_two_reports_of_one_attempt_in_a_batch_the_first_is_applied(
    db: Database, sql: Sql
) -> None:
    ids = [uuid.uuid4() for _ in range(50)]
    for job_id in ids:
        insert_running_job(sql, job_id)
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
    insert_running_job(sql, job_id, "-1 s")
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
    insert_running_job(sql, job_id)

    replies = beat_behind_a_lock(
        db,
        db_url,
        job_id,
        "UPDATE jobs SET status = 'retrying', lease_expires_at = NULL,"
        " last_error = 'lease expired' WHERE id = %s",
    )

    assert replies == [outcomes.BeatReply(held=False, cancel_requested=False)]
    row = sql.job(str(job_id))
    assert (row["status"], row["lease_expires_at"]) == ("retrying", None)


def test_a_heartbeat_waiting_on_a_cancel_request_reports_the_cancel(
    db: Database, db_url: str, sql: Sql
) -> None:
    job_id = uuid.uuid4()
    insert_running_job(sql, job_id)

    replies = beat_behind_a_lock(
        db,
        db_url,
        job_id,
        "UPDATE jobs SET cancel_requested_at = now() WHERE id = %s",
    )

    assert replies == [outcomes.BeatReply(held=True, cancel_requested=True)]


def test_a_return_waiting_on_a_cancel_requests_row_lock_ends_canceled(
    db: Database, db_url: str, sql: Sql
) -> None:
    job_id = uuid.uuid4()
    insert_running_job(sql, job_id)

    acks = report_behind_a_lock(
        db,
        db_url,
        job_id,
        "UPDATE jobs SET cancel_requested_at = now() WHERE id = %s",
        outcomes.Report(str(job_id), 1, "w", pb.OUTCOME_RETURNED, "back", 0),
    )

    assert acks == [outcomes.Ack(accepted=True, status="canceled", topic="t")]
    row = sql.job(str(job_id))
    assert row["status"] == "canceled" and row["finished_at"] is not None


def test_a_result_waiting_on_the_watchdogs_row_lock_is_refused_after_it(
    db: Database, db_url: str, sql: Sql
) -> None:
    job_id = uuid.uuid4()
    insert_running_job(sql, job_id)

    acks = report_behind_a_lock(
        db,
        db_url,
        job_id,
        "UPDATE jobs SET status = 'retrying', lease_expires_at = NULL,"
        " last_error = 'lease expired' WHERE id = %s",
        outcomes.Report(str(job_id), 1, "w", pb.OUTCOME_RETURNED, "back", 0),
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
    insert_running_job(sql, job_id)

    acks = report_behind_a_lock(
        db,
        db_url,
        job_id,
        "UPDATE jobs SET attempt = 2, worker_id = 'w', started_at = now()"
        " WHERE id = %s",
        outcomes.Report(str(job_id), 1, "w", pb.OUTCOME_SUCCEEDED, "", 0),
    )

    assert acks == [outcomes.Ack(accepted=False, status="", topic="")]
    assert sql.job(str(job_id))["status"] == "running"
