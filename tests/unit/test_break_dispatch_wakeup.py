"""A wake-up that arrives while a claim is in flight must not be lost.

Found by breaking: a job submitted while the dispatcher's claim for its
topic group was running (the claim's snapshot predates the submit's commit,
so it comes back short) waited for the safety poll, PULSE_POLL_SECONDS,
before it reached a stream that had free credits. The claim marked the group
idle after the submit had already woken it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from pulse_client._proto.pulse.v1 import pulse_pb2 as pb
from pulsed.config import Config
from pulsed.dispatch import Dispatcher

# Long enough that only a real wake-up, never the safety poll, can explain a
# second claim within the test's wait.
POLL_SECONDS = 600.0
WAIT_SECONDS = 10.0


class _Cursor:
    def __init__(self, db: _BlockingDb) -> None:
        self.connection = object()  # a plain connection: no plan cache
        self._db = db

    def execute(self, sql: str, params: Any = None) -> None:
        self._db.on_execute()

    def fetchall(self) -> list[tuple[Any, ...]]:
        return []


class _BlockingDb:
    """Every claim finds nothing; the first one blocks until released."""

    def __init__(self) -> None:
        self.claims = 0
        self.first_claim_running = threading.Event()
        self.release_first_claim = threading.Event()
        self.second_claim = threading.Event()
        self._lock = threading.Lock()

    def on_execute(self) -> None:
        with self._lock:
            self.claims += 1
            number = self.claims
        if number == 1:
            self.first_claim_running.set()
            self.release_first_claim.wait(WAIT_SECONDS)
        elif number == 2:
            self.second_claim.set()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[_Cursor]:
        yield _Cursor(self)

    autocommit = transaction


class _Receiver:
    def __init__(self) -> None:
        self.worker_id = "w"
        self.topics = frozenset({"t"})
        self.credits = 0

    def deliver(self, messages: list[pb.ServerMessage]) -> bool:
        return True

    def confirm_drained(self) -> None:
        pass


def test_a_wake_during_a_short_claim_leads_to_another_claim() -> None:
    db = _BlockingDb()
    config = Config(poll_seconds=POLL_SECONDS, claim_linger_ms=0)
    dispatcher = Dispatcher(db, config)  # type: ignore[arg-type]
    dispatcher.start()
    try:
        dispatcher.register(_Receiver(), 4)
        assert db.first_claim_running.wait(WAIT_SECONDS), "no first claim"

        # A submit for the group commits while the claim (whose snapshot
        # predates it) is still running, and wakes the dispatcher.
        dispatcher.wake({"t"})
        db.release_first_claim.set()

        # The first claim came back short, but the wake-up means the new job
        # may be there: the group must be claimed for again, not left idle
        # until the safety poll.
        assert db.second_claim.wait(WAIT_SECONDS), (
            "the wake-up that arrived during the claim was lost; the group "
            f"stays idle until the {POLL_SECONDS:g}s safety poll"
        )
    finally:
        db.release_first_claim.set()
        dispatcher.stop()
