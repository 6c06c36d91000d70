"""Prometheus metrics, served on ``PULSE_METRICS_ADDR`` (off by default).

Counters are bumped by the code that owns each state change, once per
batch, never per row in a hot loop. The dispatch-latency histogram takes
one observation per job, about two microseconds each on the dispatcher's
path, so it is kept only once a process serves its metrics. Queue
depth, oldest waiting age, streams and pool use are read when Prometheus
scrapes, by a collector bound to one server. Counters are process-wide (one
pulsed process is one replica).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from pulse_client.errors import PulseError
from pulsed.database import Database

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry()
# Set once an endpoint of this process serves the registry.
_serving = threading.Event()

JOBS_SUBMITTED = Counter(
    "pulse_jobs_submitted",
    "Jobs stored by submits and schedule firings.",
    ["topic"],
    registry=REGISTRY,
)
JOBS_COMPLETED = Counter(
    "pulse_jobs_completed",
    "Attempts that ended in success.",
    ["topic"],
    registry=REGISTRY,
)
JOBS_FAILED = Counter(
    "pulse_jobs_failed",
    "Attempts that failed (reported by a worker or a lapsed lease), whatever "
    "came next: a retry, a dead letter or a cancel.",
    ["topic"],
    registry=REGISTRY,
)
JOBS_DEAD_LETTERED = Counter(
    "pulse_jobs_dead_lettered",
    "Jobs that ran out of attempts or failed permanently.",
    ["topic"],
    registry=REGISTRY,
)
LEASE_EXPIRIES = Counter(
    "pulse_lease_expiries",
    "Running jobs whose lease lapsed and that the watchdog took back.",
    ["topic"],
    registry=REGISTRY,
)
LOOP_ERRORS = Counter(
    "pulse_loop_errors",
    "Background loop steps that failed (the loop backs off and retries).",
    ["loop"],
    registry=REGISTRY,
)
DISPATCH_LATENCY = Histogram(
    "pulse_dispatch_latency_seconds",
    "From when a job was due (run_at) to when a worker's claim took it.",
    buckets=(
        0.001,
        0.0025,
        0.005,
        0.01,
        0.025,
        0.05,
        0.1,
        0.25,
        0.5,
        1,
        2.5,
        5,
        10,
        30,
        60,
        300,
    ),
    registry=REGISTRY,
)

# Per topic: jobs waiting for a worker and how long the oldest has waited.
# Reads the claim index; cached briefly, so that several scrapers or a
# short scrape interval do not turn into a query each.
QUEUE_DEPTH = """
SELECT topic, count(*), extract(epoch FROM now() - min(run_at))
FROM jobs WHERE status = 'pending'
GROUP BY topic
"""

_ENDED_STATUS_COUNTERS = {
    "completed": (JOBS_COMPLETED,),
    "retrying": (JOBS_FAILED,),
    "dead_lettered": (JOBS_FAILED, JOBS_DEAD_LETTERED),
    "canceled": (JOBS_FAILED,),
}


def count_submitted(topics: Iterable[str]) -> None:
    for topic, count in collections.Counter(topics).items():
        JOBS_SUBMITTED.labels(topic).inc(count)


def count_ended(ended: Iterable[tuple[str, str]]) -> None:
    """Attempts that ended, as (topic, status after the attempt).

    A canceled attempt whose handler succeeded ends ``completed``; one that
    failed or gave up ends ``canceled`` and counts as failed.
    """
    for (topic, status), count in collections.Counter(ended).items():
        for counter in _ENDED_STATUS_COUNTERS.get(status, ()):
            counter.labels(topic).inc(count)


def count_expired(expired: Iterable[tuple[str, str]]) -> None:
    """Lapsed leases, as (topic, status after the watchdog)."""
    expired = list(expired)
    for topic, count in collections.Counter(t for t, _ in expired).items():
        LEASE_EXPIRIES.labels(topic).inc(count)
    count_ended(expired)


def observe_dispatch_latency(seconds: Iterable[float]) -> None:
    if not _serving.is_set():
        return
    for value in seconds:
        DISPATCH_LATENCY.observe(max(0.0, value))


class ServerCollector(Collector):
    """Gauges read from one server at scrape time."""

    def __init__(
        self,
        db: Database,
        streams: Callable[[], int],
        paused: Callable[[], frozenset[str]],
        cache_seconds: float = 2.0,
    ) -> None:
        self._db = db
        self._streams = streams
        self._paused = paused
        self._cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._depth: list[tuple[str, int, float]] = []
        self._depth_read_at = -float("inf")

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily(
            "pulse_queue_depth",
            "Jobs waiting for a worker (pending).",
            labels=["topic"],
        )
        oldest = GaugeMetricFamily(
            "pulse_oldest_waiting_seconds",
            "How long the oldest pending job of the topic has been due.",
            labels=["topic"],
        )
        for topic, count, age in self._queue_depth():
            depth.add_metric([topic], count)
            oldest.add_metric([topic], age)
        yield depth
        yield oldest

        yield GaugeMetricFamily(
            "pulse_streams_active",
            "Worker streams open on this replica.",
            value=self._streams(),
        )
        paused = self._paused()
        yield GaugeMetricFamily(
            "pulse_dispatch_paused",
            "1 while dispatch of every topic is paused.",
            value=1 if "*" in paused else 0,
        )
        pool = self._db.stats()
        usage = GaugeMetricFamily(
            "pulse_db_pool_connections",
            "Database pool connections by state; size is the bound.",
            labels=["state"],
        )
        usage.add_metric(["in_use"], pool["open"] - pool["idle"])
        usage.add_metric(["idle"], pool["idle"])
        usage.add_metric(["size"], pool["size"])
        yield usage

    def _queue_depth(self) -> list[tuple[str, int, float]]:
        with self._lock:
            if time.monotonic() - self._depth_read_at < self._cache_seconds:
                return self._depth
            try:
                with self._db.transaction() as cur:
                    cur.execute(QUEUE_DEPTH)
                    rows = cur.fetchall()
            except PulseError as exc:
                # The scrape still answers; the depth is the last one read.
                log.warning("metrics.queue_depth_failed error=%s", exc)
                return self._depth
            self._depth = [(t, int(c), max(0.0, float(a))) for t, c, a in rows]
            self._depth_read_at = time.monotonic()
            return self._depth


class MetricsEndpoint:
    """The HTTP endpoint Prometheus scrapes, serving ``/metrics``."""

    def __init__(self, addr: str, collector: ServerCollector) -> None:
        host, _, port = addr.rpartition(":")
        self._host = host.strip("[]")
        self._port = int(port)
        self._collector = collector
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    def start(self) -> None:
        REGISTRY.register(self._collector)
        try:
            self._server, self._thread = start_http_server(
                self._port, addr=self._host, registry=REGISTRY
            )
        except OSError:
            REGISTRY.unregister(self._collector)
            raise
        self.port = self._server.server_port
        _serving.set()
        log.info("metrics.serving addr=%s:%d", self._host, self.port)

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)
        REGISTRY.unregister(self._collector)
        self._server = None
