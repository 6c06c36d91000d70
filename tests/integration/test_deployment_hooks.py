"""What service managers and container runtimes see of pulsed: systemd's
readiness notification, the container health check, JSON logs."""

from __future__ import annotations

import json
import pathlib
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest

from tests.fixtures.servers import REPO_ROOT, PulsedProcess, free_port


@pytest.fixture
def notify_socket(tmp_path: pathlib.Path) -> Iterator[tuple[str, socket.socket]]:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(30)
    yield path, sock
    sock.close()


def test_pulsed_tells_systemd_it_is_ready_once_serving_and_when_stopping(
    start_pulsed: Callable[..., PulsedProcess],
    notify_socket: tuple[str, socket.socket],
) -> None:
    path, sock = notify_socket
    server = start_pulsed(env={"NOTIFY_SOCKET": path}, wait=False)

    ready = sock.recv(256)
    serving = server.wait_until_serving(5)
    server.stop()
    stopping = sock.recv(256)

    assert (ready, serving, stopping) == (b"READY=1", True, b"STOPPING=1")


def test_the_health_check_command_exits_0_for_a_serving_server_else_1(
    start_pulsed: Callable[..., PulsedProcess],
) -> None:
    server = start_pulsed()

    def check(addr: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pulsed.healthcheck", addr],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        )

    up = check(server.addr)
    down = check(f"127.0.0.1:{free_port()}")

    assert (up.returncode, up.stdout.strip()) == (
        0,
        f"pulsed at {server.addr}: SERVING",
    )
    assert down.returncode == 1
    assert "UNAVAILABLE" in down.stderr


def test_json_logs_give_one_object_per_line_with_event_fields(
    start_pulsed: Callable[..., PulsedProcess],
) -> None:
    server = start_pulsed(env={"PULSE_LOG_FORMAT": "json"})
    server.stop()

    lines = [line for line in server.log().splitlines() if line.strip()]
    documents = [json.loads(line) for line in lines]
    events = {d.get("event") for d in documents}
    started = next(d for d in documents if d.get("event") == "server.started")

    assert {"server.started", "server.stopping", "server.stopped"} <= events
    assert started["port"] == server.port
    assert started["level"] == "INFO"
