"""What a campaign must show afterwards, and how fast it recovered.

``observe()`` reads everything once the run is over: the jobs table, the
transition log, the handlers' own record and the load's bookkeeping.
``check()`` turns that into a ``Report``; ``assert_nothing_lost()`` holds
the invariants, each as an exact count or set:

- every id the load was given was acknowledged (its retries succeeded), and
  the jobs table holds exactly the acknowledged ids, each with the payload
  it was submitted with: a retried submit never made a second job;
- every job is ``completed``, by exactly one transition to ``completed``,
  of its last attempt, whose handler run recorded its end;
- no attempt was delivered twice (one ``start`` per job and attempt);
- a job that ran more than once did so only because a lease lapsed: every
  attempt of it but the last ended by the watchdog's "lease expired", and
  no attempt ended any other way (the handlers never fail);
- every failed submit failed with ``unavailable`` or ``deadline_exceeded``.

Recovery, per fault, from database timestamps (``clock_timestamp()`` on the
same machine as the injector's clock):

- *next completion*: from the fault to the next job completed anywhere;
- *recovered*: from the fault until the last job it delayed completed (a
  job in flight at the fault, or submitted before the next fault, that took
  longer than the normal bound: three times the 99th-percentile latency
  before the first fault, at least half a second). From then on every job
  completed within normal latency, so throughput was back to normal;
- *held*: the attempts the hit worker held at the fault, and how many of
  them lapsed and ran again;
- submits that failed while it lasted, and the longest any one job's
  submit took, retries included (from its first call to its answer).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import statistics
from typing import Any

from tests.faults.harness import Campaign
from tests.faults.injector import Fault
from tests.faults.load import RETRYABLE_CODES

LAPSE_PREFIX = "lease expired"
_MIN_NORMAL_BOUND_SECONDS = 0.5
_BASELINE_WARMUP_SECONDS = 0.3


@dataclasses.dataclass(frozen=True)
class Transition:
    job_id: str
    attempt: int
    old_status: str | None
    new_status: str
    worker_id: str | None
    last_error: str | None
    at: float


@dataclasses.dataclass(frozen=True)
class HandlerRun:
    job_id: str
    attempt: int
    pid: int
    event: str
    at: float


@dataclasses.dataclass
class Observations:
    """Everything the checks read, taken once after the run."""

    jobs: dict[str, tuple[str, int, bytes]]  # id -> (status, attempt, payload)
    transitions: list[Transition]
    runs: list[HandlerRun]
    given: dict[str, dict[str, int]]
    first_tried: dict[str, float]
    acked: dict[str, float]
    failures: list[Any]
    faults: list[Fault]
    load_started: float
    load_stopped: float


def observe(campaign: Campaign, faults: list[Fault]) -> Observations:
    jobs = {
        job_id: (status, attempt, bytes(payload))
        for job_id, status, attempt, payload in campaign.query(
            "SELECT id::text, status, attempt, payload FROM jobs"
        )
    }
    transitions = [
        Transition(job_id, attempt, old, new, worker_id, error, at.timestamp())
        for job_id, attempt, old, new, worker_id, error, at in campaign.query(
            "SELECT job_id::text, attempt, old_status, new_status, worker_id,"
            " last_error, at FROM job_transitions ORDER BY id"
        )
    ]
    runs = [
        HandlerRun(job_id, attempt, pid, event, at.timestamp())
        for job_id, attempt, pid, event, at in campaign.query_runs(
            "SELECT job_id::text, attempt, pid, event, at FROM handler_runs ORDER BY id"
        )
    ]
    load = campaign.load
    return Observations(
        jobs=jobs,
        transitions=transitions,
        runs=runs,
        given=dict(load.given),
        first_tried=dict(load.first_tried),
        acked=dict(load.acked),
        failures=list(load.failures),
        faults=list(faults),
        load_started=campaign.load_started,
        load_stopped=campaign.load_stopped,
    )


@dataclasses.dataclass
class Recovery:
    """How one fault played out; times in seconds from its start."""

    fault: Fault
    window_seconds: float  # until the next fault, or the end of the load
    next_completion_seconds: float | None
    recovered_seconds: float | None
    delayed_jobs: int
    held: list[tuple[str, int]]
    held_lapsed: int
    # What became of each attempt held, in words, for the printed report.
    held_fates: list[str]
    lapses: int
    submit_failures: int
    longest_submit_seconds: float

    @property
    def within_window(self) -> bool:
        return (
            self.recovered_seconds is not None
            and self.recovered_seconds <= self.window_seconds
        )


@dataclasses.dataclass
class Report:
    given: int
    acked: int
    stored: int
    missing: list[str]
    unexpected: list[str]
    unacknowledged: list[str]
    payload_mismatch: list[str]
    statuses: dict[str, int]
    completed_twice: list[str]
    completed_not_last_attempt: list[str]
    completed_without_end: list[tuple[str, int]]
    repeated_attempts: list[tuple[str, int]]
    rerun_jobs: int
    unexplained_reruns: list[tuple[str, int]]
    other_failures: list[Transition]
    lapses: int
    late_ends: int
    submit_failures: dict[str, int]
    unretryable_submits: list[str]
    retried_jobs: int
    committed_before_retry: int
    acknowledged_late: int
    normal_bound_seconds: float
    baseline_p50_seconds: float
    recoveries: list[Recovery]


def check(obs: Observations) -> Report:
    stored = set(obs.jobs)
    acked = set(obs.acked)
    given = set(obs.given)
    created = {t.job_id: t.at for t in obs.transitions if t.old_status is None}
    completions: dict[str, list[Transition]] = collections.defaultdict(list)
    lapsed: set[tuple[str, int]] = set()
    other_failures = []
    for t in obs.transitions:
        if t.new_status == "completed":
            completions[t.job_id].append(t)
        elif t.old_status == "running":
            if (t.last_error or "").startswith(LAPSE_PREFIX):
                lapsed.add((t.job_id, t.attempt))
            else:
                other_failures.append(t)
    starts = collections.Counter(
        (r.job_id, r.attempt) for r in obs.runs if r.event == "start"
    )
    ends = {(r.job_id, r.attempt) for r in obs.runs if r.event == "end"}
    attempts_run: dict[str, set[int]] = collections.defaultdict(set)
    for job_id, attempt in starts:
        attempts_run[job_id].add(attempt)

    unexplained = []
    for job_id, attempts in attempts_run.items():
        last = obs.jobs[job_id][1] if job_id in obs.jobs else max(attempts)
        unexplained += [
            (job_id, a)
            for a in sorted(attempts)
            if a != last and (job_id, a) not in lapsed
        ]
    completed_attempts = {
        job_id: ts[0].attempt for job_id, ts in completions.items() if len(ts) == 1
    }
    late_ends = sum(
        1
        for job_id, attempt in ends
        if completed_attempts.get(job_id, attempt) != attempt
    )
    retried = {f.job_id for f in obs.failures}
    committed_before_retry = {
        f.job_id
        for f in obs.failures
        if f.job_id in created and created[f.job_id] < f.ended
    }
    bound, p50 = _normal_bound(obs, created, completions)
    acknowledged_late = sum(
        1
        for job_id, at in created.items()
        if job_id in obs.acked and obs.acked[job_id] - at > bound
    )
    return Report(
        given=len(given),
        acked=len(acked),
        stored=len(stored),
        missing=sorted(acked - stored),
        unexpected=sorted(stored - given),
        unacknowledged=sorted(given - acked),
        payload_mismatch=sorted(
            job_id
            for job_id in stored & given
            if json.loads(obs.jobs[job_id][2]) != obs.given[job_id]
        ),
        statuses=dict(collections.Counter(s for s, _, _ in obs.jobs.values())),
        completed_twice=sorted(j for j, ts in completions.items() if len(ts) > 1),
        completed_not_last_attempt=sorted(
            j
            for j, attempt in completed_attempts.items()
            if j in obs.jobs and obs.jobs[j][1] != attempt
        ),
        completed_without_end=sorted(
            (j, a) for j, a in completed_attempts.items() if (j, a) not in ends
        ),
        repeated_attempts=sorted(key for key, count in starts.items() if count > 1),
        rerun_jobs=sum(1 for attempts in attempts_run.values() if len(attempts) > 1),
        unexplained_reruns=sorted(unexplained),
        other_failures=other_failures,
        lapses=len(lapsed),
        late_ends=late_ends,
        submit_failures=dict(collections.Counter(f.code for f in obs.failures)),
        unretryable_submits=sorted(
            f"{f.job_id}: {f.code}: {f.message}"
            for f in obs.failures
            if f.code not in RETRYABLE_CODES
        ),
        retried_jobs=len(retried),
        committed_before_retry=len(committed_before_retry),
        acknowledged_late=acknowledged_late,
        normal_bound_seconds=bound,
        baseline_p50_seconds=p50,
        recoveries=_recoveries(obs, created, completions, lapsed, bound),
    )


def assert_nothing_lost(report: Report) -> None:
    """The campaign's invariants, as exact values."""
    assert report.missing == [], "acknowledged jobs missing from the jobs table"
    assert report.unexpected == [], "jobs stored that the load never submitted"
    assert report.unacknowledged == [], "submits that never succeeded on retry"
    assert report.stored == report.acked == report.given
    assert report.payload_mismatch == []
    assert report.unretryable_submits == []
    assert report.statuses == {"completed": report.acked}
    assert report.completed_twice == []
    assert report.completed_not_last_attempt == []
    assert report.completed_without_end == []
    assert report.repeated_attempts == []
    assert report.unexplained_reruns == []
    assert report.other_failures == []


def _normal_bound(
    obs: Observations,
    created: dict[str, float],
    completions: dict[str, list[Transition]],
) -> tuple[float, float]:
    """Latency bound (seconds) past which a job counts as delayed, and the
    baseline median: from jobs submitted before the first fault."""
    first_fault = min((f.started for f in obs.faults), default=obs.load_stopped)
    latencies = sorted(
        ts[0].at - created[job_id]
        for job_id, ts in completions.items()
        if job_id in created
        and obs.load_started + _BASELINE_WARMUP_SECONDS <= created[job_id]
        and ts[0].at < first_fault
    )
    if len(latencies) < 10:
        return _MIN_NORMAL_BOUND_SECONDS, statistics.median(latencies or [0.0])
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return max(_MIN_NORMAL_BOUND_SECONDS, 3 * p99), statistics.median(latencies)


def _recoveries(
    obs: Observations,
    created: dict[str, float],
    completions: dict[str, list[Transition]],
    lapsed: set[tuple[str, int]],
    bound: float,
) -> list[Recovery]:
    completed_at = {job_id: ts[-1].at for job_id, ts in completions.items()}
    completed_attempt = {job_id: ts[-1].attempt for job_id, ts in completions.items()}
    lapsed_at = {
        (t.job_id, t.attempt): t.at
        for t in obs.transitions
        if (t.job_id, t.attempt) in lapsed and t.old_status == "running"
    }
    done_times = sorted(completed_at.values())
    claims = [t for t in obs.transitions if t.new_status == "running"]
    ended: dict[tuple[str, int], float] = {}
    for t in obs.transitions:
        if t.old_status == "running":
            ended.setdefault((t.job_id, t.attempt), t.at)
    faults = sorted(obs.faults, key=lambda f: f.started)
    recoveries = []
    for index, fault in enumerate(faults):
        start = fault.started
        end = faults[index + 1].started if index + 1 < len(faults) else None
        window_end = end if end is not None else obs.load_stopped
        after = [t for t in done_times if t >= start]
        delayed = [
            completed_at[job_id]
            for job_id, at in created.items()
            if at < window_end
            and job_id in completed_at
            and completed_at[job_id] > start
            and completed_at[job_id] - at > bound
        ]
        held = [
            (t.job_id, t.attempt)
            for t in claims
            if fault.worker_id
            and t.worker_id == fault.worker_id
            and t.at <= start
            and ended.get((t.job_id, t.attempt), float("inf")) > start
        ]
        # Submits under way at the fault count too: they met it.
        submits = [
            obs.acked[job_id] - tried
            for job_id, tried in obs.first_tried.items()
            if job_id in obs.acked and tried < window_end and obs.acked[job_id] >= start
        ]
        recoveries.append(
            Recovery(
                fault=fault,
                window_seconds=window_end - start,
                next_completion_seconds=after[0] - start if after else None,
                recovered_seconds=max(delayed) - start if delayed else 0.0,
                delayed_jobs=len(delayed),
                held=held,
                held_lapsed=sum(1 for key in held if key in lapsed),
                held_fates=[
                    _fate(
                        job_id,
                        attempt,
                        start,
                        lapsed_at,
                        completed_attempt,
                        completed_at,
                    )
                    for job_id, attempt in held
                ],
                lapses=sum(
                    1
                    for t in obs.transitions
                    if (t.job_id, t.attempt) in lapsed
                    and t.old_status == "running"
                    and start <= t.at < window_end
                ),
                submit_failures=sum(
                    1 for f in obs.failures if start <= f.ended < window_end
                ),
                longest_submit_seconds=max(submits, default=0.0),
            )
        )
    return recoveries


def _fate(
    job_id: str,
    attempt: int,
    start: float,
    lapsed_at: dict[tuple[str, int], float],
    completed_attempt: dict[str, int],
    completed_at: dict[str, float],
) -> str:
    fate = f"job {job_id} attempt {attempt}: "
    if (job_id, attempt) in lapsed_at:
        fate += f"lease expired at +{lapsed_at[job_id, attempt] - start:.2f}s, "
    if job_id in completed_at:
        fate += (
            f"completed as attempt {completed_attempt[job_id]} "
            f"at +{completed_at[job_id] - start:.2f}s"
        )
    return fate


def render(report: Report, seed: int) -> str:
    """The report as the campaign prints it."""
    lines = [
        f"seed {seed}: {report.given} jobs submitted, {report.acked} acknowledged, "
        f"{report.stored} stored; statuses {report.statuses}",
        f"baseline latency p50 {report.baseline_p50_seconds * 1000:.0f} ms; "
        f"delayed means over {report.normal_bound_seconds:.2f} s",
        f"lapsed leases {report.lapses}, jobs run more than once "
        f"{report.rerun_jobs} (unexplained {len(report.unexplained_reruns)}), "
        f"late handler ends fenced {report.late_ends}, "
        f"jobs completed twice {len(report.completed_twice)}",
        f"failed submits {sum(report.submit_failures.values())} "
        f"{report.submit_failures} over {report.retried_jobs} jobs, all "
        f"retried with the same id; {report.committed_before_retry} of those "
        "were already stored when the call failed",
        f"jobs stored over {report.normal_bound_seconds:.2f} s before their submit "
        f"was answered (an answer lost, a retry found the job): "
        f"{report.acknowledged_late}",
        "",
        f"{'fault':<19} {'target':<18} {'held':>4} {'lapsed':>6} {'next done':>9} "
        f"{'recovered':>9} {'delayed':>7} {'lapses':>6} {'submits failed':>14} "
        f"{'longest submit':>14}",
    ]
    for r in report.recoveries:
        recovered = "-" if r.recovered_seconds is None else f"{r.recovered_seconds:.2f}"
        if not r.within_window:
            recovered += "*"
        lines.append(
            f"{r.fault.kind:<19} {r.fault.target:<18} {len(r.held):>4} "
            f"{r.held_lapsed:>6} "
            f"{_seconds(r.next_completion_seconds):>9} {recovered:>9} "
            f"{r.delayed_jobs:>7} {r.lapses:>6} {r.submit_failures:>14} "
            f"{r.longest_submit_seconds:>14.2f}"
        )
        lines.append(f"{'':<19} {r.fault.detail}")
        lines += [f"{'':<19} {fate}" for fate in r.held_fates]
    if any(not r.within_window for r in report.recoveries):
        lines.append("* still recovering when the next fault (or the end) came")
    return "\n".join(lines)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
