"""The worker runtime behind ``Pulse.run()``.

One stream to a replica carries everything: the server sends assignments
(never more than the credits given), result acknowledgements and lost-job
notices; the worker sends credits, results and heartbeats. Handlers run on
``concurrency`` daemon threads, so a handler that hangs cannot keep the
process from exiting once the grace period is over.

When the stream breaks, handlers keep running; the runtime reconnects with
backoff (to any replica) and sends every unacknowledged result again. The
server fences results by attempt, so a repeat is harmless.
"""

from __future__ import annotations

import logging
import os
import queue
import random
import signal
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import grpc

from pulse_client._proto.pulse.v1 import pulse_pb2 as pb
from pulse_client.context import JobContext, PermanentError, RetryLater
from pulse_client.errors import (
    InvalidArgument,
    PermissionDenied,
    Unauthenticated,
    from_rpc_error,
)
from pulse_client.handlers import Handler, PayloadError

if TYPE_CHECKING:
    from pulse_client.connection import Connection

log = logging.getLogger(__name__)

_MAX_ERROR_CHARS = 16_000
_RECONNECT_MIN_SECONDS = 0.1
_RECONNECT_MAX_SECONDS = 5.0
# After the grace period, how long reports of abandoned jobs may take.
_ABANDON_ACK_SECONDS = 2.0
# Errors a reconnect cannot fix.
FATAL_ERRORS = (InvalidArgument, Unauthenticated, PermissionDenied)


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class _Running:
    def __init__(self, assignment: pb.Assignment, context: JobContext) -> None:
        self.assignment = assignment
        self.context = context


class Runtime:
    """Runs the registered handlers until stopped. One ``run()`` at a time."""

    def __init__(
        self,
        connection: Connection,
        handlers: dict[str, Handler],
        *,
        concurrency: int,
        worker_id: str,
        grace_seconds: float,
        heartbeat_seconds: float | None,
    ) -> None:
        self._connection = connection
        self._handlers = handlers
        self._concurrency = concurrency
        self.worker_id = worker_id
        self._grace_seconds = grace_seconds
        self._heartbeat_seconds = heartbeat_seconds
        self._lock = threading.Lock()
        self._running: dict[tuple[str, int], _Running] = {}
        self._unacked: dict[tuple[str, int], pb.JobResult] = {}
        self._work: queue.SimpleQueue[pb.Assignment | None] = queue.SimpleQueue()
        self._outbox: queue.SimpleQueue[pb.WorkerMessage | None] | None = None
        self._call: Any = None  # the open StreamJobs call, to cancel it
        self._draining = threading.Event()
        self._drained = threading.Event()
        self._returned = threading.Event()
        # Set by a second signal: skip the rest of the grace period.
        self._hurry = threading.Event()
        self._lease_seconds = 30.0
        self._lease_known = threading.Event()
        self._started = False

    # -- public --------------------------------------------------------------

    def stop(self) -> None:
        """Stop taking work, finish what runs (up to the grace period), exit."""
        if not self._draining.is_set():
            log.info("worker.draining worker_id=%s", self.worker_id)
            self._draining.set()
            self._send(pb.WorkerMessage(draining=True))

    def wait_stopped(self, timeout_seconds: float) -> bool:
        """Wait for ``run()`` to return; False if it has not returned yet
        (a runtime is made to run once, right after it is created)."""
        return self._returned.wait(timeout_seconds)

    def run(self) -> None:
        if self._started:
            raise RuntimeError("a worker runtime runs once; make a new one")
        self._started = True
        if not self._handlers:
            self._returned.set()
            raise InvalidArgument(
                "no handlers registered; call register() or @handler first"
            )
        threads = [
            threading.Thread(
                target=self._work_loop, name=f"pulse-handler-{i}", daemon=True
            )
            for i in range(self._concurrency)
        ]
        threads.append(
            threading.Thread(
                target=self._heartbeat_loop, name="pulse-heartbeat", daemon=True
            )
        )
        threads.append(
            threading.Thread(target=self._watch_drain, name="pulse-drain", daemon=True)
        )
        for thread in threads:
            thread.start()
        restore = self._install_signal_handlers()
        log.info(
            "worker.started worker_id=%s topics=%s concurrency=%d",
            self.worker_id,
            ",".join(sorted(self._handlers)),
            self._concurrency,
        )
        try:
            self._stream_until_drained()
        finally:
            self._draining.set()
            self._drained.set()
            for _ in range(self._concurrency):
                self._work.put(None)
            self._close_stream()
            restore()
            self._returned.set()
            log.info("worker.stopped worker_id=%s", self.worker_id)

    # -- the stream ------------------------------------------------------------

    def _stream_until_drained(self) -> None:
        failures = 0
        while not self._drained.is_set():
            try:
                self._serve_one_stream()
                failures = 0
            except grpc.RpcError as exc:
                if self._drained.is_set():
                    return
                error = from_rpc_error(exc)
                if isinstance(error, FATAL_ERRORS):
                    raise error from None
                failures += 1
                self._connection.rotate()
                delay = min(
                    _RECONNECT_MAX_SECONDS, _RECONNECT_MIN_SECONDS * 2**failures
                )
                delay *= 0.5 + random.random() / 2
                log.warning(
                    "worker.disconnected worker_id=%s retry_in=%.2fs error=%s",
                    self.worker_id,
                    delay,
                    error,
                )
                self._drained.wait(delay)

    def _watch_drain(self) -> None:
        """Once draining, end the stream when nothing is left to report."""
        self._draining.wait()
        deadline = time.monotonic() + self._grace_seconds
        abandoned = False
        while True:
            with self._lock:
                idle = not self._running and not self._unacked
            if idle:
                break
            now = time.monotonic()
            if now >= deadline or (self._hurry.is_set() and not abandoned):
                if abandoned:
                    break
                # Hand back what still runs, and give the reports a moment
                # to be acknowledged.
                self._abandon_running()
                abandoned = True
                deadline = now + _ABANDON_ACK_SECONDS
            time.sleep(0.02)
        self._drained.set()
        call = self._call
        if call is not None:
            call.cancel()

    def _serve_one_stream(self) -> None:
        outbox: queue.SimpleQueue[pb.WorkerMessage | None] = queue.SimpleQueue()
        with self._lock:
            free = (
                0 if self._draining.is_set() else self._concurrency - len(self._running)
            )
            outbox.put(
                pb.WorkerMessage(
                    hello=pb.Hello(
                        worker_id=self.worker_id,
                        topics=sorted(self._handlers),
                        credits=max(0, free),
                    ),
                    results=list(self._unacked.values()),
                )
            )
            self._outbox = outbox
        address, stub = self._connection.stub()
        self._call = stub.StreamJobs(
            _requests(outbox), metadata=self._connection.metadata
        )
        if self._drained.is_set():
            self._call.cancel()
        try:
            for message in self._call:
                if message.lease_ms:
                    self._lease_seconds = message.lease_ms / 1000
                    self._lease_known.set()
                    log.info(
                        "worker.connected worker_id=%s addr=%s",
                        self.worker_id,
                        address,
                    )
                for assignment in message.assignments:
                    self._accept(assignment)
                if message.acks:
                    self._on_acks(message.acks)
                for lost in message.lost:
                    self._on_lost(lost)
        finally:
            # Ends this stream's request generator; anything still queued
            # for it is sent again on the next stream (results stay unacked).
            outbox.put(None)

    def _close_stream(self) -> None:
        with self._lock:
            outbox, self._outbox = self._outbox, None
        if outbox is not None:
            outbox.put(None)
        if self._call is not None:
            self._call.cancel()

    def _send(self, message: pb.WorkerMessage) -> None:
        with self._lock:
            outbox = self._outbox
        if outbox is not None:
            outbox.put(message)

    # -- assignments and results ---------------------------------------------

    def _accept(self, assignment: pb.Assignment) -> None:
        context = JobContext(assignment)
        with self._lock:
            self._running[(assignment.job_id, assignment.attempt)] = _Running(
                assignment, context
            )
        self._work.put(assignment)

    def _work_loop(self) -> None:
        while True:
            assignment = self._work.get()
            if assignment is None:
                return
            key = (assignment.job_id, assignment.attempt)
            with self._lock:
                running = self._running.get(key)
            if running is None:
                continue
            result = self._execute(running)
            self._finish(key, result)

    def _execute(self, running: _Running) -> pb.JobResult:
        assignment, context = running.assignment, running.context
        result = pb.JobResult(job_id=assignment.job_id, attempt=assignment.attempt)
        handler = self._handlers.get(assignment.topic)
        try:
            if handler is None:
                raise PermanentError(
                    f"no handler registered for topic {assignment.topic!r}"
                )
            handler(assignment.payload, context)
            result.outcome = pb.OUTCOME_SUCCEEDED
        except PermanentError as exc:
            result.outcome = pb.OUTCOME_FAILED_PERMANENTLY
            result.error = _error_text(exc)
        except PayloadError as exc:
            # A payload that does not fit will not fit next time either.
            result.outcome = pb.OUTCOME_FAILED_PERMANENTLY
            result.error = _error_text(exc)
        except RetryLater as exc:
            result.outcome = pb.OUTCOME_FAILED
            result.error = _error_text(exc)
            result.retry_delay_ms = max(1, int(exc.delay_seconds * 1000))
        except Exception as exc:
            result.outcome = pb.OUTCOME_FAILED
            result.error = _error_text(exc, with_traceback=True)
        if result.outcome != pb.OUTCOME_SUCCEEDED:
            log.warning(
                "job.failed job_id=%s topic=%s attempt=%d error=%s",
                assignment.job_id,
                assignment.topic,
                assignment.attempt,
                result.error.rstrip().splitlines()[-1] if result.error else "",
            )
        return result

    def _finish(self, key: tuple[str, int], result: pb.JobResult) -> None:
        with self._lock:
            running = self._running.pop(key, None)
            lost = running is not None and running.context.lease_lost
            if running is not None and not lost:
                self._unacked[key] = result
            credits = 0 if self._draining.is_set() else 1
            outbox = self._outbox
        if outbox is None:
            return
        if lost:
            # The server already gave the job to someone else; a report
            # would be refused. Just take new work.
            outbox.put(pb.WorkerMessage(credits=credits))
        else:
            outbox.put(pb.WorkerMessage(results=[result], credits=credits))

    def _on_acks(self, acks: Iterable[pb.ResultAck]) -> None:
        with self._lock:
            for ack in acks:
                self._unacked.pop((ack.job_id, ack.attempt), None)
        for ack in acks:
            if not ack.accepted:
                log.info(
                    "job.result_refused job_id=%s attempt=%d (lease lost or repeated)",
                    ack.job_id,
                    ack.attempt,
                )

    def _on_lost(self, lost: pb.LostJob) -> None:
        with self._lock:
            running = self._running.get((lost.job_id, lost.attempt))
        if running is None:
            return
        if lost.reason == pb.LOSS_REASON_CANCEL_REQUESTED:
            if not running.context.canceled:
                log.info("job.cancel_requested job_id=%s", lost.job_id)
            running.context._mark_canceled()
        else:
            log.warning(
                "job.lease_lost job_id=%s attempt=%d", lost.job_id, lost.attempt
            )
            running.context._mark_lease_lost()

    def _abandon_running(self) -> None:
        """The grace period is over: hand back what still runs.

        Each abandoned attempt is reported failed with an immediate retry, so
        another worker picks it up now instead of after its lease lapses; the
        handler thread is left to finish (its late report is dropped).
        """
        with self._lock:
            abandoned = list(self._running.items())
            self._running.clear()
            results = []
            for key, running in abandoned:
                running.context._mark_lease_lost()
                result = pb.JobResult(
                    job_id=key[0],
                    attempt=key[1],
                    outcome=pb.OUTCOME_FAILED,
                    error="worker stopped: the handler did not finish within the "
                    f"{self._grace_seconds:g}s grace period",
                    retry_delay_ms=1,
                )
                self._unacked[key] = result
                results.append(result)
        for key, _ in abandoned:
            log.warning("job.abandoned job_id=%s attempt=%d", key[0], key[1])
        if results:
            self._send(pb.WorkerMessage(results=results))

    # -- heartbeats ------------------------------------------------------------

    def _heartbeat_loop(self) -> None:
        # The interval follows from the server's lease, which the stream
        # tells after hello: until then there is nothing to time it by (and
        # nothing is held yet).
        while not self._lease_known.wait(0.05):
            if self._drained.is_set():
                return
        while not self._drained.is_set():
            interval = self._heartbeat_seconds or max(0.05, self._lease_seconds / 3)
            if self._drained.wait(interval):
                return
            with self._lock:
                held = [
                    pb.RunningJob(
                        job_id=r.assignment.job_id, attempt=r.assignment.attempt
                    )
                    for r in self._running.values()
                    # Past its timeout a job's lease must lapse: stop vouching.
                    if not r.context.deadline_passed and not r.context.lease_lost
                ]
            if held:
                self._send(pb.WorkerMessage(heartbeat=held, has_heartbeat=True))

    # -- signals ---------------------------------------------------------------

    def _install_signal_handlers(self) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous = {}

        def on_signal(signum: int, frame: object) -> None:
            if self._draining.is_set():
                log.warning(
                    "worker.signal_again signal=%s: handing back running jobs now",
                    signal.Signals(signum).name,
                )
                self._hurry.set()
                return
            log.info("worker.signal signal=%s", signal.Signals(signum).name)
            self.stop()

        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, on_signal)

        def restore() -> None:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

        return restore


def _requests(
    outbox: queue.SimpleQueue[pb.WorkerMessage | None],
) -> Iterator[pb.WorkerMessage]:
    """The request stream: everything queued since the last send, merged.

    Credits add up, results accumulate, the newest heartbeat wins.
    """
    while True:
        message = outbox.get()
        if message is None:
            return
        batch = [message]
        ended = False
        while True:
            try:
                more = outbox.get_nowait()
            except queue.Empty:
                break
            if more is None:
                ended = True
                break
            batch.append(more)
        yield _merge(batch)
        if ended:
            return


def _merge(batch: list[pb.WorkerMessage]) -> pb.WorkerMessage:
    if len(batch) == 1:
        return batch[0]
    merged = pb.WorkerMessage()
    for message in batch:
        if message.HasField("hello"):
            merged.hello.CopyFrom(message.hello)
        merged.results.extend(message.results)
        merged.credits += message.credits
        merged.draining = merged.draining or message.draining
        if message.has_heartbeat:
            del merged.heartbeat[:]
            merged.heartbeat.extend(message.heartbeat)
            merged.has_heartbeat = True
    return merged


def _error_text(exc: BaseException, *, with_traceback: bool = False) -> str:
    text = f"{type(exc).__name__}: {exc}"
    if with_traceback:
        text = "".join(traceback.format_exception(exc)).rstrip()
    if len(text) > _MAX_ERROR_CHARS:
        text = text[:_MAX_ERROR_CHARS]
    # Protobuf strings must be valid UTF-8: lone surrogates become escapes.
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
