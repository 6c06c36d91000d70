"""The claim statement reads O(batch) buffers however deep any backlog is.

Measured with EXPLAIN (ANALYZE, BUFFERS) of ``pulsed.dispatch.CLAIM_JOBS``
itself, inside a transaction that is rolled back. Backlogs are inserted
with generate_series, and analysed as autovacuum would.
"""

from __future__ import annotations

from typing import Any

from pulsed.database import Prepared
from pulsed.dispatch import CLAIM_JOBS
from tests.fixtures.databases import Sql

BACKLOG_ROWS = 100_000
# pulsed prepares the claim once per connection; after a few executions
# Postgres may switch to a generic plan, so both kinds must stay cheap.
PLAN_MODES = ("force_custom_plan", "force_generic_plan")
# Finding a row: its claim index entry, its heap page, its primary key
# lookup (B-tree depth 3 at this size). Measured about 5.
READ_BUFFERS_PER_ROW = 10
# Finding and rewriting a row: the above plus the new row version and one
# entry in each of the six indexes a non-HOT update touches. Measured
# about 20.
PER_ROW_BUFFERS = 30


def insert_jobs(
    sql: Sql, count: int, *, topic: str, status: str, run_at: str, priorities: int = 7
) -> None:
    sql.execute(
        "INSERT INTO jobs (id, topic, payload, priority, status, max_attempts, run_at)"
        " SELECT gen_random_uuid(), %(topic)s, '\\x7b7d', g %% %(priorities)s,"
        f" %(status)s, 20, {run_at} + g * interval '1 millisecond'"
        " FROM generate_series(1, %(count)s) AS g",
        {"topic": topic, "status": status, "count": count, "priorities": priorities},
    )
    sql.execute("ANALYZE jobs")


def explain_claim(
    sql: Sql, topics: list[str], limit: int, plan_mode: str
) -> dict[str, Any]:
    """The claim's executed plan (JSON), rolled back.

    Run as pulsed runs it: prepared once per connection, so after a few
    executions Postgres may switch to a generic plan; ``plan_mode`` forces
    one or the other.
    """
    statement = Prepared("test_claim_jobs", CLAIM_JOBS)
    params = {
        "slots": list(range(limit)),
        "worker_ids": ["w"] * limit,
        "topics": topics,
        "limit": limit,
        "lease_seconds": 30.0,
    }
    sql.conn.autocommit = False
    try:
        with sql.conn.cursor() as cur:
            cur.execute("SET LOCAL plan_cache_mode = %s", (plan_mode,))
            cur.execute(statement.prepare_sql)
            cur.execute(
                "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + statement.execute_sql,
                params,
            )
            (result,) = cur.fetchone() or (None,)
    finally:
        sql.conn.rollback()
        sql.conn.autocommit = True
        sql.execute("DEALLOCATE ALL")
    plan: dict[str, Any] = result[0]["Plan"]
    return plan


def buffers(node: dict[str, Any]) -> int:
    """Shared buffers a plan node touched, its children included."""
    return int(node.get("Shared Hit Blocks", 0)) + int(
        node.get("Shared Read Blocks", 0)
    )


def reading_buffers(plan: dict[str, Any]) -> int:
    """Buffers spent finding the rows (the UPDATE's FROM side), without
    the writes of the new row versions and their index entries."""
    return sum(
        buffers(child)
        for child in plan.get("Plans", [])
        if child.get("Parent Relationship") != "InitPlan"
    )


def settled_claims(
    sql: Sql, topics: list[str], limit: int
) -> dict[str, dict[str, Any]]:
    """The claim's plan in each plan mode."""
    # The first run after a bulk insert also sets hint bits; measure the next.
    explain_claim(sql, topics, limit, PLAN_MODES[0])
    return {mode: explain_claim(sql, topics, limit, mode) for mode in PLAN_MODES}


def test_a_claim_for_topic_a_reads_few_buffers_beside_deep_backlogs_of_others(
    sql: Sql,
) -> None:
    insert_jobs(sql, 5, topic="A", status="pending", run_at="now()")
    insert_jobs(
        sql,
        BACKLOG_ROWS,
        topic="B",
        status="pending",
        run_at="now() - interval '1 hour'",
    )
    insert_jobs(
        sql,
        BACKLOG_ROWS,
        topic="A",
        status="scheduled",
        run_at="now() + interval '1 hour'",
    )
    plans = settled_claims(sql, ["A"], 10)

    for mode, plan in plans.items():
        assert plan["Actual Rows"] == 5, mode
        assert reading_buffers(plan) < 100, (mode, reading_buffers(plan))
        # The rest writes the 5 new row versions and their entries in every
        # index: a few buffers per row and index (B-tree depth), never a scan.
        assert buffers(plan) < PER_ROW_BUFFERS * 5 + 50, (mode, buffers(plan))


def test_a_claim_of_100_from_a_deep_backlog_of_its_own_topic_reads_o_of_batch(
    sql: Sql,
) -> None:
    insert_jobs(
        sql,
        BACKLOG_ROWS,
        topic="A",
        status="pending",
        run_at="now() - interval '1 hour'",
    )

    plans = settled_claims(sql, ["A"], 100)

    for mode, plan in plans.items():
        assert plan["Actual Rows"] == 100, mode
        assert reading_buffers(plan) <= READ_BUFFERS_PER_ROW * 100 + 50, (
            mode,
            reading_buffers(plan),
        )
        assert buffers(plan) <= PER_ROW_BUFFERS * 100 + 50, (mode, buffers(plan))


def test_a_claim_over_two_topics_reads_o_of_batch_per_topic(sql: Sql) -> None:
    for topic in ("A", "B"):
        insert_jobs(
            sql, BACKLOG_ROWS // 2, topic=topic, status="pending", run_at="now()"
        )
    insert_jobs(sql, BACKLOG_ROWS // 2, topic="C", status="pending", run_at="now()")

    plans = settled_claims(sql, ["A", "B"], 100)

    for mode, plan in plans.items():
        assert plan["Actual Rows"] == 100, mode
        # Each topic reads up to a whole batch of its own before the best win.
        assert reading_buffers(plan) <= READ_BUFFERS_PER_ROW * 200 + 50, (
            mode,
            reading_buffers(plan),
        )
        assert buffers(plan) <= (PER_ROW_BUFFERS + READ_BUFFERS_PER_ROW) * 100 + 50, (
            mode,
            buffers(plan),
        )
