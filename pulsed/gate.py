"""The dispatch pause: a durable switch, per topic or for every topic.

The switch is a row in ``dispatch_pauses`` per paused scope ('*' for every
topic). The claim statement reads it, so correctness never depends on a
replica's memory; the ``PauseGate`` loop keeps an in-memory copy only so
that a paused replica does not keep issuing claims that cannot succeed.

Pausing is strict: a claim holds a shared advisory lock before its snapshot
is taken, and a pause takes the same lock exclusively. So a pause waits for
claims already under way, and claims that start after it see it. Once
PauseDispatch returns, no replica hands out another job of the paused
scope.
"""

from __future__ import annotations

import logging
import threading
import unicodedata
from collections.abc import Callable

from pulse_client._proto.pulse.v1 import pulse_pb2 as pb
from pulse_client.errors import InvalidArgument
from pulse_client.limits import validate_topic
from pulsed.auth import Caller
from pulsed.config import Config
from pulsed.database import Cursor, Database
from pulsed.jobs import to_timestamp
from pulsed.loops import BackgroundLoop
from pulsed.notifications import NOTIFY_CHANNEL_GATE

log = logging.getLogger(__name__)

ALL_TOPICS = "*"
# Shared by every replica: "pulsg" in ASCII.
GATE_LOCK_KEY = 0x70756C7367
MAX_REASON_CHARS = 500

# Prepended to the claim, in the same round trip: a separate statement, so
# that the claim's snapshot is taken after the lock is held.
CLAIM_GATE_LOCK = f"SELECT pg_advisory_xact_lock_shared({GATE_LOCK_KEY}); "
LOCK_GATE = f"SELECT pg_advisory_xact_lock({GATE_LOCK_KEY})"

PAUSE = """
INSERT INTO dispatch_pauses (scope, reason, paused_by)
VALUES (%(scope)s, %(reason)s, %(user)s)
ON CONFLICT (scope) DO UPDATE SET reason = excluded.reason
"""

RESUME = "DELETE FROM dispatch_pauses WHERE scope = %(scope)s RETURNING scope"

LIST_PAUSES = """
SELECT scope, reason, paused_by, paused_at FROM dispatch_pauses ORDER BY scope
"""

PAUSED_SCOPES = "SELECT scope FROM dispatch_pauses"

NOTIFY_GATE = f"SELECT pg_notify('{NOTIFY_CHANNEL_GATE}', '')"


def _scope(topic: str) -> str:
    if not topic:
        return ALL_TOPICS
    validate_topic(topic)
    return topic


def check_reason(reason: str) -> str:
    """The reason as stored: stripped, at most MAX_REASON_CHARS, printable
    (it is shown in terminals and pages)."""
    reason = reason.strip()
    if len(reason) > MAX_REASON_CHARS:
        raise InvalidArgument(
            f"the reason is {len(reason)} characters long; at most {MAX_REASON_CHARS}"
        )
    if any(unicodedata.category(char) == "Cc" for char in reason):
        raise InvalidArgument(
            "the reason holds control characters (line breaks, escapes); "
            "give it as one line of text"
        )
    return reason


def pause(cur: Cursor, caller: Caller, topic: str, reason: str) -> str:
    """Pause ``topic`` ('' for every topic); returns the scope paused."""
    scope = _scope(topic)
    reason = check_reason(reason)
    # Wait for claims under way; claims after this see the row.
    cur.execute(LOCK_GATE)
    cur.execute(PAUSE, {"scope": scope, "reason": reason, "user": caller.user})
    cur.execute(NOTIFY_GATE)
    return scope


def resume(cur: Cursor, topic: str) -> tuple[str, bool]:
    """Resume ``topic`` ('' for every topic); True if it was paused."""
    scope = _scope(topic)
    cur.execute(RESUME, {"scope": scope})
    was_paused = cur.fetchone() is not None
    if was_paused:
        cur.execute(NOTIFY_GATE)
    return scope, was_paused


def status(cur: Cursor) -> pb.DispatchStatus:
    cur.execute(LIST_PAUSES)
    answer = pb.DispatchStatus()
    for scope, reason, paused_by, paused_at in cur.fetchall():
        entry = pb.DispatchPause(
            topic="" if scope == ALL_TOPICS else scope,
            reason=reason,
            paused_by=paused_by,
            paused_at=to_timestamp(paused_at),
        )
        if scope == ALL_TOPICS:
            answer.paused = True
            answer.all.CopyFrom(entry)
        else:
            answer.topics.append(entry)
    return answer


def blocks(paused: frozenset[str], topics: frozenset[str]) -> bool:
    """Whether a stream of ``topics`` can get no work at all under ``paused``."""
    return ALL_TOPICS in paused or topics <= paused


class PauseGate(BackgroundLoop):
    """Keeps this replica's copy of the paused scopes close to the rows.

    Re-reads every ``gate_poll_seconds`` and at once when woken (a NOTIFY
    from any replica); calls ``on_change(paused)`` when the set changes.
    """

    name = "pause-gate"

    def __init__(
        self,
        db: Database,
        config: Config,
        on_change: Callable[[frozenset[str]], None],
    ) -> None:
        super().__init__(db, config)
        self._on_change = on_change
        self._refresh_lock = threading.Lock()
        self.paused: frozenset[str] = frozenset()

    def step(self) -> float:
        self.refresh()
        return self.config.gate_poll_seconds

    def refresh(self) -> None:
        """Re-read the rows now; safe from any thread."""
        with self._refresh_lock:
            with self.db.transaction() as cur:
                cur.execute(PAUSED_SCOPES)
                paused = frozenset(row[0] for row in cur.fetchall())
            if paused != self.paused:
                log.info(
                    "dispatch.gate paused=%s", ",".join(sorted(paused)) or "nothing"
                )
                self.paused = paused
                self._on_change(paused)
