"""Load generator for pulse: submit rates, drain throughput, dispatch latency,
database transactions per job, claim cost against backlog depth and the
server's memory with a deep backlog and many streams.

By default it starts its own ``pulsed`` (a subprocess on a free loopback port,
logging to a file) against a fresh database that it creates from ``--db-url``
and drops at the end. With ``--addr`` it talks to a running server instead;
``--db-url`` then names that server's database (needed by the scenarios that
read the database: drain, steady, txn, claim-depth), and the loadgen deletes
only its own ``loadgen.*`` jobs there. The rss scenario reads the memory of
the server it started, so it needs no ``--addr`` (and is left out of the
default scenarios with one).

Scenarios (``--scenario a,b,...``; all by default):

  submit-single   ``enqueue`` one by one from one thread
  submit-threads  ``enqueue`` one by one from ``--threads`` threads, one client
  submit-batch    ``enqueue_many`` in chunks of ``--batch-size``, from
                  ``--batch-threads`` threads (one client each, the jobs
                  split between them); a list of counts runs once per count
  drain           pre-fill ``--jobs`` no-op jobs, then ``--processes`` worker
                  processes drain them; timed from the database, first
                  ``started_at`` to last ``finished_at``
  steady          submit at ``--steady-rate`` jobs/s for ``--steady-seconds``
                  while the workers run
  latency         idle, connected workers; jobs enqueued one at a time at
                  ``--latency-rate``; latency = handler start minus the time
                  just before the enqueue call
  txn             transactions per job (``pg_stat_database`` deltas) over the
                  drain and over the threaded one-by-one submits
  claim-depth     the claim statement (``pulsed.dispatch.CLAIM_JOBS``, 100
                  slots, rolled back) against backlogs of each size in
                  ``--claim-backlogs``: own topic, other topics, future-dated
  rss             pulsed's resident memory (VmRSS, VmHWM; MB = 10^6 bytes)
                  freshly started, then beside a backlog of ``--rss-backlog``
                  pending jobs, then while ``--rss-streams`` worker streams
                  (one ``Pulse.run()`` each, spread over ``--rss-processes``
                  worker processes) claim from it for ``--rss-seconds``;
                  also counts the jobs a graceful stop of the streams left
                  running (each then waits for its lease to lapse)

Transactions are counted from ``pg_stat_database``. Backends publish their
counters lazily (up to 10 s late when idle), so before each reading the
loadgen restarts the server it manages (a backend publishes on exit); against
an external server it waits ``--stats-settle-seconds`` instead.

The submit scenarios report the loadgen's own CPU time over the timed part
(every thread of the process, gRPC's included) per job. The drain reports
the CPU of pulsed, of the workers from when each was ready (their start-up
apart) and of pulsed's Postgres backends.

``--preset full`` sets the sizes of the real run (20k-job drain, 1M-row
backlogs, 200 streams, batched submits from 1 and from 4 threads); the
default preset is a smoke run of a few seconds. Size flags override the
preset.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import multiprocessing
import os
import pathlib
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg2
import psycopg2.extensions
import psycopg2.sql

from pulse_client import NewJob, Pulse
from pulse_client.connection import wait_until_serving
from pulse_client.limits import MAX_PREFETCH
from pulsed.config import Config
from pulsed.database import Database, Prepared
from pulsed.dispatch import CLAIM_JOBS, CLAIM_SETTINGS
from pulsed.migrate import apply_migrations

SCENARIOS = (
    "submit-single",
    "submit-threads",
    "submit-batch",
    "drain",
    "steady",
    "latency",
    "txn",
    "claim-depth",
    "rss",
)
# Scenarios that read or write the database directly.
_DB_SCENARIOS = {"drain", "steady", "txn", "claim-depth", "rss"}
# Scenarios that need the server the loadgen starts.
_MANAGED_SCENARIOS = {"rss"}

PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {
        "submit_jobs": 500,
        "batch_jobs": 5_000,
        "batch_threads": "1",
        "jobs": 2_000,
        "steady_seconds": 3.0,
        "steady_rate": 1_000.0,
        "latency_jobs": 100,
        "latency_rate": 100.0,
        "claim_backlogs": "1000,10000",
        "claim_reps": 10,
        "rss_backlog": 2_000,
        "rss_streams": 5,
        "rss_seconds": 3.0,
    },
    "full": {
        "submit_jobs": 5_000,
        "batch_jobs": 50_000,
        "batch_threads": "1,4",
        "jobs": 20_000,
        "steady_seconds": 30.0,
        "steady_rate": 2_000.0,
        "latency_jobs": 500,
        "latency_rate": 100.0,
        "claim_backlogs": "10000,1000000",
        "claim_reps": 50,
        "rss_backlog": 1_000_000,
        "rss_streams": 200,
        "rss_seconds": 30.0,
    },
}

# Reference figures measured on this kind of machine (issue 7), for ratios.
REFERENCES = {
    "submit_single": ("PgQueuer one by one", 1_370.0),
    "submit_threads": ("goal, 8 threads", 6_000.0),
    "submit_batch": ("PgQueuer bulk (26-28k)", 27_000.0),
    "drain": ("PgQueuer drain 20k", 11_200.0),
    "latency_p50": ("PgQueuer p50", 3.3),
    "latency_p95": ("PgQueuer p95 (4.6-5.2)", 4.9),
    "go_submit": ("Go pulse submit", 4_169.0),
    "go_drain": ("Go pulse e2e", 1_223.0),
    "go_latency_p50": ("Go pulse p50", 773.0),
    "rss_peak": ("goal, MB", 200.0),
}

TOPIC_PREFIX = "loadgen."
SUBMIT_TOPIC = "loadgen.submit"
DRAIN_TOPIC = "loadgen.drain"
STEADY_TOPIC = "loadgen.steady"
LATENCY_TOPIC = "loadgen.latency"
CLAIM_TOPIC = "loadgen.claim"
CLAIM_OTHER_TOPIC = "loadgen.claim-other"
CLAIM_SLOTS = 100
# Pending jobs of the claimed topic beside an other-topic or future backlog.
CLAIM_OWN_ROWS = 1_000
RSS_TOPIC = "loadgen.rss"
# Long enough that a handler slot stays taken while the stream claims for
# the others, short enough that the backlog keeps moving.
RSS_HANDLER_SECONDS = 0.005
# Lets the server's start-up, and its loops' first look at a new backlog,
# finish before a reading.
RSS_SETTLE_SECONDS = 2.0
RSS_SAMPLE_SECONDS = 0.1
RSS_CONNECT_TIMEOUT_SECONDS = 60.0

SERVING_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 15.0
WORKER_STOP_TIMEOUT_SECONDS = 30.0
POLL_SECONDS = 0.2
# How often the drain looks for workers that became ready: a worker's CPU
# read later than that counts some of its first jobs as start-up.
READY_POLL_SECONDS = 0.005


class BenchError(Exception):
    """The benchmark cannot go on; the message says why."""


# -- output ------------------------------------------------------------------


class Progress:
    """One self-overwriting status line, shown only when stdout is a TTY."""

    def __init__(self, enabled: bool, stream: Any) -> None:
        self.enabled = enabled
        self._stream = stream
        self._last = 0.0
        self._width = 0

    def update(self, label: str, done: int, total: int, *, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < 0.2:
            return
        self._last = now
        filled = int(30 * done / total) if total else 30
        line = f"{label:<16} [{'#' * filled}{'.' * (30 - filled)}] {done}/{total}"
        self._width = max(self._width, len(line))
        self._stream.write("\r" + line.ljust(self._width))
        self._stream.flush()

    def note(self, text: str) -> None:
        if not self.enabled:
            return
        self._stream.write("\r" + text.ljust(self._width) + "\n")
        self._stream.flush()
        self._width = 0

    def done(self) -> None:
        if self.enabled and self._width:
            self._stream.write("\r" + " " * self._width + "\r")
            self._stream.flush()
            self._width = 0


def percentiles_ms(seconds: list[float]) -> dict[str, float]:
    """p50/p95/p99/max of durations given in seconds, in milliseconds."""
    values = [s * 1000 for s in seconds]
    if len(values) < 2:
        only = values[0] if values else float("nan")
        return {"p50_ms": only, "p95_ms": only, "p99_ms": only, "max_ms": only}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {
        "p50_ms": round(cuts[49], 3),
        "p95_ms": round(cuts[94], 3),
        "p99_ms": round(cuts[98], 3),
        "max_ms": round(max(values), 3),
    }


# -- databases -----------------------------------------------------------------


def with_database(url: str, dbname: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + dbname))


def database_name(url: str) -> str:
    name = urlsplit(url).path.lstrip("/")
    if not name:
        raise BenchError(f"--db-url {url!r} names no database")
    return name


class _PreparingConnection(psycopg2.extensions.connection):
    """Remembers its prepared statements, as ``Prepared`` expects."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.prepared: set[str] = set()


def connect(url: str) -> psycopg2.extensions.connection:
    conn = psycopg2.connect(
        url,
        application_name="pulse-loadgen",
        connect_timeout=5,
        connection_factory=_PreparingConnection,
    )
    conn.autocommit = True
    return conn


class BenchDatabase:
    """The database the benchmark runs on, and counters read about it.

    Counters are read through a connection to the server's ``postgres``
    database, so that reading them adds nothing to the bench database's own.
    """

    def __init__(self, url: str, *, owned: bool) -> None:
        self.url = url
        self.name = database_name(url)
        self.owned = owned
        self._admin = connect(with_database(url, "postgres"))

    def create(self) -> None:
        with self._admin.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.name,))
            if cur.fetchone():
                raise BenchError(
                    f"database {self.name!r} exists; the loadgen creates its own: "
                    "pass another --db-url (or drop it)"
                )
            cur.execute(
                psycopg2.sql.SQL("CREATE DATABASE {}").format(
                    psycopg2.sql.Identifier(self.name)
                )
            )

    def drop(self, name: str | None = None) -> None:
        with self._admin.cursor() as cur:
            cur.execute(
                psycopg2.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    psycopg2.sql.Identifier(name or self.name)
                )
            )

    def create_scratch(self, suffix: str) -> str:
        """A fresh migrated database beside this one; returns its URL."""
        name = f"{self.name}_{suffix}"
        self.drop(name)
        with self._admin.cursor() as cur:
            cur.execute(
                psycopg2.sql.SQL("CREATE DATABASE {}").format(
                    psycopg2.sql.Identifier(name)
                )
            )
        url = with_database(self.url, name)
        db = Database(url, 1, application_name="pulse-loadgen")
        try:
            apply_migrations(db)
        finally:
            db.close()
        return url

    def xacts(self) -> tuple[int, int]:
        """(xact_commit, xact_rollback) of the bench database, as published."""
        with self._admin.cursor() as cur:
            cur.execute("SELECT pg_stat_clear_snapshot()")
            cur.execute(
                "SELECT xact_commit, xact_rollback FROM pg_stat_database"
                " WHERE datname = %s",
                (self.name,),
            )
            row = cur.fetchone()
        assert row is not None
        return int(row[0]), int(row[1])

    def wait_for_no_backends(self, timeout_seconds: float = 10.0) -> None:
        """Until every session on the bench database has ended (and so
        published its counters)."""
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            with self._admin.cursor() as cur:
                cur.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s",
                    (self.name,),
                )
                row = cur.fetchone()
            if row is not None and row[0] == 0:
                return
            time.sleep(0.05)

    def backend_pids(self, application_name: str) -> list[int]:
        with self._admin.cursor() as cur:
            cur.execute(
                "SELECT pid FROM pg_stat_activity"
                " WHERE datname = %s AND application_name = %s",
                (self.name, application_name),
            )
            return [int(row[0]) for row in cur.fetchall()]

    def server_version(self) -> str:
        with self._admin.cursor() as cur:
            cur.execute("SHOW server_version")
            row = cur.fetchone()
        return str(row[0]) if row else "?"

    def close(self) -> None:
        self._admin.close()


class Jobs:
    """Direct queries on the bench database's jobs table (autocommit).

    ``statements`` counts what ran, so that the loadgen's own transactions
    can be taken out of a ``pg_stat_database`` delta.
    """

    def __init__(self, url: str, *, owned: bool) -> None:
        self._url = url
        self._owned = owned
        self._conn: psycopg2.extensions.connection | None = None
        self.statements = 0

    def _cursor(self) -> psycopg2.extensions.cursor:
        if self._conn is None or self._conn.closed:
            self._conn = connect(self._url)
        return self._conn.cursor()

    def execute(self, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        with self._cursor() as cur:
            cur.execute(query, params)
            self.statements += 1
            return cur.fetchall() if cur.description else []

    def clear(self) -> None:
        """Remove every job the loadgen made (all jobs, if the database is ours)."""
        if self._owned:
            self.execute("TRUNCATE jobs")
        else:
            self.execute("DELETE FROM jobs WHERE topic LIKE %s", (TOPIC_PREFIX + "%",))
            self.execute("VACUUM ANALYZE jobs")

    def unfinished(self, topic: str) -> int:
        # Both counts ride partial indexes, so polling stays cheap.
        rows = self.execute(
            "SELECT (SELECT count(*) FROM jobs"
            "        WHERE status = 'pending' AND topic = %(t)s)"
            " + (SELECT count(*) FROM jobs WHERE status = 'running' AND topic = %(t)s)"
            " + (SELECT count(*) FROM jobs"
            "    WHERE status IN ('scheduled', 'retrying') AND topic = %(t)s)",
            {"t": topic},
        )
        return int(rows[0][0])

    def close(self) -> None:
        """End the session; its counters are published as it exits."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None


# -- the server ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ManagedServer:
    """A pulsed subprocess on a loopback port, its output in a log file."""

    def __init__(
        self, db_url: str, log_path: pathlib.Path, env: dict[str, str]
    ) -> None:
        self.db_url = db_url
        self.log_path = log_path
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        self._extra_env = env
        self._process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        # The server takes its configuration from the environment alone:
        # nothing of the caller's PULSE_*/DB_* settings may leak into it.
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("PULSE_", "DB_"))
        }
        env.update(
            {
                "DB_URL": self.db_url,
                "PULSE_GRPC_ADDR": self.addr,
                "PULSE_LOG_LEVEL": "INFO",
                "PYTHONUNBUFFERED": "1",
                **self._extra_env,
            }
        )
        with open(self.log_path, "ab") as log_file:
            # Its own session: a Ctrl-C in the terminal reaches the loadgen
            # only, which then stops the server in order.
            self._process = subprocess.Popen(
                [sys.executable, "-m", "pulsed.server"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.starts += 1
        if not wait_until_serving(self.addr, SERVING_TIMEOUT_SECONDS, self.alive):
            self.stop()
            raise BenchError(
                f"pulsed on {self.addr} did not become SERVING; see {self.log_path}"
            )

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Target:
    """Where the load goes, and how to read the transaction counters.

    Backends publish their counters lazily (up to 10 s late when idle). A
    managed server is stopped before a reading, because a backend publishes
    as it exits; against an external server the loadgen waits instead.
    """

    def __init__(
        self,
        addr: str,
        server: ManagedServer | None,
        bench_db: BenchDatabase | None,
        settle_seconds: float,
        profiler: Profiler | None,
    ) -> None:
        self.addr = addr
        self.server = server
        self.bench_db = bench_db
        self.settle_seconds = settle_seconds
        self.profiler = profiler

    def quiet_xacts(self) -> tuple[int, int]:
        """Counters once everything is published; a managed server stays down."""
        assert self.bench_db is not None
        if self.server is None:
            time.sleep(self.settle_seconds)
        else:
            self.server.stop()
            self.bench_db.wait_for_no_backends()
        return self.bench_db.xacts()

    def started_xacts(self) -> tuple[int, int]:
        """Counters with the server up, after its start-up has been published."""
        assert self.bench_db is not None
        if self.server is not None and not self.server.alive():
            self.ensure_running()
            # Start-up sessions (migrations, the first loop steps) publish
            # at once or as they exit; give them that moment.
            time.sleep(1.0)
        return self.bench_db.xacts()

    def ensure_running(self) -> None:
        if self.server is not None and not self.server.alive():
            self.server.start()
            if self.profiler is not None and self.server.pid is not None:
                self.profiler.attach(self.server.pid, "pulsed")


class Profiler:
    """py-spy recordings of pulsed, the loadgen and its workers, per scenario.

    Each attached process gets ``DIR/<scenario>-<label>-<pid>.<ext>``;
    recordings end (and are written) when the scenario ends or the process
    exits.
    """

    def __init__(self, args: argparse.Namespace) -> None:
        # The one installed beside this Python (a virtualenv's bin is often
        # not on PATH), else the one on PATH.
        beside = pathlib.Path(sys.executable).with_name("py-spy")
        found = str(beside) if beside.exists() else shutil.which("py-spy")
        if found is None:
            raise BenchError(
                "--profile needs py-spy: pip install py-spy (it is in the "
                "dev extra: pip install -e '.[dev]')"
            )
        self.py_spy = found
        self.directory = pathlib.Path(args.profile)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.format = args.profile_format
        self.idle = args.profile_idle
        self.rate = args.profile_rate
        self.blocking = args.profile_blocking
        self.only = [label for label in (args.profile_only or "").split(",") if label]
        self.scenario = "setup"
        self._recorders: list[subprocess.Popen[bytes]] = []
        self._pids: set[int] = set()
        self.files: list[str] = []

    def attach(self, pid: int, label: str) -> None:
        if pid in self._pids or (
            self.only and not any(label.startswith(o) for o in self.only)
        ):
            return
        self._pids.add(pid)
        ext = {"flamegraph": "svg", "speedscope": "json", "raw": "txt"}[self.format]
        path = self.directory / f"{self.scenario}-{label}-{pid}.{ext}"
        command = [
            self.py_spy,
            "record",
            "--pid",
            str(pid),
            "--output",
            str(path),
            "--format",
            self.format,
            "--rate",
            str(self.rate),
            "--threads",
        ]
        if self.idle:
            command.append("--idle")
        if not self.blocking:
            # Sampling without pausing the process disturbs the timing less,
            # but a busy process yields fewer complete stacks.
            command.append("--nonblocking")
        self._recorders.append(
            subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        self.files.append(str(path))

    def stop(self) -> None:
        recorders, self._recorders = self._recorders, []
        self._pids.clear()
        for recorder in recorders:
            if recorder.poll() is None:
                recorder.send_signal(signal.SIGINT)
        for recorder in recorders:
            try:
                recorder.wait(30)
            except subprocess.TimeoutExpired:
                recorder.kill()
                recorder.wait()


# -- worker processes ------------------------------------------------------------


def _worker_main(
    addr: str,
    topic: str,
    concurrency: int,
    prefetch: int,
    record_path: str | None,
    ready: Any,
) -> None:
    """A worker process: ``Pulse.run()`` with a no-op handler until SIGTERM.

    With ``record_path`` the handler notes (enqueue time from the payload,
    handler start) first thing, and the notes are written there on exit.
    """
    records: list[tuple[float, float]] = []
    pulse = Pulse(addr, concurrency=concurrency, prefetch=prefetch, grace_seconds=10.0)
    if record_path is None:

        def handle(args: dict) -> None:  # type: ignore[type-arg]
            return None

    else:

        def handle(args: dict) -> None:  # type: ignore[type-arg]
            records.append((args["t"], time.time()))

    pulse.register(topic, handle)
    ready.set()
    try:
        pulse.run()
    finally:
        pulse.close()
        if record_path is not None:
            pathlib.Path(record_path).write_text(json.dumps(records))


def _streams_main(
    addr: str, topic: str, streams: int, concurrency: int, ready: Any
) -> None:
    """A worker process holding ``streams`` runtimes until SIGTERM or SIGINT.

    Each runtime has a client of its own, so each opens its own StreamJobs
    stream, as that many single-stream worker processes would. The handler
    sleeps briefly.
    """
    stopping = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stopping.set()

    # Runtimes started outside the main thread leave the signals alone.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)

    def handle(args: dict) -> None:  # type: ignore[type-arg]
        time.sleep(RSS_HANDLER_SECONDS)

    clients = [
        Pulse(addr, concurrency=concurrency, grace_seconds=5.0) for _ in range(streams)
    ]
    for pulse in clients:
        pulse.register(topic, handle)
    runners = [
        threading.Thread(target=pulse.run, name=f"stream-{i}", daemon=True)
        for i, pulse in enumerate(clients)
    ]
    for runner in runners:
        runner.start()
    ready.set()

    while not stopping.wait(POLL_SECONDS):
        pass
    for pulse in clients:
        pulse.stop()
    deadline = time.monotonic() + WORKER_STOP_TIMEOUT_SECONDS / 2
    for runner in runners:
        runner.join(max(0.0, deadline - time.monotonic()))
    for pulse in clients:
        pulse.close()


def _spread(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` shares that differ by one at most."""
    return [total // parts + (i < total % parts) for i in range(parts)]


class Workers:
    """N worker processes (spawned, as ``pulse-worker --processes N`` does).

    With ``streams``, the processes share that many runtimes, one stream each,
    instead of running one runtime apiece.
    """

    def __init__(
        self,
        addr: str,
        topic: str,
        processes: int,
        concurrency: int,
        profiler: Profiler | None,
        record_dir: str | None = None,
        streams: int | None = None,
        prefetch: int = 0,
    ) -> None:
        context = multiprocessing.get_context("spawn")
        self._profiler = profiler
        self._record_paths = [
            os.path.join(record_dir, f"worker-{i}.json") if record_dir else None
            for i in range(processes)
        ]
        self._ready = [context.Event() for _ in range(processes)]
        targets: list[tuple[Callable[..., None], tuple[Any, ...]]]
        if streams is None:
            targets = [
                (_worker_main, (addr, topic, concurrency, prefetch, path, ready))
                for path, ready in zip(self._record_paths, self._ready, strict=True)
            ]
        else:
            targets = [
                (_streams_main, (addr, topic, share, concurrency, ready))
                for share, ready in zip(
                    _spread(streams, processes), self._ready, strict=True
                )
            ]
        self._processes: list[BaseProcess] = [
            context.Process(
                target=target,
                args=target_args,
                name=f"loadgen-worker-{i}",
                daemon=True,
            )
            for i, (target, target_args) in enumerate(targets)
        ]

    def __enter__(self) -> Workers:
        for process in self._processes:
            process.start()
            if self._profiler is not None and process.pid is not None:
                self._profiler.attach(process.pid, process.name)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def wait_ready(self, timeout_seconds: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_seconds
        for ready, process in zip(self._ready, self._processes, strict=True):
            while not ready.wait(0.1):
                if not process.is_alive():
                    raise BenchError(f"{process.name} exited during start-up")
                if time.monotonic() > deadline:
                    raise BenchError(f"{process.name} did not start in time")

    def cpu_when_ready(self, timeout_seconds: float = 60.0) -> dict[int, float]:
        """Wait as ``wait_ready`` does; returns each worker's CPU seconds
        read as soon as it was seen ready, which is its start-up."""
        deadline = time.monotonic() + timeout_seconds
        starting = list(zip(self._ready, self._processes, strict=True))
        at_ready: dict[int, float] = {}
        while True:
            for ready, process in list(starting):
                if ready.is_set():
                    assert process.pid is not None
                    at_ready[process.pid] = cpu_seconds(process.pid)
                    starting.remove((ready, process))
                elif not process.is_alive():
                    raise BenchError(f"{process.name} exited during start-up")
            if not starting:
                return at_ready
            if time.monotonic() > deadline:
                raise BenchError(f"{starting[0][1].name} did not start in time")
            time.sleep(READY_POLL_SECONDS)

    def check_alive(self) -> None:
        for process in self._processes:
            if not process.is_alive():
                raise BenchError(f"{process.name} died (exit code {process.exitcode})")

    def stop(self) -> list[int | None]:
        """SIGTERM (the worker drains and exits), SIGKILL after a timeout."""
        for process in self._processes:
            if process.is_alive():
                process.terminate()
        deadline = time.monotonic() + WORKER_STOP_TIMEOUT_SECONDS
        for process in self._processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()
        return [process.exitcode for process in self._processes]

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self._processes if process.pid is not None]

    def records(self) -> list[tuple[float, float]]:
        found: list[tuple[float, float]] = []
        for path in self._record_paths:
            if path and os.path.exists(path):
                found.extend(
                    (a, b) for a, b in json.loads(pathlib.Path(path).read_text())
                )
        return found


# -- scenarios -----------------------------------------------------------------------


@dataclasses.dataclass
class Context:
    args: argparse.Namespace
    target: Target
    jobs: Jobs | None
    progress: Progress
    results: dict[str, Any]


def _clear(ctx: Context) -> None:
    if ctx.jobs is not None:
        ctx.jobs.clear()


def _enqueue_loop(
    pulse: Pulse, count: int, on_each: Callable[[int], None] | None = None
) -> list[float]:
    durations = []
    for i in range(count):
        started = time.perf_counter()
        pulse.enqueue(SUBMIT_TOPIC, {"i": i})
        durations.append(time.perf_counter() - started)
        if on_each is not None:
            on_each(i + 1)
    return durations


def run_submit_single(ctx: Context) -> dict[str, Any]:
    count = ctx.args.submit_jobs
    _clear(ctx)
    with Pulse(ctx.target.addr) as pulse:
        pulse.enqueue(SUBMIT_TOPIC, {"warm": True})  # connect outside the timing
        cpu_started = time.process_time()
        started = time.perf_counter()
        durations = _enqueue_loop(
            pulse, count, lambda done: ctx.progress.update("submit-single", done, count)
        )
        elapsed = time.perf_counter() - started
        cpu_seconds_spent = time.process_time() - cpu_started
    calls = percentiles_ms(durations)
    return {
        "jobs": count,
        "seconds": round(elapsed, 3),
        "jobs_per_s": round(count / elapsed, 1),
        "call_p50_ms": calls["p50_ms"],
        "call_p99_ms": calls["p99_ms"],
        **_client_cpu(cpu_seconds_spent, count),
    }


def _client_cpu(seconds: float, jobs: int) -> dict[str, float]:
    """The loadgen's CPU over a timed submit: what the SDK costs a client."""
    return {
        "client_cpu_s": round(seconds, 3),
        "client_cpu_us_per_job": round(seconds / jobs * 1e6, 2),
    }


def _transactions(
    before: tuple[int, int], after: tuple[int, int], own_statements: int, jobs: int
) -> dict[str, Any]:
    commits = after[0] - before[0] - own_statements
    rollbacks = after[1] - before[1]
    return {
        "xact_commit": commits,
        "xact_rollback": rollbacks,
        "transactions_per_job": round((commits + rollbacks) / jobs, 4),
    }


def run_submit_threads(ctx: Context) -> dict[str, Any]:
    threads, per_thread = (
        ctx.args.threads,
        max(1, ctx.args.submit_jobs // ctx.args.threads),
    )
    total = threads * per_thread
    _clear(ctx)
    counting = ctx.target.bench_db is not None
    if counting:
        assert ctx.jobs is not None
        ctx.jobs.close()
        ctx.target.quiet_xacts()
        before = ctx.target.started_xacts()

    done = [0] * threads
    durations: list[list[float]] = [[] for _ in range(threads)]
    with Pulse(ctx.target.addr) as pulse:
        # Every thread connected before the clock starts.
        pulse.enqueue(SUBMIT_TOPIC, {"warm": True})

        def submit(index: int) -> None:
            def tick(n: int) -> None:
                done[index] = n

            durations[index] = _enqueue_loop(pulse, per_thread, tick)

        elapsed, cpu_seconds_spent = _timed_threads(
            ctx, "submit-threads", threads, submit, done, total
        )

    calls = percentiles_ms([d for per in durations for d in per])
    result: dict[str, Any] = {
        "threads": threads,
        "jobs": total,
        "seconds": round(elapsed, 3),
        "jobs_per_s": round(total / elapsed, 1),
        "call_p50_ms": calls["p50_ms"],
        "call_p99_ms": calls["p99_ms"],
        **_client_cpu(cpu_seconds_spent, total),
    }
    if counting:
        # The warm-up submit is in the window: count it as a job.
        after = ctx.target.quiet_xacts()
        result.update(_transactions(before, after, 0, total + 1))
    return result


def _timed_threads(
    ctx: Context,
    label: str,
    threads: int,
    work: Callable[[int], None],
    done: list[int],
    total: int,
) -> tuple[float, float]:
    """Run ``work(index)`` on ``threads`` threads released together; returns
    the wall seconds until the last one ended and this process's CPU seconds.

    The end is each thread's own finishing time, not the progress loop's
    next look (50 ms apart, which was 4% of a 1.3 s bulk run).
    """
    errors: list[BaseException] = []
    finished = [0.0] * threads
    barrier = threading.Barrier(threads + 1)

    def run(index: int) -> None:
        try:
            barrier.wait()
            work(index)
        except BaseException as exc:
            errors.append(exc)
        finally:
            finished[index] = time.perf_counter()

    pool = [
        threading.Thread(target=run, args=(i,), name=f"{label}-{i}", daemon=True)
        for i in range(threads)
    ]
    for thread in pool:
        thread.start()
    barrier.wait()
    cpu_started = time.process_time()
    started = time.perf_counter()
    while any(thread.is_alive() for thread in pool):
        ctx.progress.update(label, sum(done), total)
        time.sleep(0.05)
    cpu_seconds = time.process_time() - cpu_started
    if errors:
        raise BenchError(f"a {label} thread failed: {errors[0]!r}") from errors[0]
    return max(finished) - started, cpu_seconds


def _new_jobs(topic: str, count: int) -> list[NewJob]:
    return [NewJob(topic, {"i": i}) for i in range(count)]


def _enqueue_chunks(
    pulse: Pulse, topic: str, count: int, chunk: int, label: str, ctx: Context
) -> float:
    """Submit ``count`` jobs with ``enqueue_many``; returns the seconds taken."""
    started = time.perf_counter()
    sent = 0
    while sent < count:
        size = min(chunk, count - sent)
        pulse.enqueue_many(_new_jobs(topic, size))
        sent += size
        ctx.progress.update(label, sent, count)
    return time.perf_counter() - started


def run_submit_batch(ctx: Context) -> dict[str, Any]:
    """One run per thread count; the first run's figures stand at the top
    (where earlier readers find them) and ``runs`` lists every run."""
    runs = [_submit_batch(ctx, threads) for threads in ctx.args.batch_thread_counts]
    return {**runs[0], "runs": runs}


def _submit_batch(ctx: Context, threads: int) -> dict[str, Any]:
    count, chunk = ctx.args.batch_jobs, ctx.args.batch_size
    shares = _spread(count, threads)
    label = f"submit-batch x{threads}"
    _clear(ctx)

    sent = [0] * threads
    with contextlib.ExitStack() as stack:
        clients = [stack.enter_context(Pulse(ctx.target.addr)) for _ in range(threads)]
        for pulse in clients:
            pulse.enqueue(SUBMIT_TOPIC, {"warm": True})  # connect outside the timing

        def submit(index: int) -> None:
            while sent[index] < shares[index]:
                size = min(chunk, shares[index] - sent[index])
                clients[index].enqueue_many(_new_jobs(SUBMIT_TOPIC, size))
                sent[index] += size

        elapsed, cpu_seconds_spent = _timed_threads(
            ctx, label, threads, submit, sent, count
        )

    return {
        "threads": threads,
        "jobs": count,
        "chunk": chunk,
        "seconds": round(elapsed, 3),
        "jobs_per_s": round(count / elapsed, 1),
        **_client_cpu(cpu_seconds_spent, count),
    }


def _wait_finished(
    ctx: Context, topic: str, total: int, label: str, workers: Workers, timeout: float
) -> None:
    assert ctx.jobs is not None
    deadline = time.monotonic() + timeout
    while True:
        left = ctx.jobs.unfinished(topic)
        ctx.progress.update(label, total - left, total)
        if left == 0:
            return
        workers.check_alive()
        if time.monotonic() > deadline:
            raise BenchError(
                f"{label}: {left} of {total} jobs unfinished after {timeout:.0f}s"
            )
        time.sleep(POLL_SECONDS)


def _finished_span(ctx: Context, topic: str) -> dict[str, Any]:
    assert ctx.jobs is not None
    ((count, started, finished, max_attempt, not_done),) = ctx.jobs.execute(
        "SELECT count(*) FILTER (WHERE status = 'completed'),"
        " extract(epoch FROM min(started_at)), extract(epoch FROM max(finished_at)),"
        " max(attempt), count(*) FILTER (WHERE status <> 'completed')"
        " FROM jobs WHERE topic = %s",
        (topic,),
    )
    if not count:
        raise BenchError(f"no {topic} job completed")
    span = float(finished) - float(started)
    return {
        "completed": int(count),
        "not_completed": int(not_done),
        "max_attempt": int(max_attempt),
        "span_s": round(span, 3),
        "jobs_per_s": round(count / span, 1) if span > 0 else None,
    }


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a local process (0 where unreadable)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # utime and stime are fields 14 and 15 of the whole line.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds spent by pulsed, the workers and their Postgres backends.

    The backends are those of the bench database named ``pulsed``; the
    reading only means something when Postgres runs on this machine.
    """

    def __init__(self, ctx: Context, workers: Workers) -> None:
        self._ctx = ctx
        self._workers = workers
        self._start = self._read()

    def _read(self) -> dict[str, dict[int, float]]:
        server = self._ctx.target.server
        backends: list[int] = []
        if self._ctx.target.bench_db is not None:
            backends = self._ctx.target.bench_db.backend_pids("pulsed")
        return {
            "pulsed": {server.pid: cpu_seconds(server.pid)}
            if server is not None and server.pid is not None
            else {},
            "workers": {pid: cpu_seconds(pid) for pid in self._workers.pids},
            "postgres": {pid: cpu_seconds(pid) for pid in backends},
            "loadgen": {os.getpid(): cpu_seconds(os.getpid())},
        }

    def spent(self, workers_ready: dict[int, float] | None = None) -> dict[str, float]:
        """CPU seconds per role since the meter started. With
        ``workers_ready`` (each worker's CPU when it was ready, see
        ``Workers.cpu_when_ready``) the workers count from then on, and
        ``workers_startup`` holds what they spent before."""
        start = self._start
        end = self._read()
        if workers_ready is not None:
            start = {**start, "workers": workers_ready}
        spent = {
            role: round(
                sum(t - start[role].get(pid, 0.0) for pid, t in end[role].items()), 3
            )
            for role in end
        }
        if workers_ready is not None:
            spent["workers_startup"] = round(sum(workers_ready.values()), 3)
        return spent


def run_drain(ctx: Context) -> dict[str, Any]:
    args = ctx.args
    assert ctx.jobs is not None and ctx.target.bench_db is not None
    _clear(ctx)
    with Pulse(ctx.target.addr) as pulse:
        prefill_seconds = _enqueue_chunks(
            pulse, DRAIN_TOPIC, args.jobs, args.batch_size, "drain prefill", ctx
        )
    ctx.progress.done()

    # Counters start from a quiet database: no session holds unpublished ones.
    ctx.jobs.close()
    ctx.target.quiet_xacts()
    before = ctx.target.started_xacts()
    polls_before = ctx.jobs.statements

    spawned = time.time()
    with Workers(
        ctx.target.addr,
        DRAIN_TOPIC,
        args.processes,
        args.concurrency,
        ctx.target.profiler,
        prefetch=args.prefetch,
    ) as workers:
        meter = CpuMeter(ctx, workers)
        # A fresh process's CPU time is all its own start-up until it is
        # ready (imports, mostly), which dwarfs a small drain's per-job work.
        workers_ready = workers.cpu_when_ready()
        _wait_finished(ctx, DRAIN_TOPIC, args.jobs, "drain", workers, args.timeout)
        done_at = time.time()
        cpu = meter.spent(workers_ready)
        exit_codes = workers.stop()
    own_statements = ctx.jobs.statements - polls_before
    ctx.jobs.close()
    after = ctx.target.quiet_xacts()
    ctx.target.ensure_running()

    span = _finished_span(ctx, DRAIN_TOPIC)
    return {
        "jobs": args.jobs,
        "processes": args.processes,
        "concurrency": args.concurrency,
        "prefetch": args.prefetch,
        "prefill_jobs_per_s": round(args.jobs / prefill_seconds, 1),
        **span,
        "spawn_to_done_s": round(done_at - spawned, 3),
        "jobs_per_s_incl_startup": round(args.jobs / (done_at - spawned), 1),
        "worker_exit_codes": exit_codes,
        "cpu_s": cpu,
        **_transactions(before, after, own_statements, args.jobs),
    }


def run_steady(ctx: Context) -> dict[str, Any]:
    args = ctx.args
    assert ctx.jobs is not None
    _clear(ctx)
    tick_seconds = 0.01
    submitted = 0
    backlog_max = 0
    with (
        Workers(
            ctx.target.addr,
            STEADY_TOPIC,
            args.processes,
            args.concurrency,
            ctx.target.profiler,
            prefetch=args.prefetch,
        ) as workers,
        Pulse(ctx.target.addr) as pulse,
    ):
        workers.wait_ready()
        pulse.enqueue(STEADY_TOPIC, {"warm": True})
        _wait_finished(ctx, STEADY_TOPIC, 1, "steady warm-up", workers, 60)
        ctx.jobs.clear()

        total = int(args.steady_rate * args.steady_seconds)
        started = time.perf_counter()
        next_poll = started
        while submitted < total:
            due = min(
                total, int((time.perf_counter() - started) * args.steady_rate) + 1
            )
            if due > submitted:
                pulse.enqueue_many(_new_jobs(STEADY_TOPIC, due - submitted))
                submitted = due
            now = time.perf_counter()
            if now >= next_poll:
                backlog_max = max(backlog_max, ctx.jobs.unfinished(STEADY_TOPIC))
                next_poll = now + 0.5
            ctx.progress.update("steady", submitted, total)
            time.sleep(max(0.0, tick_seconds - (time.perf_counter() - now)))
        submit_seconds = time.perf_counter() - started
        _wait_finished(ctx, STEADY_TOPIC, total, "steady finish", workers, args.timeout)
        drained_seconds = time.perf_counter() - started
        workers.stop()

    ((p50, p95, p99),) = ctx.jobs.execute(
        "SELECT percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP"
        " (ORDER BY extract(epoch FROM finished_at - created_at))"
        " FROM jobs WHERE topic = %s AND status = 'completed'",
        (STEADY_TOPIC,),
    )[0]
    return {
        "target_rate": args.steady_rate,
        "seconds": args.steady_seconds,
        "jobs": total,
        "submitted_per_s": round(total / submit_seconds, 1),
        "completed_per_s": round(total / drained_seconds, 1),
        "backlog_max": backlog_max,
        "e2e_p50_ms": round(p50 * 1000, 2),
        "e2e_p95_ms": round(p95 * 1000, 2),
        "e2e_p99_ms": round(p99 * 1000, 2),
    }


def _trickle(ctx: Context, pulse: Pulse, count: int, rate: float) -> float:
    """Enqueue ``count`` jobs one at a time at ``rate``; returns the rate made.

    Each payload carries the time taken just before its enqueue call.
    """
    base = time.perf_counter()
    for i in range(count):
        delay = base + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        pulse.enqueue(LATENCY_TOPIC, {"t": time.time()})
        ctx.progress.update("latency", i + 1, count)
    return count / (time.perf_counter() - base)


def run_latency(ctx: Context) -> dict[str, Any]:
    args = ctx.args
    _clear(ctx)
    warm_up = args.processes * 2
    with (
        tempfile.TemporaryDirectory(prefix="pulse-loadgen-") as record_dir,
        Pulse(ctx.target.addr) as pulse,
        Workers(
            ctx.target.addr,
            LATENCY_TOPIC,
            args.processes,
            args.latency_concurrency,
            ctx.target.profiler,
            record_dir=record_dir,
        ) as workers,
    ):
        workers.wait_ready()
        # Open the streams, then let the workers go idle.
        for _ in range(warm_up):
            pulse.enqueue(LATENCY_TOPIC, {"t": time.time()})
        time.sleep(args.latency_settle)

        achieved = _trickle(ctx, pulse, args.latency_jobs, args.latency_rate)
        total = args.latency_jobs + warm_up
        if ctx.jobs is not None:
            _wait_finished(ctx, LATENCY_TOPIC, total, "latency finish", workers, 60)
        else:
            time.sleep(2.0)
        exit_codes = workers.stop()
        records = workers.records()

    # The warm-up jobs were enqueued first.
    measured = sorted(records)[warm_up:]
    if len(measured) < args.latency_jobs:
        raise BenchError(
            f"latency: {len(measured)} of {args.latency_jobs} jobs were recorded"
        )
    return {
        "jobs": args.latency_jobs,
        "rate": args.latency_rate,
        "achieved_rate": round(achieved, 1),
        "processes": args.processes,
        "concurrency": args.latency_concurrency,
        **percentiles_ms([start - enqueued for enqueued, start in measured]),
        "worker_exit_codes": exit_codes,
    }


def run_txn(ctx: Context) -> dict[str, Any]:
    """Transactions per job, from the runs that counted them."""
    for name, runner in (("drain", run_drain), ("submit_threads", run_submit_threads)):
        if name not in ctx.results:
            ctx.results[name] = runner(ctx)
            ctx.progress.done()
    keys = ("xact_commit", "xact_rollback", "transactions_per_job")
    return {
        name: {
            "jobs": ctx.results[name]["jobs"],
            **{k: ctx.results[name][k] for k in keys},
        }
        for name in ("drain", "submit_threads")
    }


# Ids ordered by insertion, like the UUIDv7 ids the SDK makes: a 48-bit
# millisecond prefix, then the row number.
_INSERT_BACKLOG = """
INSERT INTO jobs (id, topic, payload, priority, status, max_attempts, run_at)
SELECT (%(id_prefix)s || lpad(to_hex(g), 20, '0'))::uuid,
       %(topic)s, '\\x7b7d'::bytea, 0, %(status)s, 20,
       now() + %(offset)s * interval '1 second' + g * interval '1 microsecond'
FROM generate_series(1, %(rows)s) AS g
"""


_CLAIM_PARAMS = {
    "slots": [0] * CLAIM_SLOTS,
    "worker_ids": ["loadgen-claim"] * CLAIM_SLOTS,
    "topics": [CLAIM_TOPIC],
    "limit": CLAIM_SLOTS,
    "lease_seconds": 30.0,
}


# The claim as pulsed runs it: prepared once per connection.
# Prepared with the settings pulsed claims with (its plan rules, the gate lock).
_CLAIM_PREPARED = Prepared("loadgen_claim_jobs", CLAIM_JOBS, settings=CLAIM_SETTINGS)


def _time_claim(
    conn: psycopg2.extensions.connection, *, prepared: bool
) -> tuple[float, int]:
    """One claim in a transaction that is rolled back: (seconds, rows)."""
    with conn.cursor() as cur:
        started = time.perf_counter()
        if prepared:
            _CLAIM_PREPARED.execute(cur, _CLAIM_PARAMS)
        else:
            cur.execute(CLAIM_JOBS, _CLAIM_PARAMS)
        rows = len(cur.fetchall())
        elapsed = time.perf_counter() - started
    conn.rollback()
    return elapsed, rows


def _claim_buffers(conn: psycopg2.extensions.connection) -> tuple[int, int]:
    """Buffers the whole claim touches, and those of its claim-index scan."""
    with conn.cursor() as cur:
        cur.execute(
            "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + CLAIM_JOBS, _CLAIM_PARAMS
        )
        row = cur.fetchone()
    conn.rollback()
    assert row is not None
    plan = row[0][0]["Plan"]

    def touched(node: dict[str, Any]) -> int:
        return int(node.get("Shared Hit Blocks", 0)) + int(
            node.get("Shared Read Blocks", 0)
        )

    def index_scans(node: dict[str, Any]) -> int:
        own = touched(node) if node.get("Index Name") == "jobs_claim_idx" else 0
        return own + sum(index_scans(child) for child in node.get("Plans", []))

    return touched(plan), index_scans(plan)


def _id_prefix(step_ms: int) -> str:
    return f"{int(time.time() * 1000) + step_ms:012x}"


def _fill_backlog(
    conn: psycopg2.extensions.connection, shape: tuple[str, str, int], size: int
) -> None:
    topic, status, offset_seconds = shape
    with conn.cursor() as cur:
        cur.execute("TRUNCATE jobs")
        if (topic, status) != (CLAIM_TOPIC, "pending"):
            # Something to claim beside a backlog the claim must not read.
            cur.execute(
                _INSERT_BACKLOG,
                {
                    "id_prefix": _id_prefix(0),
                    "topic": CLAIM_TOPIC,
                    "status": "pending",
                    "offset": 0,
                    "rows": CLAIM_OWN_ROWS,
                },
            )
        cur.execute(
            _INSERT_BACKLOG,
            {
                "id_prefix": _id_prefix(1),
                "topic": topic,
                "status": status,
                "offset": offset_seconds,
                "rows": size,
            },
        )
        cur.execute("VACUUM ANALYZE jobs")


_CLAIM_SHAPES = {
    # name: (backlog topic, status, run_at offset in seconds)
    "own_topic": (CLAIM_TOPIC, "pending", 0),
    "other_topic": (CLAIM_OTHER_TOPIC, "pending", 0),
    "future_dated": (CLAIM_TOPIC, "scheduled", 86_400),
}


def run_claim_depth(ctx: Context) -> dict[str, Any]:
    """Claim cost per backlog size and shape.

    Each size lives in a scratch database of its own (no server claims from
    it meanwhile), and the repetitions alternate between the sizes, so that
    noise from the rest of the machine falls on every size alike.
    """
    args = ctx.args
    bench_db = ctx.target.bench_db
    assert bench_db is not None
    backlogs = [int(size) for size in args.claim_backlogs.split(",")]
    result: dict[str, Any] = {
        "slots": CLAIM_SLOTS,
        "reps": args.claim_reps,
        "backlogs": backlogs,
    }
    names = [f"claim{i}" for i in range(len(backlogs))]
    conns = []
    try:
        for name in names:
            conns.append(connect(bench_db.create_scratch(name)))
        for shape_name, shape in _CLAIM_SHAPES.items():
            for done, (conn, size) in enumerate(zip(conns, backlogs, strict=True)):
                ctx.progress.update(f"claim {shape_name}", done, len(conns), force=True)
                _fill_backlog(conn, shape, size)
            for conn in conns:
                conn.autocommit = False
            timings: list[list[float]] = [[] for _ in conns]
            unprepared: list[list[float]] = [[] for _ in conns]
            claimed = [0] * len(conns)
            for rep in range(args.claim_reps + 3):
                for index, conn in enumerate(conns):
                    seconds, claimed[index] = _time_claim(conn, prepared=True)
                    plain_seconds, _ = _time_claim(conn, prepared=False)
                    if rep >= 3:  # the first rounds warm the caches
                        timings[index].append(seconds)
                        unprepared[index].append(plain_seconds)
            per_size: dict[str, Any] = {}
            for index, (conn, size) in enumerate(zip(conns, backlogs, strict=True)):
                total_buffers, scan_buffers = _claim_buffers(conn)
                conn.autocommit = True
                per_size[str(size)] = {
                    "median_ms": round(statistics.median(timings[index]) * 1000, 3),
                    "min_ms": round(min(timings[index]) * 1000, 3),
                    "unprepared_median_ms": round(
                        statistics.median(unprepared[index]) * 1000, 3
                    ),
                    "rows_claimed": claimed[index],
                    "buffers": total_buffers,
                    "claim_index_buffers": scan_buffers,
                }
            low, high = per_size[str(backlogs[0])], per_size[str(backlogs[-1])]
            per_size["ratio"] = round(high["median_ms"] / low["median_ms"], 3)
            result[shape_name] = per_size
    finally:
        for conn in conns:
            conn.close()
        for name in names:
            bench_db.drop(f"{bench_db.name}_{name}")
    return result


def _memory(pid: int) -> dict[str, float]:
    """Resident memory (now and at its peak, MB) and threads of a local process."""
    wanted = {"VmRSS": "rss_mb", "VmHWM": "hwm_mb", "Threads": "threads"}
    found: dict[str, float] = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in wanted:
                number = int(value.split()[0])
                # /proc counts memory in KiB.
                found[wanted[key]] = (
                    number if key == "Threads" else round(number * 1024 / 1e6, 1)
                )
    return found


class _StreamCount:
    """Streams open on the managed server, from the ``stream.opened`` and
    ``stream.closed`` events its log gained since this count began (INFO
    events, in the text or the JSON log format)."""

    _OPENED = re.compile(rb'[ "]stream\.opened[ "]')
    _CLOSED = re.compile(rb'[ "]stream\.closed[ "]')

    def __init__(self, log_path: pathlib.Path) -> None:
        self._path = log_path
        self._offset = log_path.stat().st_size
        self._open = 0

    def now(self) -> int:
        with open(self._path, "rb") as log_file:
            log_file.seek(self._offset)
            text = log_file.read()
        # A line still being written is read again next time.
        complete = text[: text.rfind(b"\n") + 1]
        self._offset += len(complete)
        for line in complete.splitlines():
            if self._OPENED.search(line):
                self._open += 1
            elif self._CLOSED.search(line):
                self._open -= 1
        return self._open


def _stream_limit(ctx: Context) -> int:
    env = _server_env(ctx.args.server_env)
    if env.get("PULSE_LOG_LEVEL", "INFO").upper() not in ("DEBUG", "INFO"):
        raise BenchError("rss counts streams from pulsed's INFO log events")
    return int(env.get("PULSE_MAX_STREAMS", Config.max_streams))


def run_rss(ctx: Context) -> dict[str, Any]:
    """pulsed's memory: fresh, beside a deep backlog, and under many streams.

    The server is restarted first, so that no earlier scenario's allocations
    count, and so that its peak (VmHWM) belongs to this scenario alone.
    """
    args = ctx.args
    server = ctx.target.server
    if server is None:
        raise BenchError("rss reads the memory of the pulsed it starts: drop --addr")
    assert ctx.jobs is not None
    limit = _stream_limit(ctx)
    if args.rss_streams > limit:
        raise BenchError(
            f"--rss-streams {args.rss_streams} is more than the server's "
            f"PULSE_MAX_STREAMS ({limit}); pass --server-env "
            f"PULSE_MAX_STREAMS={args.rss_streams}"
        )
    processes = min(args.rss_processes, args.rss_streams)

    _clear(ctx)
    server.stop()
    ctx.target.ensure_running()
    assert server.pid is not None
    pid = server.pid
    time.sleep(RSS_SETTLE_SECONDS)
    fresh = _memory(pid)

    ctx.progress.update("rss backlog", 0, 1, force=True)
    fill_started = time.perf_counter()
    ctx.jobs.execute(
        _INSERT_BACKLOG,
        {
            "id_prefix": _id_prefix(0),
            "topic": RSS_TOPIC,
            "status": "pending",
            "offset": 0,
            "rows": args.rss_backlog,
        },
    )
    ctx.jobs.execute("VACUUM ANALYZE jobs")
    fill_seconds = time.perf_counter() - fill_started
    time.sleep(RSS_SETTLE_SECONDS)
    with_backlog = _memory(pid)

    count = _StreamCount(server.log_path)
    samples: list[dict[str, float]] = []
    open_max = 0

    def sample() -> int:
        nonlocal open_max
        if not server.alive():
            raise BenchError(f"pulsed exited during the rss run; see {server.log_path}")
        samples.append(_memory(pid))
        open_now = count.now()
        open_max = max(open_max, open_now)
        return open_now

    with Workers(
        server.addr,
        RSS_TOPIC,
        processes,
        args.rss_concurrency,
        ctx.target.profiler,
        streams=args.rss_streams,
    ) as workers:
        workers.wait_ready()
        connect_started = time.monotonic()
        while (
            sample() < args.rss_streams
            and time.monotonic() - connect_started < RSS_CONNECT_TIMEOUT_SECONDS
        ):
            workers.check_alive()
            ctx.progress.update("rss streams", open_max, args.rss_streams)
            time.sleep(RSS_SAMPLE_SECONDS)
        connect_seconds = time.monotonic() - connect_started

        window_started = time.monotonic()
        while (elapsed := time.monotonic() - window_started) < args.rss_seconds:
            sample()
            workers.check_alive()
            ctx.progress.update("rss", int(elapsed), int(args.rss_seconds))
            time.sleep(RSS_SAMPLE_SECONDS)
        open_at_end = sample()
        running = _memory(pid)
        exit_codes = workers.stop()
    time.sleep(RSS_SETTLE_SECONDS)
    after = _memory(pid)

    # Every stream drained before it closed, so no job should be left
    # running: any that is waits for its lease to lapse.
    ((completed, still_running),) = ctx.jobs.execute(
        "SELECT count(*) FILTER (WHERE status = 'completed'),"
        " count(*) FILTER (WHERE status = 'running')"
        " FROM jobs WHERE topic = %s",
        (RSS_TOPIC,),
    )
    return {
        "backlog": args.rss_backlog,
        "backlog_fill_s": round(fill_seconds, 3),
        "streams": args.rss_streams,
        "stream_limit": limit,
        "streams_open": open_max,
        "streams_open_at_end": open_at_end,
        "connect_s": round(connect_seconds, 3),
        "processes": processes,
        "concurrency": args.rss_concurrency,
        "seconds": args.rss_seconds,
        "jobs_completed": int(completed),
        "jobs_running_after_stop": int(still_running),
        "start_rss_mb": fresh["rss_mb"],
        "backlog_rss_mb": with_backlog["rss_mb"],
        "sampled_max_rss_mb": max(s["rss_mb"] for s in samples),
        "end_rss_mb": running["rss_mb"],
        # The kernel's high-water mark since the restart: it also catches
        # peaks between two samples.
        "peak_rss_mb": running["hwm_mb"],
        "after_streams_rss_mb": after["rss_mb"],
        "threads_start": int(fresh["threads"]),
        "threads_max": int(max(s["threads"] for s in samples)),
        "worker_exit_codes": exit_codes,
    }


RUNNERS: dict[str, Callable[[Context], dict[str, Any]]] = {
    "submit-single": run_submit_single,
    "submit-threads": run_submit_threads,
    "submit-batch": run_submit_batch,
    "drain": run_drain,
    "steady": run_steady,
    "latency": run_latency,
    "txn": run_txn,
    "claim-depth": run_claim_depth,
    "rss": run_rss,
}


# -- the report --------------------------------------------------------------------


def _ratio(value: float, reference: float, *, lower_is_better: bool = False) -> str:
    if not value or not reference:
        return ""
    ratio = reference / value if lower_is_better else value / reference
    return f"{ratio:.2f}x"


def report_rows(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(metric, value, reference, ratio) rows for the human table."""
    rows: list[tuple[str, str, str, str]] = []

    def add(
        metric: str,
        value: str,
        ref_key: str = "",
        measured: float = 0.0,
        lower: bool = False,
    ) -> None:
        if ref_key:
            name, ref = REFERENCES[ref_key]
            rows.append(
                (
                    metric,
                    value,
                    f"{name} {ref:,g}",
                    _ratio(measured, ref, lower_is_better=lower),
                )
            )
        else:
            rows.append((metric, value, "", ""))

    if "submit_single" in results:
        r = results["submit_single"]
        add(
            "submit one by one, 1 thread",
            f"{r['jobs_per_s']:,.0f} jobs/s",
            "submit_single",
            r["jobs_per_s"],
        )
        add(
            "  per call p50 / p99",
            f"{r['call_p50_ms']:.2f} / {r['call_p99_ms']:.2f} ms",
        )
        add("  client CPU per job", f"{r['client_cpu_us_per_job']:.1f} us")
    if "submit_threads" in results:
        r = results["submit_threads"]
        add(
            f"submit one by one, {r['threads']} threads",
            f"{r['jobs_per_s']:,.0f} jobs/s",
            "submit_threads",
            r["jobs_per_s"],
        )
        add(
            "  per call p50 / p99",
            f"{r['call_p50_ms']:.2f} / {r['call_p99_ms']:.2f} ms",
        )
        add("  client CPU per job", f"{r['client_cpu_us_per_job']:.1f} us")
    if "submit_batch" in results:
        for r in results["submit_batch"]["runs"]:
            add(
                f"submit batched ({r['chunk']}/call), {r['threads']} "
                f"thread{'s' if r['threads'] > 1 else ''}",
                f"{r['jobs_per_s']:,.0f} jobs/s",
                "submit_batch",
                r["jobs_per_s"],
            )
            add("  client CPU per job", f"{r['client_cpu_us_per_job']:.1f} us")
    if "drain" in results:
        r = results["drain"]
        add(
            f"drain {r['jobs']:,} jobs, {r['processes']}x{r['concurrency']}"
            f"+{r['prefetch']}",
            f"{r['jobs_per_s']:,.0f} jobs/s",
            "drain",
            r["jobs_per_s"],
        )
        add(
            "  vs the Go pulse end to end",
            f"{r['jobs_per_s']:,.0f} jobs/s",
            "go_drain",
            r["jobs_per_s"],
        )
        add(
            "  including worker start-up", f"{r['jobs_per_s_incl_startup']:,.0f} jobs/s"
        )
        cpu = r["cpu_s"]
        add(
            "  CPU per job: pulsed / workers / postgres",
            " / ".join(
                f"{cpu[role] / r['jobs'] * 1e6:.0f}"
                for role in ("pulsed", "workers", "postgres")
            )
            + f" us (worker start-up {cpu['workers_startup']:.2f} s)",
        )
    if "steady" in results:
        r = results["steady"]
        add(
            f"steady {r['target_rate']:,.0f}/s for {r['seconds']:g}s",
            f"{r['completed_per_s']:,.0f} jobs/s done, "
            f"backlog max {r['backlog_max']:,}",
        )
        add(
            "  created -> finished p50/p95/p99",
            f"{r['e2e_p50_ms']:.1f} / {r['e2e_p95_ms']:.1f} / {r['e2e_p99_ms']:.1f} ms",
        )
    if "latency" in results:
        r = results["latency"]
        add(
            f"dispatch latency p50 ({r['rate']:g}/s)",
            f"{r['p50_ms']:.2f} ms",
            "latency_p50",
            r["p50_ms"],
            lower=True,
        )
        add("  p95", f"{r['p95_ms']:.2f} ms", "latency_p95", r["p95_ms"], lower=True)
        add("  p99 / max", f"{r['p99_ms']:.2f} / {r['max_ms']:.2f} ms")
        add(
            "  vs the Go pulse p50",
            f"{r['p50_ms']:.2f} ms",
            "go_latency_p50",
            r["p50_ms"],
            lower=True,
        )
    if "txn" in results:
        for name, r in results["txn"].items():
            add(
                f"transactions per job, {name.replace('_', ' ')}",
                f"{r['transactions_per_job']:.3f} ({r['xact_rollback']} aborted)",
            )
    if "claim_depth" in results:
        r = results["claim_depth"]
        low, high = (str(b) for b in (r["backlogs"][0], r["backlogs"][-1]))
        for shape in ("own_topic", "other_topic", "future_dated"):
            s = r[shape]
            add(
                f"claim {r['slots']}, {shape.replace('_', ' ')} "
                f"{int(low):,} / {int(high):,}",
                f"{s[low]['median_ms']:.2f} / {s[high]['median_ms']:.2f} ms "
                f"(ratio {s['ratio']:.2f}; claim-index buffers "
                f"{s[low]['claim_index_buffers']} / {s[high]['claim_index_buffers']})",
            )
    if "rss" in results:
        r = results["rss"]
        add(
            f"pulsed peak RSS, {r['backlog']:,} backlog, "
            f"{r['streams_open']}/{r['streams']} streams",
            f"{r['peak_rss_mb']:.0f} MB",
            "rss_peak",
            r["peak_rss_mb"],
            lower=True,
        )
        add(
            "  fresh / with backlog / streams end / after",
            f"{r['start_rss_mb']:.0f} / {r['backlog_rss_mb']:.0f} / "
            f"{r['end_rss_mb']:.0f} / {r['after_streams_rss_mb']:.0f} MB",
        )
        add(
            f"  {r['seconds']:g}s of streams, {r['processes']} processes "
            f"x{r['concurrency']}",
            f"{r['jobs_completed']:,} jobs done, {r['threads_max']} server threads, "
            f"{r['jobs_running_after_stop']} left running after the stop",
        )
    return rows


def print_table(results: dict[str, Any], meta: dict[str, Any]) -> None:
    rows = report_rows(results)
    headers = ("metric", "measured", "reference", "ratio")
    widths = [
        max(len(h), *(len(row[i]) for row in rows)) if rows else len(h)
        for i, h in enumerate(headers)
    ]
    print(f"pulse loadgen, {meta['date_utc']}, {meta['host']}")
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(
            "  ".join(
                cell.ljust(w) for cell, w in zip(row, widths, strict=True)
            ).rstrip()
        )
    if meta.get("server_log"):
        print(f"server log: {meta['server_log']}")


# -- main ------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--scenario",
        help="comma-separated scenarios (default: all; with --addr, all but rss)",
    )
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="smoke",
        help="sizes: smoke (seconds) or full (the real run)",
    )
    parser.add_argument("--addr", help="a running pulsed; default: start one")
    parser.add_argument(
        "--db-url",
        default="postgresql://postgres@127.0.0.1:5432/pulse_bench",
        help="database to create for the started server (dropped at the "
        "end), or the running server's database with --addr",
    )
    parser.add_argument(
        "--keep-db", action="store_true", help="keep the created database at the end"
    )
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="environment for the started pulsed (repeatable)",
    )
    parser.add_argument(
        "--log-dir", help="where the server log goes (default: a temp dir)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    sizes = parser.add_argument_group("sizes (default: from --preset)")
    sizes.add_argument(
        "--submit-jobs", type=int, help="one-by-one submits per scenario"
    )
    sizes.add_argument("--threads", type=int, default=8)
    sizes.add_argument("--batch-jobs", type=int, help="jobs for submit-batch")
    sizes.add_argument(
        "--batch-threads",
        metavar="N[,N...]",
        help="client threads for submit-batch; several counts run it once each",
    )
    sizes.add_argument("--batch-size", type=int, default=1000)
    sizes.add_argument("--jobs", type=int, help="jobs pre-filled for the drain")
    sizes.add_argument("--processes", type=int, default=2, help="worker processes")
    sizes.add_argument(
        "--concurrency",
        type=int,
        default=100,
        help="handler threads per worker (drain, steady)",
    )
    sizes.add_argument(
        "--prefetch",
        type=int,
        default=100,
        help="jobs each worker holds beyond its busy threads, Pulse's "
        "prefetch (drain, steady)",
    )
    sizes.add_argument("--steady-rate", type=float)
    sizes.add_argument("--steady-seconds", type=float)
    sizes.add_argument("--latency-jobs", type=int)
    sizes.add_argument("--latency-rate", type=float)
    sizes.add_argument("--latency-concurrency", type=int, default=10)
    sizes.add_argument(
        "--latency-settle",
        type=float,
        default=1.0,
        help="idle seconds before the latency trickle",
    )
    sizes.add_argument("--claim-backlogs", help="backlog sizes, comma-separated")
    sizes.add_argument("--claim-reps", type=int)
    sizes.add_argument("--rss-backlog", type=int, help="pending jobs for rss")
    sizes.add_argument("--rss-streams", type=int, help="worker streams for rss")
    sizes.add_argument("--rss-seconds", type=float, help="how long the rss streams run")
    sizes.add_argument(
        "--rss-processes",
        type=int,
        default=4,
        help="worker processes that share the rss streams",
    )
    sizes.add_argument(
        "--rss-concurrency", type=int, default=2, help="handler threads per stream"
    )
    profiling = parser.add_argument_group("profiling")
    profiling.add_argument(
        "--profile",
        metavar="DIR",
        help="record py-spy profiles of pulsed, the loadgen and the "
        "workers into DIR, one file per process and scenario",
    )
    profiling.add_argument(
        "--profile-format",
        choices=("raw", "flamegraph", "speedscope"),
        default="flamegraph",
    )
    profiling.add_argument(
        "--profile-rate", type=int, default=200, help="samples per second"
    )
    profiling.add_argument(
        "--profile-only",
        metavar="LABELS",
        help="profile only these processes: pulsed, loadgen, loadgen-worker-N",
    )
    profiling.add_argument(
        "--profile-blocking",
        action="store_true",
        help="pause the process for each sample (complete stacks, more overhead)",
    )
    profiling.add_argument(
        "--profile-idle",
        action="store_true",
        help="include threads that wait (wall time, not CPU)",
    )
    parser.add_argument(
        "--stats-settle-seconds",
        type=float,
        default=11.0,
        help="with --addr: wait for backends to publish counters",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        help="longest wait for a drain to finish",
    )
    args = parser.parse_args(argv)

    for name, value in PRESETS[args.preset].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.scenario is None:
        args.scenarios = [
            s for s in SCENARIOS if not (args.addr and s in _MANAGED_SCENARIOS)
        ]
    else:
        args.scenarios = [s.strip() for s in args.scenario.split(",") if s.strip()]
    unknown = sorted(set(args.scenarios) - set(SCENARIOS))
    if unknown:
        parser.error(
            f"unknown scenario {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}"
        )
    managed = sorted(_MANAGED_SCENARIOS & set(args.scenarios))
    if args.addr and managed:
        parser.error(
            f"{', '.join(managed)} needs the server the loadgen starts; drop --addr"
        )
    if args.addr and not args.db_url and _DB_SCENARIOS & set(args.scenarios):
        parser.error("with --addr, scenarios that read the database need --db-url")
    try:
        args.batch_thread_counts = [
            int(count) for count in args.batch_threads.split(",") if count.strip()
        ]
    except ValueError:
        parser.error(f"--batch-threads {args.batch_threads!r} is not N[,N...]")
    if not args.batch_thread_counts or min(args.batch_thread_counts) < 1:
        parser.error("--batch-threads must name counts of at least 1")
    for name in (
        "submit_jobs",
        "batch_jobs",
        "jobs",
        "threads",
        "processes",
        "concurrency",
        "latency_jobs",
        "claim_reps",
        "batch_size",
        "latency_concurrency",
        "rss_backlog",
        "rss_streams",
        "rss_processes",
        "rss_concurrency",
    ):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if not 0 <= args.prefetch <= MAX_PREFETCH:
        parser.error(f"--prefetch must be in 0..{MAX_PREFETCH}")
    return args


def _server_env(pairs: list[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise BenchError(f"--server-env {pair!r} is not NAME=VALUE")
        env[name] = value
    return env


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    progress = Progress(sys.stdout.isatty(), sys.stderr if args.json else sys.stdout)
    meta: dict[str, Any] = {
        "date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "host": f"{os.cpu_count()} cpus, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}",
        "preset": args.preset,
        "scenarios": args.scenarios,
    }
    results: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        bench_db = None
        server = None
        owned = args.addr is None
        if args.db_url:
            bench_db = BenchDatabase(args.db_url, owned=owned)
            stack.callback(bench_db.close)
            meta["postgres"] = bench_db.server_version()
            meta["database"] = bench_db.name
        if owned:
            assert bench_db is not None
            bench_db.create()
            if not args.keep_db:
                stack.callback(bench_db.drop)
            log_dir = pathlib.Path(
                args.log_dir or tempfile.mkdtemp(prefix="pulse-loadgen-")
            )
            log_dir.mkdir(parents=True, exist_ok=True)
            server = ManagedServer(
                args.db_url,
                log_dir / f"pulsed-{bench_db.name}.log",
                _server_env(args.server_env),
            )
            stack.callback(server.stop)
            meta["server_log"] = str(server.log_path)
            meta["server_env"] = _server_env(args.server_env)
            addr = server.addr
        else:
            addr = args.addr
        meta["addr"] = addr
        jobs = Jobs(args.db_url, owned=owned) if bench_db is not None else None
        if jobs is not None:
            stack.callback(jobs.close)
        profiler = None
        if args.profile:
            profiler = Profiler(args)
            stack.callback(profiler.stop)
            meta["profiles"] = profiler.files
        target = Target(addr, server, bench_db, args.stats_settle_seconds, profiler)
        ctx = Context(args, target, jobs, progress, results)
        for scenario in SCENARIOS:
            if scenario not in args.scenarios:
                continue
            if profiler is not None:
                profiler.scenario = scenario
            target.ensure_running()
            if profiler is not None:
                profiler.attach(os.getpid(), "loadgen")
                if server is not None and server.pid is not None:
                    profiler.attach(server.pid, "pulsed")
            started = time.perf_counter()
            try:
                results[scenario.replace("-", "_")] = RUNNERS[scenario](ctx)
            finally:
                if profiler is not None:
                    profiler.stop()
            progress.done()
            progress.note(f"{scenario} done in {time.perf_counter() - started:.1f}s")
        if server is not None:
            meta["server_starts"] = server.starts
    return meta, results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Explicitly for SIGINT too: a shell starts background jobs with SIGINT
    # ignored, and the server and workers must be stopped either way.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _interrupt)
    try:
        meta, results = run(args)
    except BenchError as exc:
        print(f"loadgen: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            "loadgen: interrupted; the server and workers it started were stopped",
            file=sys.stderr,
        )
        return 130
    if args.json:
        print(json.dumps({"meta": meta, **results}, indent=2))
    else:
        print_table(results, meta)
    return 0


if __name__ == "__main__":
    sys.exit(main())
