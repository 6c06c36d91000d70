"""The migrations produce the schema that pulsed's statements expect."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Callable
from typing import Any

import psycopg2
import pytest
import yoyo

from pulsed import (
    dispatch,
    jobs,
    loops,
    notifications,
    outcomes,
    scheduler,
    schedules,
    submits,
)
from pulsed.migrate import migrations_path
from tests.fixtures.databases import Sql
from tests.fixtures.servers import PulsedProcess

JOBS_COLUMNS = [
    # (name, type, nullable, default)
    ("id", "uuid", "NO", None),
    ("topic", "text", "NO", None),
    ("payload", "bytea", "NO", "'\\x'::bytea"),
    ("priority", "integer", "NO", "0"),
    ("status", "text", "NO", None),
    ("attempt", "integer", "NO", "0"),
    ("attempt_base", "integer", "NO", "0"),
    ("max_attempts", "integer", "NO", None),
    ("run_at", "timestamp with time zone", "NO", "now()"),
    ("created_at", "timestamp with time zone", "NO", "now()"),
    ("started_at", "timestamp with time zone", "YES", None),
    ("finished_at", "timestamp with time zone", "YES", None),
    ("lease_expires_at", "timestamp with time zone", "YES", None),
    ("worker_id", "text", "YES", None),
    ("last_error", "text", "YES", None),
    ("timeout_ms", "bigint", "NO", "0"),
    ("cancel_requested_at", "timestamp with time zone", "YES", None),
    ("schedule_id", "uuid", "YES", None),
    ("occurrence", "timestamp with time zone", "YES", None),
]

JOBS_INDEXES = {
    "jobs_pkey": "CREATE UNIQUE INDEX jobs_pkey ON public.jobs USING btree (id)",
    "jobs_claim_idx": (
        "CREATE INDEX jobs_claim_idx ON public.jobs USING btree "
        "(topic, priority DESC, run_at, id) WHERE (status = 'pending'::text)"
    ),
    "jobs_due_idx": (
        "CREATE INDEX jobs_due_idx ON public.jobs USING btree (run_at) "
        "WHERE (status = ANY (ARRAY['scheduled'::text, 'retrying'::text]))"
    ),
    "jobs_lease_idx": (
        "CREATE INDEX jobs_lease_idx ON public.jobs USING btree (lease_expires_at) "
        "WHERE (status = 'running'::text)"
    ),
    "jobs_finished_idx": (
        "CREATE INDEX jobs_finished_idx ON public.jobs USING btree (finished_at) "
        "WHERE (status = ANY (ARRAY['completed'::text, 'dead_lettered'::text, "
        "'canceled'::text]))"
    ),
    "jobs_status_created_idx": (
        "CREATE INDEX jobs_status_created_idx ON public.jobs USING btree "
        "(status, created_at DESC, id DESC)"
    ),
    "jobs_schedule_occurrence_key": (
        "CREATE UNIQUE INDEX jobs_schedule_occurrence_key ON public.jobs USING btree "
        "(schedule_id, occurrence) WHERE (schedule_id IS NOT NULL)"
    ),
}

JOBS_CONSTRAINTS = {
    "jobs_pkey": ("p", "PRIMARY KEY (id)"),
    "jobs_status_check": (
        "c",
        "CHECK ((status = ANY (ARRAY['scheduled'::text, 'pending'::text, "
        "'running'::text, 'retrying'::text, 'completed'::text, "
        "'dead_lettered'::text, 'canceled'::text])))",
    ),
    "jobs_priority_check": (
        "c",
        "CHECK (((priority >= '-1000'::integer) AND (priority <= 1000)))",
    ),
    "jobs_max_attempts_check": (
        "c",
        "CHECK (((max_attempts >= 1) AND (max_attempts <= 1000)))",
    ),
}

JOBS_RELOPTIONS = [
    "fillfactor=70",
    "autovacuum_vacuum_scale_factor=0.0",
    "autovacuum_vacuum_threshold=5000",
    "autovacuum_vacuum_insert_scale_factor=0.0",
    "autovacuum_vacuum_insert_threshold=20000",
    "autovacuum_analyze_scale_factor=0.02",
    "autovacuum_vacuum_cost_delay=0",
]

_ID = uuid.UUID(int=1)
_AT = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
_BACKOFF = {"backoff_base": 1.0, "backoff_ceiling": 3600.0}

# Every named statement of the server, with parameters of the right types.
STATEMENTS: dict[str, tuple[str, dict[str, Any]]] = {
    "submits.INSERT_JOBS": (
        submits.INSERT_JOBS,
        submits.insert_parameters(
            [submits.NewJob(str(_ID), "t", b"\x00", 0, 3, _AT, 0, 0)]
        ),
    ),
    "submits.SELECT_EXISTING": (submits.SELECT_EXISTING, {"ids": f"{{{_ID}}}"}),
    "notifications.ANNOUNCE": (
        notifications.ANNOUNCE,
        {"channel": submits.NOTIFY_CHANNEL_PENDING, "topics": ["t"]},
    ),
    "dispatch.CLAIM_JOBS": (
        dispatch.CLAIM_JOBS,
        {
            "slots": [0, 1],
            "worker_ids": ["w1", "w2"],
            "topics": ["t", "u"],
            "limit": 2,
            "lease_seconds": 30.0,
        },
    ),
    "outcomes.APPLY_RESULTS": (
        outcomes.APPLY_RESULTS,
        {
            "ids": [_ID],
            "attempts": [1],
            "worker_ids": ["w"],
            "failures": ["failed"],
            "errors": ["boom"],
            "delays_ms": [0],
            **_BACKOFF,
        },
    ),
    "outcomes.EXPIRE_LEASES": (outcomes.EXPIRE_LEASES, {"limit": 10, **_BACKOFF}),
    "outcomes.EXTEND_LEASES": (
        outcomes.EXTEND_LEASES,
        {"ids": [_ID], "attempts": [1], "worker_ids": ["w"], "lease_seconds": 30.0},
    ),
    "jobs.SELECT_JOB": (jobs.SELECT_JOB, {"id": _ID}),
    "jobs.SELECT_STATUS": (jobs.SELECT_STATUS, {"id": _ID}),
    "jobs.CANCEL_JOB": (jobs.CANCEL_JOB, {"id": _ID}),
    "jobs.REQUEUE_JOB": (jobs.REQUEUE_JOB, {"id": _ID}),
    "jobs.NOTIFY_PENDING": (
        jobs.NOTIFY_PENDING,
        {"channel": submits.NOTIFY_CHANNEL_PENDING, "topic": "t"},
    ),
    "jobs.COUNT_BY_TOPIC_AND_STATUS": (jobs.COUNT_BY_TOPIC_AND_STATUS, {}),
    "jobs.OLDEST_PENDING": (jobs.OLDEST_PENDING, {}),
    "loops.PROMOTE_DUE": (
        loops.PROMOTE_DUE,
        {"limit": 10, "channel": submits.NOTIFY_CHANNEL_PENDING},
    ),
    "loops.SECONDS_UNTIL_NEXT_DUE": (loops.SECONDS_UNTIL_NEXT_DUE, {}),
    "loops.PRUNE_FINISHED": (
        loops.PRUNE_FINISHED,
        {"retention_seconds": 60.0, "limit": 10},
    ),
    "loops.JOBS_TABLE_CHURN": (loops.JOBS_TABLE_CHURN, {}),
    **{
        f"schedules.{name}": (getattr(schedules, name), params)
        for name, params in {
            "SELECT_SCHEDULE": {"name": "s"},
            "LIST_SCHEDULES": {"topic": "", "after_name": None, "limit": 10},
            "LOCK_DECLARED": {"name": "s"},
            "INSERT_SCHEDULE": {
                "id": _ID,
                "name": "s",
                "topic": "t",
                "payload": psycopg2.Binary(b"{}"),
                "priority": 0,
                "max_attempts": 3,
                "timeout_ms": 0,
                "kind": "every",
                "at_time": None,
                "after_ms": None,
                "every_ms": 1000,
                "cron": None,
                "time_zone": "UTC",
                "start_at": _AT,
                "missed_runs": "one",
                "max_catch_up": 100,
                "next_fire_at": _AT,
            },
            "UPDATE_SCHEDULE": {
                "id": _ID,
                "topic": "t",
                "payload": psycopg2.Binary(b"{}"),
                "priority": 0,
                "max_attempts": 3,
                "timeout_ms": 0,
                "kind": "cron",
                "at_time": None,
                "after_ms": None,
                "every_ms": None,
                "cron": "0 * * * *",
                "time_zone": "UTC",
                "start_at": None,
                "missed_runs": "all",
                "max_catch_up": 5,
                "next_fire_at": _AT,
                "resumed_at": None,
            },
            "PAUSE_SCHEDULE": {"name": "s"},
            "RESUME_SCHEDULE": {"name": "s"},
            "DELETE_SCHEDULE": {"name": "s"},
            "SELECT_FOR_PREVIEW": {"name": "s"},
            "SELECT_SCHEDULE_ID": {"name": "s"},
            "LIST_OCCURRENCES": {"schedule_id": _ID, "before": _AT, "limit": 10},
            "SELECT_NOW": {},
        }.items()
    },
    **{
        f"scheduler.{name}": (getattr(scheduler, name), params)
        for name, params in {
            "LOCK_NEXT_DUE": {"now": _AT},
            # Empty arrays: an occurrence row needs its schedule to exist.
            "FIRE_OCCURRENCES": {
                "schedule_id": _ID,
                "occurrences": [],
                "job_ids": [],
                "catch_ups": [],
            },
            "ADVANCE_SCHEDULE": {
                "id": _ID,
                "next_fire_at": _AT,
                "fired": 1,
                "last_occurrence": _AT,
                "last_job_id": _ID,
            },
            "PAUSE_BROKEN": {"id": _ID},
            "SECONDS_UNTIL_NEXT_FIRE": {},
            "PRUNE_OCCURRENCES": {"keep": 10, "retention_seconds": 60.0, "limit": 10},
        }.items()
    },
}


def test_migrations_create_the_jobs_columns_the_code_reads(sql: Sql) -> None:
    columns = sql.all(
        "SELECT column_name, data_type, is_nullable, column_default"
        " FROM information_schema.columns"
        " WHERE table_schema = 'public' AND table_name = 'jobs'"
        " ORDER BY ordinal_position"
    )

    assert columns == JOBS_COLUMNS
    read_by_code = [name.strip() for name in jobs.JOB_COLUMNS.split(",")]
    assert set(read_by_code) <= {name for name, *_ in JOBS_COLUMNS}


def test_migrations_create_the_partial_indexes_for_claim_promote_watchdog_and_prune(
    sql: Sql,
) -> None:
    indexes = dict(
        sql.all("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'jobs'")
    )

    assert indexes == JOBS_INDEXES


def test_migrations_create_the_named_constraints(sql: Sql) -> None:
    rows = sql.all(
        "SELECT conname, contype, pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE conrelid = 'jobs'::regclass"
    )

    assert {
        name: (kind, definition) for name, kind, definition in rows
    } == JOBS_CONSTRAINTS


def test_jobs_table_has_room_for_hot_updates_and_aggressive_autovacuum(
    sql: Sql,
) -> None:
    reloptions = sql.scalar(
        "SELECT reloptions FROM pg_class WHERE oid = 'jobs'::regclass"
    )

    assert reloptions == JOBS_RELOPTIONS


@pytest.mark.parametrize("name", sorted(STATEMENTS))
def test_every_named_statement_runs_against_the_migrated_schema(
    sql: Sql, name: str
) -> None:
    statement, params = STATEMENTS[name]

    # Executed for real (on an empty table) and rolled back: EXPLAIN alone
    # would miss type errors in parameters and RETURNING lists.
    sql.conn.autocommit = False
    try:
        with sql.conn.cursor() as cur:
            cur.execute(statement, params)
    finally:
        sql.conn.rollback()
        sql.conn.autocommit = True


def test_migration_rolls_back_cleanly_and_applies_again(
    create_database: Callable[..., str],
) -> None:
    url = create_database(migrated=False)
    migrations = yoyo.read_migrations(migrations_path())
    backend = yoyo.get_backend(url)
    try:
        backend.apply_migrations(backend.to_apply(migrations))
        backend.rollback_migrations(backend.to_rollback(migrations))
        after_rollback = _public_tables(backend)
        backend.apply_migrations(backend.to_apply(migrations))
        after_reapply = _public_tables(backend)
    finally:
        backend.connection.close()

    assert "jobs" not in after_rollback
    assert "jobs" in after_reapply


def _public_tables(backend: Any) -> set[str]:
    cursor = backend.connection.cursor()
    try:
        cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {row[0] for row in cursor.fetchall()}
    finally:
        cursor.close()


def test_two_servers_booting_at_once_on_an_empty_database_migrate_it_once(
    create_database: Callable[..., str], start_pulsed: Callable[..., PulsedProcess]
) -> None:
    url = create_database(migrated=False)

    first = start_pulsed(db_url=url, wait=False)
    second = start_pulsed(db_url=url, wait=False)

    assert first.wait_until_serving(), first.log()
    assert second.wait_until_serving(), second.log()
    check = Sql(url)
    try:
        applied = check.all(
            "SELECT migration_id FROM _yoyo_migration ORDER BY migration_id"
        )
        log = check.all(
            "SELECT migration_id, operation FROM _yoyo_log ORDER BY created_at_utc"
        )
        assert check.scalar("SELECT to_regclass('jobs') IS NOT NULL") is True
    finally:
        check.close()
    assert applied == [
        ("0001.jobs",),
        ("0002.schedules_dispatch_audit",),
        ("0003.lean_jobs_indexes",),
    ]
    assert log == [
        ("0001.jobs", "apply"),
        ("0002.schedules_dispatch_audit", "apply"),
        ("0003.lean_jobs_indexes", "apply"),
    ]
    migrated_by = [p for p in (first, second) if "migrations.applied" in p.log()]
    assert len(migrated_by) == 1


def test_newest_first_listing_reads_one_page_per_status_from_the_index(
    sql: Sql,
) -> None:
    # A deep history of finished jobs and a few of the other statuses:
    # the first page must come from the status index, a page per status,
    # never from reading the whole table.
    sql.execute(
        """
        INSERT INTO jobs (id, topic, status, max_attempts, created_at)
        SELECT gen_random_uuid(), 't',
               (ARRAY['completed', 'pending', 'dead_lettered'])[1 + (i % 50 = 0)::int
                                                              + (i % 99 = 0)::int],
               3, now() - i * interval '1 second'
        FROM generate_series(1, 30000) AS i
        """
    )
    sql.execute("ANALYZE jobs")
    params = {
        "statuses": [],
        "list_statuses": list(jobs.STATUS_TO_PROTO),
        "topic": "",
        "error_contains": "",
        "error_signature": "",
        "created_after": None,
        "after_created": None,
        "after_id": None,
        "limit": 51,
    }
    with sql.conn.cursor() as cur:
        cur.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + jobs.LIST_JOBS, params)
        plan = cur.fetchone()[0][0]["Plan"]

    def nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
        return [node, *(n for child in node.get("Plans", []) for n in nodes(child))]

    scans = [n for n in nodes(plan) if n.get("Relation Name") == "jobs"]
    assert {n["Node Type"] for n in scans} == {"Index Scan"}
    assert {n["Index Name"] for n in scans} == {"jobs_status_created_idx"}
    # Seven statuses, at most a page each: not the 30,000 rows.
    assert sum(n["Actual Rows"] * n["Actual Loops"] for n in scans) <= 7 * 51
