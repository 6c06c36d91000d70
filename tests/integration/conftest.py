"""Integration tests: a real pulsed on a fresh database per test."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from pulse_client._proto.pulse.v1 import pulse_pb2_grpc
from tests.fixtures.servers import InProcessServer


@pytest.fixture
def server(start_inprocess: Callable[..., InProcessServer]) -> InProcessServer:
    """An in-process pulsed with default settings on this test's database."""
    return start_inprocess()


@pytest.fixture
def stub(server: InProcessServer) -> pulse_pb2_grpc.PulseStub:
    return server.stub()
