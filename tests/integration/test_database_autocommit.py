"""``Database.autocommit()``: one statement, one round trip, one transaction."""

from __future__ import annotations

import pytest

from pulse_client.errors import PulseError
from pulsed.database import Database, Prepared

_LOCKS = (
    "SELECT count(*) FROM pg_locks "
    "WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
)
_PROBE = Prepared(
    "pulse_test_autocommit_probe",
    "SELECT current_setting('enable_seqscan'), count(*) FROM pg_locks "
    "WHERE locktype = 'advisory' AND pid = pg_backend_pid() "
    "AND %(marker)s::int = %(marker)s::int",
    settings="SET LOCAL enable_seqscan = off; "
    "SELECT pg_advisory_xact_lock_shared(4242); ",
)


def test_settings_and_locks_sent_with_a_statement_hold_for_it_alone(
    db: Database,
) -> None:
    with db.autocommit() as cur:
        _PROBE.execute(cur, {"marker": 1})
        assert cur.fetchall() == [("off", 1)]
        # The statement was its own transaction: its setting and lock ended.
        cur.execute("SELECT current_setting('enable_seqscan'), (" + _LOCKS + ")")
        assert cur.fetchall() == [("on", 0)]


def test_each_statement_commits_on_its_own_and_a_failure_undoes_only_itself(
    db: Database,
) -> None:
    with db.transaction() as cur:
        cur.execute("CREATE TABLE autocommit_probe (n int PRIMARY KEY)")
    with pytest.raises(PulseError, match="duplicate key"), db.autocommit() as cur:
        cur.execute("INSERT INTO autocommit_probe VALUES (1)")
        # One execute, two statements: one transaction, undone whole.
        cur.execute(
            "INSERT INTO autocommit_probe VALUES (2); "
            "INSERT INTO autocommit_probe VALUES (1)"
        )
    with db.transaction() as cur:
        cur.execute("SELECT n FROM autocommit_probe ORDER BY n")
        assert cur.fetchall() == [(1,)]


def test_a_connection_goes_back_to_the_pool_in_transaction_mode(
    db: Database,
) -> None:
    with db.transaction() as cur:
        cur.execute("CREATE TABLE autocommit_undone (n int)")
    with db.autocommit() as cur:
        cur.execute("SELECT 1")
        conn = cur.connection
    # The next transaction() gets the same connection, and can still undo.
    with pytest.raises(RuntimeError), db.transaction() as cur:
        assert cur.connection is conn
        assert conn.autocommit is False
        cur.execute("INSERT INTO autocommit_undone VALUES (1)")
        raise RuntimeError("abandon")
    with db.transaction() as cur:
        cur.execute("SELECT count(*) FROM autocommit_undone")
        assert cur.fetchall() == [(0,)]
