"""The fault campaign (issue 8): nothing is lost, whatever production brings.

A steady load of real jobs runs through two replicas and four worker
processes (``tests/faults/harness.py``) while faults are injected, one per
test and then mixed at random, and ``tests/faults/checks.py`` proves the
invariants afterwards and measures each recovery. Run with ``-s`` to see
the report; ``docs/crash-recovery.md`` explains it and how to soak:

    PULSE_SOAK_SECONDS=600 .venv/bin/python -m pytest tests/faults -k mixed -s
"""

from __future__ import annotations

import random
import time

import pytest

from tests.faults.checks import assert_nothing_lost, check, observe, render
from tests.faults.conftest import soak_seconds
from tests.faults.harness import WORKERS, Campaign
from tests.faults.injector import KINDS, FaultInjector
from tests.faults.load import SUBMIT_TIMEOUT_SECONDS

pytestmark = pytest.mark.slow

# Completed jobs before the first fault: the baseline latency comes from
# them (those of the first 0.3 s excepted).
BASELINE_COMPLETIONS = 30
# The load runs on until this long after a fault began, and at least a
# second after it was let go: every fault here recovers within about two.
OBSERVE_SECONDS = 3.0
AFTER_HEALING_SECONDS = 1.0
# No single fault may take longer than this to recover from (lease 1.5 s).
RECOVERY_LIMIT_SECONDS = 10.0
MIXED_SECONDS = 5.0
WORKER_FAULTS = ("worker-kill", "worker-freeze", "connection-cut")


@pytest.mark.parametrize("kind", KINDS)
def test_no_job_is_lost_or_completed_twice_and_the_queue_recovers_from_a(
    kind: str, campaign: Campaign
) -> None:
    injector = FaultInjector(campaign, random.Random(campaign.seed))
    campaign.wait_for_progress(BASELINE_COMPLETIONS, timeout_seconds=30)

    fault = injector.inject(kind)
    until = max(fault.started + OBSERVE_SECONDS, fault.healed + AFTER_HEALING_SECONDS)
    time.sleep(max(0.0, until - time.time()))
    campaign.finish()

    report = check(observe(campaign, injector.faults))
    print(render(report, campaign.seed))
    assert_nothing_lost(report)
    (recovery,) = report.recoveries
    assert recovery.within_window, "still recovering when the load stopped"
    assert recovery.recovered_seconds is not None
    assert recovery.recovered_seconds < RECOVERY_LIMIT_SECONDS
    if kind in WORKER_FAULTS:
        assert recovery.held, "the worker hit held no job"
        # Each lasted past the lease: the jobs hit lapsed, and (as every job
        # completed by its last attempt) completed as new attempts.
        assert recovery.held_lapsed >= 1
    if kind == "worker-freeze":
        # Resumed, the zombie finished its jobs anyway; its reports were
        # refused.
        assert report.late_ends >= 1
    if kind == "replica-kill":
        reconnects = sum(slot.connected_streams() for slot in campaign.workers)
        assert reconnects > WORKERS, "no worker was streaming from the replica"
    if kind == "replica-freeze":
        # A call timed out on the hung replica and the retry went elsewhere:
        # every job that failed, failed once. (Before the SDK moved away
        # after a deadline, every retry timed out there too.) The duration
        # bound allows the one timeout plus a slow answer from the replica
        # left carrying all the load on a busy machine.
        assert recovery.submit_failures >= 1
        assert sum(report.submit_failures.values()) == report.retried_jobs
        assert recovery.longest_submit_seconds < 2 * SUBMIT_TIMEOUT_SECONDS + 1.0
    if kind.startswith("postgres-"):
        assert recovery.submit_failures >= 1, "no submit went through the outage"
    if kind == "submit-answer-lost":
        # Stored at once, answered only by a retry: once, the same job.
        assert report.acknowledged_late >= 1, "no submit lost its answer"


def test_no_job_is_lost_or_completed_twice_through_faults_mixed_at_random(
    campaign: Campaign, request: pytest.FixtureRequest
) -> None:
    seed = campaign.seed
    duration = soak_seconds(request.config) or MIXED_SECONDS
    print(
        f"\nmixed faults: seed {seed} (PULSE_FAULT_SEED), "
        f"{duration:.0f}s of faults (PULSE_SOAK_SECONDS)"
    )
    rng = random.Random(seed)
    injector = FaultInjector(campaign, rng)
    campaign.wait_for_progress(BASELINE_COMPLETIONS, timeout_seconds=30)

    end = time.monotonic() + duration
    while time.monotonic() < end:
        injector.inject(rng.choice(KINDS), vary=True)
        # Sometimes the next fault lands while the queue still recovers.
        time.sleep(rng.uniform(0.3, 2.0))
    time.sleep(OBSERVE_SECONDS)
    campaign.finish(timeout_seconds=120)

    report = check(observe(campaign, injector.faults))
    print(render(report, seed))
    assert_nothing_lost(report)
    assert report.recoveries[-1].within_window, "still recovering at the end"
