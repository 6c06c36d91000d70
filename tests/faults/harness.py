"""The deployment the fault campaign breaks, and what it records.

A ``Campaign`` is a throwaway Postgres cluster (never the shared server),
two pulsed replicas on it with short leases, four ``pulse-worker``
processes running ``tests.faults.apps.steady`` and a ``SteadyLoad``
submitting through the SDK. Each worker reaches each replica through a
``TcpProxy`` of its own, so one worker's link can be cut; workers list the
two replicas in different orders, so both carry streams. The load reaches
the replicas through a pair of proxies as well.

Two records outlive the run:

- ``handler_runs`` (``tests/e2e/apps/recorder.py``), in a database on the
  shared server that the faults never touch: every start and end of a
  handler, with job id and attempt.
- ``job_transitions``, filled by a trigger the campaign adds to pulse's
  ``jobs`` table: every insert and every status change, with the attempt,
  the worker and the last error, timed by ``clock_timestamp()``. It shows
  what the final row cannot: how many times a job completed, and why each
  attempt that did not complete ended.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import re
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from typing import Any

import psutil
import psycopg2
import psycopg2.extensions
import pytest

from tests.e2e.conftest import (
    PULSE_WORKER,
    WorkerProcess,
    create_handler_runs,
    wait_for,
    worker_environment,
)
from tests.faults.load import SteadyLoad
from tests.faults.proxy import ProxyLoop, TcpProxy
from tests.fixtures.reports import register_log
from tests.fixtures.servers import REPO_ROOT, STOP_TIMEOUT_SECONDS, PulsedProcess
from tests.pgcluster import PgCluster

# Short leases so that a lapse shows within seconds; pulsed's defaults
# otherwise. Workers heartbeat every lease/3 (0.5 s).
SERVER_KNOBS: dict[str, Any] = {
    "lease_seconds": 1.5,
    "watchdog_seconds": 0.2,
    "backoff_base_seconds": 0.05,
    "poll_seconds": 0.5,
    "db_connect_timeout_seconds": 2,
}
LEASE_SECONDS = float(SERVER_KNOBS["lease_seconds"])
WORKERS = 4
REPLICAS = 2
# The cluster is crashed on purpose: an acknowledged commit must survive an
# immediate shutdown, which synchronous_commit=off (the helper's default,
# for speed) does not promise. fsync stays off: the OS keeps the writes.
CLUSTER_SETTINGS = {"synchronous_commit": "on"}
WORKER_TARGET = "tests.faults.apps.steady:pulse"
WORKER_CONNECT_SECONDS = 60.0

TRANSITIONS_DDL = """
CREATE TABLE job_transitions (
    id          bigserial PRIMARY KEY,
    job_id      uuid NOT NULL,
    attempt     integer NOT NULL,
    old_status  text,
    new_status  text NOT NULL,
    worker_id   text,
    last_error  text,
    at          timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE FUNCTION record_job_transition() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO job_transitions
        (job_id, attempt, old_status, new_status, worker_id, last_error)
    VALUES (NEW.id, NEW.attempt,
            CASE WHEN TG_OP = 'UPDATE' THEN OLD.status END,
            NEW.status, NEW.worker_id, NEW.last_error);
    RETURN NULL;
END $$;
CREATE TRIGGER jobs_inserted AFTER INSERT ON jobs
    FOR EACH ROW EXECUTE FUNCTION record_job_transition();
CREATE TRIGGER jobs_status_changed AFTER UPDATE OF status ON jobs
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION record_job_transition();
"""

_CHILD_STARTED = re.compile(r"worker_cli\.started process=\S+ pid=(\d+)")
_WORKER_STARTED = re.compile(r"worker\.started worker_id=(\S+)")


def worker_pid(worker_id: str) -> int:
    """The process id inside an SDK worker id (``host-pid-suffix``)."""
    return int(worker_id.rsplit("-", 2)[1])


class WorkerSlot:
    """One ``pulse-worker`` command (one worker process, restarted by its
    supervisor when it dies) and its two proxies, in its order."""

    def __init__(
        self, index: int, process: WorkerProcess, proxies: list[TcpProxy]
    ) -> None:
        self.index = index
        self.process = process
        self.proxies = proxies

    @property
    def name(self) -> str:
        return f"worker-{self.index}"

    def child_pids(self) -> list[int]:
        """Pids of the worker processes the supervisor started, oldest first."""
        return [int(pid) for pid in _CHILD_STARTED.findall(self.process.log())]

    def child_pid(self) -> int:
        pids = self.child_pids()
        assert pids, f"{self.name} has not started its worker process yet"
        return pids[-1]

    def worker_ids(self) -> list[str]:
        return _WORKER_STARTED.findall(self.process.log())

    def connected_streams(self) -> int:
        return self.process.log().count("worker.connected")

    def signal_child(self, pid: int, signum: signal.Signals) -> bool:
        """Send ``signum`` to worker process ``pid`` if it is still this
        slot's (a pid is never signalled after it could have been reused)."""
        try:
            child = psutil.Process(pid)
            if child.ppid() != self.process.pid:
                return False
            os.kill(pid, signum)
        except (psutil.NoSuchProcess, ProcessLookupError):
            return False
        return True


class Campaign:
    """The deployment under test; see the module docstring."""

    def __init__(
        self,
        *,
        cluster: PgCluster,
        database: str,
        start_pulsed: Callable[..., PulsedProcess],
        runs_url: str,
        log_dir: pathlib.Path,
        item: pytest.Item,
        seed: int,
        rate_per_second: float = 50.0,
        submit_threads: int = 4,
        handler_ms: tuple[int, int] = (20, 80),
    ) -> None:
        self.cluster = cluster
        self.database = database
        self._start_pulsed = start_pulsed
        self.runs_url = runs_url
        self._log_dir = log_dir
        self._item = item
        self.seed = seed
        self.db_url = ""
        self.replicas: list[PulsedProcess] = []
        self.workers: list[WorkerSlot] = []
        self.proxies = ProxyLoop()
        self._load_settings: dict[str, Any] = {
            "rate_per_second": rate_per_second,
            "threads": submit_threads,
            "handler_ms": handler_ms,
            "seed": seed,
        }
        self._load: SteadyLoad | None = None
        # Worker processes stopped with SIGSTOP and not resumed yet.
        self.frozen: dict[int, WorkerSlot] = {}
        self.load_proxies: list[TcpProxy] = []
        self.load_started = 0.0
        self.load_stopped = 0.0
        self._closed = False

    # -- start-up --------------------------------------------------------------

    def start(self) -> None:
        """Database, replicas and workers (starting side by side), the
        transition log, then the load."""
        self.db_url = self.cluster.create_database(self.database)
        create_handler_runs(self.runs_url)
        # All at once: the second replica waits on the first one's migration
        # lock, and the proxies hold a worker that comes up first until its
        # replica serves.
        self.replicas = [
            self._start_pulsed(db_url=self.db_url, wait=False, **SERVER_KNOBS)
            for _ in range(REPLICAS)
        ]
        self.workers = [self._start_worker(index) for index in range(WORKERS)]
        for replica in self.replicas:
            assert replica.wait_until_serving(), f"pulsed {replica.addr} did not serve"
        self.execute(TRANSITIONS_DDL)
        for slot in self.workers:
            slot.process.wait_connected(1, WORKER_CONNECT_SECONDS)
        for proxy in self.proxies.proxies:
            proxy.wait_for_upstream(0)
        self.load_proxies = [self.proxies.open(r.addr) for r in self.replicas]
        self._load = SteadyLoad(
            [proxy.addr for proxy in self.load_proxies], **self._load_settings
        )
        self.load_started = time.time()
        self._load.start()

    @property
    def load(self) -> SteadyLoad:
        assert self._load is not None, "the campaign has not started"
        return self._load

    def _start_worker(self, index: int) -> WorkerSlot:
        # Even workers prefer replica 0, odd ones replica 1.
        order = self.replicas if index % 2 == 0 else self.replicas[::-1]
        proxies = [self.proxies.open(replica.addr) for replica in order]
        for proxy in proxies:
            proxy.wait_for_upstream(WORKER_CONNECT_SECONDS)
        log_path = self._log_dir / f"fault-worker-{index}.log"
        with open(log_path, "wb") as log_file:
            process = subprocess.Popen(
                [
                    str(PULSE_WORKER),
                    WORKER_TARGET,
                    "--addr=" + ",".join(proxy.addr for proxy in proxies),
                    "--processes=1",
                ],
                cwd=REPO_ROOT,
                env=worker_environment(self.runs_url, self._log_dir),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        worker = WorkerProcess(process, WORKER_TARGET, log_path)
        register_log(self._item, f"pulse-worker {index} ({process.pid})", worker.log)
        return WorkerSlot(index, worker, proxies)

    # -- during the run ----------------------------------------------------------

    def restart_replica(self, index: int) -> PulsedProcess:
        """Start replica ``index`` again at its address (after a kill)."""
        old = self.replicas[index]
        assert not old.alive(), f"replica {index} is still running"
        replica = self._start_pulsed(db_url=self.db_url, addr=old.addr, **SERVER_KNOBS)
        self.replicas[index] = replica
        return replica

    def running_by_worker(self) -> dict[str, list[tuple[str, int]]]:
        """Jobs now running, by worker id: (job id, attempt)."""
        held: dict[str, list[tuple[str, int]]] = {}
        for job_id, attempt, worker_id in self.query(
            "SELECT id::text, attempt, worker_id FROM jobs WHERE status = 'running'"
        ):
            held.setdefault(worker_id, []).append((job_id, attempt))
        return held

    def slot_of(self, worker_id: str) -> WorkerSlot | None:
        for slot in self.workers:
            if worker_id in slot.worker_ids():
                return slot
        return None

    def wait_for_progress(self, completions: int, timeout_seconds: float) -> None:
        """Wait until ``completions`` more jobs have completed."""
        start = self._completed()
        wait_for(
            lambda: self._completed() >= start + completions,
            f"{completions} more completed jobs",
            timeout_seconds,
        )

    def finish(self, timeout_seconds: float = 60.0) -> None:
        """Stop the load (its retries may take up to half the timeout), then
        wait until no job is left unfinished."""
        self.load_stopped = time.time()
        self.load.stop(timeout_seconds / 2)
        wait_for(
            lambda: (
                not self.query(
                    "SELECT 1 FROM jobs WHERE status NOT IN"
                    " ('completed', 'dead_lettered', 'canceled') LIMIT 1"
                )
            ),
            "every job to reach a final status",
            timeout_seconds / 2,
        )

    def _completed(self) -> int:
        rows = self.query("SELECT count(*) FROM jobs WHERE status = 'completed'")
        return int(rows[0][0])

    # -- database access ---------------------------------------------------------

    def query(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        """Rows from pulse's database, on a fresh connection: the cluster may
        have restarted since the last query."""
        conn = self._connect(self.db_url)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall() if cur.description else []
        finally:
            conn.close()

    def execute(self, sql: str) -> None:
        self.query(sql)

    def query_runs(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        """Rows from the handlers' own database."""
        conn = self._connect(self.runs_url)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall()
        finally:
            conn.close()

    @staticmethod
    def _connect(url: str) -> psycopg2.extensions.connection:
        conn = psycopg2.connect(url, application_name="pulse-tests", connect_timeout=5)
        conn.autocommit = True
        return conn

    # -- teardown ----------------------------------------------------------------

    def close(self) -> list[str]:
        """Stop everything the campaign started; the problems seen."""
        if self._closed:
            return []
        self._closed = True
        problems = []
        if self._load is not None and not self.load_stopped:
            self.load_stopped = time.time()
            self._load.stop(5.0)
        # A frozen worker cannot drain.
        for pid, slot in list(self.frozen.items()):
            slot.signal_child(pid, signal.SIGCONT)
        self.frozen.clear()
        # Workers first, so that no stream holds a replica's shutdown up;
        # each group stops side by side, every process signalled once.
        # start_pulsed's teardown checks how the replicas ended.
        _terminate_together([slot.process.process for slot in self.workers])
        for slot in self.workers:
            problems += slot.process.stop()
        self.proxies.close()
        _terminate_together([replica.process for replica in self.replicas])
        return problems


def _terminate_together(processes: Sequence[subprocess.Popen[bytes]]) -> None:
    """SIGTERM every process still running and wait for them, so that they
    drain side by side; each is signalled once (a second SIGTERM would
    hurry a worker's drain)."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(max(0.0, deadline - time.monotonic()))
