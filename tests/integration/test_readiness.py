"""pulsed's gRPC health follows its database: NOT_SERVING while Postgres is
down, SERVING again once it is back, without a restart of pulsed."""

from __future__ import annotations

import time
from collections.abc import Callable

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.fixtures.servers import PulsedProcess
from tests.pgcluster import PgCluster

pytestmark = pytest.mark.slow

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def health_status(server: PulsedProcess, service: str = "") -> int:
    with grpc.insecure_channel(server.addr) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=5
        )
    return int(reply.status)


def wait_for_health(server: PulsedProcess, wanted: int, seconds: float) -> float:
    name = health_pb2.HealthCheckResponse.ServingStatus.Name(wanted)
    started = time.monotonic()
    while health_status(server) != wanted:
        assert time.monotonic() - started < seconds, f"health never became {name}"
        time.sleep(0.1)
    return time.monotonic() - started


def test_health_is_not_serving_while_the_database_is_down(
    pg_cluster: PgCluster, start_pulsed: Callable[..., PulsedProcess]
) -> None:
    url = pg_cluster.create_database("pulse")
    server = start_pulsed(db_url=url, db_connect_timeout_seconds=1, health_seconds=0.2)
    assert health_status(server) == SERVING

    pg_cluster.stop("immediate")
    wait_for_health(server, NOT_SERVING, seconds=10)
    service_status = health_status(server, "pulse.v1.Pulse")
    pg_cluster.start()
    wait_for_health(server, SERVING, seconds=15)

    assert service_status == NOT_SERVING
    assert health_status(server, "pulse.v1.Pulse") == SERVING
    assert "server.database_unreachable" in server.log()
    assert "server.database_reachable" in server.log()
