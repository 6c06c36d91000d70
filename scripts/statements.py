"""Where Postgres spends its time under pulse: pg_stat_statements per scenario.

The shared server cannot load pg_stat_statements without a restart, so this
script starts a throwaway cluster of its own (the local PostgreSQL binaries,
a free loopback port, a temporary directory) with the extension preloaded and
durability on as on the shared server, runs ``scripts/loadgen.py`` against it
once per scenario, and prints, per scenario, the statements by total
execution time: calls, time per call and per job, rows, WAL records per job.
The cluster is stopped and removed at the end, whatever happens.

Usage:
  python scripts/statements.py [--scenario drain,submit-batch,submit-single]
      [--jobs 20000] [--top 8] [--json]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import tempfile
from typing import Any

import psycopg2

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from tests.pgcluster import PgCluster  # noqa: E402

# Durability as on the machine's shared server; only the extension differs.
SETTINGS = {
    "shared_preload_libraries": "pg_stat_statements",
    "pg_stat_statements.track": "all",
    "pg_stat_statements.max": "1000",
    "fsync": "on",
    "synchronous_commit": "on",
    "full_page_writes": "on",
    "shared_buffers": "128MB",
    "max_connections": "200",
}
# The loadgen's size flag that sets each scenario's job count.
SIZE_FLAGS = {
    "drain": "--jobs",
    "submit-batch": "--batch-jobs",
    "submit-single": "--submit-jobs",
    "submit-threads": "--submit-jobs",
}

TOP_STATEMENTS = """
SELECT s.calls, s.total_exec_time, s.rows, s.wal_records, s.wal_bytes,
       s.shared_blks_hit + s.shared_blks_read, s.shared_blks_dirtied,
       regexp_replace(s.query, '\\s+', ' ', 'g')
FROM pg_stat_statements AS s
JOIN pg_database AS d ON d.oid = s.dbid
WHERE d.datname = %s
ORDER BY s.total_exec_time DESC
LIMIT %s
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", default="drain,submit-batch,submit-single")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--top", type=int, default=8)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    scenarios = [name for name in args.scenario.split(",") if name]
    unknown = [name for name in scenarios if name not in SIZE_FLAGS]
    if unknown:
        parser.error(f"--scenario: no profile for {', '.join(unknown)}")

    cluster = PgCluster(settings=SETTINGS)
    report: dict[str, Any] = {}
    try:
        cluster.init()
        cluster.start()
        # Installed where it is read; it sees every database's statements.
        with psycopg2.connect(cluster.admin_url) as conn:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        for scenario in scenarios:
            report[scenario] = _profile(cluster, scenario, args.jobs, args.top)
    finally:
        if cluster.running:
            cluster.stop()
        cluster.destroy()
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for scenario, result in report.items():
            _print(scenario, result)
    return 0


def _profile(cluster: PgCluster, scenario: str, jobs: int, top: int) -> dict[str, Any]:
    # A database per scenario: the loadgen creates its own, and keeps it
    # here so that its statements can be told apart by name.
    database = "pulse_statements_" + _result_key(scenario)
    url = cluster.url(database)
    with psycopg2.connect(cluster.admin_url) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT pg_stat_statements_reset()")
    with tempfile.TemporaryDirectory(prefix="pulse-statements-") as log_dir:
        done = subprocess.run(
            [
                sys.executable,
                str(REPO_ROOT / "scripts" / "loadgen.py"),
                "--scenario",
                scenario,
                SIZE_FLAGS[scenario],
                str(jobs),
                "--db-url",
                url,
                "--keep-db",
                "--log-dir",
                log_dir,
                "--json",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
    if done.returncode != 0:
        raise SystemExit(
            f"statements: loadgen {scenario} failed ({done.returncode}):\n"
            f"{done.stderr[-2000:]}"
        )
    figures = json.loads(done.stdout)
    with psycopg2.connect(cluster.admin_url) as conn, conn.cursor() as cur:
        cur.execute(TOP_STATEMENTS, (database, top))
        rows = cur.fetchall()
    statements = [
        {
            "calls": calls,
            "total_ms": round(total_ms, 1),
            "ms_per_call": round(total_ms / calls, 3) if calls else 0.0,
            "us_per_job": round(total_ms * 1000 / jobs, 2),
            "rows": rows_done,
            "wal_records_per_job": round(wal_records / jobs, 2),
            "wal_bytes_per_job": round(float(wal_bytes) / jobs, 1),
            "buffers_per_job": round(buffers / jobs, 1),
            "dirtied_per_job": round(dirtied / jobs, 2),
            "query": query[:300],
        }
        for (
            calls,
            total_ms,
            rows_done,
            wal_records,
            wal_bytes,
            buffers,
            dirtied,
            query,
        ) in rows
    ]
    return {
        "jobs": jobs,
        "loadgen": figures.get(_result_key(scenario)),
        "statements": statements,
    }


def _result_key(scenario: str) -> str:
    return scenario.replace("-", "_")


def _print(scenario: str, result: dict[str, Any]) -> None:
    print(f"\n== {scenario}, {result['jobs']:,} jobs: statements by execution time")
    print(
        f"{'calls':>7} {'ms/call':>8} {'us/job':>7} {'rows':>7} {'WAL/job':>7}"
        "  statement"
    )
    for s in result["statements"]:
        print(
            f"{s['calls']:>7} {s['ms_per_call']:>8.3f} {s['us_per_job']:>7.2f} "
            f"{s['rows']:>7} {s['wal_records_per_job']:>7.2f}  {s['query'][:90]}"
        )


if __name__ == "__main__":
    sys.exit(main())
