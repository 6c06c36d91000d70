"""End-to-end fixtures: real ``pulsed`` subprocesses, real ``pulse-worker``
processes running the apps in ``tests/e2e/apps``, the real SDK.

A test module declares its ``deployment`` (a database and its pulsed
replicas, shared by the module's tests) with ``start_deployment``; a test
that needs a deployment of its own uses ``start_test_deployment`` (built on
``db_url`` and ``start_pulsed`` from ``tests/fixtures``). Workers come from
``start_worker`` (stopped after the test) or ``start_module_worker``
(shared by the module). The apps
record every handler run in the ``handler_runs`` table of the deployment's
database, which the tests read through ``Deployment.runs``.

Every subprocess gets its environment explicitly: the database through
``DB_URL`` (pulsed) or ``E2E_DB_URL`` (the apps), never the test's own.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import pathlib
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import psycopg2
import pytest

from pulse_client import Job, JobStatus, Pulse
from tests.fixtures.databases import PostgresServer, Sql
from tests.fixtures.reports import register_log
from tests.fixtures.servers import (
    REPO_ROOT,
    TRACEBACK_MARKER,
    PulsedProcess,
    spawn_serving,
)

PULSE_WORKER = pathlib.Path(sys.executable).parent / "pulse-worker"
WORKER_STOP_TIMEOUT_SECONDS = 20.0
WORKER_CONNECT_TIMEOUT_SECONDS = 30.0
DEFAULT_WAIT_SECONDS = 20.0

# Short intervals so that leases lapse, retries come due and cancels are
# heard within about a second; each test module picks what it needs.
FAST_KNOBS: dict[str, Any] = {
    "lease_seconds": 1,
    "watchdog_seconds": 0.2,
    "backoff_base_seconds": 0.1,
    "poll_seconds": 1,
}

HANDLER_RUNS_DDL = """
CREATE TABLE handler_runs (
    id            bigserial PRIMARY KEY,
    job_id        uuid NOT NULL,
    attempt       integer NOT NULL,
    attempts_used integer NOT NULL,
    pid           integer NOT NULL,
    event         text NOT NULL,
    detail        text NOT NULL DEFAULT '',
    data          bytea,
    at            timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""

_T = TypeVar("_T")


def wait_for(
    condition: Callable[[], _T],
    what: str,
    timeout_seconds: float = DEFAULT_WAIT_SECONDS,
) -> _T:
    """Poll ``condition`` until it returns something true, and return that."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout_seconds:g}s waiting for {what}"
            )
        time.sleep(0.05)


def wait_for_status(
    client: Pulse,
    job_id: str,
    *statuses: JobStatus,
    timeout_seconds: float = DEFAULT_WAIT_SECONDS,
) -> Job:
    """The job, once its status is one of ``statuses``."""
    last: list[Job] = []

    def reached() -> Job | None:
        job = client.get_job(job_id)
        last[:] = [job]
        return job if job.status in statuses else None

    try:
        job = wait_for(reached, f"job {job_id} to be {statuses}", timeout_seconds)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last seen: {last[0] if last else None}") from None
    assert job is not None
    return job


def create_handler_runs(db_url: str) -> None:
    """Create the table the apps record their handler runs in."""
    conn = psycopg2.connect(db_url, application_name="pulse-tests")
    try:
        with conn, conn.cursor() as cur:
            cur.execute(HANDLER_RUNS_DDL)
    finally:
        conn.close()


@dataclasses.dataclass(frozen=True)
class Run:
    """One row of ``handler_runs``."""

    job_id: str
    attempt: int
    attempts_used: int
    pid: int
    event: str
    detail: str
    data: bytes | None
    at: datetime.datetime


class Deployment:
    """A database with the pulse schema and the pulsed replicas serving it."""

    def __init__(self, db_url: str, servers: list[PulsedProcess]) -> None:
        self.db_url = db_url
        self.servers = servers
        self.sql = Sql(db_url)
        self.workers: list[WorkerProcess] = []

    @property
    def addr(self) -> str:
        return self.servers[0].addr

    def runs(self, job_id: str | None = None, event: str | None = None) -> list[Run]:
        """Handler runs recorded by the apps, oldest first."""
        clauses, params = [], []
        if job_id is not None:
            clauses.append("job_id = %s")
            params.append(job_id)
        if event is not None:
            clauses.append("event = %s")
            params.append(event)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self.sql.all(
            "SELECT job_id::text, attempt, attempts_used, pid, event, detail, data, at"
            f" FROM handler_runs {where} ORDER BY id",
            params,
        )
        return [
            Run(
                job_id=job_id,
                attempt=attempt,
                attempts_used=attempts_used,
                pid=pid,
                event=event,
                detail=detail,
                data=bytes(data) if data is not None else None,
                at=at,
            )
            for job_id, attempt, attempts_used, pid, event, detail, data, at in rows
        ]

    def wait_for_runs(
        self,
        job_id: str,
        event: str,
        count: int = 1,
        timeout_seconds: float = DEFAULT_WAIT_SECONDS,
    ) -> list[Run]:
        """The job's runs with ``event``, once there are at least ``count``."""

        def enough() -> list[Run]:
            runs = self.runs(job_id, event)
            return runs if len(runs) >= count else []

        return wait_for(
            enough, f"{count} {event!r} run(s) of job {job_id}", timeout_seconds
        )

    def wait_for_runs_of(
        self,
        job_ids: list[str],
        event: str,
        count: int,
        timeout_seconds: float = DEFAULT_WAIT_SECONDS,
    ) -> list[Run]:
        """Runs with ``event`` of any of ``job_ids``, once there are ``count``."""
        wanted = set(job_ids)

        def enough() -> list[Run]:
            runs = [run for run in self.runs(event=event) if run.job_id in wanted]
            return runs if len(runs) >= count else []

        return wait_for(
            enough, f"{count} {event!r} run(s) of {len(wanted)} jobs", timeout_seconds
        )

    def register_logs(self, item: pytest.Item) -> None:
        for server in self.servers:
            register_log(item, f"pulsed {server.pid} on {server.addr}", server.log)
        for worker in self.workers:
            register_log(
                item, f"pulse-worker {worker.pid} ({worker.target})", worker.log
            )


class WorkerProcess:
    """A ``pulse-worker`` command running one of the e2e apps."""

    def __init__(
        self, process: subprocess.Popen[bytes], target: str, log_path: pathlib.Path
    ) -> None:
        self.process = process
        self.target = target
        self.log_path = log_path
        self.expect_clean_exit = True

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def wait_connected(
        self, streams: int = 1, timeout_seconds: float = WORKER_CONNECT_TIMEOUT_SECONDS
    ) -> None:
        """Wait until ``streams`` streams (counted over the process's life)
        have connected."""

        def connected() -> bool:
            if not self.alive():
                raise AssertionError(
                    f"pulse-worker exited with {self.process.returncode}:\n{self.log()}"
                )
            return self.log().count("worker.connected") >= streams

        wait_for(
            connected,
            f"{streams} connected stream(s) of {self.target}",
            timeout_seconds,
        )

    def terminate(self, timeout_seconds: float = WORKER_STOP_TIMEOUT_SECONDS) -> int:
        """SIGTERM and wait; the exit status (SIGKILL and fail after the timeout)."""
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout_seconds)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(
                f"pulse-worker {self.pid} did not exit within {timeout_seconds:g}s "
                "of SIGTERM"
            ) from None

    def interrupt(self) -> None:
        """Ctrl-C in the terminal it runs in: SIGINT to its whole process group."""
        os.killpg(self.pid, signal.SIGINT)

    def stop(self) -> list[str]:
        """Terminate if still running; the problems seen, for teardown.

        A test that checks how the process ended clears ``expect_clean_exit``.
        """
        problems = []
        try:
            code = self.terminate()
        except AssertionError as exc:
            problems.append(str(exc))
        else:
            if self.expect_clean_exit and code != 0:
                problems.append(f"pulse-worker {self.pid} exited with status {code}")
        if self.expect_clean_exit and TRACEBACK_MARKER in self.log():
            problems.append(f"pulse-worker {self.pid} wrote a traceback to its log")
        return problems


def worker_environment(db_url: str, home: pathlib.Path) -> dict[str, str]:
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(REPO_ROOT),
        "PYTHONUNBUFFERED": "1",
        "E2E_DB_URL": db_url,
    }


class _Workers:
    """Starts worker processes and stops them all at the end."""

    def __init__(self, log_dir: pathlib.Path) -> None:
        self._log_dir = log_dir
        self.started: list[WorkerProcess] = []

    def start(
        self,
        target: str,
        *,
        db_url: str,
        addr: str,
        processes: int = 1,
        concurrency: int | None = None,
        grace_seconds: float | None = None,
        wait: bool = True,
    ) -> WorkerProcess:
        command = [
            str(PULSE_WORKER),
            f"tests.e2e.apps.{target}",
            f"--addr={addr}",
            f"--processes={processes}",
        ]
        if concurrency is not None:
            command.append(f"--concurrency={concurrency}")
        if grace_seconds is not None:
            command.append(f"--grace={grace_seconds}")
        log_path = (
            self._log_dir / f"worker-{len(self.started)}-{target.replace(':', '-')}.log"
        )
        with open(log_path, "wb") as log_file:
            process = subprocess.Popen(
                command,
                cwd=REPO_ROOT,
                env=worker_environment(db_url, self._log_dir),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                # Its own process group, as in a terminal: see interrupt().
                start_new_session=True,
            )
        worker = WorkerProcess(process, target, log_path)
        self.started.append(worker)
        if wait:
            worker.wait_connected(processes)
        return worker

    def stop_all(self) -> list[str]:
        problems = []
        for worker in self.started:
            problems += worker.stop()
        return problems


@pytest.fixture
def start_worker(
    request: pytest.FixtureRequest, tmp_path: pathlib.Path
) -> Iterator[Callable[..., WorkerProcess]]:
    """Factory: ``start_worker("app:pulse", db_url=…, addr=…, processes=…)``
    runs ``pulse-worker`` and returns once every process has connected. At
    teardown each gets SIGTERM; one that does not exit 0 or logs a traceback
    fails the test, unless the test cleared ``expect_clean_exit``. Request it
    after the fixtures of the servers and the database it uses, so that the
    workers stop first."""
    workers = _Workers(tmp_path)

    def start(target: str, **kwargs: Any) -> WorkerProcess:
        worker = workers.start(target, **kwargs)
        register_log(request.node, f"pulse-worker {worker.pid} ({target})", worker.log)
        return worker

    yield start

    problems = workers.stop_all()
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)


@pytest.fixture(scope="module")
def start_module_worker(
    start_deployment: Callable[..., Deployment],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., WorkerProcess]]:
    """Like ``start_worker``, for a worker the module's tests share:
    ``start_module_worker("app:pulse", deployment)``. Its workers stop
    before the module's deployments do."""
    workers = _Workers(tmp_path_factory.mktemp("workers"))

    def start(target: str, deployment: Deployment, **kwargs: Any) -> WorkerProcess:
        kwargs.setdefault("addr", deployment.addr)
        worker = workers.start(target, db_url=deployment.db_url, **kwargs)
        deployment.workers.append(worker)
        return worker

    yield start

    problems = workers.stop_all()
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)


@pytest.fixture(scope="module")
def start_deployment(
    postgres_server: PostgresServer,
    migrated_template: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., Deployment]]:
    """Factory for a module's ``Deployment``: a fresh migrated database with
    the ``handler_runs`` table and ``replicas`` pulsed subprocesses on it,
    configured by ``knobs`` (Config field names). Stopped and dropped after
    the module; a server that does not stop cleanly or a connection left
    open to the database fails the last test."""
    deployments: list[tuple[str, Deployment]] = []
    log_dir = tmp_path_factory.mktemp("pulsed")

    def start(*, replicas: int = 1, **knobs: Any) -> Deployment:
        name = postgres_server.new_database_name("e2e")
        db_url = postgres_server.create_database(name, migrated_template)
        create_handler_runs(db_url)
        servers: list[PulsedProcess] = []
        deployment = Deployment(db_url, servers)
        deployments.append((name, deployment))
        for index in range(replicas):
            servers.append(
                spawn_serving(db_url, log_dir, len(deployments) * 10 + index, **knobs)
            )
        return deployment

    yield start

    problems = []
    for name, deployment in deployments:
        deployment.sql.close()
        for server in deployment.servers:
            problems += [f"pulsed {server.pid}: {p}" for p in server.stop()]
        left = wait_for_no_connections(postgres_server, name)
        if left:
            problems.append(f"connections left open to {name}: {', '.join(left)}")
        postgres_server.drop_database(name)
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)


def wait_for_no_connections(server: PostgresServer, name: str) -> list[str]:
    deadline = time.monotonic() + 5.0
    while True:
        left = server.connections_to(name)
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.05)


@pytest.fixture
def start_test_deployment(
    db_url: str, start_pulsed: Callable[..., PulsedProcess]
) -> Iterator[Callable[..., Deployment]]:
    """Factory for a deployment of this test alone, on its own database:
    ``start_test_deployment(replicas=2, **knobs)``."""
    create_handler_runs(db_url)
    made: list[Deployment] = []

    def start(*, replicas: int = 1, **knobs: Any) -> Deployment:
        deployment = Deployment(
            db_url, [start_pulsed(**knobs) for _ in range(replicas)]
        )
        made.append(deployment)
        return deployment

    yield start

    for deployment in made:
        deployment.sql.close()


@pytest.fixture(autouse=True)
def _show_deployment_logs(request: pytest.FixtureRequest) -> None:
    """A failing test shows the logs of its module's servers and workers."""
    if "deployment" in request.fixturenames:
        deployment = request.getfixturevalue("deployment")
        deployment.register_logs(request.node)


@pytest.fixture
def make_client() -> Iterator[Callable[..., Pulse]]:
    """Factory for SDK clients, closed after the test."""
    clients: list[Pulse] = []

    def make(addr: str, **kwargs: Any) -> Pulse:
        kwargs.setdefault("timeout_seconds", 10)
        client = Pulse(addr, **kwargs)
        clients.append(client)
        return client

    yield make

    for client in clients:
        client.close()


@pytest.fixture
def client(deployment: Deployment, make_client: Callable[..., Pulse]) -> Pulse:
    """A client of the module's deployment."""
    return make_client(deployment.addr)
