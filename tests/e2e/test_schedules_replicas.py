"""Schedules across real pulsed replicas: each occurrence fires exactly once
while the replicas race for it, one of them is killed and another starts."""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable

from pulse_client import Every, MissedRuns, Pulse
from tests.fixtures.databases import Sql
from tests.fixtures.servers import PulsedProcess

SECOND = datetime.timedelta(seconds=1)


def test_every_second_fires_each_occurrence_once_across_replicas_and_a_crash(
    start_pulsed: Callable[..., PulsedProcess],
    sql: Sql,
    make_client: Callable[..., Pulse],
) -> None:
    replicas = [start_pulsed() for _ in range(3)]
    client = make_client(",".join(replica.addr for replica in replicas))
    # ALL: even if every replica stalled past an occurrence, none may be lost.
    schedule = client.schedule(
        "ticks", None, Every(1), name="ticks", missed_runs=MissedRuns.ALL
    )
    started = time.monotonic()

    # Given three replicas racing for each occurrence, one is killed midway
    # (SIGKILL, as a crash) and a new one joins later,
    time.sleep(6)
    replicas[1].kill()
    time.sleep(4)
    start_pulsed()
    time.sleep(max(0.0, 17 - (time.monotonic() - started)))
    stopped = client.pause_schedule("ticks")

    # then every occurrence fired exactly once, one after the other, each
    # with exactly one job.
    occurrences = sql.all(
        "SELECT occurrence, job_id FROM schedule_occurrences ORDER BY occurrence"
    )
    jobs = sql.all(
        "SELECT occurrence, id FROM jobs WHERE schedule_id = %s ORDER BY occurrence",
        (schedule.id,),
    )
    first = schedule.next_fire_at
    assert first is not None
    assert [o for o, _ in occurrences] == [
        first + k * SECOND for k in range(len(occurrences))
    ]
    assert jobs == occurrences
    assert len(occurrences) >= 14
    assert stopped.fired_count == len(occurrences)
    assert stopped.next_fire_at == first + len(occurrences) * SECOND
    assert sql.scalar("SELECT count(*) FROM jobs") == len(occurrences)
