"""A result or claim racing another update of the same row.

Regression: the result statement once updated the rows it had locked by
``ctid``. When a heartbeat committed a newer version of the row between the
statement's snapshot and its lock, that version was invisible to the
statement's own update, and a valid result was refused (the job then sat
running until its lease lapsed).
"""

from __future__ import annotations

import uuid

from pulse_client._proto.pulse.v1 import pulse_pb2 as pb
from pulsed import outcomes
from pulsed.database import Database
from tests.fixtures.databases import Sql
from tests.fixtures.row_locks import insert_running_job, report_behind_a_lock


def test_a_result_waiting_on_a_heartbeats_row_lock_is_applied_after_it(
    db: Database, db_url: str, sql: Sql
) -> None:
    job_id = uuid.uuid4()
    insert_running_job(sql, job_id)

    # A result that arrives while a heartbeat holds the row is applied
    # once the heartbeat commits.
    acks = report_behind_a_lock(
        db,
        db_url,
        job_id,
        "UPDATE jobs SET lease_expires_at = now() + interval '60 s' WHERE id = %s",
        outcomes.Report(str(job_id), 1, "w", pb.OUTCOME_SUCCEEDED, "", 0),
    )

    assert acks == [outcomes.Ack(accepted=True, status="completed", topic="t")]
    assert sql.all("SELECT status, attempt FROM jobs WHERE id = %s", (job_id,)) == [
        ("completed", 1)
    ]


def test_a_failure_waiting_on_a_cancel_requests_row_lock_ends_canceled(
    db: Database, db_url: str, sql: Sql
) -> None:
    # The result statement computes the new status from the row it updates,
    # so a cancel request that commits while the result waits is seen: the
    # job ends canceled instead of being retried.
    job_id = uuid.uuid4()
    insert_running_job(sql, job_id)

    acks = report_behind_a_lock(
        db,
        db_url,
        job_id,
        "UPDATE jobs SET cancel_requested_at = now() WHERE id = %s",
        outcomes.Report(str(job_id), 1, "w", pb.OUTCOME_FAILED, "boom", 0),
    )

    assert acks == [outcomes.Ack(accepted=True, status="canceled", topic="t")]
    assert sql.all(
        "SELECT status, attempt, last_error FROM jobs WHERE id = %s", (job_id,)
    ) == [("canceled", 1, "boom")]
