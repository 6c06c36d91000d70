"""LISTEN/NOTIFY: wake-ups from every replica's submits and promotions.

One connection per replica listens; notifications carry the topic that got
pending work. A lost notification (the connection dropped) only delays work
until the next safety poll, and a reconnect wakes everything at once.
"""

from __future__ import annotations

import logging
import select
import threading
import time
from collections.abc import Callable

import psycopg2

from pulse_client.errors import PulseError
from pulsed.database import Database
from pulsed.submits import NOTIFY_CHANNEL_DUE, NOTIFY_CHANNEL_PENDING

# The dispatch pause changed (see pulsed.gate).
NOTIFY_CHANNEL_GATE = "pulse_gate"

# Every replica's LISTEN connection goes by this name, so that a replica can
# tell whether any other replica would hear its announcements.
LISTENER_APPLICATION_NAME = "pulsed-listener"

log = logging.getLogger(__name__)


class Listener:
    """Calls ``on_pending(topics)`` (None: all topics), ``on_due()`` and,
    when the dispatch pause changed, ``on_gate()``."""

    def __init__(
        self,
        db: Database,
        on_pending: Callable[[set[str] | None], None],
        on_due: Callable[[], None],
        on_gate: Callable[[], None] = lambda: None,
    ) -> None:
        self._db = db
        self._on_pending = on_pending
        self._on_due = on_due
        self._on_gate = on_gate
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="pulse-listener", daemon=True
        )
        self.connected = threading.Event()
        # The server process of the LISTEN connection (0: none yet).
        self.backend_pid = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_seconds: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_seconds)

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                self._listen()
                failures = 0
            except (PulseError, psycopg2.Error, OSError) as exc:
                failures += 1
                self.connected.clear()
                delay = min(5.0, 0.1 * 2**failures)
                log.warning("listener.disconnected retry_in=%.1fs error=%s", delay, exc)
                self._stop.wait(delay)

    def _listen(self) -> None:
        conn = self._db.connect(application_name=LISTENER_APPLICATION_NAME)
        self.backend_pid = conn.get_backend_pid()
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(
                    f"LISTEN {NOTIFY_CHANNEL_PENDING}; LISTEN {NOTIFY_CHANNEL_DUE}; "
                    f"LISTEN {NOTIFY_CHANNEL_GATE}"
                )
            self.connected.set()
            # Anything announced while we were not listening was missed.
            self._on_pending(None)
            self._on_due()
            self._on_gate()
            log.info("listener.connected")
            while not self._stop.is_set():
                readable, _, _ = select.select([conn], [], [], 0.5)
                if not readable:
                    continue
                conn.poll()
                topics: set[str] = set()
                due = gate = False
                while conn.notifies:
                    note = conn.notifies.pop()
                    if note.channel == NOTIFY_CHANNEL_GATE:
                        gate = True  # from this replica too: one code path
                        continue
                    if self._db.is_own_backend(note.pid):
                        continue  # this replica already woke itself
                    if note.channel == NOTIFY_CHANNEL_PENDING:
                        topics.add(note.payload)
                    else:
                        due = True
                if topics:
                    self._on_pending(topics)
                if due:
                    self._on_due()
                if gate:
                    self._on_gate()
        finally:
            conn.close()


# Postgres folds duplicate notifications within a transaction.
ANNOUNCE = """
SELECT pg_notify(%(channel)s, topic) FROM unnest(%(topics)s::text[]) AS t(topic)
"""

# The connections of this database's replicas that may listen: every
# replica's LISTEN connection, and the pool connections of replicas older
# than that name (their listener is named like their pool).
LISTENERS = """
SELECT pid FROM pg_stat_activity
WHERE datname = current_database() AND application_name = ANY(%(names)s)
"""
# What a replica older than LISTENER_APPLICATION_NAME calls every connection.
POOL_APPLICATION_NAME = "pulsed"

# How long a count of the other replicas' listeners is trusted.
LISTENERS_TTL_SECONDS = 0.25


class Notifier:
    """Announces new work to the other replicas, coalesced.

    Submits commit first and announce afterwards, outside their
    transaction: this replica wakes its own dispatcher directly, so only
    the other replicas need the NOTIFY, and a burst of submits is folded
    into at most one NOTIFY transaction per ``coalesce_seconds``. A
    notification lost to a crash between the commit and the NOTIFY only
    delays the other replicas until their safety poll.

    A replica that no other replica listens to sends nothing: every NOTIFY
    costs a transaction to send and one more per listening backend, and a
    lone replica is the common deployment. A replica counts as listening
    by its LISTEN connection, or, for a replica of an older version (whose
    listener is named like its pool), by any of its pool connections, so
    that a rolling upgrade keeps waking the old replicas. The count is
    re-read at most every ``LISTENERS_TTL_SECONDS``, only when there is
    something to announce. A replica whose listener connects within that
    window wakes all its streams on connecting, so it can only miss work
    submitted in the same fraction of a second, until its safety poll.
    """

    def __init__(
        self,
        db: Database,
        coalesce_seconds: float,
        own_listener_pid: Callable[[], int] = lambda: 0,
    ) -> None:
        self._db = db
        self._coalesce_seconds = coalesce_seconds
        self._own_listener_pid = own_listener_pid
        self._others_listening = True
        self._listeners_read_at = float("-inf")
        # Announcements sent and skipped (nobody else listening).
        self.sent = 0
        self.skipped = 0
        self._cond = threading.Condition()
        self._topics: set[str] = set()
        self._due = False
        self._stopping = False
        self._thread = threading.Thread(
            target=self._run, name="pulse-notifier", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_seconds: float = 5.0) -> None:
        """Send what is pending, then stop."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout_seconds)

    def announce(self, topics: set[str], *, due: bool = False) -> None:
        """Tell other replicas: pending work for ``topics``; ``due``: a job
        was scheduled for later (promoters recompute their sleep)."""
        if not topics and not due:
            return
        with self._cond:
            self._topics |= topics
            self._due = self._due or due
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._topics and not self._due and not self._stopping:
                    self._cond.wait()
                if self._stopping and not self._topics and not self._due:
                    return
                topics, self._topics = self._topics, set()
                due, self._due = self._due, False
            try:
                self._send(topics, due)
            except PulseError as exc:
                log.warning("notifier.failed topics=%d error=%s", len(topics), exc)
            if not self._stopping:
                time.sleep(self._coalesce_seconds)

    def _others_listen(self) -> bool:
        now = time.monotonic()
        if now - self._listeners_read_at >= LISTENERS_TTL_SECONDS:
            with self._db.autocommit() as cur:
                cur.execute(
                    LISTENERS,
                    {"names": [LISTENER_APPLICATION_NAME, POOL_APPLICATION_NAME]},
                )
                pids = {row[0] for row in cur.fetchall()}
            own_listener = self._own_listener_pid()
            self._others_listening = any(
                pid != own_listener and not self._db.is_own_backend(pid) for pid in pids
            )
            self._listeners_read_at = now
        return self._others_listening

    def _send(self, topics: set[str], due: bool) -> None:
        if not self._others_listen():
            self.skipped += 1
            return
        self.sent += 1
        with self._db.transaction() as cur:
            if topics:
                cur.execute(
                    ANNOUNCE,
                    {"channel": NOTIFY_CHANNEL_PENDING, "topics": sorted(topics)},
                )
            if due:
                cur.execute(ANNOUNCE, {"channel": NOTIFY_CHANNEL_DUE, "topics": [""]})
