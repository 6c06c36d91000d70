"""Results, heartbeats and lapsed leases find their jobs by id, whatever the
statistics say.

Statistics are a snapshot: analysed right after a backlog was submitted,
they say that no job runs. With the running fence written as a condition on
the jobs alone, the planner then drove the join from the jobs table (a full
scan of the primary key, each row compared with the whole batch): a result
flush of 1,000 jobs over a 5,000-row table took 0.9 s instead of 9 ms. The
plans below come from that very state: a fresh table of time-ordered ids,
analysed while every job was pending, most of them claimed since.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from pulse_client.ids import new_job_id
from pulsed.database import Prepared, array_literal
from pulsed.outcomes import _APPLY_RESULTS, _EXTEND_LEASES, EXPIRE_LEASES
from tests.fixtures.databases import Sql

PLAN_MODES = ("force_custom_plan", "force_generic_plan")
# (table rows, running, completed, batch): shapes in which the old fence
# drove the join from the table.
SHAPES = [(5000, 4200, 800, 1000), (2000, 1000, 0, 1000), (1000, 400, 200, 200)]


def _stale_statistics(sql: Sql, rows: int, running: int, completed: int) -> None:
    """A fresh table analysed while all of it was pending, then claimed."""
    sql.execute("TRUNCATE jobs")
    sql.execute(
        "INSERT INTO jobs (id, topic, payload, status, max_attempts)"
        " SELECT i, 'plans.t', '\\x7b7d', 'pending', 3 FROM unnest(%s::uuid[]) AS i",
        ([new_job_id() for _ in range(rows)],),
    )
    sql.execute("VACUUM ANALYZE jobs")
    sql.execute(
        "UPDATE jobs SET status = 'running', attempt = 1, worker_id = 'w',"
        " started_at = now(), lease_expires_at = now() + interval '30 seconds'"
        " WHERE id IN (SELECT id FROM jobs ORDER BY random() LIMIT %s)",
        (running,),
    )
    sql.execute(
        "UPDATE jobs SET status = 'completed', finished_at = now(),"
        " lease_expires_at = NULL WHERE id IN"
        " (SELECT id FROM jobs WHERE status = 'running' ORDER BY random() LIMIT %s)",
        (completed,),
    )


def _running_ids(sql: Sql, count: int) -> list[str]:
    return [
        job_id
        for (job_id,) in sql.all(
            "SELECT id::text FROM jobs WHERE status = 'running'"
            " ORDER BY random() LIMIT %s",
            (count,),
        )
    ]


def _explain(
    sql: Sql, statement: Prepared, params: dict[str, Any], plan_mode: str
) -> dict[str, Any]:
    """The statement's executed plan as pulsed runs it (prepared, with its
    settings), rolled back."""
    sql.conn.autocommit = False
    try:
        with sql.conn.cursor() as cur:
            cur.execute("SET LOCAL plan_cache_mode = %s", (plan_mode,))
            cur.execute(statement.prepare_sql)
            cur.execute(
                statement.execute_sql.replace(
                    "EXECUTE ", "EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE ", 1
                ),
                params,
            )
            (result,) = cur.fetchall()[-1]
    finally:
        sql.conn.rollback()
        sql.conn.autocommit = True
        sql.execute("DEALLOCATE ALL")
    plan: dict[str, Any] = result[0]["Plan"]
    return plan


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    found = [plan]
    for child in plan.get("Plans", []):
        found.extend(_nodes(child))
    return found


def _assert_found_by_id(plan: dict[str, Any], batch: int) -> None:
    """The updated jobs are looked up by id, once per row of the batch, and
    no row of the table is compared with the batch one by one."""
    updated = [
        node
        for node in _nodes(plan)
        if node.get("Relation Name") == "jobs"
        and node.get("Alias") == "j"
        and node["Node Type"] != "ModifyTable"
    ]
    assert len(updated) == 1, json.dumps(plan)[:3000]
    (scan,) = updated
    assert (scan["Node Type"], scan.get("Index Name")) == ("Index Scan", "jobs_pkey")
    assert re.fullmatch(r"\(id = \w+\.id\)", scan.get("Index Cond", "")), scan
    assert scan["Actual Loops"] == batch
    assert sum(node.get("Rows Removed by Join Filter", 0) for node in _nodes(plan)) == 0


@pytest.mark.parametrize(("rows", "running", "completed", "batch"), SHAPES)
def test_a_result_flush_looks_its_jobs_up_by_id_under_stale_statistics(
    sql: Sql, rows: int, running: int, completed: int, batch: int
) -> None:
    _stale_statistics(sql, rows, running, completed)
    ids = _running_ids(sql, batch)
    params = {
        "ids": array_literal(ids),
        "attempts": array_literal([1] * batch),
        "worker_ids": ["w"] * batch,
        "failures": [None] * batch,
        "errors": [None] * batch,
        "delays_ms": array_literal([0] * batch),
        "backoff_base": 1.0,
        "backoff_ceiling": 600.0,
    }

    for mode in PLAN_MODES:
        plan = _explain(sql, _APPLY_RESULTS, params, mode)
        assert plan["Actual Rows"] == batch  # every report applied
        _assert_found_by_id(plan, batch)


@pytest.mark.parametrize(("rows", "running", "completed", "batch"), SHAPES)
def test_a_heartbeat_flush_looks_its_jobs_up_by_id_under_stale_statistics(
    sql: Sql, rows: int, running: int, completed: int, batch: int
) -> None:
    _stale_statistics(sql, rows, running, completed)
    ids = _running_ids(sql, batch)
    params = {
        "ids": array_literal(ids),
        "attempts": array_literal([1] * batch),
        "worker_ids": ["w"] * batch,
        "lease_seconds": 30.0,
    }

    for mode in PLAN_MODES:
        _assert_found_by_id(_explain(sql, _EXTEND_LEASES, params, mode), batch)


def test_the_watchdog_looks_lapsed_jobs_up_by_id_under_stale_statistics(
    sql: Sql,
) -> None:
    _stale_statistics(sql, 5000, 4200, 800)
    sql.execute("UPDATE jobs SET lease_expires_at = now() - interval '1 second'")
    watchdog = Prepared("test_expire_leases", EXPIRE_LEASES)
    params = {"limit": 1000, "backoff_base": 1.0, "backoff_ceiling": 600.0}

    for mode in PLAN_MODES:
        _assert_found_by_id(_explain(sql, watchdog, params, mode), 1000)
