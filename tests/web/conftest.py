"""Dashboard tests: the Flask app's test client against a real pulsed.

``web`` is the dashboard of a fresh pulsed (``start_pulsed``) on this test's
database, with an SDK client (``web.pulse``) to arrange and check state.
``make_web`` builds more (other sign-in settings, another address).
``finish_jobs`` runs jobs to their end with a real worker. ``relay`` puts a
TCP relay between the dashboard and pulsed that a test can cut and restore,
to see the dashboard lose pulsed and find it again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from pulse_client import JobStatus, PermanentError, Pulse
from pulse_web.app import close_app, create_app
from pulse_web.config import WebConfig
from tests.fixtures.servers import PulsedProcess

FINISHED = {JobStatus.COMPLETED, JobStatus.DEAD_LETTERED, JobStatus.CANCELED}
_CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclasses.dataclass
class Web:
    """One dashboard app, its test client, and an SDK client of its pulsed."""

    app: Flask
    http: FlaskClient
    pulse: Pulse
    addr: str

    def get(self, path: str, status: int = 200, **kwargs: Any) -> str:
        """The page at ``path``, which must answer ``status``."""
        response = self.http.get(path, **kwargs)
        text = response.get_data(as_text=True)
        assert response.status_code == status, f"GET {path}: {response.status}\n{text}"
        return text

    def csrf_token(self) -> str:
        """The CSRF token of this browser session, as its forms carry it."""
        page = self.get("/dispatch")
        match = _CSRF_INPUT.search(page)
        assert match, "no CSRF token on /dispatch"
        return match.group(1)

    def post(
        self,
        path: str,
        data: dict[str, str] | None = None,
        *,
        status: int = 303,
        csrf: bool = True,
    ) -> TestResponse:
        """POST a form the way the dashboard's own pages do (with the CSRF
        token unless ``csrf`` is false); the answer must be ``status``."""
        form = dict(data or {})
        if csrf:
            form["csrf_token"] = self.csrf_token()
        response = self.http.post(path, data=form)
        assert response.status_code == status, (
            f"POST {path}: {response.status}\n{response.get_data(as_text=True)}"
        )
        return response

    def follow(self, response: TestResponse, status: int = 200) -> str:
        """The page a 303 answer sends the browser to."""
        location = response.headers["Location"]
        return self.get(location, status)


@pytest.fixture
def make_web() -> Iterator[Callable[..., Web]]:
    """Factory: ``make_web(addr, **WebConfig fields)``, with ``sdk_user=`` and
    ``sdk_password=`` for the test's own SDK client; closed after the test."""
    made: list[tuple[Flask, Pulse]] = []

    def make(
        addr: str,
        *,
        sdk_user: str | None = None,
        sdk_password: str | None = None,
        **settings: Any,
    ) -> Web:
        settings.setdefault("timeout_seconds", 5.0)
        config = WebConfig(addr=addr, **settings)
        app = create_app(config)
        pulse = Pulse(addr, user=sdk_user, password=sdk_password, timeout_seconds=10)
        made.append((app, pulse))
        return Web(app, app.test_client(), pulse, addr)

    yield make

    for app, pulse in made:
        close_app(app)
        pulse.close()


@pytest.fixture
def pulsed(start_pulsed: Callable[..., PulsedProcess]) -> PulsedProcess:
    return start_pulsed()


@pytest.fixture
def web(pulsed: PulsedProcess, make_web: Callable[..., Web]) -> Web:
    """The dashboard of an open pulsed (no credentials)."""
    return make_web(pulsed.addr)


def finish_jobs(
    addr: str,
    topic: str,
    payloads: list[Any],
    *,
    user: str | None = None,
    password: str | None = None,
) -> list[str]:
    """Enqueue ``payloads`` to ``topic`` and run them with a real worker
    until each has finished: a payload with a ``fail`` key dead-letters at
    once with that text as its error, any other completes."""

    def handle(args: Any) -> None:
        if isinstance(args, dict) and "fail" in args:
            raise PermanentError(args["fail"])

    worker = Pulse(
        addr, concurrency=4, timeout_seconds=10, user=user, password=password
    )
    try:
        worker.register(topic, handle)
        ids = [worker.enqueue(topic, payload) for payload in payloads]
        thread = threading.Thread(target=worker.run, name="web-test-worker")
        thread.start()
        try:
            deadline = time.monotonic() + 20
            while not all(worker.get_job(i).status in FINISHED for i in ids):
                assert time.monotonic() < deadline, "jobs did not finish in 20 s"
                time.sleep(0.02)
        finally:
            worker.stop()
            thread.join(15)
    finally:
        worker.close()
    return ids


class Relay:
    """Forwards TCP connections from its own loopback port to ``target``.

    ``cut()`` drops every connection and stops listening, which is how a
    crashed pulsed looks to its clients; ``restore()`` listens again on the
    same port.
    """

    def __init__(self, target: str) -> None:
        host, port = target.rsplit(":", 1)
        self._target = (host, int(port))
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._listener: socket.socket | None = None
        self._stop = threading.Event()
        self.port = 0
        self.restore()

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def restore(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self.port = listener.getsockname()[1]
        self._stop = threading.Event()
        self._listener = listener
        self._spawn(self._accept, listener, self._stop)

    def cut(self) -> None:
        self._stop.set()
        with self._lock:
            sockets, self._sockets = self._sockets, []
            threads, self._threads = self._threads, []
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in threads:
            thread.join(5)

    close = cut

    def _spawn(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name="web-test-relay")
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _accept(self, listener: socket.socket, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                ready, _, _ = select.select([listener], [], [], 0.05)
                if not ready:
                    continue
                inbound, _ = listener.accept()
            except (OSError, ValueError):
                return
            try:
                outbound = socket.create_connection(self._target, timeout=5)
            except OSError:
                inbound.close()
                continue
            with self._lock:
                if stop.is_set():
                    # Cut meanwhile: drop this connection too.
                    inbound.close()
                    outbound.close()
                    return
                self._sockets += [inbound, outbound]
                for source, sink in ((inbound, outbound), (outbound, inbound)):
                    thread = threading.Thread(
                        target=self._pump,
                        args=(source, sink, stop),
                        name="web-test-relay",
                    )
                    self._threads.append(thread)
                    thread.start()

    @staticmethod
    def _pump(
        source: socket.socket, sink: socket.socket, stop: threading.Event
    ) -> None:
        while not stop.is_set():
            try:
                ready, _, _ = select.select([source], [], [], 0.05)
                if not ready:
                    continue
                data = source.recv(65536)
                if not data:
                    sink.shutdown(socket.SHUT_WR)
                    return
                sink.sendall(data)
            except (OSError, ValueError):
                return


@pytest.fixture
def relay(pulsed: PulsedProcess) -> Iterator[Relay]:
    """A cuttable relay in front of this test's pulsed."""
    forwarder = Relay(pulsed.addr)
    yield forwarder
    forwarder.close()
