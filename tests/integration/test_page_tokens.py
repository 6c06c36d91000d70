"""A forged page token is refused as invalid input, never a database error.

Regression: a token holding a time with an extreme UTC offset
(9999-12-31T23:59:59-23:59) reached Postgres and came back as INTERNAL
("time zone displacement out of range"), logged as a server error.
"""

from __future__ import annotations

import base64
from collections.abc import Callable

import grpc
import pytest

from pulse_client._proto.pulse.v1 import pulse_pb2 as pb
from pulse_client._proto.pulse.v1 import pulse_pb2_grpc
from tests.fixtures.servers import InProcessServer

ID = "01a24300-0000-7000-8000-000000000001"


@pytest.mark.parametrize(
    "raw",
    [
        f"9999-12-31T23:59:59.999999-23:59|{ID}",
        f"0001-01-01T00:00:00+23:59|{ID}",
        f"2026-12-04T10:00:00|{ID}",  # no time zone
        "2026-12-04T10:00:00+00:00|not-a-uuid",
        "no separator",
    ],
)
def test_a_forged_page_token_gets_invalid_argument(
    start_inprocess: Callable[..., InProcessServer], raw: str
) -> None:
    server = start_inprocess()
    token = base64.urlsafe_b64encode(raw.encode()).decode()
    with grpc.insecure_channel(server.addr) as channel:
        stub = pulse_pb2_grpc.PulseStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.ListJobs(pb.ListJobsRequest(page_token=token))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "page_token" in (caught.value.details() or "")
