"""What a running handler can know and say about its job."""

from __future__ import annotations

import datetime
import threading
import time

from pulse_client._proto.pulse.v1 import pulse_pb2 as pb
from pulse_client.limits import MAX_RETRY_DELAY_MS

# Orders a context's first wait(), which makes its stop event, against the
# marks that set it. An event made for every job would cost more than the
# rest of the context, and few handlers ever wait.
_STOP_EVENT_LOCK = threading.Lock()


class PermanentError(Exception):
    """Raise from a handler to dead-letter the job now, without retrying."""


class RetryLater(Exception):
    """Raise from a handler to retry after ``delay`` instead of the backoff.

    The attempt still counts against the job's max_attempts.
    """

    def __init__(self, delay: datetime.timedelta | float, message: str = "") -> None:
        seconds = (
            delay.total_seconds() if isinstance(delay, datetime.timedelta) else delay
        )
        # Checked here, in the handler that asks: a delay the server would
        # refuse must fail this attempt, not the worker's stream.
        if not 0 <= seconds <= MAX_RETRY_DELAY_MS / 1000:
            raise ValueError(
                f"retry delay must be 0 to {MAX_RETRY_DELAY_MS // 1000} seconds "
                f"(30 days), got {seconds}"
            )
        self.delay_seconds = float(seconds)
        super().__init__(message or f"retry requested in {self.delay_seconds:g}s")


class JobContext:
    """The job a handler runs, and whether it should stop.

    ``job_id`` and ``attempt`` together are an idempotency key: delivery is
    at least once, and every delivery of a job has a new attempt number.
    """

    def __init__(self, assignment: pb.Assignment) -> None:
        self.job_id = assignment.job_id
        self.topic = assignment.topic
        self.attempt = assignment.attempt
        self.max_attempts = assignment.max_attempts
        self.attempts_used = assignment.attempts_used
        self.priority = assignment.priority
        self.started_monotonic = time.monotonic()
        timeout_ms = assignment.timeout_ms
        self.timeout: datetime.timedelta | None = (
            datetime.timedelta(milliseconds=timeout_ms) if timeout_ms else None
        )
        self._deadline = (
            self.started_monotonic + timeout_ms / 1000 if timeout_ms else None
        )
        self._stop: threading.Event | None = None
        self._canceled = False
        self._lease_lost = False

    @property
    def canceled(self) -> bool:
        """An operator canceled the job while it ran."""
        return self._canceled

    @property
    def lease_lost(self) -> bool:
        """The server gave the job up on this worker; its result will be refused."""
        return self._lease_lost

    @property
    def deadline_passed(self) -> bool:
        """The job's timeout has passed."""
        return self._deadline is not None and time.monotonic() >= self._deadline

    @property
    def should_stop(self) -> bool:
        """Any reason to give up: canceled, lease lost or deadline passed."""
        return self._canceled or self._lease_lost or self.deadline_passed

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; returns True early if the job should stop."""
        end = time.monotonic() + seconds
        if self._deadline is not None:
            end = min(end, self._deadline)
        self._stop_event().wait(max(0.0, end - time.monotonic()))
        return self.should_stop

    def _stop_event(self) -> threading.Event:
        with _STOP_EVENT_LOCK:
            if self._stop is None:
                self._stop = threading.Event()
                if self._canceled or self._lease_lost:
                    self._stop.set()
            return self._stop

    def _mark_canceled(self) -> None:
        with _STOP_EVENT_LOCK:
            self._canceled = True
            stop = self._stop
        if stop is not None:
            stop.set()

    def _mark_lease_lost(self) -> None:
        with _STOP_EVENT_LOCK:
            self._lease_lost = True
            stop = self._stop
        if stop is not None:
            stop.set()

    def __repr__(self) -> str:
        return (
            f"JobContext(job_id={self.job_id!r}, topic={self.topic!r}, "
            f"attempt={self.attempt})"
        )
