"""The Prometheus endpoint: off by default; when on, the counters, the
dispatch latency and the gauges say what happened, per topic."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families

from pulse_client import JobStatus, Pulse
from tests.fixtures.servers import InProcessServer
from tests.fixtures.streams import WorkerStream

OpenStream = Callable[..., WorkerStream]
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(server: InProcessServer) -> Samples:
    endpoint = server.server.metrics
    assert endpoint is not None
    url = f"http://127.0.0.1:{endpoint.port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_are_off_unless_an_address_is_configured(
    start_inprocess: Callable[..., InProcessServer],
) -> None:
    server = start_inprocess()

    assert server.server.metrics is None


def test_counters_follow_submits_and_outcomes_per_topic(
    start_inprocess: Callable[..., InProcessServer], open_stream: OpenStream
) -> None:
    server = start_inprocess(metrics_addr="127.0.0.1:0")
    before = scrape(server)
    with Pulse(server.addr) as client:
        for n in range(3):
            client.enqueue("metrics.a", {"n": n})
        worker = open_stream(server.stub(), "w1", ["metrics.a"], 3)
        first, second, third = worker.take_assignments(3)
        worker.succeed([first, second])
        worker.fail(third, "no such customer", permanently=True)
        worker.take_acks(3)
    after = scrape(server)

    def delta(name: str) -> float:
        return value(after, name, topic="metrics.a") - value(
            before, name, topic="metrics.a"
        )

    assert delta("pulse_jobs_submitted_total") == 3
    assert delta("pulse_jobs_completed_total") == 2
    assert delta("pulse_jobs_failed_total") == 1
    assert delta("pulse_jobs_dead_lettered_total") == 1
    assert (
        value(after, "pulse_dispatch_latency_seconds_count")
        - value(before, "pulse_dispatch_latency_seconds_count")
        == 3
    )
    assert value(after, "pulse_streams_active") == 1


def test_gauges_show_depth_age_pool_and_the_pause(
    start_inprocess: Callable[..., InProcessServer],
) -> None:
    server = start_inprocess(metrics_addr="127.0.0.1:0", db_pool_size=7)
    with Pulse(server.addr) as client:
        client.enqueue("metrics.waiting", {})
        client.enqueue("metrics.waiting", {})
        client.enqueue("metrics.later", {}, delay=3600)
        client.pause_dispatch("gauges")
        time.sleep(0.2)
        samples = scrape(server)

    assert value(samples, "pulse_queue_depth", topic="metrics.waiting") == 2
    assert ("pulse_queue_depth", (("topic", "metrics.later"),)) not in samples
    oldest = value(samples, "pulse_oldest_waiting_seconds", topic="metrics.waiting")
    assert 0 < oldest < 60
    assert value(samples, "pulse_db_pool_connections", state="size") == 7
    assert value(samples, "pulse_dispatch_paused") == 1
    assert value(samples, "pulse_streams_active") == 0


def test_a_lapsed_lease_counts_as_an_expiry_and_a_failure(
    start_inprocess: Callable[..., InProcessServer], open_stream: OpenStream
) -> None:
    server = start_inprocess(
        metrics_addr="127.0.0.1:0", lease_seconds=0.3, watchdog_seconds=0.1
    )
    before = scrape(server)
    with Pulse(server.addr) as client:
        job_id = client.enqueue("metrics.lapse", {})
        silent = open_stream(server.stub(), "silent", ["metrics.lapse"], 1)
        silent.take_assignments(1)
        deadline = time.monotonic() + 10
        while client.get_job(job_id).status == JobStatus.RUNNING:
            assert time.monotonic() < deadline, "the lease never lapsed"
            time.sleep(0.05)
    after = scrape(server)

    def delta(name: str) -> float:
        return value(after, name, topic="metrics.lapse") - value(
            before, name, topic="metrics.lapse"
        )

    assert delta("pulse_lease_expiries_total") == 1
    assert delta("pulse_jobs_failed_total") == 1
