"""LISTEN/NOTIFY: wake-ups from every replica's submits and promotions.

One connection per replica listens; notifications carry the topic that got
pending work. A lost notification (the connection dropped) only delays work
until the next safety poll, and a reconnect wakes everything at once.
"""

from __future__ import annotations

import logging
import select
import threading
from collections.abc import Callable

import psycopg2

from pulse_client.errors import PulseError
from pulsed.database import Database
from pulsed.submits import NOTIFY_CHANNEL_DUE, NOTIFY_CHANNEL_PENDING

log = logging.getLogger(__name__)


class Listener:
    """Calls ``on_pending(topics)`` (None: all topics) and ``on_due()``."""

    def __init__(
        self,
        db: Database,
        on_pending: Callable[[set[str] | None], None],
        on_due: Callable[[], None],
    ) -> None:
        self._db = db
        self._on_pending = on_pending
        self._on_due = on_due
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="pulse-listener", daemon=True
        )
        self.connected = threading.Event()

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
        conn = self._db.connect()
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(
                    f"LISTEN {NOTIFY_CHANNEL_PENDING}; LISTEN {NOTIFY_CHANNEL_DUE}"
                )
            self.connected.set()
            # Anything announced while we were not listening was missed.
            self._on_pending(None)
            self._on_due()
            log.info("listener.connected")
            while not self._stop.is_set():
                readable, _, _ = select.select([conn], [], [], 0.5)
                if not readable:
                    continue
                conn.poll()
                topics: set[str] = set()
                due = False
                while conn.notifies:
                    note = conn.notifies.pop()
                    if note.channel == NOTIFY_CHANNEL_PENDING:
                        topics.add(note.payload)
                    else:
                        due = True
                if topics:
                    self._on_pending(topics)
                if due:
                    self._on_due()
        finally:
            conn.close()
