"""Background loops: promoter, watchdog and pruner.

Each runs in its own thread in every replica. Correctness never depends on
which replica runs a step: every step is one guarded statement with SKIP
LOCKED. A loop survives database errors (logs, backs off, tries again) and
stops cleanly on shutdown.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from pulse_client.errors import PulseError
from pulsed import metrics, outcomes
from pulsed.config import Config
from pulsed.database import Database
from pulsed.submits import NOTIFY_CHANNEL_PENDING

log = logging.getLogger(__name__)

_MAX_ERROR_BACKOFF_SECONDS = 10.0


class BackgroundLoop:
    """Runs ``step`` repeatedly; ``step`` returns the seconds to sleep next."""

    name = "loop"

    def __init__(self, db: Database, config: Config) -> None:
        self.db = db
        self.config = config
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"pulse-{self.name}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_seconds: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout_seconds)

    def wake(self) -> None:
        """Run the next step now instead of after the sleep."""
        self._wake.set()

    def step(self) -> float:
        raise NotImplementedError

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                sleep_seconds = self.step()
                if failures:
                    log.info("loop.recovered name=%s", self.name)
                failures = 0
            except PulseError as exc:
                failures += 1
                metrics.LOOP_ERRORS.labels(self.name).inc()
                sleep_seconds = min(_MAX_ERROR_BACKOFF_SECONDS, 0.1 * 2**failures)
                log.warning(
                    "loop.failed name=%s failures=%d retry_in=%.1fs error=%s",
                    self.name,
                    failures,
                    sleep_seconds,
                    exc,
                )
            except Exception:
                failures += 1
                metrics.LOOP_ERRORS.labels(self.name).inc()
                sleep_seconds = min(_MAX_ERROR_BACKOFF_SECONDS, 0.1 * 2**failures)
                log.exception("loop.crashed name=%s", self.name)
            if sleep_seconds > 0:
                self._wake.wait(sleep_seconds)
            self._wake.clear()


# Scheduled and retrying jobs that are due become pending; their topics are
# announced so that idle streams on every replica wake up.
PROMOTE_DUE = """
WITH due AS (
    SELECT id FROM jobs
    WHERE status IN ('scheduled', 'retrying') AND run_at <= now()
    ORDER BY run_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), promoted AS (
    UPDATE jobs AS j SET status = 'pending'
    FROM due WHERE j.id = due.id
    RETURNING j.topic
)
SELECT t.topic, pg_notify(%(channel)s, t.topic)
FROM (SELECT DISTINCT topic FROM promoted) AS t
"""

SECONDS_UNTIL_NEXT_DUE = """
SELECT extract(epoch FROM min(run_at) - now())
FROM jobs WHERE status IN ('scheduled', 'retrying')
"""


class Promoter(BackgroundLoop):
    """Moves due scheduled/retrying jobs to pending, sleeping until the next."""

    name = "promoter"
    batch = 1000

    def __init__(
        self, db: Database, config: Config, on_pending: Callable[[set[str]], None]
    ) -> None:
        super().__init__(db, config)
        self._on_pending = on_pending

    def step(self) -> float:
        with self.db.transaction() as cur:
            cur.execute(
                PROMOTE_DUE, {"limit": self.batch, "channel": NOTIFY_CHANNEL_PENDING}
            )
            topics = {row[0] for row in cur.fetchall()}
            if len(topics) == 0:
                cur.execute(SECONDS_UNTIL_NEXT_DUE)
                row = cur.fetchone()
                next_due = None if row is None or row[0] is None else float(row[0])
            else:
                next_due = 0.0
        if topics:
            self._on_pending(topics)
            log.debug("promoter.promoted topics=%s", ",".join(sorted(topics)))
            return 0.0
        if next_due is None:
            return self.config.poll_seconds
        return max(0.0, min(next_due, self.config.poll_seconds))


class Watchdog(BackgroundLoop):
    """Sends running jobs whose lease lapsed through the retry path."""

    name = "watchdog"
    batch = 1000

    def __init__(
        self, db: Database, config: Config, on_retrying: Callable[[], None]
    ) -> None:
        super().__init__(db, config)
        self._on_retrying = on_retrying

    def step(self) -> float:
        with self.db.transaction() as cur:
            expired = outcomes.expire_leases(cur, self.config, self.batch)
        for job_id, attempt, status in expired:
            log.warning(
                "job.lease_expired job_id=%s attempt=%d status=%s",
                job_id,
                attempt,
                status,
            )
        if any(status == "retrying" for _, _, status in expired):
            self._on_retrying()
        return 0.0 if len(expired) == self.batch else self.config.watchdog_seconds


# Small batches keep each delete short and its locks few.
PRUNE_FINISHED = """
DELETE FROM jobs WHERE id IN (
    SELECT id FROM jobs
    WHERE status IN ('completed', 'dead_lettered', 'canceled')
      AND finished_at < now() - %(retention_seconds)s * interval '1 second'
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
"""


class Pruner(BackgroundLoop):
    """Deletes finished jobs older than the retention period."""

    name = "pruner"
    batch = 1000

    def step(self) -> float:
        with self.db.transaction() as cur:
            cur.execute(
                PRUNE_FINISHED,
                {
                    "retention_seconds": self.config.retention_seconds,
                    "limit": self.batch,
                },
            )
            deleted = cur.rowcount
        if deleted:
            log.info("pruner.deleted jobs=%d", deleted)
        return 0.0 if deleted == self.batch else self.config.prune_seconds


JOBS_TABLE_CHURN = """
SELECT n_dead_tup, n_mod_since_analyze
FROM pg_stat_user_tables WHERE relid = 'jobs'::regclass
"""

# Any constant shared by every replica: "vacuum" in ASCII.
_VACUUM_LOCK_KEY = 0x76616375756D


class Vacuumer(BackgroundLoop):
    """Vacuums and analyzes the jobs table while it churns.

    Every claim leaves a dead entry at the head of the claim index that later
    claims scan past until vacuum removes it, and a drain changes the table
    faster than autovacuum (which visits a database about once a minute)
    refreshes its statistics. So each replica looks every few seconds and,
    past a threshold of dead or changed rows, runs VACUUM (ANALYZE) itself;
    an advisory lock keeps replicas from doing it twice at once.
    """

    name = "vacuumer"
    threshold_rows = 2000

    def step(self) -> float:
        with self.db.transaction() as cur:
            cur.execute(JOBS_TABLE_CHURN)
            row = cur.fetchone()
        dead, changed = (row[0], row[1]) if row else (0, 0)
        if max(dead, changed) < self.threshold_rows:
            return self.config.vacuum_seconds
        # Named apart from the pool: other replicas count pool connections
        # named 'pulsed' as a replica that may be listening.
        conn = self.db.connect(application_name="pulsed-vacuum")
        try:
            conn.autocommit = True  # VACUUM cannot run in a transaction
            with conn.cursor() as cur:
                cur.execute("SELECT pg_try_advisory_lock(%s)", (_VACUUM_LOCK_KEY,))
                locked = cur.fetchone()
                if not locked or not locked[0]:
                    return self.config.vacuum_seconds
                started = time.monotonic()
                cur.execute("VACUUM (ANALYZE) jobs")
                log.info(
                    "vacuumer.vacuumed dead=%d changed=%d seconds=%.2f",
                    dead,
                    changed,
                    time.monotonic() - started,
                )
        finally:
            conn.close()  # also releases the advisory lock
        return self.config.vacuum_seconds
