"""Coalescing of ``enqueue`` calls from many threads into one SubmitJobs.

Per-call round trips do not scale in Python (grpcio's sync API makes about a
thousand unary calls a second per thread), so concurrent ``enqueue`` calls
share calls: the first caller becomes the leader and sends everything queued
by then in one SubmitJobs; callers that arrive meanwhile queue up and the
next of them leads the following batch. A lone caller pays no wait at all.
Every caller still returns only once its own job is committed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from pulse_client._proto.pulse.v1 import pulse_pb2 as pb
from pulse_client.errors import PulseError, error_class

_MAX_BATCH_JOBS = 500
# Far below gRPC's 64 MiB message limit, like enqueue_many's chunks.
_MAX_BATCH_BYTES = 16 * 1024 * 1024


class _Pending:
    __slots__ = ("error", "event", "lead", "result", "size", "spec")

    def __init__(self, spec: pb.JobSpec) -> None:
        self.spec = spec
        self.size = spec.ByteSize()
        self.event = threading.Event()
        self.lead = False
        self.result: pb.SubmitResult | None = None
        self.error: BaseException | None = None


class Submitter:
    """Sends job specs in shared SubmitJobs calls. Thread-safe."""

    def __init__(
        self, send: Callable[[list[pb.JobSpec]], list[pb.SubmitResult]]
    ) -> None:
        self._send = send
        self._lock = threading.Lock()
        self._queue: list[_Pending] = []
        self._busy = False
        # How many callers the last batch carried.
        self._last_batch = 1

    def submit(self, spec: pb.JobSpec) -> pb.SubmitResult:
        """Submit one job; returns its result once committed, or raises."""
        item = _Pending(spec)
        with self._lock:
            self._queue.append(item)
            if not self._busy:
                self._busy = True
                item.lead = True
        if not item.lead:
            item.event.wait()
        if item.lead:
            self._lead(item)
        if item.error is not None:
            raise item.error
        assert item.result is not None
        if item.result.HasField("error"):
            raise error_class(item.result.error.code)(item.result.error.message)
        return item.result

    def _lead(self, item: _Pending) -> None:
        try:
            if len(self._queue) < self._last_batch:
                # The callers of the last batch are likely on their way back
                # with their next job: give them the interpreter once, so
                # that they join this batch instead of queueing for the next
                # (8 threads otherwise settle into batches of 1 and 7).
                time.sleep(0)
            # The leader's job is at the head of the queue, so the first batch
            # carries it.
            with self._lock:
                taken = size = 0
                for pending in self._queue[:_MAX_BATCH_JOBS]:
                    size += pending.size
                    if taken and size > _MAX_BATCH_BYTES:
                        break
                    taken += 1
                batch = self._queue[:taken]
                del self._queue[:taken]
                self._last_batch = taken
            self._flush(batch)
        finally:
            with self._lock:
                if self._queue:
                    successor = self._queue[0]
                    successor.lead = True
                    successor.event.set()
                else:
                    self._busy = False

    def _flush(self, batch: list[_Pending]) -> None:
        try:
            results = self._send([pending.spec for pending in batch])
            if len(results) != len(batch):
                raise PulseError(
                    f"server answered {len(results)} results for {len(batch)} jobs"
                )
        except BaseException as exc:
            for pending in batch:
                pending.error = exc
                pending.lead = False
                pending.event.set()
            if not isinstance(exc, Exception):
                raise
            return
        for pending, result in zip(batch, results, strict=True):
            pending.result = result
            pending.lead = False
            pending.event.set()
