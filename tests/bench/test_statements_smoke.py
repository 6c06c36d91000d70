"""scripts/statements.py profiles a tiny drain and bulk submit on a cluster
of its own, so it never rots.

No timing is asserted: only that each scenario reports its pulse statements
with one call per job at most and every job's insert, claim and result.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
STATEMENTS = REPO_ROOT / "scripts" / "statements.py"
JOBS = 300


def test_statements_profiles_each_scenario_from_its_own_cluster() -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(STATEMENTS),
            "--scenario",
            "drain,submit-batch",
            "--jobs",
            str(JOBS),
            "--top",
            "20",
            "--json",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )

    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert sorted(report) == ["drain", "submit-batch"]
    rows = {
        scenario: {
            name: sum(s["rows"] for s in result["statements"] if name in s["query"])
            for name in ("pulse_insert_jobs", "pulse_claim_jobs", "pulse_apply_results")
        }
        for scenario, result in report.items()
    }
    assert rows["drain"] == {
        "pulse_insert_jobs": JOBS,
        "pulse_claim_jobs": JOBS,
        "pulse_apply_results": JOBS,
    }
    # Each client thread first enqueues one job outside the timing.
    assert rows["submit-batch"]["pulse_insert_jobs"] == JOBS + 1
    assert report["drain"]["loadgen"]["completed"] == JOBS
