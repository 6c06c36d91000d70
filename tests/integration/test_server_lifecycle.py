"""pulsed starts, answers health checks, refuses bad settings and stops cleanly."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.fixtures.servers import REPO_ROOT, InProcessServer, PulsedProcess, free_port
from tests.fixtures.streams import WorkerStream
from tests.fixtures.wire import submit

OpenStream = Callable[..., WorkerStream]


def run_pulsed(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run pulsed to its exit (it must exit on its own)."""
    return subprocess.run(
        [sys.executable, "-m", "pulsed.server"],
        cwd=REPO_ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_health_answers_serving_for_the_server_and_the_pulse_service(
    server: InProcessServer,
) -> None:
    health = health_pb2_grpc.HealthStub(server.channel())

    for service in ("", "pulse.v1.Pulse"):
        reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_pulse_and_health_services(
    server: InProcessServer,
) -> None:
    reflection = reflection_pb2_grpc.ServerReflectionStub(server.channel())

    replies = reflection.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
    )

    names = {s.name for reply in replies for s in reply.list_services_response.service}
    assert {"pulse.v1.Pulse", "grpc.health.v1.Health"} <= names


def test_sigterm_ends_streams_and_exits_0(
    start_pulsed: Callable[..., PulsedProcess], open_stream: OpenStream
) -> None:
    server = start_pulsed(shutdown_grace_seconds=1)
    stub = server.stub()
    worker = open_stream(stub, "w", ["t"], 1)
    submit(stub)
    worker.take_assignments(1)

    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    returncode = server.process.wait(15)

    assert returncode == 0
    assert time.monotonic() - started < 10
    worker.wait_for_end()  # the worker would now reconnect to another replica
    assert "server.stopped" in server.log()


def test_pulsed_refuses_a_bad_setting_naming_the_variable() -> None:
    result = run_pulsed(
        {"PULSE_LEASE_SECONDS": "soon", "PULSE_GRPC_ADDR": f"127.0.0.1:{free_port()}"}
    )

    assert result.returncode == 2
    assert "pulsed: PULSE_LEASE_SECONDS='soon' is not a number" in result.stderr
    assert "Traceback" not in result.stderr


def test_pulsed_exits_with_a_clear_message_when_the_database_is_unreachable() -> None:
    result = run_pulsed(
        {
            "DB_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/nothing",
            "PULSE_GRPC_ADDR": f"127.0.0.1:{free_port()}",
            "PULSE_DB_CONNECT_TIMEOUT_SECONDS": "2",
        }
    )

    assert result.returncode == 1
    assert "pulsed: cannot start:" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_second_server_on_a_taken_port_says_so_without_a_traceback(
    server: InProcessServer, db_url: str
) -> None:
    result = run_pulsed({"DB_URL": db_url, "PULSE_GRPC_ADDR": server.addr})

    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2
    assert f"PULSE_GRPC_ADDR={server.addr!r}" in result.stderr


def test_stopping_a_server_leaves_none_of_its_threads_running(
    start_inprocess: Callable[..., InProcessServer], open_stream: OpenStream
) -> None:
    before = set(threading.enumerate())
    server = start_inprocess()
    stub = server.stub()
    for _ in range(3):
        submit(stub)
    worker = open_stream(stub, "w", ["t"], 3)
    worker.take_assignments(3)
    worker.close()

    server.stop()

    deadline = time.monotonic() + 2
    while True:
        left = sorted(
            t.name
            for t in threading.enumerate()
            if t not in before and t.is_alive() and t.name.startswith("pulse-")
        )
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert left == []


def test_an_in_process_server_answers_on_its_own_port(
    start_inprocess: Callable[..., InProcessServer],
) -> None:
    one, two = start_inprocess(), start_inprocess()

    assert one.port != two.port
    with grpc.insecure_channel(two.addr) as channel:
        grpc.channel_ready_future(channel).result(timeout=5)
