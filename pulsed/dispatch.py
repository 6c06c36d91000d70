"""Dispatch: hand pending jobs to the worker streams that have credits.

One dispatcher thread per replica. Streams with the same topics form a
group, and one claim statement serves every stream of a group at once: it
takes up to the group's total credits, marks the rows running under each
stream's worker id and returns them tagged with the stream's slot.

The dispatcher never polls on a fixed tick. A group is claimed for when it
has credits and may have work; it is marked idle when a claim comes back
short and woken again by a NOTIFY for one of its topics (from any
replica), a local submit, or the slow safety poll.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Iterable
from typing import Any, Protocol

from pulse_client._proto.pulse.v1 import pulse_pb2 as pb
from pulse_client.errors import PulseError
from pulse_client.limits import MAX_CREDITS_PER_STREAM
from pulsed import metrics
from pulsed.config import Config
from pulsed.database import INDEX_ONLY_PLANS as _INDEX_ONLY_PLANS
from pulsed.database import Database, Prepared, array_literal
from pulsed.gate import CLAIM_GATE_LOCK, blocks

log = logging.getLogger(__name__)

# Per topic, the first pending rows in dispatch order, skipping rows that
# other claims hold; then the best of those across topics. Each topic reads
# O(limit) entries of its partial index however deep any backlog is.
# The n-th row picked goes to the n-th slot, which names the stream (by its
# place in worker_ids) that gets it. The arrays are indexed, not joined: the
# settings below leave the planner only a nested loop, which would compare
# every row with every slot.
# RETURNING hands over what the assignment needs in the form it is sent:
# the id as text and times as a Timestamp's seconds and nanoseconds,
# converted here in C instead of into Python objects per row.
CLAIM_JOBS = """
WITH open_topics AS MATERIALIZED (
    -- The dispatch pause: paused topics are never looked at.
    SELECT topic FROM unnest(%(topics)s::text[]) AS t(topic)
    WHERE NOT EXISTS (
        SELECT 1 FROM dispatch_pauses AS p WHERE p.scope IN ('*', t.topic))
), picked AS (
    SELECT c.id, row_number() OVER (ORDER BY c.priority DESC, c.run_at, c.id) AS n
    FROM open_topics AS t
    CROSS JOIN LATERAL (
        SELECT id, priority, run_at FROM jobs
        WHERE status = 'pending' AND jobs.topic = t.topic
        ORDER BY priority DESC, run_at, id
        LIMIT %(limit)s::int
        FOR UPDATE SKIP LOCKED
    ) AS c
    ORDER BY c.priority DESC, c.run_at, c.id
    LIMIT %(limit)s
)
UPDATE jobs AS j SET
    status = 'running',
    attempt = j.attempt + 1,
    worker_id = (%(worker_ids)s::text[])[(%(slots)s::int[])[picked.n] + 1],
    started_at = now(),
    lease_expires_at = CASE
        WHEN j.timeout_ms > 0 THEN now() + least(
            %(lease_seconds)s::float8 * interval '1 second',
            j.timeout_ms * interval '1 millisecond')
        ELSE now() + %(lease_seconds)s::float8 * interval '1 second' END
FROM picked
WHERE j.id = picked.id
RETURNING (%(slots)s::int[])[picked.n], j.id::text, j.topic, j.payload, j.attempt,
          j.max_attempts, j.priority,
          floor(extract(epoch FROM j.lease_expires_at))::bigint,
          mod(extract(microseconds FROM j.lease_expires_at)::bigint, 1000000) * 1000,
          j.timeout_ms,
          floor(extract(epoch FROM j.created_at))::bigint,
          mod(extract(microseconds FROM j.created_at)::bigint, 1000000) * 1000,
          j.attempt - j.attempt_base,
          extract(epoch FROM now() - j.run_at)::float8
"""

# Without fresh statistics (autovacuum visits a database about once a
# minute, and a drain changes the table faster) the planner may take a
# bitmap scan over every pending row of the topic and sort it: O(backlog).
# The partial index already yields rows in dispatch order, so forbid that.
# With the shape of the plan fixed so, a generic plan is as good as one made
# for the parameters; left to choose, Postgres planned every claim anew,
# because the generic plan's estimates (ten topics, an unknown limit) looked
# costlier than the custom one. The shared gate lock goes first, so that a
# committed pause is always seen (see pulsed.gate).
CLAIM_SETTINGS = (
    _INDEX_ONLY_PLANS
    + "SET LOCAL plan_cache_mode = force_generic_plan; "
    + CLAIM_GATE_LOCK
)
_CLAIM_JOBS = Prepared("pulse_claim_jobs", CLAIM_JOBS, settings=CLAIM_SETTINGS)

# Far below gRPC's message limit, so that a claim of many large payloads
# never makes a message a worker cannot receive.
MAX_ASSIGNMENT_MESSAGE_BYTES = 4 * 1024 * 1024
# What an assignment takes beyond its id, topic and payload, at most: its
# other fields with their tags and lengths.
_ASSIGNMENT_OVERHEAD_BYTES = 128


class Receiver(Protocol):
    """What the dispatcher needs of a stream."""

    worker_id: str
    topics: frozenset[str]
    credits: int

    def deliver(self, messages: list[pb.ServerMessage]) -> bool:
        """Queue messages of assignments; False if the stream has closed."""

    def confirm_drained(self) -> None:
        """Queue word that no assignment follows (after ``drain``)."""


class Dispatcher:
    """Claims work for the streams of this replica. Thread-safe."""

    def __init__(self, db: Database, config: Config) -> None:
        self._db = db
        self._config = config
        self._cond = threading.Condition()
        self._receivers: list[Receiver] = []
        self._draining: set[Receiver] = set()
        # A claim is under way (outside the lock): streams that drain
        # meanwhile hear that nothing follows only once it has delivered.
        self._claiming = False
        self._unconfirmed: list[Receiver] = []
        # Per stream: the most credits it ever had, and since when it has
        # had unused credits.
        self._capacity: dict[Receiver, int] = {}
        self._credited_at: dict[Receiver, float] = {}
        self._idle_groups: set[frozenset[str]] = set()
        # The paused scopes as this replica last read them.
        self._paused: frozenset[str] = frozenset()
        # Counts wake-ups, so that a claim that started before one cannot
        # mark its group idle after it (its snapshot missed the new work).
        self._wakes = 0
        self._stopping = False
        self._next_poll = 0.0
        self._rotation = itertools.count()
        self._thread = threading.Thread(
            target=self._run, name="pulse-dispatcher", daemon=True
        )
        self.claims = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_seconds: float = 5.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout_seconds)

    def register(self, receiver: Receiver, credits: int) -> None:
        with self._cond:
            receiver.credits = min(credits, MAX_CREDITS_PER_STREAM)
            self._capacity[receiver] = max(1, receiver.credits)
            self._credited_at[receiver] = time.monotonic()
            self._receivers.append(receiver)
            self._idle_groups.discard(receiver.topics)
            self._cond.notify_all()

    def unregister(self, receiver: Receiver) -> None:
        with self._cond:
            if receiver in self._receivers:
                self._receivers.remove(receiver)
            self._draining.discard(receiver)
            self._capacity.pop(receiver, None)
            self._credited_at.pop(receiver, None)

    def add_credits(self, receiver: Receiver, credits: int) -> None:
        with self._cond:
            if receiver in self._draining or receiver not in self._capacity:
                return
            if receiver.credits == 0:
                self._credited_at[receiver] = time.monotonic()
            receiver.credits = min(receiver.credits + credits, MAX_CREDITS_PER_STREAM)
            self._capacity[receiver] = max(self._capacity[receiver], receiver.credits)
            self._cond.notify_all()

    def drain(self, receiver: Receiver) -> None:
        """The stream takes no more work. It is told so once no claim that
        may have included it is under way, so that every assignment it will
        get is queued before the word: a worker that waits for the word
        before closing its stream never leaves a claimed job unread."""
        with self._cond:
            self._draining.add(receiver)
            receiver.credits = 0
            if self._claiming:
                self._unconfirmed.append(receiver)
                return
        receiver.confirm_drained()

    def wake(self, topics: Iterable[str] | None = None) -> None:
        """New pending work for ``topics`` (None: possibly any topic)."""
        with self._cond:
            self._wakes += 1
            if topics is None:
                self._idle_groups.clear()
            else:
                wanted = set(topics)
                self._idle_groups = {g for g in self._idle_groups if not g & wanted}
                if not any(r.topics & wanted for r in self._receivers):
                    # No stream here takes these topics: the dispatcher
                    # would wake only to find nothing to claim for.
                    return
            self._cond.notify_all()

    def set_paused(self, paused: frozenset[str]) -> None:
        """The dispatch pause changed: skip groups it blocks, and retry
        every group when something was resumed."""
        with self._cond:
            resumed = bool(self._paused - paused)
            self._paused = paused
            if resumed:
                self._wakes += 1
                self._idle_groups.clear()
            self._cond.notify_all()

    def streams(self) -> int:
        with self._cond:
            return len(self._receivers)

    def _run(self) -> None:
        while True:
            work = self._wait_for_work()
            if work is None:
                return
            try:
                self._claim_all(work)
            finally:
                with self._cond:
                    self._claiming = False
                    drained, self._unconfirmed = self._unconfirmed, []
                for receiver in drained:
                    receiver.confirm_drained()

    def _claim_all(self, work: list[tuple[frozenset[str], list[Receiver]]]) -> None:
        for group, receivers in work:
            try:
                self._claim(group, receivers)
            except PulseError as exc:
                log.warning(
                    "dispatch.claim_failed topics=%s error=%s",
                    ",".join(sorted(group)),
                    exc,
                )
                # Keep the group workable and retry after a pause: the
                # database may be restarting.
                time.sleep(0.2)
            except Exception:
                log.exception("dispatch.claim_crashed")
                time.sleep(0.2)

    def _wait_for_work(self) -> list[tuple[frozenset[str], list[Receiver]]] | None:
        with self._cond:
            while not self._stopping:
                now = time.monotonic()
                if now >= self._next_poll:
                    # The safety poll: covers notifications lost while the
                    # LISTEN connection was down.
                    self._idle_groups.clear()
                    self._next_poll = now + self._config.poll_seconds
                groups: dict[frozenset[str], list[Receiver]] = {}
                wake_at = self._next_poll
                for receiver in self._receivers:
                    if (
                        receiver.credits == 0
                        or receiver.topics in self._idle_groups
                        or blocks(self._paused, receiver.topics)
                    ):
                        continue
                    ready_at = self._ready_at(receiver)
                    if ready_at <= now:
                        groups.setdefault(receiver.topics, []).append(receiver)
                    else:
                        wake_at = min(wake_at, ready_at)
                if groups:
                    self._claiming = True
                    return list(groups.items())
                self._cond.wait(max(0.0, wake_at - now))
            return None

    def _ready_at(self, receiver: Receiver) -> float:
        """When to claim for a stream with credits.

        At once when it is idle or a good share of its slots is free. A busy
        stream that just freed one slot waits a moment for more to free
        up, so that a worker reporting one result at a time still gets its
        work in batches (one claim per several jobs, not one per job).
        """
        if receiver.credits * 4 >= self._capacity[receiver]:
            return 0.0
        return self._credited_at[receiver] + self._config.claim_linger_ms / 1000

    def _claim(self, group: frozenset[str], receivers: list[Receiver]) -> None:
        # Interleave the streams' slots so that a short claim is shared out
        # instead of filling the first stream; rotate who goes first.
        with self._cond:
            wakes_before = self._wakes
            start = next(self._rotation) % len(receivers)
            ordered = receivers[start:] + receivers[:start]
            budget = [min(r.credits, self._config.claim_batch) for r in ordered]
        slots: list[int] = []
        while len(slots) < self._config.claim_batch and any(budget):
            for index, left in enumerate(budget):
                if left and len(slots) < self._config.claim_batch:
                    slots.append(index)
                    budget[index] -= 1
        if not slots:
            return

        # One statement with its settings and gate lock: one round trip.
        with self._db.autocommit() as cur:
            _CLAIM_JOBS.execute(
                cur,
                {
                    "slots": array_literal(slots),
                    "worker_ids": [receiver.worker_id for receiver in ordered],
                    "topics": sorted(group),
                    "limit": len(slots),
                    "lease_seconds": self._config.lease_seconds,
                },
            )
            rows = cur.fetchall()
        self.claims += 1

        by_receiver: dict[int, list[tuple[Any, ...]]] = {}
        for row in rows:
            by_receiver.setdefault(row[0], []).append(row)
        with self._cond:
            if len(rows) < len(slots) and self._wakes == wakes_before:
                self._idle_groups.add(group)
            now = time.monotonic()
            for index, assignments in by_receiver.items():
                receiver = ordered[index]
                receiver.credits = max(0, receiver.credits - len(assignments))
                if receiver in self._capacity:  # not unregistered meanwhile
                    self._credited_at[receiver] = now
        for index, claimed in by_receiver.items():
            receiver = ordered[index]
            if not receiver.deliver(assignment_messages(claimed)):
                # The stream closed between claim and delivery: the jobs stay
                # running under its worker id. If the worker reconnects it
                # never heard of them, so their leases lapse into the retry
                # path like any lost attempt.
                log.warning(
                    "dispatch.undelivered worker_id=%s jobs=%d",
                    receiver.worker_id,
                    len(claimed),
                )
        # After the delivery, which the workers wait on.
        metrics.observe_dispatch_latency([row[-1] for row in rows])
        if rows:
            log.debug(
                "dispatch.claimed topics=%s jobs=%d", ",".join(sorted(group)), len(rows)
            )


def assignment_messages(rows: list[tuple[Any, ...]]) -> list[pb.ServerMessage]:
    """Claimed rows as ServerMessages of at most about
    ``MAX_ASSIGNMENT_MESSAGE_BYTES`` each (one job per message if larger).

    Each assignment is written in place in its message: one made apart
    would be copied in again.
    """
    messages: list[pb.ServerMessage] = []
    message = pb.ServerMessage()
    add = message.assignments.add
    size = 0
    for (
        _,
        job_id,
        topic,
        payload,
        attempt,
        max_attempts,
        priority,
        lease_seconds,
        lease_nanos,
        timeout_ms,
        created_seconds,
        created_nanos,
        attempts_used,
        _,
    ) in rows:
        row_bytes = len(payload) + len(job_id) + len(topic) + _ASSIGNMENT_OVERHEAD_BYTES
        if size and size + row_bytes > MAX_ASSIGNMENT_MESSAGE_BYTES:
            messages.append(message)
            message = pb.ServerMessage()
            add = message.assignments.add
            size = 0
        assignment = add(
            job_id=job_id,
            topic=topic,
            payload=bytes(payload),
            attempt=attempt,
            max_attempts=max_attempts,
            priority=priority,
            timeout_ms=timeout_ms,
            attempts_used=attempts_used,
        )
        stamp = assignment.lease_expires_at
        stamp.seconds = lease_seconds
        stamp.nanos = lease_nanos
        stamp = assignment.created_at
        stamp.seconds = created_seconds
        stamp.nanos = created_nanos
        size += row_bytes
    if size:
        messages.append(message)
    return messages
