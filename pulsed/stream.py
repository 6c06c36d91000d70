"""One worker stream (StreamJobs) on the server side.

The gRPC handler thread yields the outbound messages; a reader thread takes
the worker's messages (credits, results, heartbeats) and hands them to the
dispatcher and to the batched writers. Everything the stream sends goes
through one outbox, so messages never interleave.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

import grpc

from pulse_client._proto.pulse.v1 import pulse_pb2 as pb
from pulse_client.errors import InvalidArgument, PulseError, Unavailable
from pulse_client.limits import MAX_TOPICS_PER_WORKER, validate_topic
from pulsed import outcomes
from pulsed.jobs import STATUS_TO_PROTO
from pulsed.submits import canonical_job_id

if TYPE_CHECKING:
    from pulsed.service import PulseService

log = logging.getLogger(__name__)

MAX_WORKER_ID_CHARS = 200

_REPORTED_OUTCOMES = frozenset(
    (
        pb.OUTCOME_SUCCEEDED,
        pb.OUTCOME_FAILED,
        pb.OUTCOME_FAILED_PERMANENTLY,
        pb.OUTCOME_RETURNED,
    )
)


class StreamSession:
    """A connected worker as the dispatcher and the writers see it."""

    def __init__(self, worker_id: str, topics: frozenset[str]) -> None:
        self.worker_id = worker_id
        self.topics = topics
        self.credits = 0
        # The worker said draining: it is stopping, and only now may it
        # return jobs it never started (OUTCOME_RETURNED).
        self.draining = False
        self.error: PulseError | None = None
        self._outbox: queue.SimpleQueue[pb.ServerMessage | None] = queue.SimpleQueue()
        self._closed = threading.Event()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def send(self, message: pb.ServerMessage) -> bool:
        if self._closed.is_set():
            return False
        self._outbox.put(message)
        return True

    def deliver(self, messages: list[pb.ServerMessage]) -> bool:
        """Queue messages of assignments (``dispatch.assignment_messages``)."""
        return all(self.send(message) for message in messages)

    def confirm_drained(self) -> None:
        self.send(pb.ServerMessage(drained=True))

    def close(self, error: PulseError | None = None) -> None:
        if self._closed.is_set():
            return
        if error is not None and self.error is None:
            self.error = error
        self._closed.set()
        self._outbox.put(None)

    def outgoing(self) -> Iterator[pb.ServerMessage]:
        """Messages to send, until the session closes."""
        while True:
            message = self._outbox.get()
            if message is None:
                return
            yield message


def open_session(first: pb.WorkerMessage | None) -> StreamSession:
    """Validate the opening message; raises InvalidArgument."""
    if first is None or not first.HasField("hello"):
        raise InvalidArgument("the first message on a stream must carry hello")
    hello = first.hello
    if not hello.worker_id or len(hello.worker_id) > MAX_WORKER_ID_CHARS:
        raise InvalidArgument(
            f"hello.worker_id must be 1-{MAX_WORKER_ID_CHARS} characters"
        )
    if not hello.worker_id.isprintable():
        raise InvalidArgument(
            f"hello.worker_id {hello.worker_id[:60]!r} holds control characters"
        )
    if not hello.topics:
        raise InvalidArgument("hello.topics must name at least one topic")
    if len(hello.topics) > MAX_TOPICS_PER_WORKER:
        raise InvalidArgument(
            f"hello.topics names more than {MAX_TOPICS_PER_WORKER} topics"
        )
    for topic in hello.topics:
        validate_topic(topic)
    return StreamSession(hello.worker_id, frozenset(hello.topics))


def read_worker_messages(
    service: PulseService,
    session: StreamSession,
    first: pb.WorkerMessage,
    requests: Iterator[pb.WorkerMessage],
) -> None:
    """The reader thread: apply what the worker sends until it stops."""
    try:
        _handle(service, session, first, opening=True)
        for message in requests:
            if session.closed:
                break
            _handle(service, session, message, opening=False)
    except PulseError as exc:
        session.close(exc)
        return
    except grpc.RpcError:
        pass  # the worker went away; its leases lapse if it does not return
    except Exception:
        log.exception("stream.reader_crashed worker_id=%s", session.worker_id)
    session.close()


def _handle(
    service: PulseService,
    session: StreamSession,
    message: pb.WorkerMessage,
    *,
    opening: bool,
) -> None:
    if message.HasField("hello") and not opening:
        raise InvalidArgument("hello may only be sent once, as the first message")
    if message.draining:
        # Before the results: a stream opened while stopping says draining
        # in the same message as the results it sends again.
        session.draining = True
    if message.results:
        reports: list[outcomes.Report] = []
        refused: list[outcomes.Report] = []
        for result in message.results:
            report = _report(session, result)
            if report.outcome == pb.OUTCOME_RETURNED and not session.draining:
                # A job is returned unstarted only by a worker that stops.
                # A live worker could otherwise run a job and give its
                # attempt back forever, out of reach of max_attempts.
                refused.append(report)
            else:
                reports.append(report)
        if refused:
            _refuse(session, refused, "returned_while_not_draining")
        if reports:
            service.results_writer.submit(
                reports, lambda acks: _on_results(service, session, reports, acks)
            )
    if message.draining:
        service.dispatcher.drain(session)
    elif message.credits:
        service.dispatcher.add_credits(session, message.credits)
    if message.has_heartbeat and message.heartbeat:
        beats = [
            outcomes.Beat(_job_id(b.job_id), b.attempt, session.worker_id)
            for b in message.heartbeat
        ]
        service.heartbeat_writer.submit(
            beats, lambda replies: _on_heartbeat(session, beats, replies)
        )


def _job_id(text: str) -> str:
    # Every id the statements get has passed here: a malformed one ends its
    # own stream, never fails a batch shared with other streams. The
    # statements and the acks use the canonical form, which is how pulsed
    # sends ids, so a worker's echo of one is taken as it is; any other
    # spelling uuid.UUID accepts (capitals, braces, a urn prefix, no
    # hyphens) is the same job.
    return canonical_job_id(text)


def _report(session: StreamSession, result: pb.JobResult) -> outcomes.Report:
    outcome = result.outcome
    if outcome not in _REPORTED_OUTCOMES:
        raise InvalidArgument(f"result for job {result.job_id!r} has no valid outcome")
    retry_delay_ms = result.retry_delay_ms
    if not 0 <= retry_delay_ms <= outcomes.MAX_RETRY_DELAY_MS:
        raise InvalidArgument(
            f"retry_delay_ms {retry_delay_ms} is out of range "
            f"0..{outcomes.MAX_RETRY_DELAY_MS}"
        )
    job_id = _job_id(result.job_id)
    return outcomes.Report(
        job_id, result.attempt, session.worker_id, outcome, result.error, retry_delay_ms
    )


def _refuse(
    session: StreamSession, reports: list[outcomes.Report], reason: str
) -> None:
    message = pb.ServerMessage()
    for report in reports:
        message.acks.add(job_id=report.job_id, attempt=report.attempt)
        log.info(
            "job.result_refused job_id=%s attempt=%d worker_id=%s reason=%s",
            report.job_id,
            report.attempt,
            report.worker_id,
            reason,
        )
    session.send(message)


def _on_results(
    service: PulseService,
    session: StreamSession,
    reports: list[outcomes.Report],
    acks: list[outcomes.Ack] | BaseException,
) -> None:
    if isinstance(acks, BaseException):
        # Not acknowledged: the worker sends them again once it reconnects.
        session.close(acks if isinstance(acks, PulseError) else Unavailable(str(acks)))
        return
    message = pb.ServerMessage()
    # Built in place: a ResultAck made apart would be copied in.
    add = message.acks.add
    retried = False
    for report, (accepted, status, _) in zip(reports, acks, strict=True):
        if accepted:
            add(
                job_id=report.job_id,
                attempt=report.attempt,
                accepted=True,
                status=STATUS_TO_PROTO.get(status, pb.JOB_STATUS_UNSPECIFIED),
            )
            retried = retried or status == "retrying"
        else:
            add(job_id=report.job_id, attempt=report.attempt)
            log.info(
                "job.result_refused job_id=%s attempt=%d worker_id=%s",
                report.job_id,
                report.attempt,
                report.worker_id,
            )
    session.send(message)
    if retried:
        service.promoter.wake()


def _on_heartbeat(
    session: StreamSession,
    beats: list[outcomes.Beat],
    replies: list[outcomes.BeatReply] | BaseException,
) -> None:
    if isinstance(replies, BaseException):
        return  # the next heartbeat tries again; leases are long
    lost = [
        pb.LostJob(
            job_id=beat.job_id,
            attempt=beat.attempt,
            reason=pb.LOSS_REASON_CANCEL_REQUESTED
            if reply.cancel_requested
            else pb.LOSS_REASON_LEASE_LOST,
        )
        for beat, reply in zip(beats, replies, strict=True)
        if not reply.held or reply.cancel_requested
    ]
    if lost:
        session.send(pb.ServerMessage(lost=lost))
