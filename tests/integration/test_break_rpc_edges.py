"""Request values that crashed an RPC with INTERNAL, found by the properties
in tests/property/test_rpc_inputs.py; each is now INVALID_ARGUMENT.

Regressions: a Timestamp with seconds or nanos outside its range (ListJobs
created_after, RequeueJobs filter.created_after, ListAudit since/until)
raised ValueError in ToDatetime; a NUL character in text that reaches SQL
(ListJobs error_contains, RequeueJobs error_contains/error_signature,
PauseDispatch reason, ListAudit user/action) raised psycopg2's ValueError.
The pause reason is now checked by ``gate.check_reason``; it stays here as
one more field that reaches SQL.
"""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest
from google.protobuf import timestamp_pb2

from pulse_client._proto.pulse.v1 import pulse_pb2 as pb
from pulse_client.errors import ERROR_CODE_METADATA_KEY
from tests.fixtures.servers import InProcessServer

BAD_TIMES = [
    timestamp_pb2.Timestamp(seconds=0, nanos=-1),
    timestamp_pb2.Timestamp(seconds=-62_135_596_801),
    timestamp_pb2.Timestamp(seconds=253_402_300_800),
]


def _requests() -> list[tuple[str, object]]:
    cases: list[tuple[str, object]] = []
    for ts in BAD_TIMES:
        cases += [
            ("ListJobs", pb.ListJobsRequest(created_after=ts)),
            (
                "RequeueJobs",
                pb.RequeueJobsRequest(
                    filter=pb.JobFilter(created_after=ts), dry_run=True
                ),
            ),
            ("ListAudit", pb.ListAuditRequest(since=ts)),
            ("ListAudit", pb.ListAuditRequest(until=ts)),
        ]
    cases += [
        ("ListJobs", pb.ListJobsRequest(error_contains="a\x00b")),
        (
            "RequeueJobs",
            pb.RequeueJobsRequest(
                filter=pb.JobFilter(error_contains="a\x00b"), dry_run=True
            ),
        ),
        (
            "RequeueJobs",
            pb.RequeueJobsRequest(
                filter=pb.JobFilter(error_signature="a\x00b"), dry_run=True
            ),
        ),
        ("PauseDispatch", pb.PauseDispatchRequest(reason="a\x00b")),
        ("ListAudit", pb.ListAuditRequest(user="a\x00b")),
        ("ListAudit", pb.ListAuditRequest(action="a\x00b")),
    ]
    return cases


@pytest.mark.parametrize(("method", "request_message"), _requests())
def test_an_unusable_time_or_a_nul_character_is_invalid_argument(
    start_inprocess: Callable[..., InProcessServer],
    method: str,
    request_message: object,
) -> None:
    stub = start_inprocess().stub()

    with pytest.raises(grpc.RpcError) as caught:
        answer = getattr(stub, method)(request_message, timeout=10)
        if method == "RequeueJobs":
            list(answer)

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (ERROR_CODE_METADATA_KEY, "invalid_argument") in (
        caught.value.trailing_metadata() or ()
    )
    assert stub.GetDispatchStatus(pb.GetDispatchStatusRequest()).paused is False
