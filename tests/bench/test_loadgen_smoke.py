"""The load generator runs every scenario on a tiny count, so it never rots.

No timing is asserted: only that the run succeeds, reports each figure as a
positive number, and leaves no server or database behind.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
from typing import Any

import pytest

from tests.fixtures.databases import PostgresServer, with_database

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
LOADGEN = REPO_ROOT / "scripts" / "loadgen.py"
RUN_TIMEOUT_SECONDS = 240

TINY_SIZES = [
    "--submit-jobs=100",
    "--threads=4",
    "--batch-jobs=300",
    "--batch-threads=1,2",
    "--jobs=300",
    "--steady-seconds=1",
    "--steady-rate=200",
    "--latency-jobs=30",
    "--latency-settle=0.5",
    "--claim-backlogs=200,1000",
    "--claim-reps=3",
    "--rss-backlog=500",
    "--rss-streams=3",
    "--rss-processes=2",
    "--rss-seconds=1",
]

# Figures each section must report as positive numbers.
EXPECTED = {
    "submit_single": (
        "jobs_per_s",
        "call_p50_ms",
        "call_p99_ms",
        "client_cpu_us_per_job",
    ),
    "submit_threads": (
        "jobs_per_s",
        "call_p50_ms",
        "transactions_per_job",
        "client_cpu_us_per_job",
    ),
    "submit_batch": ("jobs_per_s", "client_cpu_us_per_job"),
    "drain": ("jobs_per_s", "span_s", "completed", "transactions_per_job"),
    "steady": ("completed_per_s", "e2e_p50_ms", "e2e_p99_ms"),
    "latency": ("p50_ms", "p95_ms", "p99_ms"),
    "rss": (
        "start_rss_mb",
        "backlog_rss_mb",
        "sampled_max_rss_mb",
        "peak_rss_mb",
        "after_streams_rss_mb",
        "jobs_completed",
    ),
}
CLAIM_SHAPES = ("own_topic", "other_topic", "future_dated")


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and value > 0


@pytest.mark.slow
@pytest.mark.timeout(RUN_TIMEOUT_SECONDS + 30)
def test_loadgen_reports_every_scenario_on_a_tiny_count(
    postgres_server: PostgresServer, tmp_path: pathlib.Path
) -> None:
    name = postgres_server.new_database_name("loadgen")
    url = with_database(postgres_server.admin_url, name)

    try:
        run = subprocess.run(
            [
                sys.executable,
                str(LOADGEN),
                "--json",
                f"--db-url={url}",
                f"--log-dir={tmp_path}",
                *TINY_SIZES,
            ],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_SECONDS,
            check=False,
        )
        leftover_sessions = postgres_server.connections_to(name)
    finally:
        postgres_server.drop_database(name)

    logs = "\n".join(path.read_text() for path in tmp_path.glob("pulsed-*.log"))
    assert run.returncode == 0, f"stderr:\n{run.stderr}\nserver log:\n{logs}"
    assert leftover_sessions == [], "the loadgen left its server running"
    report = json.loads(run.stdout)
    for section, keys in EXPECTED.items():
        for key in keys:
            assert _positive(report[section][key]), (
                f"{section}.{key}: {report[section]}"
            )
    for counted in ("drain", "submit_threads"):
        assert _positive(report["txn"][counted]["transactions_per_job"])
    batches = report["submit_batch"]["runs"]
    assert [run["threads"] for run in batches] == [1, 2], batches
    for run in batches:
        assert _positive(run["jobs_per_s"]), run
        assert _positive(run["client_cpu_us_per_job"]), run
    assert report["drain"]["completed"] == 300
    # Start-up (imports) is counted apart from the workers' draining.
    drain_cpu = report["drain"]["cpu_s"]
    assert _positive(drain_cpu["workers_startup"]), drain_cpu
    assert drain_cpu["workers"] >= 0, drain_cpu
    claims = report["claim_depth"]
    for shape in CLAIM_SHAPES:
        for size in ("200", "1000"):
            assert _positive(claims[shape][size]["median_ms"]), claims[shape]
            assert claims[shape][size]["rows_claimed"] == 100
        assert _positive(claims[shape]["ratio"])
    rss = report["rss"]
    assert rss["streams_open"] == 3, rss
    assert rss["peak_rss_mb"] >= rss["sampled_max_rss_mb"], rss
    # Workers stopped gracefully under load leave no claimed job behind.
    assert rss["jobs_running_after_stop"] == 0, rss
