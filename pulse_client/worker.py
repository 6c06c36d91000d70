"""The worker runtime behind ``Pulse.run()``.

One stream to a replica carries everything: the server sends assignments
(never more than the credits given), result acknowledgements and lost-job
notices; the worker sends credits, results and heartbeats. Handlers run on
``concurrency`` daemon threads, so a handler that hangs cannot keep the
process from exiting once the grace period is over.

When the stream breaks, handlers keep running; the runtime reconnects with
backoff (to any replica) and sends every unacknowledged result again. The
server fences results by attempt, so a repeat is harmless.

With short handlers the runtime's own hand-offs are most of a worker's CPU,
so they are kept few. An idle handler thread is woken only for queued work
that no other woken thread is on its way to; a thread that takes a job and
leaves more queued wakes the next, so slow jobs still spread over every
thread while a burst of short ones runs on the first few. Finished jobs wait
in the stream's outbox, and the request iterator sends all that waits as one
message.
"""

from __future__ import annotations

import collections
import logging
import os
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
from pulse_client.limits import MAX_RETRY_DELAY_MS

if TYPE_CHECKING:
    from pulse_client.connection import Connection

log = logging.getLogger(__name__)

_MAX_ERROR_CHARS = 16_000
_RECONNECT_MIN_SECONDS = 0.1
_RECONNECT_MAX_SECONDS = 5.0
# After the grace period, how long reports of abandoned jobs may take.
_ABANDON_ACK_SECONDS = 2.0
# How long an idle, draining worker waits for the server to confirm that no
# assignment follows (a server older than ServerMessage.drained never does).
_DRAIN_CONFIRM_SECONDS = 2.0
# Errors a reconnect cannot fix.
FATAL_ERRORS = (InvalidArgument, Unauthenticated, PermissionDenied)


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


_Key = tuple[str, int]  # (job_id, attempt)
# A JobResult's fields. Messages are made only when sent, from all pending
# results at once: a message object per result would cost a third again.
_Result = dict[str, Any]
_Job = tuple[_Key, pb.Assignment, JobContext]


class _Outbox:
    """What is still to be sent on one stream, merged until the request
    iterator takes it: credits add up, results accumulate, the newest
    heartbeat wins.

    The fields are guarded by the runtime's lock. However many jobs finish
    while the request iterator is busy, they ring its doorbell once and go
    out in one message.
    """

    def __init__(self, hello: pb.Hello, results: list[_Result]) -> None:
        self.hello: pb.Hello | None = hello
        self.results = results
        self.credits = 0
        self.draining = False
        self.heartbeat: list[pb.RunningJob] | None = None
        self.closed = False
        # Unlocked while rung; rung from the start, so hello goes out at once.
        self._doorbell = threading.Lock()
        self._rung = True

    def ring(self) -> None:
        if not self._rung:
            self._rung = True
            self._doorbell.release()

    def wait(self) -> None:
        """Sleep until rung; call without the runtime's lock."""
        self._doorbell.acquire()

    def take(self) -> dict[str, Any]:
        """The ``WorkerMessage`` fields to send now, possibly none."""
        self._rung = False
        fields: dict[str, Any] = {}
        if self.hello is not None:
            fields["hello"], self.hello = self.hello, None
        if self.results:
            fields["results"], self.results = self.results, []
        if self.credits:
            fields["credits"], self.credits = self.credits, 0
        if self.draining:
            fields["draining"] = True
            self.draining = False
        if self.heartbeat is not None:
            fields["heartbeat"], self.heartbeat = self.heartbeat, None
            fields["has_heartbeat"] = True
        return fields


class Runtime:
    """Runs the registered handlers until stopped. One ``run()`` at a time."""

    def __init__(
        self,
        connection: Connection,
        handlers: dict[str, Handler],
        *,
        concurrency: int,
        prefetch: int = 0,
        worker_id: str,
        grace_seconds: float,
        heartbeat_seconds: float | None,
    ) -> None:
        self._connection = connection
        self._handlers = handlers
        self._concurrency = concurrency
        # Jobs held beyond the handler threads: claimed (and leased) while
        # every thread is busy, run as threads free up.
        self._prefetch = prefetch
        self.worker_id = worker_id
        self._grace_seconds = grace_seconds
        self._heartbeat_seconds = heartbeat_seconds
        # Guards the jobs, the handler threads' hand-off and the outbox.
        self._lock = threading.Lock()
        self._running: dict[_Key, JobContext] = {}
        self._unacked: dict[_Key, _Result] = {}
        # Accepted jobs that no handler thread has taken yet, oldest first.
        self._queued: collections.deque[_Job] = collections.deque()
        # The wake locks of handler threads waiting for work; the thread
        # that parked last is woken first, while its stack is still warm.
        self._parked: list[threading.Lock] = []
        # A woken thread has not looked for work yet: waking another now
        # would spread a burst of short jobs over more threads than it needs.
        self._waking = False
        self._closing = False
        self._outbox: _Outbox | None = None
        self._call: Any = None  # the open StreamJobs call, to cancel it
        self._draining = threading.Event()
        # The server said no assignment follows our draining.
        self._drain_confirmed = threading.Event()
        self._drained = threading.Event()
        self._returned = threading.Event()
        # Set by a second signal: skip the rest of the grace period.
        self._hurry = threading.Event()
        self._lease_seconds = 30.0
        self._lease_known = threading.Event()
        # The server takes OUTCOME_RETURNED for jobs this worker never
        # started (older servers refuse it).
        self._accepts_returned = False
        self._started = False

    # -- public --------------------------------------------------------------

    def stop(self) -> None:
        """Stop taking work, finish what runs (up to the grace period), exit."""
        # Takes no lock: it may run in a signal handler that interrupted the
        # main thread while it held one. The drain watcher tells the server.
        if not self._draining.is_set():
            log.info("worker.draining worker_id=%s", self.worker_id)
            self._draining.set()

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
            "worker.started worker_id=%s topics=%s concurrency=%d prefetch=%d",
            self.worker_id,
            ",".join(sorted(self._handlers)),
            self._concurrency,
            self._prefetch,
        )
        try:
            self._stream_until_drained()
        finally:
            self._draining.set()
            self._drained.set()
            with self._lock:
                self._closing = True
                for wake in self._parked:
                    wake.release()
                self._parked.clear()
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
        """Once draining, tell the server, then end the stream when nothing
        is left to report."""
        self._draining.wait()
        with self._lock:
            if self._outbox is not None:
                self._outbox.draining = True
                self._outbox.ring()
        deadline = time.monotonic() + self._grace_seconds
        confirm_deadline = time.monotonic() + _DRAIN_CONFIRM_SECONDS
        abandoned = False
        while True:
            with self._lock:
                idle = not self._running and not self._unacked
                # Assignments of a claim that crossed our draining may still
                # be on their way: closing now would leave them claimed, and
                # unrun until their leases lapse.
                settled = (
                    self._drain_confirmed.is_set()
                    or self._outbox is None
                    or time.monotonic() >= confirm_deadline
                )
            if idle and settled:
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
        with self._lock:
            # Every job held counts, queued or running.
            free = (
                0
                if self._draining.is_set()
                else self._concurrency + self._prefetch - len(self._running)
            )
            outbox = _Outbox(
                pb.Hello(
                    worker_id=self.worker_id,
                    topics=sorted(self._handlers),
                    credits=max(0, free),
                ),
                list(self._unacked.values()),
            )
            # A stream opened while draining says so too, and gets the
            # server's word that nothing follows.
            outbox.draining = self._draining.is_set()
            self._outbox = outbox
        address, stub = self._connection.stub()
        self._call = stub.StreamJobs(
            self._requests(outbox), metadata=self._connection.metadata
        )
        if self._drained.is_set():
            self._call.cancel()
        try:
            for message in self._call:
                if message.lease_ms:
                    self._lease_seconds = message.lease_ms / 1000
                    self._accepts_returned = message.accepts_returned
                    self._lease_known.set()
                    log.info(
                        "worker.connected worker_id=%s addr=%s",
                        self.worker_id,
                        address,
                    )
                if message.assignments:
                    self._accept(message.assignments)
                if message.drained:
                    self._drain_confirmed.set()
                if message.acks:
                    self._on_acks(message.acks)
                for lost in message.lost:
                    self._on_lost(lost)
        finally:
            # Ends this stream's request iterator. What it had not sent yet
            # is not lost: results stay unacknowledged and go again with the
            # next hello, and the next hello counts the free slots afresh.
            self._end_outbox(outbox)

    def _requests(self, outbox: _Outbox) -> Iterator[pb.WorkerMessage]:
        """The request stream: one message for everything said since the
        last send."""
        while True:
            outbox.wait()
            with self._lock:
                if outbox.closed:
                    return
                fields = outbox.take()
            if fields:
                yield pb.WorkerMessage(**fields)

    def _end_outbox(self, outbox: _Outbox) -> None:
        with self._lock:
            outbox.closed = True
            outbox.ring()
            if self._outbox is outbox:
                self._outbox = None

    def _close_stream(self) -> None:
        with self._lock:
            outbox = self._outbox
        if outbox is not None:
            self._end_outbox(outbox)
        if self._call is not None:
            self._call.cancel()

    # -- assignments and results ---------------------------------------------

    def _accept(self, assignments: Iterable[pb.Assignment]) -> None:
        jobs = []
        for assignment in assignments:
            context = JobContext(assignment)
            jobs.append(((context.job_id, context.attempt), assignment, context))
        with self._lock:
            for key, _, context in jobs:
                self._running[key] = context
            self._queued.extend(jobs)
            self._wake_handler()

    def _wake_handler(self) -> None:
        """Wake one parked handler thread for queued work, unless one is
        already on its way; call with the lock held."""
        if self._parked and not self._waking:
            self._waking = True
            self._parked.pop().release()

    def _take_queued(self) -> _Job | None:
        """The oldest queued job still to run; call with the lock held."""
        while self._queued:
            job = self._queued.popleft()
            # An abandoned job left the running set before a thread took it.
            if job[0] in self._running:
                if self._queued:
                    # The rest must not wait for this job: slow handlers
                    # run side by side, as many as there are threads.
                    self._wake_handler()
                return job
        return None

    def _work_loop(self) -> None:
        wake = threading.Lock()
        wake.acquire()
        woken = False
        done: tuple[_Key, _Result] | None = None
        while True:
            # One lock round per job: report the last one, take the next.
            with self._lock:
                if done is not None:
                    self._finish(*done)
                    done = None
                if woken:
                    self._waking = False
                    woken = False
                job = self._take_queued()
                if job is None:
                    if self._closing:
                        return
                    self._parked.append(wake)
            if job is None:
                wake.acquire()
                woken = True
                continue
            key, assignment, context = job
            done = (
                key,
                _not_started(context) or self._execute(assignment, context),
            )

    def _execute(self, assignment: pb.Assignment, context: JobContext) -> _Result:
        handler = self._handlers.get(context.topic)
        try:
            if handler is None:
                raise PermanentError(
                    f"no handler registered for topic {context.topic!r}"
                )
            handler(assignment.payload, context)
        except PermanentError as exc:
            return _failure(context, pb.OUTCOME_FAILED_PERMANENTLY, _error_text(exc))
        except PayloadError as exc:
            # A payload that does not fit will not fit next time either.
            return _failure(context, pb.OUTCOME_FAILED_PERMANENTLY, _error_text(exc))
        except RetryLater as exc:
            return _failure(
                context,
                pb.OUTCOME_FAILED,
                _error_text(exc),
                # Clamped as well: a result out of the wire's range would
                # break the whole stream, not just this job.
                retry_delay_ms=min(
                    MAX_RETRY_DELAY_MS, max(1, int(exc.delay_seconds * 1000))
                ),
            )
        except Exception as exc:
            return _failure(
                context, pb.OUTCOME_FAILED, _error_text(exc, with_traceback=True)
            )
        return {
            "job_id": context.job_id,
            "attempt": context.attempt,
            "outcome": pb.OUTCOME_SUCCEEDED,
        }

    def _finish(self, key: _Key, result: _Result) -> None:
        """Report a job the handler is done with; call with the lock held."""
        context = self._running.pop(key, None)
        if context is None:
            return  # abandoned: its report already went, as a retry
        outbox = self._outbox
        # A job whose lease was lost already belongs to someone else: its
        # report would be refused. Its slot is free all the same.
        lost = context.lease_lost
        if not lost:
            self._unacked[key] = result
        if outbox is None:
            return
        if not lost:
            outbox.results.append(result)
        if not self._draining.is_set():
            outbox.credits += 1
        outbox.ring()

    def _on_acks(self, acks: Iterable[pb.ResultAck]) -> None:
        keys = [(ack.job_id, ack.attempt) for ack in acks]
        with self._lock:
            for key in keys:
                self._unacked.pop(key, None)
        for ack in acks:
            if not ack.accepted:
                log.info(
                    "job.result_refused job_id=%s attempt=%d (lease lost or repeated)",
                    ack.job_id,
                    ack.attempt,
                )

    def _on_lost(self, lost: pb.LostJob) -> None:
        with self._lock:
            context = self._running.get((lost.job_id, lost.attempt))
        if context is None:
            return
        if lost.reason == pb.LOSS_REASON_CANCEL_REQUESTED:
            if not context.canceled:
                log.info("job.cancel_requested job_id=%s", lost.job_id)
            context._mark_canceled()
        else:
            log.warning(
                "job.lease_lost job_id=%s attempt=%d", lost.job_id, lost.attempt
            )
            context._mark_lease_lost()

    def _abandon_running(self) -> None:
        """The grace period is over: hand back what still runs.

        Each abandoned attempt is reported failed with an immediate retry, so
        another worker picks it up now instead of after its lease lapses; the
        handler thread is left to finish (its late report is dropped). A job
        still waiting for a thread never started: it is returned, back in
        line with its attempt not counted (a server too old for that takes
        it as failed, like the others).
        """
        with self._lock:
            abandoned = list(self._running.items())
            self._running.clear()
            # Prefetched jobs no thread took yet: say so, not that they ran.
            waiting = {job[0] for job in self._queued}
            hurried = self._hurry.is_set()
            results = []
            for key, context in abandoned:
                context._mark_lease_lost()
                if key in waiting:
                    error = "worker stopped before the job started: " + (
                        "handed back at once on a second stop signal"
                        if hurried
                        else f"the {self._grace_seconds:g}s grace period ended"
                    )
                elif hurried:
                    error = (
                        "worker stopped: the handler was handed back at once "
                        "on a second stop signal"
                    )
                else:
                    error = (
                        "worker stopped: the handler did not finish within "
                        f"the {self._grace_seconds:g}s grace period"
                    )
                result = {
                    "job_id": key[0],
                    "attempt": key[1],
                    "outcome": pb.OUTCOME_FAILED,
                    "error": error,
                    "retry_delay_ms": 1,
                }
                if key in waiting and self._accepts_returned:
                    result["outcome"] = pb.OUTCOME_RETURNED
                    result["retry_delay_ms"] = 0
                self._unacked[key] = result
                results.append(result)
            if results and self._outbox is not None:
                self._outbox.results.extend(results)
                self._outbox.ring()
        for key, _ in abandoned:
            log.warning("job.abandoned job_id=%s attempt=%d", key[0], key[1])

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
                    key
                    for key, context in self._running.items()
                    # Past its timeout a job's lease must lapse: stop vouching.
                    if not context.deadline_passed and not context.lease_lost
                ]
            if not held:
                continue
            beats = [pb.RunningJob(job_id=job_id, attempt=n) for job_id, n in held]
            with self._lock:
                if self._outbox is not None:
                    self._outbox.heartbeat = beats
                    self._outbox.ring()

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


def _not_started(context: JobContext) -> _Result | None:
    """The result of a job that must not start, or None.

    A job waits in the queue (prefetched, or for a thread) after its claim,
    and may be canceled, lose its lease or reach its timeout meanwhile.
    Started anyway, it would run for nothing: the server has canceled it,
    handed it to another attempt, or timed it out and retried it.
    """
    if context.lease_lost:
        reason = "its lease was lost"
    elif context.canceled:
        # Reported: the server ends the attempt canceled at once.
        reason = "it was canceled"
    elif context.deadline_passed and context.timeout is not None:
        reason = f"its {context.timeout.total_seconds():g}s timeout passed"
        # Its lease ended with the timeout: the server times the attempt
        # out by itself, so no report (see _finish) is needed.
        context._mark_lease_lost()
    else:
        return None
    log.info(
        "job.not_started job_id=%s topic=%s attempt=%d reason=%s",
        context.job_id,
        context.topic,
        context.attempt,
        reason.replace(" ", "_"),
    )
    return {
        "job_id": context.job_id,
        "attempt": context.attempt,
        "outcome": pb.OUTCOME_FAILED,
        "error": f"not started: {reason} while it waited in the worker's queue",
        "retry_delay_ms": 0,
    }


def _failure(
    context: JobContext,
    outcome: pb.Outcome.ValueType,
    error: str,
    *,
    retry_delay_ms: int = 0,
) -> _Result:
    log.warning(
        "job.failed job_id=%s topic=%s attempt=%d error=%s",
        context.job_id,
        context.topic,
        context.attempt,
        error.rstrip().splitlines()[-1] if error else "",
    )
    return {
        "job_id": context.job_id,
        "attempt": context.attempt,
        "outcome": outcome,
        "error": error,
        "retry_delay_ms": retry_delay_ms,
    }


def _error_text(exc: BaseException, *, with_traceback: bool = False) -> str:
    text = f"{type(exc).__name__}: {exc}"
    if with_traceback:
        text = "".join(traceback.format_exception(exc)).rstrip()
    if len(text) > _MAX_ERROR_CHARS:
        text = text[:_MAX_ERROR_CHARS]
    # Protobuf strings must be valid UTF-8: lone surrogates become escapes.
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
