"""Schema migrations (yoyo), applied by pulsed on boot.

Replicas that boot at once serialise on a Postgres advisory lock, so each
migration is applied exactly once and a replica never serves on a schema it
has not seen completed.
"""

from __future__ import annotations

import importlib.resources
import logging
import pathlib

import yoyo

from pulsed.database import Database

log = logging.getLogger(__name__)

# An arbitrary constant shared by every replica: "pulse" in ASCII.
_MIGRATION_LOCK_KEY = 0x70756C7365


def migrations_path() -> str:
    """Where the SQL migrations are: inside the installed package, or at the
    top of a source checkout."""
    installed = pathlib.Path(str(importlib.resources.files("pulsed"))) / "migrations"
    if installed.is_dir():
        return str(installed)
    return str(pathlib.Path(__file__).resolve().parent.parent / "migrations")


def apply_migrations(db: Database) -> list[str]:
    """Bring the schema up to date; returns the ids of migrations applied."""
    lock_conn = db.connect(application_name="pulsed-migrate")
    try:
        lock_conn.autocommit = True
        with lock_conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK_KEY,))
        try:
            backend = yoyo.get_backend(db.dsn)
            try:
                migrations = yoyo.read_migrations(migrations_path())
                pending = backend.to_apply(migrations)
                applied = [m.id for m in pending]
                if pending:
                    backend.apply_migrations(pending)
                    log.info("migrations.applied ids=%s", ",".join(applied))
                return applied
            finally:
                backend.connection.close()
        finally:
            with lock_conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK_KEY,))
    finally:
        lock_conn.close()
