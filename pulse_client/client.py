"""The Pulse client: enqueue work, inspect and steer jobs, run handlers."""

from __future__ import annotations

import collections
import contextlib
import datetime
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from pulse_client._proto.pulse.v1 import pulse_pb2 as pb
from pulse_client.arguments import check_int, milliseconds, statuses, timestamp
from pulse_client.connection import (
    DEFAULT_TIMEOUT_SECONDS,
    Connection,
    StartedCall,
    parse_addresses,
)
from pulse_client.errors import (
    InvalidArgument,
    PulseError,
    error_class,
)
from pulse_client.handlers import Handler, encode_payload, make_handler
from pulse_client.ids import new_job_id
from pulse_client.limits import (
    MAX_ATTEMPTS_LIMIT,
    MAX_CREDITS_PER_STREAM,
    MAX_DELAY_MS,
    MAX_PAGE_SIZE,
    MAX_PREFETCH,
    MAX_PRIORITY,
    MAX_TIMEOUT_MS,
    MAX_TOPICS_PER_WORKER,
    validate_topic,
)
from pulse_client.models import (
    Job,
    JobPage,
    JobStatus,
    NewJob,
    Stats,
)
from pulse_client.operations import OperatorCalls
from pulse_client.scheduling import ScheduleCalls
from pulse_client.submitter import Submitter
from pulse_client.worker import Runtime, default_worker_id

log = logging.getLogger(__name__)

_F = TypeVar("_F", bound=Callable[..., Any])

# SubmitJobs calls are kept below the server's message and batch limits,
# and small enough that a batch of 1,000 makes a pipeline: two calls under
# way at once, the next one encoded meanwhile.
_SUBMIT_CHUNK_JOBS = 250
_SUBMIT_IN_FLIGHT = 2
_SUBMIT_CHUNK_BYTES = 16 * 1024 * 1024


class SubmitRefused(PulseError):
    """Some jobs of an ``enqueue_many`` batch were refused; the rest were stored.

    ``job_ids`` lists the id of every job in input order (stored or not) and
    ``errors`` maps the index of each refused job to its error.
    """

    code = "submit_refused"

    def __init__(self, message: str, job_ids: list[str], errors: dict[int, PulseError]):
        super().__init__(message)
        self.job_ids = job_ids
        self.errors = errors


class Pulse(OperatorCalls, ScheduleCalls):
    """A client of one pulse deployment, and the worker that runs its handlers.

    ``addr`` names one replica (``"host:port"``) or several (a list, or a
    comma-separated string); calls fail over between them. Without it,
    ``PULSE_ADDR`` is used, then ``localhost:50051``; likewise ``user`` and
    ``password`` default to ``PULSE_USER`` and ``PULSE_PASSWORD``. The client is
    thread-safe: any number of threads may enqueue and query through it
    while ``run()`` processes jobs. It holds network channels until
    ``close()`` (or the end of a ``with`` block); a closed client raises
    ``ClientClosed``.

    ``run()`` runs up to ``concurrency`` handlers at once, on as many
    threads. ``prefetch`` lets the worker hold that many more jobs, claimed
    while every thread is busy and started as threads free up: with short
    jobs the next ones are already here when a thread finishes, instead of
    a round trip away (a drain of no-op jobs ran about 30% faster with
    ``prefetch`` equal to ``concurrency``). A held job is leased to this
    worker from its claim on: its attempt is counted, its lease is kept by
    the heartbeats, its ``timeout`` runs from the claim, and a graceful stop
    still runs it within the grace period (one still waiting when the grace
    period ends goes back in line, its attempt not counted). Keep it 0 (the
    default) for long jobs, which other workers could start sooner.
    """

    def __init__(
        self,
        addr: str | Sequence[str] | None = None,
        *,
        concurrency: int = 8,
        prefetch: int = 0,
        user: str | None = None,
        password: str | None = None,
        tls: bool = False,
        ca_file: str | None = None,
        worker_id: str | None = None,
        grace_seconds: float = 30.0,
        heartbeat_seconds: float | None = None,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        # Unset arguments come from the environment, read here, never at import.
        addr = addr or os.environ.get("PULSE_ADDR") or None
        if user is None and password is None:
            user = os.environ.get("PULSE_USER") or None
            if user is not None:
                password = os.environ.get("PULSE_PASSWORD", "")
        if concurrency < 1:
            raise InvalidArgument(f"concurrency must be at least 1, got {concurrency}")
        check_int("prefetch", prefetch, 0, MAX_PREFETCH)
        _check_credits(concurrency, prefetch)
        self._connection = Connection(
            parse_addresses(addr),
            user=user,
            password=password,
            tls=tls,
            ca_file=ca_file,
            timeout_seconds=timeout_seconds,
        )
        self._handlers: dict[str, Handler] = {}
        self.concurrency = concurrency
        self.prefetch = prefetch
        self.worker_id = worker_id or default_worker_id()
        self.grace_seconds = grace_seconds
        self._heartbeat_seconds = heartbeat_seconds
        self._runtime: Runtime | None = None
        self._run_lock = threading.Lock()
        self._stop_requested = False
        self._submitter = Submitter(self._submit_jobs)

    # -- lifecycle ---------------------------------------------------------

    def __enter__(self) -> Pulse:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the worker if it runs (waiting for it to drain, up to the
        grace period), then close the channels."""
        if self._runtime is not None:
            self._runtime.stop()
            self._runtime.wait_stopped(self.grace_seconds + 5)
        self._connection.close()

    @property
    def addresses(self) -> list[str]:
        return list(self._connection.addresses)

    # -- handlers and the worker -------------------------------------------

    def register(self, topic: str, fn: Callable[..., Any]) -> None:
        """Run ``fn`` for jobs of ``topic`` (see ``handler`` for its shape)."""
        validate_topic(topic)
        if len(self._handlers) >= MAX_TOPICS_PER_WORKER:
            raise InvalidArgument(
                f"a worker serves at most {MAX_TOPICS_PER_WORKER} topics; "
                f"{topic!r} would be one more (split them over several Pulse objects)"
            )
        if topic in self._handlers:
            raise InvalidArgument(
                f"a handler for topic {topic!r} is already registered"
            )
        if self._runtime is not None:
            raise InvalidArgument("register handlers before run()")
        self._handlers[topic] = make_handler(topic, fn)

    def handler(self, topic: str) -> Callable[[_F], _F]:
        """Decorator form of ``register``.

        The handler takes ``(args)`` or ``(args, context)``. The annotation of
        ``args`` decides how the JSON payload is decoded: a dataclass is
        built from it, ``bytes`` gets the raw payload, anything else the
        decoded JSON. ``context`` is a ``JobContext``. Returning ends the job
        completed; raising retries it with backoff (``RetryLater`` sets the
        delay, ``PermanentError`` dead-letters it at once).
        """

        def decorate(fn: _F) -> _F:
            self.register(topic, fn)
            return fn

        return decorate

    @property
    def topics(self) -> list[str]:
        return sorted(self._handlers)

    def run(self) -> None:
        """Process jobs of the registered topics until ``stop()`` or SIGTERM.

        Blocks. On stop it takes no new work, lets running handlers finish
        within the grace period, reports their results and returns.
        """
        with self._run_lock:
            if self._runtime is not None and not self._runtime.wait_stopped(0):
                raise RuntimeError("Pulse.run() is already running on this client")
            # Also here: pulse-worker sets both after the client was made.
            _check_credits(self.concurrency, self.prefetch)
            if self._stop_requested:
                self._stop_requested = False
                return
            runtime = self._runtime = Runtime(
                self._connection,
                dict(self._handlers),
                concurrency=self.concurrency,
                prefetch=self.prefetch,
                worker_id=self.worker_id,
                grace_seconds=self.grace_seconds,
                heartbeat_seconds=self._heartbeat_seconds,
            )
        runtime.run()

    def stop(self) -> None:
        """Ask ``run()`` to drain and return. Safe from any thread and from a
        signal handler; called before ``run()``, it makes ``run()`` return at
        once."""
        with self._run_lock:
            runtime = self._runtime
            if runtime is None or runtime.wait_stopped(0):
                self._stop_requested = True
                return
        runtime.stop()

    # -- submitting ----------------------------------------------------------

    def enqueue(
        self,
        topic: str,
        args: Any = None,
        *,
        priority: int = 0,
        delay: datetime.timedelta | float | None = None,
        run_at: datetime.datetime | None = None,
        max_attempts: int | None = None,
        job_id: str | None = None,
        timeout: datetime.timedelta | float | None = None,
    ) -> str:
        """Submit one job and return its id once it is committed.

        ``args`` is encoded as JSON (a dataclass as its fields); bytes are
        sent as they are. ``delay`` (seconds or a timedelta) or ``run_at``
        postpones it. The id is generated here (a UUIDv7) unless given, so
        calling again with the same ``job_id`` never creates a second job.
        Concurrent calls from several threads share SubmitJobs calls and
        commits; each still returns only after its own job is committed.
        A PulseError raised here carries the job's id as ``job_id``: after
        a timeout or a lost connection the job may exist, and enqueueing
        again with ``job_id=exc.job_id`` can never make a second one.
        """
        spec = _spec(
            pb.JobSpec,
            topic,
            args,
            priority,
            delay,
            run_at,
            max_attempts,
            job_id,
            timeout,
        )
        try:
            return self._submitter.submit(spec).job_id
        except PulseError as exc:
            # The job may have been committed before the error (a deadline
            # or a lost connection): retrying with this id is safe.
            exc.job_id = spec.id
            raise

    def _submit_jobs(self, specs: list[pb.JobSpec]) -> list[pb.SubmitResult]:
        return self._submit_request(pb.SubmitJobsRequest(jobs=specs))

    def _submit_request(self, request: pb.SubmitJobsRequest) -> list[pb.SubmitResult]:
        response = self._connection.call(
            lambda stub: stub.SubmitJobs(request, **self._connection.kwargs())
        )
        return list(response.results)

    def enqueue_many(self, jobs: Iterable[NewJob]) -> list[str]:
        """Submit many jobs in as few calls and commits as possible.

        Returns the ids in input order. If some jobs are refused the others
        are still stored, and ``SubmitRefused`` says which failed and why.
        The jobs go in SubmitJobs calls of up to 250 jobs, each committed by
        itself, two under way at once while the next is encoded: the client,
        the server and the database work side by side.

        Any other exception (a failed call, or one raised by ``jobs``
        itself) may come after some calls stored their jobs: its
        ``job_ids`` lists the id of every job read from ``jobs`` so far, in
        input order, and enqueueing a job again with its id (``NewJob(...,
        job_id=...)``) never makes a second one.
        """
        # Even for no jobs, which make no call: a closed client says so.
        self._connection.check_open()
        ids: list[str] = []
        errors: dict[int, PulseError] = {}
        sending = _Pipeline(self._connection, errors)
        try:
            try:
                _send_chunks(jobs, ids, errors, sending)
            except BaseException:
                # No call outlives this one, and the first exception is the
                # one raised (an iterable's own, say, not a call's after it).
                sending.settle()
                raise
            sending.finish()
        except BaseException as exc:
            # Earlier calls may have stored their jobs: the ids read so far
            # let the caller send them again without making a second job.
            with contextlib.suppress(AttributeError):
                exc.job_ids = list(ids)  # type: ignore[attr-defined]
            raise
        if errors:
            first = min(errors)
            raise SubmitRefused(
                f"{len(errors)} of {len(ids)} jobs refused; first, job {first}: "
                f"{errors[first]}",
                ids,
                errors,
            )
        return ids

    # -- inspecting and steering --------------------------------------------

    def get_job(self, job_id: str) -> Job:
        response = self._connection.call(
            lambda stub: stub.GetJob(
                pb.GetJobRequest(id=job_id), **self._connection.kwargs()
            )
        )
        return Job.from_proto(response)

    def list_jobs(
        self,
        *,
        status: JobStatus | str | Iterable[JobStatus | str] | None = None,
        topic: str | None = None,
        limit: int = 100,
        page_token: str = "",
        error_contains: str | None = None,
        since: datetime.datetime | None = None,
    ) -> JobPage:
        """One page of jobs, newest first, filtered by status, topic, text in
        the last error (case-insensitive) and creation time (``since``)."""
        check_int("limit", limit, 1, MAX_PAGE_SIZE)
        request = pb.ListJobsRequest(
            statuses=statuses(status),
            topic=topic or "",
            page_size=limit,
            page_token=page_token,
            error_contains=error_contains or "",
        )
        if since is not None:
            request.created_after.CopyFrom(timestamp(since, "since"))
        response = self._connection.call(
            lambda stub: stub.ListJobs(request, **self._connection.kwargs())
        )
        return JobPage(
            [Job.from_proto(j) for j in response.jobs], response.next_page_token
        )

    def iter_jobs(
        self,
        *,
        status: JobStatus | str | Iterable[JobStatus | str] | None = None,
        topic: str | None = None,
        page_size: int = 500,
        error_contains: str | None = None,
        since: datetime.datetime | None = None,
    ) -> Iterator[Job]:
        """Every matching job, newest first, fetched page by page."""
        token = ""
        while True:
            page = self.list_jobs(
                status=status,
                topic=topic,
                limit=page_size,
                page_token=token,
                error_contains=error_contains,
                since=since,
            )
            yield from page.jobs
            if not page.next_page_token:
                return
            token = page.next_page_token

    def cancel(self, job_id: str) -> Job:
        """Cancel a job that has not finished (a running one is asked to stop)."""
        response = self._connection.call(
            lambda stub: stub.CancelJob(
                pb.CancelJobRequest(id=job_id), **self._connection.kwargs()
            )
        )
        return Job.from_proto(response)

    def requeue(self, job_id: str) -> Job:
        """Put a dead-lettered or canceled job back in line with a fresh budget."""
        response = self._connection.call(
            lambda stub: stub.RequeueJob(
                pb.RequeueJobRequest(id=job_id), **self._connection.kwargs()
            )
        )
        return Job.from_proto(response)

    def stats(self) -> Stats:
        response = self._connection.call(
            lambda stub: stub.Stats(pb.StatsRequest(), **self._connection.kwargs())
        )
        return Stats.from_proto(response)


def _check_credits(concurrency: int, prefetch: int) -> None:
    """A stream holds at most MAX_CREDITS_PER_STREAM jobs; the server would
    silently hand out no more."""
    if concurrency + prefetch > MAX_CREDITS_PER_STREAM:
        raise InvalidArgument(
            f"concurrency + prefetch must be at most {MAX_CREDITS_PER_STREAM} "
            f"(jobs one worker stream holds), got {concurrency} + {prefetch}"
        )


def _spec(
    new: Callable[..., pb.JobSpec],
    topic: str,
    args: Any,
    priority: int,
    delay: datetime.timedelta | float | None,
    run_at: datetime.datetime | None,
    max_attempts: int | None,
    job_id: str | None,
    timeout: datetime.timedelta | float | None,
) -> pb.JobSpec:
    """The wire form of a job; every value checked here, so that a bad one is
    an InvalidArgument naming it, never a protobuf error."""
    if delay is not None and run_at is not None:
        raise InvalidArgument("give delay or run_at, not both")
    validate_topic(topic)
    check_int("priority", priority, -MAX_PRIORITY, MAX_PRIORITY)
    if max_attempts is not None:
        check_int("max_attempts", max_attempts, 1, MAX_ATTEMPTS_LIMIT)
    job_id = job_id or new_job_id()
    payload = encode_payload(args)
    timeout_ms = (
        0 if timeout is None else milliseconds(timeout, "timeout", MAX_TIMEOUT_MS)
    )
    delay_ms = 0 if delay is None else milliseconds(delay, "delay", MAX_DELAY_MS)
    due = None if run_at is None else timestamp(run_at, "run_at")

    # Every check is behind us: ``new`` may add the spec to a request, and a
    # refused job must not be left in one.
    spec = new(id=job_id, topic=topic, payload=payload)
    # Each field set costs a call into protobuf; zero is every field's default.
    if priority:
        spec.priority = priority
    if max_attempts:
        spec.max_attempts = max_attempts
    if timeout_ms:
        spec.timeout_ms = timeout_ms
    if delay_ms:
        spec.delay_ms = delay_ms
    if due is not None:
        spec.run_at.CopyFrom(due)
    return spec


def _send_chunks(
    jobs: Iterable[NewJob],
    ids: list[str],
    errors: dict[int, PulseError],
    sending: _Pipeline,
) -> None:
    """Encode ``jobs`` into SubmitJobs requests and send each once full;
    every job's id goes into ``ids``, refusals into ``errors``."""
    chunk = _Chunk()
    for index, job in enumerate(jobs):
        if len(chunk.indexes) == _SUBMIT_CHUNK_JOBS:
            sending.send(chunk)
            chunk = _Chunk()
        try:
            spec = _spec(
                chunk.add,
                job.topic,
                job.args,
                job.priority,
                job.delay,
                job.run_at,
                job.max_attempts,
                job.job_id,
                job.timeout,
            )
        except PulseError as exc:
            # Refused here, like the server refuses: the rest still go.
            errors[index] = exc
            ids.append(job.job_id or new_job_id())
            continue
        ids.append(spec.id)
        spec_bytes = spec.ByteSize()
        if chunk.indexes and chunk.size_bytes + spec_bytes > _SUBMIT_CHUNK_BYTES:
            # The job goes first in the next call instead.
            full, chunk = chunk, _Chunk()
            chunk.request.jobs.append(spec)
            del full.request.jobs[-1]
            sending.send(full)
        chunk.indexes.append(index)
        chunk.size_bytes += spec_bytes
    if chunk.indexes:
        sending.send(chunk)


class _Pipeline:
    """The SubmitJobs calls of one ``enqueue_many``, up to
    ``_SUBMIT_IN_FLIGHT`` at a time; refusals land in ``errors`` by index."""

    def __init__(self, connection: Connection, errors: dict[int, PulseError]):
        self._connection = connection
        self._errors = errors
        self._in_flight: collections.deque[
            tuple[_Chunk, StartedCall[pb.SubmitJobsResponse]]
        ] = collections.deque()
        self._failure: BaseException | None = None

    def send(self, chunk: _Chunk) -> None:
        if len(self._in_flight) >= _SUBMIT_IN_FLIGHT:
            self._collect()
        if self._failure is not None:
            # A call failed: send nothing more, and say so now.
            raise self._failure
        call = self._connection.start(lambda stub: stub.SubmitJobs, chunk.request)
        self._in_flight.append((chunk, call))

    def finish(self) -> None:
        """Wait for every call; raises the first failure."""
        self.settle()
        if self._failure is not None:
            raise self._failure

    def settle(self) -> None:
        """Wait for every call (or end it, if the wait is interrupted)."""
        while self._in_flight:
            self._collect()

    def _collect(self) -> None:
        chunk, call = self._in_flight[0]
        try:
            response = call.result()
        except PulseError as exc:
            # The call itself failed.
            self._in_flight.popleft()
            if self._failure is None:
                self._failure = exc
            return
        except BaseException as exc:
            # The wait was interrupted (a signal handler's exception, as
            # Ctrl-C's): the calls are left under way, so end them; the
            # next waits return at once, and none outlives enqueue_many.
            if self._failure is None:
                self._failure = exc
            for _, started in self._in_flight:
                started.cancel()
            return
        self._in_flight.popleft()
        for index, result in zip(chunk.indexes, response.results, strict=True):
            if result.HasField("error"):
                self._errors[index] = error_class(result.error.code)(
                    result.error.message
                )


class _Chunk:
    """The jobs of one SubmitJobs call of ``enqueue_many``, written straight
    into its request: a JobSpec added to a request later would be copied."""

    __slots__ = ("add", "indexes", "request", "size_bytes")

    def __init__(self) -> None:
        self.request = pb.SubmitJobsRequest()
        self.add = self.request.jobs.add
        self.indexes: list[int] = []
        self.size_bytes = 0
