"""Checks of the SDK's arguments, shared by its calls: a bad value is an
``InvalidArgument`` naming it, raised before anything is sent."""

from __future__ import annotations

import datetime
import math
from collections.abc import Iterable

from google.protobuf import timestamp_pb2

from pulse_client._proto.pulse.v1 import pulse_pb2 as pb
from pulse_client.errors import InvalidArgument
from pulse_client.models import JobStatus, status_to_proto


def timestamp(moment: datetime.datetime, name: str) -> timestamp_pb2.Timestamp:
    if not isinstance(moment, datetime.datetime):
        raise InvalidArgument(f"{name} {moment!r} is not a datetime")
    if moment.tzinfo is None:
        raise InvalidArgument(
            f"{name} {moment.isoformat()} has no time zone; pass an aware datetime"
        )
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(moment)
    return ts


def statuses(
    status: JobStatus | str | Iterable[JobStatus | str] | None,
) -> list[pb.JobStatus.ValueType]:
    if status is None:
        return []
    if isinstance(status, str):
        return [status_to_proto(status)]
    return [status_to_proto(s) for s in status]


def check_int(name: str, value: object, low: int, high: int) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not low <= value <= high
    ):
        raise InvalidArgument(f"{name} {value!r} is out of range {low}..{high}")


def milliseconds(
    value: datetime.timedelta | float | None, name: str, maximum_ms: int
) -> int:
    if value is None:
        return 0
    seconds = value.total_seconds() if isinstance(value, datetime.timedelta) else value
    if not isinstance(seconds, int | float) or not math.isfinite(seconds):
        raise InvalidArgument(f"{name} {value!r} is not a finite number of seconds")
    if not 0 <= seconds * 1000 <= maximum_ms:
        raise InvalidArgument(
            f"{name} of {seconds:g}s is out of range 0..{maximum_ms // 1000}s"
        )
    return round(seconds * 1000)
