"""The Pulse client: enqueue work, inspect and steer jobs, run handlers."""

from __future__ import annotations

import datetime
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from pulse_client._proto.pulse.v1 import pulse_pb2 as pb
from pulse_client.arguments import check_int, milliseconds, statuses, timestamp
from pulse_client.connection import DEFAULT_TIMEOUT_SECONDS, Connection, parse_addresses
from pulse_client.errors import (
    InvalidArgument,
    PulseError,
    error_class,
)
from pulse_client.handlers import Handler, encode_payload, make_handler
from pulse_client.ids import new_job_id
from pulse_client.limits import (
    MAX_ATTEMPTS_LIMIT,
    MAX_DELAY_MS,
    MAX_PAGE_SIZE,
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

# SubmitJobs calls are kept below the server's message and batch limits.
_SUBMIT_CHUNK_JOBS = 1000
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
    """

    def __init__(
        self,
        addr: str | Sequence[str] | None = None,
        *,
        concurrency: int = 8,
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
            if self._stop_requested:
                self._stop_requested = False
                return
            runtime = self._runtime = Runtime(
                self._connection,
                dict(self._handlers),
                concurrency=self.concurrency,
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
            NewJob(topic, args, priority, delay, run_at, max_attempts, job_id, timeout)
        )
        try:
            return self._submitter.submit(spec).job_id
        except PulseError as exc:
            # The job may have been committed before the error (a deadline
            # or a lost connection): retrying with this id is safe.
            exc.job_id = spec.id
            raise

    def _submit_jobs(self, specs: list[pb.JobSpec]) -> list[pb.SubmitResult]:
        response = self._connection.call(
            lambda stub: stub.SubmitJobs(
                pb.SubmitJobsRequest(jobs=specs), **self._connection.kwargs()
            )
        )
        return list(response.results)

    def enqueue_many(self, jobs: Iterable[NewJob]) -> list[str]:
        """Submit many jobs in as few calls and commits as possible.

        Returns the ids in input order. If some jobs are refused the others
        are still stored, and ``SubmitRefused`` says which failed and why.
        """
        ids: list[str] = []
        errors: dict[int, PulseError] = {}
        valid: list[tuple[int, pb.JobSpec]] = []
        for index, job in enumerate(jobs):
            try:
                spec = _spec(job)
            except PulseError as exc:
                # Refused here, like the server refuses: the rest still go.
                errors[index] = exc
                ids.append(job.job_id or new_job_id())
                continue
            ids.append(spec.id)
            valid.append((index, spec))
        for chunk in _chunks(valid):
            results = self._submit_jobs([spec for _, spec in chunk])
            for (index, _), result in zip(chunk, results, strict=True):
                if result.HasField("error"):
                    errors[index] = error_class(result.error.code)(result.error.message)
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


def _spec(job: NewJob) -> pb.JobSpec:
    """The wire form of a job; every value checked here, so that a bad one is
    an InvalidArgument naming it, never a protobuf error."""
    if job.delay is not None and job.run_at is not None:
        raise InvalidArgument("give delay or run_at, not both")
    validate_topic(job.topic)
    check_int("priority", job.priority, -MAX_PRIORITY, MAX_PRIORITY)
    if job.max_attempts is not None:
        check_int("max_attempts", job.max_attempts, 1, MAX_ATTEMPTS_LIMIT)
    spec = pb.JobSpec(
        id=job.job_id or new_job_id(),
        topic=job.topic,
        payload=encode_payload(job.args),
        priority=job.priority,
        max_attempts=job.max_attempts or 0,
        timeout_ms=milliseconds(job.timeout, "timeout", MAX_TIMEOUT_MS),
    )
    if job.delay is not None:
        spec.delay_ms = milliseconds(job.delay, "delay", MAX_DELAY_MS)
    if job.run_at is not None:
        spec.run_at.CopyFrom(timestamp(job.run_at, "run_at"))
    return spec


def _chunks(
    specs: list[tuple[int, pb.JobSpec]],
) -> Iterator[list[tuple[int, pb.JobSpec]]]:
    chunk: list[tuple[int, pb.JobSpec]] = []
    size = 0
    for entry in specs:
        spec_bytes = entry[1].ByteSize()
        full = (
            len(chunk) >= _SUBMIT_CHUNK_JOBS or size + spec_bytes > _SUBMIT_CHUNK_BYTES
        )
        if chunk and full:
            yield chunk
            chunk, size = [], 0
        chunk.append(entry)
        size += spec_bytes
    if chunk:
        yield chunk
