"""The gRPC service: each RPC validates, acts through one owner module and
answers. Pulse errors become gRPC statuses here, by one table (each error
class carries its status), with the stable error code in the trailing
metadata.
"""

from __future__ import annotations

import datetime
import functools
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc
from google.protobuf import timestamp_pb2

from pulse_client._proto.pulse.v1 import pulse_pb2 as pb
from pulse_client._proto.pulse.v1 import pulse_pb2_grpc
from pulse_client.errors import (
    ERROR_CODE_METADATA_KEY,
    InvalidArgument,
    PulseError,
    ResourceExhausted,
)
from pulse_client.limits import validate_text, validate_topic
from pulsed import (
    audit,
    gate,
    jobs,
    metrics,
    outcomes,
    reports,
    schedules,
    stream,
    submits,
)
from pulsed.auth import current_caller
from pulsed.batching import GroupCommit
from pulsed.config import Config
from pulsed.database import Database
from pulsed.dispatch import Dispatcher
from pulsed.gate import PauseGate
from pulsed.jobs import STATUS_TO_PROTO
from pulsed.loops import Promoter
from pulsed.notifications import Notifier
from pulsed.schedules import Scheduler

log = logging.getLogger(__name__)

_R = TypeVar("_R")


def abort_with(context: grpc.ServicerContext, error: PulseError) -> None:
    """End the call with the error's status, message and pulse code."""
    context.set_trailing_metadata(((ERROR_CODE_METADATA_KEY, error.code),))
    context.abort(error.status, str(error))


def _refuse(
    context: grpc.ServicerContext, method: Callable[..., Any], exc: Exception
) -> None:
    """End a failed call: a pulse error with its status, anything else as
    a generic internal error (the traceback goes to the log, not the client)."""
    if isinstance(exc, PulseError):
        if exc.status == grpc.StatusCode.INTERNAL:
            log.error("rpc.failed method=%s error=%s", method.__name__, exc)
        abort_with(context, exc)
    log.error("rpc.crashed method=%s", method.__name__, exc_info=exc)
    abort_with(context, PulseError("Internal server error; see the server log"))


def _rpc(method: Callable[..., _R]) -> Callable[..., _R]:
    """Turn pulse errors into statuses; never leak a traceback to the client."""

    @functools.wraps(method)
    def wrapper(self: PulseService, request: Any, context: grpc.ServicerContext) -> _R:
        try:
            return method(self, request, context)
        except Exception as exc:
            _refuse(context, method, exc)
        raise AssertionError("unreachable: abort raises")

    return wrapper


def _streaming_rpc(
    method: Callable[..., Iterator[_R]],
) -> Callable[..., Iterator[_R]]:
    """``_rpc`` for server-streaming methods: errors may come mid-stream."""

    @functools.wraps(method)
    def wrapper(
        self: PulseService, request: Any, context: grpc.ServicerContext
    ) -> Iterator[_R]:
        try:
            yield from method(self, request, context)
        except Exception as exc:
            _refuse(context, method, exc)

    return wrapper


class PulseService(pulse_pb2_grpc.PulseServicer):
    """Implements pulse.v1.Pulse on top of the database and the dispatcher."""

    def __init__(
        self,
        db: Database,
        config: Config,
        dispatcher: Dispatcher,
        promoter: Promoter,
        notifier: Notifier,
        pause_gate: PauseGate,
        scheduler: Scheduler,
    ) -> None:
        self.db = db
        self.config = config
        self.dispatcher = dispatcher
        self.promoter = promoter
        self.notifier = notifier
        self.pause_gate = pause_gate
        self.scheduler = scheduler
        # Submits never wait to fill a batch: their callers are waiting.
        self.submit_writer: GroupCommit[submits.NewJob, submits.SubmitOutcome] = (
            GroupCommit(
                "submit-writer",
                self._insert_jobs,
                max_batch=config.flush_batch,
                size=_payload_size,
                max_size=MAX_SUBMIT_FLUSH_BYTES,
            )
        )
        self.results_writer: GroupCommit[outcomes.Report, outcomes.Ack] = GroupCommit(
            "result-writer",
            self._apply_results,
            max_batch=config.flush_batch,
            max_wait_seconds=config.flush_ms / 1000,
        )
        self.heartbeat_writer: GroupCommit[outcomes.Beat, outcomes.BeatReply] = (
            GroupCommit(
                "heartbeat-writer",
                self._extend_leases,
                max_batch=config.flush_batch,
                max_wait_seconds=config.flush_ms / 1000,
            )
        )
        self._streams_lock = threading.Lock()
        self._open_streams = 0
        self._sessions: set[stream.StreamSession] = set()

    def start(self) -> None:
        for writer in (self.submit_writer, self.results_writer, self.heartbeat_writer):
            writer.start()

    def stop(self) -> None:
        """Close every stream (workers reconnect elsewhere) and flush writers."""
        with self._streams_lock:
            sessions = list(self._sessions)
        for session in sessions:
            session.close()
        for writer in (self.submit_writer, self.results_writer, self.heartbeat_writer):
            writer.stop()

    # -- batch bodies, run by the writers' flusher threads ------------------

    def _insert_jobs(
        self, new_jobs: list[submits.NewJob]
    ) -> list[submits.SubmitOutcome]:
        # One round trip per statement: the insert commits by itself, and the
        # rare look-up of ids that existed needs no snapshot shared with it.
        with self.db.autocommit() as cur:
            results, pending_topics, any_scheduled = submits.insert_jobs(cur, new_jobs)
        # The wake-up first: an idle worker waits on it.
        if pending_topics:
            self.dispatcher.wake(pending_topics)
        if any_scheduled:
            self.promoter.wake()
        self.notifier.announce(pending_topics, due=any_scheduled)
        metrics.count_submitted(
            job.topic
            for job, result in zip(new_jobs, results, strict=True)
            if result.error is None and not result.existed
        )
        return results

    # Results and heartbeats are one statement each: no BEGIN/COMMIT trips.
    def _apply_results(self, reports: list[outcomes.Report]) -> list[outcomes.Ack]:
        with self.db.autocommit() as cur:
            acks = outcomes.apply_results(cur, reports, self.config)
        # Jobs a worker returned unstarted are pending again: wake whoever
        # takes them, here and on other replicas.
        returned = {ack.topic for ack in acks if ack.status == "pending"}
        if returned:
            self.dispatcher.wake(returned)
            self.notifier.announce(returned, due=False)
        return acks

    def _extend_leases(self, beats: list[outcomes.Beat]) -> list[outcomes.BeatReply]:
        with self.db.autocommit() as cur:
            return outcomes.extend_leases(cur, beats, self.config)

    # -- RPCs ----------------------------------------------------------------

    @_rpc
    def SubmitJob(
        self, request: pb.SubmitJobRequest, context: grpc.ServicerContext
    ) -> pb.SubmitJobResponse:
        new_job = submits.validate(request.job, self.config)
        (result,) = self.submit_writer.call([new_job])
        if result.error is not None:
            raise result.error
        if result.existed:
            with self.db.transaction() as cur:
                job = jobs.get_job(cur, result.job_id)
            return pb.SubmitJobResponse(job=job, existed=True)
        job = pb.Job(
            id=result.job_id,
            topic=new_job.topic,
            payload=new_job.payload,
            priority=new_job.priority,
            status=STATUS_TO_PROTO[result.status],
            max_attempts=new_job.max_attempts,
            run_at=submits.timestamp_from_us(result.run_at_us),
            created_at=submits.timestamp_from_us(result.created_at_us),
            timeout_ms=new_job.timeout_ms,
        )
        return pb.SubmitJobResponse(job=job)

    @_rpc
    def SubmitJobs(
        self, request: pb.SubmitJobsRequest, context: grpc.ServicerContext
    ) -> pb.SubmitJobsResponse:
        if len(request.jobs) > self.config.flush_batch * 10:
            raise InvalidArgument(
                f"{len(request.jobs)} jobs in one SubmitJobs; send at most "
                f"{self.config.flush_batch * 10} per call"
            )
        new_jobs: list[submits.NewJob] = []
        refused: dict[int, submits.SubmitOutcome] = {}
        for index, spec in enumerate(request.jobs):
            try:
                new_jobs.append(submits.validate(spec, self.config))
            except PulseError as exc:
                refused[index] = submits.SubmitOutcome(spec.id, error=exc)
        results = iter(self.submit_writer.call(new_jobs) if new_jobs else ())

        # Built in place: a SubmitResult made apart would be copied in.
        response = pb.SubmitJobsResponse()
        add = response.results.add
        for index in range(len(request.jobs)):
            _submit_result(add(), refused.get(index) or next(results))
        return response

    def StreamJobs(
        self,
        request_iterator: Iterator[pb.WorkerMessage],
        context: grpc.ServicerContext,
    ) -> Iterator[pb.ServerMessage]:
        with self._streams_lock:
            if self._open_streams >= self.config.max_streams:
                full = True
            else:
                full = False
                self._open_streams += 1
        if full:
            abort_with(
                context,
                ResourceExhausted(
                    f"stream limit reached ({self.config.max_streams} open); "
                    "raise PULSE_MAX_STREAMS or add a replica"
                ),
            )
        session = None
        try:
            # A stream holds a thread and a slot: one that never says hello
            # is cancelled instead of holding them forever.
            silent = threading.Timer(self.config.hello_timeout_seconds, context.cancel)
            silent.start()
            try:
                first = next(request_iterator, None)
                session = stream.open_session(first)
            except PulseError as exc:
                abort_with(context, exc)
            finally:
                silent.cancel()
            if not context.is_active():
                return
            assert first is not None and session is not None
            with self._streams_lock:
                self._sessions.add(session)
            context.add_callback(session.close)
            self.dispatcher.register(session, first.hello.credits)
            threading.Thread(
                target=stream.read_worker_messages,
                args=(self, session, first, request_iterator),
                name=f"pulse-stream-{session.worker_id[:40]}",
                daemon=True,
            ).start()
            log.info(
                "stream.opened worker_id=%s topics=%s credits=%d",
                session.worker_id,
                ",".join(sorted(session.topics)),
                first.hello.credits,
            )
            yield pb.ServerMessage(
                lease_ms=int(self.config.lease_seconds * 1000), accepts_returned=True
            )
            yield from session.outgoing()
            if session.error is not None:
                abort_with(context, session.error)
        finally:
            if session is not None:
                session.close()
                self.dispatcher.unregister(session)
                with self._streams_lock:
                    self._sessions.discard(session)
                log.info("stream.closed worker_id=%s", session.worker_id)
            with self._streams_lock:
                self._open_streams -= 1

    @_rpc
    def GetJob(
        self, request: pb.GetJobRequest, context: grpc.ServicerContext
    ) -> pb.Job:
        with self.db.transaction() as cur:
            return jobs.get_job(cur, request.id)

    @_rpc
    def ListJobs(
        self, request: pb.ListJobsRequest, context: grpc.ServicerContext
    ) -> pb.ListJobsResponse:
        if request.topic:
            validate_topic(request.topic)
        with self.db.transaction() as cur:
            page, token = jobs.list_jobs(
                cur,
                statuses=list(request.statuses),
                topic=request.topic,
                page_size=request.page_size,
                page_token=request.page_token,
                error_contains=request.error_contains,
                created_after=jobs.from_timestamp(
                    request.created_after, "created_after"
                )
                if request.HasField("created_after")
                else None,
            )
        return pb.ListJobsResponse(jobs=page, next_page_token=token)

    @_rpc
    def CancelJob(
        self, request: pb.CancelJobRequest, context: grpc.ServicerContext
    ) -> pb.Job:
        caller = current_caller(context)
        with self.db.transaction() as cur:
            job = jobs.cancel_job(cur, request.id)
            audit.record(
                cur, caller, "job.cancel", job.id, {"status": _status_name(job)}
            )
        log.info(
            "job.cancel job_id=%s status=%s", job.id, pb.JobStatus.Name(job.status)
        )
        return job

    @_rpc
    def RequeueJob(
        self, request: pb.RequeueJobRequest, context: grpc.ServicerContext
    ) -> pb.Job:
        caller = current_caller(context)
        with self.db.transaction() as cur:
            job = jobs.requeue_job(cur, request.id)
            audit.record(cur, caller, "job.requeue", job.id, {"attempt": job.attempt})
        self.dispatcher.wake({job.topic})
        log.info("job.requeue job_id=%s attempt=%d", job.id, job.attempt)
        return job

    @_rpc
    def Stats(
        self, request: pb.StatsRequest, context: grpc.ServicerContext
    ) -> pb.StatsResponse:
        with self.db.transaction() as cur:
            return jobs.stats(cur)

    @_streaming_rpc
    def RequeueJobs(
        self, request: pb.RequeueJobsRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.RequeueJobsProgress]:
        caller = current_caller(context)
        for progress in jobs.requeue_matching(
            self.db, caller, request.filter, dry_run=request.dry_run
        ):
            if progress.requeued:
                self.dispatcher.wake(None)
            yield progress

    @_rpc
    def ListDeadLetterGroups(
        self, request: pb.ListDeadLetterGroupsRequest, context: grpc.ServicerContext
    ) -> pb.ListDeadLetterGroupsResponse:
        with self.db.transaction() as cur:
            return reports.dead_letter_groups(cur, request)

    @_rpc
    def Throughput(
        self, request: pb.ThroughputRequest, context: grpc.ServicerContext
    ) -> pb.ThroughputResponse:
        with self.db.transaction() as cur:
            return reports.throughput(cur, request)

    # -- schedules -------------------------------------------------------------

    @_rpc
    def PutSchedule(
        self, request: pb.PutScheduleRequest, context: grpc.ServicerContext
    ) -> pb.PutScheduleResponse:
        caller = current_caller(context)
        with self.db.transaction() as cur:
            schedule, outcome = schedules.put_schedule(
                cur, request.schedule, self.config
            )
            # An application re-declares its schedules on every start: only
            # a declaration that changed something is an operator action.
            if outcome != "unchanged":
                audit.record(
                    cur,
                    caller,
                    "schedule.create" if outcome == "created" else "schedule.update",
                    schedule.name,
                    {"topic": schedule.topic, "rule": _rule_text(schedule.rule)},
                )
        self.scheduler.wake()
        return pb.PutScheduleResponse(schedule=schedule, created=outcome == "created")

    @_rpc
    def GetSchedule(
        self, request: pb.GetScheduleRequest, context: grpc.ServicerContext
    ) -> pb.Schedule:
        with self.db.transaction() as cur:
            return schedules.get_schedule(cur, request.name)

    @_rpc
    def ListSchedules(
        self, request: pb.ListSchedulesRequest, context: grpc.ServicerContext
    ) -> pb.ListSchedulesResponse:
        with self.db.transaction() as cur:
            page, token = schedules.list_schedules(cur, request)
        return pb.ListSchedulesResponse(schedules=page, next_page_token=token)

    @_rpc
    def PauseSchedule(
        self, request: pb.PauseScheduleRequest, context: grpc.ServicerContext
    ) -> pb.Schedule:
        caller = current_caller(context)
        with self.db.transaction() as cur:
            schedule = schedules.pause_schedule(cur, request.name)
            audit.record(cur, caller, "schedule.pause", schedule.name)
        return schedule

    @_rpc
    def ResumeSchedule(
        self, request: pb.ResumeScheduleRequest, context: grpc.ServicerContext
    ) -> pb.Schedule:
        caller = current_caller(context)
        with self.db.transaction() as cur:
            schedule = schedules.resume_schedule(cur, request.name)
            audit.record(cur, caller, "schedule.resume", schedule.name)
        self.scheduler.wake()
        return schedule

    @_rpc
    def DeleteSchedule(
        self, request: pb.DeleteScheduleRequest, context: grpc.ServicerContext
    ) -> pb.DeleteScheduleResponse:
        caller = current_caller(context)
        with self.db.transaction() as cur:
            schedules.delete_schedule(cur, request.name)
            audit.record(cur, caller, "schedule.delete", request.name)
        return pb.DeleteScheduleResponse()

    @_rpc
    def ListOccurrences(
        self, request: pb.ListOccurrencesRequest, context: grpc.ServicerContext
    ) -> pb.ListOccurrencesResponse:
        with self.db.transaction() as cur:
            page, token = schedules.list_occurrences(cur, request)
        return pb.ListOccurrencesResponse(occurrences=page, next_page_token=token)

    @_rpc
    def PreviewSchedule(
        self, request: pb.PreviewScheduleRequest, context: grpc.ServicerContext
    ) -> pb.PreviewScheduleResponse:
        with self.db.transaction() as cur:
            times = schedules.preview(cur, request)
        return pb.PreviewScheduleResponse(fire_times=[_timestamp(t) for t in times])

    # -- the dispatch pause ----------------------------------------------------

    @_rpc
    def PauseDispatch(
        self, request: pb.PauseDispatchRequest, context: grpc.ServicerContext
    ) -> pb.DispatchStatus:
        caller = current_caller(context)
        with self.db.transaction() as cur:
            scope = gate.pause(cur, caller, request.topic, request.reason)
            audit.record(
                cur,
                caller,
                "dispatch.pause",
                scope,
                {"reason": gate.check_reason(request.reason)},
            )
            answer = gate.status(cur)
        # This replica follows at once; the others within a gate poll.
        self.pause_gate.refresh()
        log.info("dispatch.paused scope=%s user=%s", scope, caller.user)
        return answer

    @_rpc
    def ResumeDispatch(
        self, request: pb.ResumeDispatchRequest, context: grpc.ServicerContext
    ) -> pb.DispatchStatus:
        caller = current_caller(context)
        with self.db.transaction() as cur:
            scope, was_paused = gate.resume(cur, request.topic)
            audit.record(
                cur, caller, "dispatch.resume", scope, {"was_paused": was_paused}
            )
            answer = gate.status(cur)
        # This replica follows at once; the others within a gate poll.
        self.pause_gate.refresh()
        log.info("dispatch.resumed scope=%s user=%s", scope, caller.user)
        return answer

    @_rpc
    def GetDispatchStatus(
        self, request: pb.GetDispatchStatusRequest, context: grpc.ServicerContext
    ) -> pb.DispatchStatus:
        with self.db.transaction() as cur:
            return gate.status(cur)

    # -- identity and audit ------------------------------------------------------

    @_rpc
    def WhoAmI(
        self, request: pb.WhoAmIRequest, context: grpc.ServicerContext
    ) -> pb.WhoAmIResponse:
        # The interceptor let this call through without credentials, but
        # never with wrong ones; on an open server there is no interceptor.
        caller = current_caller(context)
        return pb.WhoAmIResponse(
            auth_required=bool(self.config.auth_users),
            authenticated=caller.authenticated,
            user=caller.user,
            role=caller.role,
        )

    @_rpc
    def ListAudit(
        self, request: pb.ListAuditRequest, context: grpc.ServicerContext
    ) -> pb.ListAuditResponse:
        validate_text("user", request.user)
        validate_text("action", request.action)
        with self.db.transaction() as cur:
            entries, token = audit.list_entries(cur, request)
        return pb.ListAuditResponse(entries=entries, next_page_token=token)


def _timestamp(moment: datetime.datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(moment)
    return ts


def _status_name(job: pb.Job) -> str:
    return pb.JobStatus.Name(job.status).removeprefix("JOB_STATUS_").lower()


def _rule_text(rule: pb.ScheduleRule) -> str:
    kind = rule.WhichOneof("kind")
    if kind is None:
        return ""
    value = getattr(rule, kind)
    if kind == "at":
        return f"at {value.ToJsonString()}"
    if kind == "cron":
        return f"cron {value} {rule.time_zone or 'UTC'}"
    return f"{kind} {value}"


# Payload bytes in one insert, at most (a single SubmitJobs may exceed it,
# alone): concurrent calls of large payloads once merged into a statement
# of over a gigabyte, which Postgres refuses.
MAX_SUBMIT_FLUSH_BYTES = 64 * 1024 * 1024


def _payload_size(job: submits.NewJob) -> int:
    return len(job.payload)


def _submit_result(answer: pb.SubmitResult, result: submits.SubmitOutcome) -> None:
    answer.job_id = result.job_id
    if result.error is not None:
        answer.error.code = result.error.code
        answer.error.message = str(result.error)
        return
    answer.status = STATUS_TO_PROTO[result.status]
    if result.existed:
        answer.existed = True
