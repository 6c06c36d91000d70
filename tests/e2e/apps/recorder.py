"""What the end-to-end apps' handlers saw, written to the test's database.

Each handler run adds rows to ``handler_runs`` (created by the test, see
``tests/e2e/conftest.py``): the job id and attempt it ran as, the worker
process, an event name and whatever the handler wants the test to check.
The database comes from ``E2E_DB_URL``, set on the worker process by the
test. Rows are committed before the handler goes on, so a test that sees a
job finished also sees everything its handler recorded.
"""

from __future__ import annotations

import os
import threading

import psycopg2
import psycopg2.extensions

from pulse_client import JobContext

_local = threading.local()


def _connection() -> psycopg2.extensions.connection:
    conn = getattr(_local, "conn", None)
    if conn is None or conn.closed:
        conn = psycopg2.connect(
            os.environ["E2E_DB_URL"],
            application_name="pulse-e2e-app",
            # A lost row of a test table costs nothing; a flush per row does.
            options="-c synchronous_commit=off",
        )
        conn.autocommit = True
        _local.conn = conn
    return conn


def record(
    ctx: JobContext,
    event: str,
    detail: str = "",
    data: bytes | None = None,
) -> None:
    """Add one row for this attempt of the job."""
    with _connection().cursor() as cur:
        cur.execute(
            "INSERT INTO handler_runs"
            " (job_id, attempt, attempts_used, pid, event, detail, data)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (
                ctx.job_id,
                ctx.attempt,
                ctx.attempts_used,
                os.getpid(),
                event,
                detail,
                psycopg2.Binary(data) if data is not None else None,
            ),
        )
