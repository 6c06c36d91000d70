"""Reports over every matching job, computed in the database: dead letters
grouped by error, and throughput per minute.

(Being built: the interface below is what the service uses.)
"""

from __future__ import annotations

from pulse_client._proto.pulse.v1 import pulse_pb2 as pb
from pulse_client.errors import PulseError
from pulsed.database import Cursor


class _NotBuilt(PulseError):
    code = "unimplemented"


def dead_letter_groups(
    cur: Cursor, request: pb.ListDeadLetterGroupsRequest
) -> pb.ListDeadLetterGroupsResponse:
    raise _NotBuilt("dead-letter groups are not built yet")


def throughput(cur: Cursor, request: pb.ThroughputRequest) -> pb.ThroughputResponse:
    raise _NotBuilt("throughput is not built yet")
