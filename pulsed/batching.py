"""Group commit: many callers' items, one database transaction.

Callers from any thread hand over a list of items and get the per-item
results back (through a callback, or by blocking). A single flusher thread
takes everything that queued up while the previous flush ran, up to
``max_batch`` items, and runs one batch function over it. Under load the
batches grow by themselves; with no ``max_wait_seconds``, a blocking caller
that finds the writer idle runs its flush at once, in its own thread.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Generic, TypeVar

from pulse_client.errors import Unavailable

log = logging.getLogger(__name__)

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")


@dataclasses.dataclass
class _Request(Generic[ItemT, ResultT]):
    items: Sequence[ItemT]
    callback: Callable[[list[ResultT] | BaseException], None]
    size: int = 0


class GroupCommit(Generic[ItemT, ResultT]):
    """Runs ``execute`` over batches gathered from many callers. Thread-safe."""

    def __init__(
        self,
        name: str,
        execute: Callable[[list[ItemT]], list[ResultT]],
        *,
        max_batch: int = 1000,
        max_wait_seconds: float = 0.0,
        size: Callable[[ItemT], int] | None = None,
        max_size: int = 0,
    ) -> None:
        self._name = name
        self._execute = execute
        self._max_batch = max_batch
        # With ``size``, a flush also stops short of ``max_size`` in all:
        # many callers' large items must not add up to one statement too
        # large for the database.
        self._size = size
        self._max_size = max_size
        self._max_wait_seconds = max_wait_seconds
        self._queue: collections.deque[_Request[ItemT, ResultT]] = collections.deque()
        self._queued_items = 0
        self._cond = threading.Condition()
        self._stopping = False
        # A flush is running (in the flusher or in a caller's thread): flushes
        # never overlap, so batches keep their commit order.
        self._busy = False
        self._thread = threading.Thread(
            target=self._run, name=f"pulse-{name}", daemon=True
        )
        self.flushes = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_seconds: float = 5.0) -> None:
        """Flush what is queued, then stop the flusher."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout_seconds)

    def submit(
        self,
        items: Sequence[ItemT],
        callback: Callable[[list[ResultT] | BaseException], None],
    ) -> None:
        """Queue items; ``callback`` gets their results (or the batch's error)."""
        if not items:
            callback([])
            return
        with self._cond:
            if self._stopping:
                stopped = Unavailable("The server is shutting down")
            else:
                size = sum(map(self._size, items)) if self._size else 0
                self._queue.append(_Request(items, callback, size))
                self._queued_items += len(items)
                self._cond.notify()
                return
        callback(stopped)

    def call(self, items: Sequence[ItemT]) -> list[ResultT]:
        """Queue items and block until their batch has committed.

        When nothing is queued or flushing, the caller runs the flush itself:
        a lone caller pays no hand-off to the flusher thread and back.
        """
        with self._cond:
            direct = (
                bool(items)
                and self._max_wait_seconds == 0
                and not (self._busy or self._queue or self._stopping)
            )
            if direct:
                self._busy = True
        if direct:
            try:
                results = self._execute(list(items))
                self.flushes += 1
                return results
            finally:
                self._idle()
        future: Future[list[ResultT]] = Future()

        def resolve(outcome: list[ResultT] | BaseException) -> None:
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

        self.submit(items, resolve)
        return future.result()

    def _run(self) -> None:
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            try:
                self._flush(batch)
            finally:
                self._idle()

    def _idle(self) -> None:
        with self._cond:
            self._busy = False
            # Only the flusher waits on a busy writer, and only for queued
            # work: waking it for nothing would take the interpreter from
            # the caller on its way back with a result.
            if self._queue or self._stopping:
                self._cond.notify_all()

    def _take_batch(self) -> list[_Request[ItemT, ResultT]] | None:
        with self._cond:
            while not self._queue or self._busy:
                if self._stopping and not self._queue:
                    return None
                self._cond.wait()
            if self._max_wait_seconds > 0 and not self._stopping:
                deadline = time.monotonic() + self._max_wait_seconds
                while self._queued_items < self._max_batch and not self._stopping:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
            batch: list[_Request[ItemT, ResultT]] = []
            taken = taken_size = 0
            # A request is never split, so one larger than max_batch (or
            # max_size) still goes through, alone.
            while self._queue and (
                not batch
                or (
                    taken + len(self._queue[0].items) <= self._max_batch
                    and (
                        not self._size
                        or taken_size + self._queue[0].size <= self._max_size
                    )
                )
            ):
                request = self._queue.popleft()
                batch.append(request)
                taken += len(request.items)
                taken_size += request.size
            self._queued_items -= taken
            self._busy = True
            return batch

    def _flush(self, batch: list[_Request[ItemT, ResultT]]) -> None:
        items = [item for request in batch for item in request.items]
        try:
            results = self._execute(items)
        except BaseException as exc:  # every caller must hear about it
            if not isinstance(exc, Unavailable):
                log.exception("batch.failed name=%s items=%d", self._name, len(items))
            for request in batch:
                self._deliver(request, exc)
            return
        self.flushes += 1
        offset = 0
        for request in batch:
            count = len(request.items)
            self._deliver(request, results[offset : offset + count])
            offset += count

    def _deliver(
        self,
        request: _Request[ItemT, ResultT],
        outcome: list[ResultT] | BaseException,
    ) -> None:
        try:
            request.callback(outcome)
        except Exception:
            log.exception("batch.callback_failed name=%s", self._name)
