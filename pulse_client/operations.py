"""Operator calls of the SDK: bulk requeue, reports, the dispatch pause,
identity and the audit log. ``Pulse`` inherits them."""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable

import grpc

from pulse_client._proto.pulse.v1 import pulse_pb2 as pb
from pulse_client.arguments import check_int, statuses, timestamp
from pulse_client.connection import Connection
from pulse_client.errors import Unavailable, from_rpc_error
from pulse_client.limits import MAX_PAGE_SIZE, validate_topic
from pulse_client.models import (
    AuditEntry,
    AuditPage,
    DeadLetterGroup,
    DispatchStatus,
    Identity,
    JobStatus,
    RequeueProgress,
    ThroughputBucket,
)

# A bulk requeue of a large backlog streams progress for as long as it runs.
_BULK_TIMEOUT_SECONDS = 3600.0


class OperatorCalls:
    """The calls an operator's tools make (``pulse-ops``, ``pulse-web``)."""

    _connection: Connection

    def requeue_jobs(
        self,
        *,
        status: JobStatus | str | Iterable[JobStatus | str] | None = None,
        topic: str | None = None,
        error_contains: str | None = None,
        error_signature: str | None = None,
        since: datetime.datetime | None = None,
        dry_run: bool = False,
        on_progress: Callable[[RequeueProgress], None] | None = None,
    ) -> RequeueProgress:
        """Requeue every dead-lettered or canceled job matching the filter.

        The server acts on every matching job, a batch per transaction, and
        reports progress after each batch to ``on_progress``. ``dry_run``
        only counts them. ``status`` may name dead_lettered and canceled
        (default: both).
        """
        job_filter = pb.JobFilter(
            statuses=statuses(status),
            topic=topic or "",
            error_contains=error_contains or "",
            error_signature=error_signature or "",
        )
        if since is not None:
            job_filter.created_after.CopyFrom(timestamp(since, "since"))
        request = pb.RequeueJobsRequest(filter=job_filter, dry_run=dry_run)
        # One replica, no failover midway: the progress already reported
        # would not add up with a second run's.
        address, stub = self._connection.stub()
        last = RequeueProgress(0, 0, False)
        try:
            for message in stub.RequeueJobs(
                request, **self._connection.kwargs(_BULK_TIMEOUT_SECONDS)
            ):
                last = RequeueProgress(message.matched, message.requeued, message.done)
                if on_progress is not None:
                    on_progress(last)
        except grpc.RpcError as exc:
            error = from_rpc_error(exc)
            if isinstance(error, Unavailable):
                raise Unavailable(f"server unavailable at {address}: {error}") from exc
            raise error from None
        return last

    def dead_letter_groups(
        self, *, topic: str | None = None, limit: int = 100
    ) -> list[DeadLetterGroup]:
        """Dead-lettered jobs grouped by topic and error signature, over every
        such job, largest group first."""
        check_int("limit", limit, 1, MAX_PAGE_SIZE)
        request = pb.ListDeadLetterGroupsRequest(topic=topic or "", limit=limit)
        response = self._connection.call(
            lambda stub: stub.ListDeadLetterGroups(request, **self._connection.kwargs())
        )
        return [DeadLetterGroup.from_proto(g) for g in response.groups]

    def throughput(self, *, minutes: int = 60) -> list[ThroughputBucket]:
        """Completed and dead-lettered jobs per minute, oldest minute first."""
        check_int("minutes", minutes, 1, 1440)
        response = self._connection.call(
            lambda stub: stub.Throughput(
                pb.ThroughputRequest(minutes=minutes), **self._connection.kwargs()
            )
        )
        return [
            ThroughputBucket(
                minute=b.minute.ToDatetime(tzinfo=datetime.UTC),
                completed=b.completed,
                dead_lettered=b.dead_lettered,
            )
            for b in response.buckets
        ]

    # -- the dispatch pause ----------------------------------------------------

    def pause_dispatch(
        self, reason: str = "", *, topic: str | None = None
    ) -> DispatchStatus:
        """Stop handing out jobs (of ``topic``, or of every topic).

        Submits, schedules, results and heartbeats go on; running jobs
        finish. Once this returns no replica hands out another job of the
        paused scope. The pause is durable: it outlives server restarts.
        """
        if topic is not None:
            validate_topic(topic)
        request = pb.PauseDispatchRequest(reason=reason, topic=topic or "")
        response = self._connection.call(
            lambda stub: stub.PauseDispatch(request, **self._connection.kwargs())
        )
        return DispatchStatus.from_proto(response)

    def resume_dispatch(self, *, topic: str | None = None) -> DispatchStatus:
        """End the pause of ``topic`` (or the pause of every topic; topics
        paused on their own stay paused)."""
        if topic is not None:
            validate_topic(topic)
        request = pb.ResumeDispatchRequest(topic=topic or "")
        response = self._connection.call(
            lambda stub: stub.ResumeDispatch(request, **self._connection.kwargs())
        )
        return DispatchStatus.from_proto(response)

    def dispatch_status(self) -> DispatchStatus:
        response = self._connection.call(
            lambda stub: stub.GetDispatchStatus(
                pb.GetDispatchStatusRequest(), **self._connection.kwargs()
            )
        )
        return DispatchStatus.from_proto(response)

    # -- identity and audit ------------------------------------------------------

    def whoami(self) -> Identity:
        """Whether the server requires credentials, and whose these are."""
        response = self._connection.call(
            lambda stub: stub.WhoAmI(pb.WhoAmIRequest(), **self._connection.kwargs())
        )
        return Identity(
            auth_required=response.auth_required,
            authenticated=response.authenticated,
            user=response.user,
            role=response.role,
        )

    def list_audit(
        self,
        *,
        user: str | None = None,
        action: str | None = None,
        since: datetime.datetime | None = None,
        until: datetime.datetime | None = None,
        limit: int = 100,
        page_token: str = "",
    ) -> AuditPage:
        """One page of the audit log, newest first."""
        check_int("limit", limit, 1, MAX_PAGE_SIZE)
        request = pb.ListAuditRequest(
            user=user or "", action=action or "", page_size=limit, page_token=page_token
        )
        if since is not None:
            request.since.CopyFrom(timestamp(since, "since"))
        if until is not None:
            request.until.CopyFrom(timestamp(until, "until"))
        response = self._connection.call(
            lambda stub: stub.ListAudit(request, **self._connection.kwargs())
        )
        return AuditPage(
            [AuditEntry.from_proto(e) for e in response.entries],
            response.next_page_token,
        )
