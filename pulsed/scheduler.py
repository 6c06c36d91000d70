"""The scheduler: the loop, in every replica, that fires due occurrences.

One transaction per firing of one schedule: lock the next due schedule that
no other replica holds (``FOR UPDATE SKIP LOCKED``), insert the occurrence
rows and their jobs (both unique by schedule and occurrence), advance
``next_fire_at``. A replica killed midway leaves nothing behind, and another
fires the occurrence. Which occurrences fire is ``pulsed.occurrences``'
business; the clock is the database's.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import time
import uuid
from collections.abc import Callable

from pulse_client.errors import InvalidArgument
from pulse_client.ids import new_uuid7
from pulsed import metrics
from pulsed.config import Config
from pulsed.database import Cursor, Database
from pulsed.loops import BackgroundLoop
from pulsed.occurrences import plan_firing
from pulsed.schedule_rules import RULE_COLUMNS, RuleColumns, rule_of

log = logging.getLogger(__name__)

# Occurrence rows kept per schedule however old, so that its recent history
# outlives the retention period.
KEEP_OCCURRENCES = 10

# The next due schedule that no other replica is firing. The clock is the
# database's unless a test hands one in.
LOCK_NEXT_DUE = f"""
SELECT id, name, topic, missed_runs, max_catch_up, resumed_at, next_fire_at,
       coalesce(%(now)s::timestamptz, now()), {RULE_COLUMNS}
FROM schedules
WHERE paused_at IS NULL
  AND next_fire_at <= coalesce(%(now)s::timestamptz, now())
ORDER BY next_fire_at
LIMIT 1
FOR UPDATE SKIP LOCKED
"""

# The occurrence rows, then a job for each one recorded. Both keys are
# unique by schedule and occurrence: an occurrence fired before is skipped.
FIRE_OCCURRENCES = """
WITH recorded AS (
    INSERT INTO schedule_occurrences (schedule_id, occurrence, job_id, catch_up)
    SELECT %(schedule_id)s, i.occurrence, i.job_id, i.catch_up
    FROM unnest(%(occurrences)s::timestamptz[], %(job_ids)s::uuid[],
                %(catch_ups)s::boolean[]) AS i(occurrence, job_id, catch_up)
    ON CONFLICT (schedule_id, occurrence) DO NOTHING
    RETURNING occurrence, job_id
)
INSERT INTO jobs (id, topic, payload, priority, status, max_attempts,
                  timeout_ms, run_at, schedule_id, occurrence)
SELECT r.job_id, s.topic, s.payload, s.priority,
       CASE WHEN r.occurrence <= now() THEN 'pending' ELSE 'scheduled' END,
       s.max_attempts, s.timeout_ms, greatest(r.occurrence, now()), s.id,
       r.occurrence
FROM recorded r CROSS JOIN schedules s
WHERE s.id = %(schedule_id)s
ON CONFLICT (schedule_id, occurrence) WHERE schedule_id IS NOT NULL DO NOTHING
RETURNING id, occurrence, status
"""

ADVANCE_SCHEDULE = """
UPDATE schedules SET
    next_fire_at = %(next_fire_at)s,
    fired_count = fired_count + %(fired)s,
    last_occurrence = coalesce(%(last_occurrence)s, last_occurrence),
    last_job_id = coalesce(%(last_job_id)s, last_job_id)
WHERE id = %(id)s
"""

# A schedule whose stored rule no longer evaluates (a time zone gone from
# the system's database) is paused for an operator, not retried forever.
PAUSE_BROKEN = "UPDATE schedules SET paused_at = now() WHERE id = %(id)s"

SECONDS_UNTIL_NEXT_FIRE = """
SELECT extract(epoch FROM min(next_fire_at) - now())
FROM schedules WHERE paused_at IS NULL AND next_fire_at IS NOT NULL
"""

# Occurrence rows past the retention period, beyond each schedule's newest
# few; small batches, skipping rows another replica is deleting.
PRUNE_OCCURRENCES = """
WITH old AS (
    SELECT schedule_id, occurrence FROM (
        SELECT schedule_id, occurrence, fired_at,
               row_number() OVER (PARTITION BY schedule_id
                                  ORDER BY occurrence DESC) AS newest
        FROM schedule_occurrences
    ) AS ranked
    WHERE newest > %(keep)s
      AND fired_at < now() - %(retention_seconds)s * interval '1 second'
    LIMIT %(limit)s
), locked AS (
    SELECT o.schedule_id, o.occurrence
    FROM schedule_occurrences o JOIN old USING (schedule_id, occurrence)
    FOR UPDATE OF o SKIP LOCKED
)
DELETE FROM schedule_occurrences o USING locked l
WHERE o.schedule_id = l.schedule_id AND o.occurrence = l.occurrence
"""


@dataclasses.dataclass(frozen=True)
class Firing:
    """What one firing of one schedule did."""

    schedule: str
    topic: str
    # (job id, occurrence, job status) for each job inserted.
    jobs: list[tuple[str, datetime.datetime, str]]
    next_fire_at: datetime.datetime | None
    missed: bool

    @property
    def pending_topics(self) -> set[str]:
        return {self.topic} if any(s == "pending" for *_, s in self.jobs) else set()

    @property
    def any_scheduled(self) -> bool:
        return any(status == "scheduled" for *_, status in self.jobs)


def fire_next_due(cur: Cursor, now: datetime.datetime | None = None) -> Firing | None:
    """Fire the next due schedule, in the caller's transaction; None when
    none is due. ``now`` stands in for the database's clock (tests)."""
    cur.execute(LOCK_NEXT_DUE, {"now": now})
    row = cur.fetchone()
    if row is None:
        return None
    schedule_id, name, topic, missed_runs, max_catch_up, resumed_at = row[:6]
    due, clock = row[6].astimezone(datetime.UTC), row[7].astimezone(datetime.UTC)
    try:
        rule = rule_of(RuleColumns.from_row(row[8:]))
    except InvalidArgument as exc:
        cur.execute(PAUSE_BROKEN, {"id": schedule_id})
        log.error("schedule.broken schedule=%s paused=true error=%s", name, exc)
        return Firing(name, topic, [], None, missed=False)
    plan = plan_firing(
        rule,
        due,
        clock,
        missed_runs=missed_runs,
        max_catch_up=max_catch_up,
        resumed_at=resumed_at,
    )

    jobs: list[tuple[str, datetime.datetime, str]] = []
    if plan.fire:
        cur.execute(
            FIRE_OCCURRENCES,
            {
                "schedule_id": schedule_id,
                "occurrences": [occurrence for occurrence, _ in plan.fire],
                "job_ids": [new_uuid7() for _ in plan.fire],
                "catch_ups": [catch_up for _, catch_up in plan.fire],
            },
        )
        inserted = cur.fetchall()
        jobs = sorted(
            (
                (str(job_id), occurrence, status)
                for job_id, occurrence, status in inserted
            ),
            key=lambda job: job[1],
        )
    last = jobs[-1] if jobs else None
    cur.execute(
        ADVANCE_SCHEDULE,
        {
            "id": schedule_id,
            "next_fire_at": plan.next_fire_at,
            "fired": len(jobs),
            "last_occurrence": last[1] if last else None,
            "last_job_id": uuid.UUID(last[0]) if last else None,
        },
    )

    if plan.missed:
        log.info(
            "schedule.missed_runs schedule=%s policy=%s since=%s fired=%d",
            name,
            missed_runs,
            due.isoformat(),
            len(jobs),
        )
    for job_id, occurrence, _ in jobs:
        log.debug(
            "schedule.fired schedule=%s occurrence=%s job_id=%s",
            name,
            occurrence.isoformat(),
            job_id,
        )
    return Firing(name, topic, jobs, plan.next_fire_at, plan.missed)


class Scheduler(BackgroundLoop):
    """Fires due occurrences; runs in every replica.

    Sleeps until the next due occurrence it knows of, at most
    ``PULSE_SCHEDULER_POLL_SECONDS`` (a schedule declared through another
    replica is seen within that), and prunes old occurrence rows every
    ``PULSE_PRUNE_SECONDS``.
    """

    name = "scheduler"
    # Firings per step before the loop looks at its stop flag again.
    batch = 100
    prune_batch = 1000
    # When the next due schedule is being fired by another replica.
    busy_seconds = 0.05

    def __init__(
        self,
        db: Database,
        config: Config,
        on_fired: Callable[[set[str], bool], None],
    ) -> None:
        super().__init__(db, config)
        self._on_fired = on_fired
        self._next_prune = time.monotonic()

    def step(self) -> float:
        for _ in range(self.batch):
            with self.db.transaction() as cur:
                firing = fire_next_due(cur)
            if firing is None:
                break
            if firing.jobs:
                metrics.count_submitted([firing.topic] * len(firing.jobs))
                self._on_fired(firing.pending_topics, firing.any_scheduled)
        else:
            return 0.0

        if time.monotonic() >= self._next_prune:
            self.prune()
            self._next_prune = time.monotonic() + self.config.prune_seconds

        with self.db.transaction() as cur:
            cur.execute(SECONDS_UNTIL_NEXT_FIRE)
            row = cur.fetchone()
        if row is None or row[0] is None:
            return self.config.scheduler_poll_seconds
        seconds = float(row[0])
        if seconds <= 0:
            return min(self.busy_seconds, self.config.scheduler_poll_seconds)
        return min(seconds, self.config.scheduler_poll_seconds)

    def prune(self) -> int:
        """Delete old occurrence rows; returns how many."""
        deleted = 0
        while True:
            with self.db.transaction() as cur:
                cur.execute(
                    PRUNE_OCCURRENCES,
                    {
                        "keep": KEEP_OCCURRENCES,
                        "retention_seconds": self.config.retention_seconds,
                        "limit": self.prune_batch,
                    },
                )
                count = cur.rowcount
            deleted += count
            if count < self.prune_batch:
                break
        if deleted:
            log.info("scheduler.pruned occurrences=%d", deleted)
        return deleted
