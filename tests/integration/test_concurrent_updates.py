"""A result or claim racing another update of the same row.

Regression: the result statement once updated the rows it had locked by
``ctid``. When a heartbeat committed a newer version of the row between the
statement's snapshot and its lock, that version was invisible to the
statement's own update, and a valid result was refused (the job then sat
running until its lease lapsed).
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


def _insert_running_job(sql: Sql, job_id: uuid.UUID) -> None:
    sql.execute(
        "INSERT INTO jobs (id, topic, status, attempt, max_attempts, worker_id,"
        " started_at, lease_expires_at)"
        " VALUES (%s, 't', 'running', 1, 3, 'w', now(), now() + interval '30 s')",
        (job_id,),
    )


def _report_behind_a_lock(
    db: Database, db_url: str, job_id: uuid.UUID, update: str, report: outcomes.Report
) -> list[outcomes.Ack]:
    """Apply ``report`` while another transaction's ``update`` of the job
    holds the row's lock, uncommitted; the acks once that one commits."""
    holder = psycopg2.connect(db_url)
    acks: list[outcomes.Ack] = []

    def apply() -> None:
        with db.transaction() as cur:
            acks.extend(outcomes.apply_results(cur, [report], CONFIG))

    try:
        with holder.cursor() as cur:
            cur.execute(update, (job_id,))
        reporter = threading.Thread(target=apply)
        reporter.start()
        reporter.join(0.5)
        assert reporter.is_alive(), "the result should wait for the row lock"
        holder.commit()
        reporter.join(10)
    finally:
        holder.close()
    return acks


def test_a_result_waiting_on_a_heartbeats_row_lock_is_applied_after_it(
    db: Database, db_url: str, sql: Sql
) -> None:
    job_id = uuid.uuid4()
    _insert_running_job(sql, job_id)

    # A result that arrives while a heartbeat holds the row is applied
    # once the heartbeat commits.
    acks = _report_behind_a_lock(
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
    _insert_running_job(sql, job_id)

    acks = _report_behind_a_lock(
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
