"""A steady stream of submits through the SDK, kept through every outage.

Each thread makes one job at a time: it takes a fresh id
(``pulse_client.new_job_id()``), then calls ``enqueue`` with that id until
the call succeeds, waiting a little after each failure, exactly as an
application should after ``Unavailable`` or ``DeadlineExceeded``. The load
remembers every id it gave out, every id acknowledged and every failed
call, so the checks can tell a lost job from one that was never promised.
Threads are paced to a total rate, without catching up after an outage.
"""

from __future__ import annotations

import dataclasses
import random
import threading
import time
from collections.abc import Sequence

from pulse_client import Pulse, PulseError, new_job_id
from tests.faults.apps.steady import TOPIC

# Short, so that a submit to a hung replica gives up (and goes elsewhere)
# well before the replica comes back.
SUBMIT_TIMEOUT_SECONDS = 2.0
RETRY_PAUSE_SECONDS = 0.1
# Errors after which retrying with the same id is the documented remedy.
RETRYABLE_CODES = frozenset({"unavailable", "deadline_exceeded"})


@dataclasses.dataclass(frozen=True)
class FailedSubmit:
    """One enqueue call that raised; the job id was tried again later."""

    job_id: str
    started: float  # wall clock, as the database's clock_timestamp()
    ended: float
    code: str
    message: str


class SteadyLoad:
    """Submits ``rate_per_second`` jobs of the campaign's topic from
    ``threads`` threads until ``stop()``. Handler durations come from
    ``seed``, so a run can be repeated."""

    def __init__(
        self,
        addresses: Sequence[str],
        *,
        rate_per_second: float,
        threads: int,
        handler_ms: tuple[int, int],
        seed: int,
    ) -> None:
        self.client = Pulse(list(addresses), timeout_seconds=SUBMIT_TIMEOUT_SECONDS)
        self._interval_seconds = threads / rate_per_second
        self._handler_ms = handler_ms
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._give_up = threading.Event()
        self._threads = [
            threading.Thread(target=self._submit_loop, name=f"fault-load-{i}")
            for i in range(threads)
        ]
        # job id -> payload; job id -> wall-clock times of its first call and
        # of its acknowledgement
        self.given: dict[str, dict[str, int]] = {}
        self.first_tried: dict[str, float] = {}
        self.acked: dict[str, float] = {}
        self.failures: list[FailedSubmit] = []

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self, timeout_seconds: float) -> None:
        """Stop taking new ids and finish the ones in hand, retrying them for
        up to ``timeout_seconds``; then close the client."""
        self._stopping.set()
        deadline = time.monotonic() + timeout_seconds
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._give_up.set()
        for thread in self._threads:
            thread.join()
        self.client.close()

    def snapshot(self) -> tuple[int, int, int]:
        """(ids given, ids acknowledged, failed calls) so far."""
        with self._lock:
            return len(self.given), len(self.acked), len(self.failures)

    def _submit_loop(self) -> None:
        next_at = time.monotonic()
        while not self._stopping.is_set():
            wait_seconds = next_at - time.monotonic()
            if wait_seconds > 0 and self._stopping.wait(wait_seconds):
                return
            # Paced from now when behind: an outage is not followed by a burst.
            next_at = max(next_at, time.monotonic()) + self._interval_seconds
            job_id = new_job_id()
            with self._lock:
                payload = {"ms": self._random.randint(*self._handler_ms)}
                self.given[job_id] = payload
            self._submit_until_acknowledged(job_id, payload)

    def _submit_until_acknowledged(self, job_id: str, payload: dict[str, int]) -> None:
        with self._lock:
            self.first_tried[job_id] = time.time()
        while not self._give_up.is_set():
            started = time.time()
            try:
                returned = self.client.enqueue(TOPIC, payload, job_id=job_id)
            except PulseError as exc:
                failure = FailedSubmit(
                    job_id, started, time.time(), exc.code, str(exc)[:200]
                )
                with self._lock:
                    self.failures.append(failure)
                if exc.code not in RETRYABLE_CODES:
                    return  # the checks report it: no retry can fix this
                self._give_up.wait(RETRY_PAUSE_SECONDS)
                continue
            assert returned == job_id, (returned, job_id)
            with self._lock:
                self.acked[job_id] = time.time()
            return
