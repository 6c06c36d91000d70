"""Schedules: At, After, Every and Cron, each occurrence fired exactly once.

(Being built: the interface below is what the service and server use.)
"""

from __future__ import annotations

import datetime
from collections.abc import Callable

from pulse_client._proto.pulse.v1 import pulse_pb2 as pb
from pulse_client.errors import PulseError
from pulsed.config import Config
from pulsed.database import Cursor, Database
from pulsed.loops import BackgroundLoop


class _NotBuilt(PulseError):
    code = "unimplemented"


def put_schedule(
    cur: Cursor, definition: pb.ScheduleDefinition, config: Config
) -> tuple[pb.Schedule, bool]:
    """Create or update in place by name; True when created."""
    raise _NotBuilt("schedules are not built yet")


def get_schedule(cur: Cursor, name: str) -> pb.Schedule:
    raise _NotBuilt("schedules are not built yet")


def list_schedules(
    cur: Cursor, request: pb.ListSchedulesRequest
) -> tuple[list[pb.Schedule], str]:
    raise _NotBuilt("schedules are not built yet")


def pause_schedule(cur: Cursor, name: str) -> pb.Schedule:
    raise _NotBuilt("schedules are not built yet")


def resume_schedule(cur: Cursor, name: str) -> pb.Schedule:
    raise _NotBuilt("schedules are not built yet")


def delete_schedule(cur: Cursor, name: str) -> None:
    raise _NotBuilt("schedules are not built yet")


def list_occurrences(
    cur: Cursor, request: pb.ListOccurrencesRequest
) -> tuple[list[pb.Occurrence], str]:
    raise _NotBuilt("schedules are not built yet")


def preview(cur: Cursor, request: pb.PreviewScheduleRequest) -> list[datetime.datetime]:
    raise _NotBuilt("schedules are not built yet")


class Scheduler(BackgroundLoop):
    """Fires due occurrences; runs in every replica."""

    name = "scheduler"

    def __init__(
        self,
        db: Database,
        config: Config,
        on_fired: Callable[[set[str], bool], None],
    ) -> None:
        super().__init__(db, config)
        self._on_fired = on_fired

    def step(self) -> float:
        return self.config.scheduler_poll_seconds
