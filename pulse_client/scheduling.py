"""The schedule calls of the SDK; ``Pulse`` inherits them. The rules and
the returned types live in ``pulse_client.schedules``."""

from __future__ import annotations

import datetime
from typing import Any

from pulse_client._proto.pulse.v1 import pulse_pb2 as pb
from pulse_client.arguments import check_int, milliseconds
from pulse_client.connection import Connection
from pulse_client.errors import InvalidArgument
from pulse_client.handlers import encode_payload
from pulse_client.limits import (
    MAX_ATTEMPTS_LIMIT,
    MAX_PAGE_SIZE,
    MAX_PRIORITY,
    MAX_TIMEOUT_MS,
    validate_topic,
)
from pulse_client.schedules import (
    MissedRuns,
    Occurrence,
    Rule,
    Schedule,
    missed_runs_to_proto,
    rule_to_proto,
)

# Limits of the schedule calls, as the server enforces them.
_MAX_CATCH_UP = 1000
_MAX_PREVIEW = 1000
_MAX_HISTORY = 100_000


class ScheduleCalls:
    """Declare, inspect and steer schedules."""

    _connection: Connection

    def schedule(
        self,
        topic: str,
        args: Any,
        when: Rule,
        *,
        name: str | None = None,
        priority: int = 0,
        max_attempts: int | None = None,
        timeout: datetime.timedelta | float | None = None,
        missed_runs: MissedRuns | str = MissedRuns.ONE,
        max_catch_up: int | None = None,
    ) -> Schedule:
        """Declare a schedule that enqueues ``topic`` with ``args`` by the rule
        ``when`` (``At``, ``After``, ``Every`` or ``Cron``), and return it.

        Declaring it again updates it in place, so an application can declare
        its schedules on every start: an unchanged rule keeps its cadence, a
        changed rule restarts from now, and the job fields (``args``,
        ``priority``, ``max_attempts``, ``timeout``) apply to later firings.
        Without ``name``, the name is made of the topic and the rule (for
        example ``"reports.rollup@cron:0 * * * *@Europe/Berlin"``), so a
        changed rule makes another schedule: name the schedules whose rule
        may change. ``missed_runs`` decides what happens to occurrences
        missed during downtime or a pause (see ``MissedRuns``);
        ``max_catch_up`` (1..1000, default 100) bounds ``MissedRuns.ALL``.
        """
        validate_topic(topic)
        check_int("priority", priority, -MAX_PRIORITY, MAX_PRIORITY)
        if max_attempts is not None:
            check_int("max_attempts", max_attempts, 1, MAX_ATTEMPTS_LIMIT)
        if max_catch_up is not None:
            check_int("max_catch_up", max_catch_up, 1, _MAX_CATCH_UP)
        definition = pb.ScheduleDefinition(
            name=_schedule_name(name) if name is not None else "",
            topic=topic,
            payload=encode_payload(args),
            priority=priority,
            max_attempts=max_attempts or 0,
            timeout_ms=milliseconds(timeout, "timeout", MAX_TIMEOUT_MS),
            rule=rule_to_proto(when),
            missed_runs=missed_runs_to_proto(missed_runs),
            max_catch_up=max_catch_up or 0,
        )
        response = self._connection.call(
            lambda stub: stub.PutSchedule(
                pb.PutScheduleRequest(schedule=definition), **self._connection.kwargs()
            )
        )
        return Schedule.from_proto(response.schedule)

    def get_schedule(self, name: str) -> Schedule:
        """The schedule called ``name``; ``ScheduleNotFound`` if none is."""
        request = pb.GetScheduleRequest(name=_schedule_name(name))
        response = self._connection.call(
            lambda stub: stub.GetSchedule(request, **self._connection.kwargs())
        )
        return Schedule.from_proto(response)

    def list_schedules(self, *, topic: str | None = None) -> list[Schedule]:
        """Every schedule (of ``topic``, if given), by name."""
        if topic is not None:
            validate_topic(topic)
        schedules: list[Schedule] = []
        token = ""
        while True:
            request = pb.ListSchedulesRequest(
                topic=topic or "", page_size=MAX_PAGE_SIZE, page_token=token
            )
            response = self._schedules_page(request)
            schedules += [Schedule.from_proto(s) for s in response.schedules]
            token = response.next_page_token
            if not token:
                return schedules

    def _schedules_page(
        self, request: pb.ListSchedulesRequest
    ) -> pb.ListSchedulesResponse:
        return self._connection.call(
            lambda stub: stub.ListSchedules(request, **self._connection.kwargs())
        )

    def pause_schedule(self, name: str) -> Schedule:
        """Stop the schedule firing (pausing a paused one changes nothing).
        The pause outlives server restarts."""
        request = pb.PauseScheduleRequest(name=_schedule_name(name))
        response = self._connection.call(
            lambda stub: stub.PauseSchedule(request, **self._connection.kwargs())
        )
        return Schedule.from_proto(response)

    def resume_schedule(self, name: str) -> Schedule:
        """Let the schedule fire again; what came due while it was paused
        follows its missed-runs policy."""
        request = pb.ResumeScheduleRequest(name=_schedule_name(name))
        response = self._connection.call(
            lambda stub: stub.ResumeSchedule(request, **self._connection.kwargs())
        )
        return Schedule.from_proto(response)

    def delete_schedule(self, name: str) -> None:
        """Delete the schedule and its history; the jobs it made stay."""
        request = pb.DeleteScheduleRequest(name=_schedule_name(name))
        self._connection.call(
            lambda stub: stub.DeleteSchedule(request, **self._connection.kwargs())
        )

    def schedule_history(self, name: str, *, limit: int = 100) -> list[Occurrence]:
        """What the schedule fired, newest first, up to ``limit`` occurrences,
        each with its job's status. Old occurrences are pruned with the
        server's retention period."""
        check_int("limit", limit, 1, _MAX_HISTORY)
        occurrences: list[Occurrence] = []
        token = ""
        while len(occurrences) < limit:
            request = pb.ListOccurrencesRequest(
                name=_schedule_name(name),
                page_size=min(MAX_PAGE_SIZE, limit - len(occurrences)),
                page_token=token,
            )
            response = self._occurrences_page(request)
            occurrences += [Occurrence.from_proto(o) for o in response.occurrences]
            token = response.next_page_token
            if not token:
                break
        return occurrences

    def _occurrences_page(
        self, request: pb.ListOccurrencesRequest
    ) -> pb.ListOccurrencesResponse:
        return self._connection.call(
            lambda stub: stub.ListOccurrences(request, **self._connection.kwargs())
        )

    def preview_schedule(
        self, name_or_rule: str | Rule, *, count: int = 10
    ) -> list[datetime.datetime]:
        """The next ``count`` (1..1000) fire times of the schedule called
        ``name_or_rule``, from its next unfired occurrence on, or of a rule as
        if it were declared now. Computed by the server, at its clock."""
        check_int("count", count, 1, _MAX_PREVIEW)
        if isinstance(name_or_rule, str):
            request = pb.PreviewScheduleRequest(
                name=_schedule_name(name_or_rule), count=count
            )
        else:
            request = pb.PreviewScheduleRequest(
                rule=rule_to_proto(name_or_rule), count=count
            )
        response = self._connection.call(
            lambda stub: stub.PreviewSchedule(request, **self._connection.kwargs())
        )
        return [t.ToDatetime(tzinfo=datetime.UTC) for t in response.fire_times]


def _schedule_name(name: str) -> str:
    if not isinstance(name, str) or not name:
        raise InvalidArgument(f"schedule name {name!r} is empty or not a string")
    return name
