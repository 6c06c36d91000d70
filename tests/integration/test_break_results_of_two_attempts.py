"""Results for two attempts of one job in one batch.

Found by breaking the worker prefetch: a job waited in the worker's queue
past its timeout, the server retried it, and the same worker got the next
attempt. The stale attempt's report and the new attempt's success reached
the result writer together, and ``APPLY_RESULTS`` keeps one row per job id
(``DISTINCT ON (id)``), not per attempt: it kept the stale report, which
matches nothing, and refused the new attempt's success. That attempt's
lease then lapsed and the job ran again, one attempt more spent; a job on
its last attempt would have been dead-lettered after it had succeeded.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from pulse_client._proto.pulse.v1 import pulse_pb2 as pb
from tests.fixtures.databases import Sql
from tests.fixtures.servers import InProcessServer
from tests.fixtures.streams import WorkerStream
from tests.fixtures.wire import submit


@pytest.fixture
def server(start_inprocess: Callable[..., InProcessServer]) -> InProcessServer:
    return start_inprocess(watchdog_seconds=0.05, backoff_base_seconds=0.01)


def test_the_current_attempts_result_is_applied_beside_a_stale_one(
    server: InProcessServer, sql: Sql, open_stream: Callable[..., WorkerStream]
) -> None:
    stub = server.stub()
    job = submit(stub, "two.attempts", max_attempts=5)
    stream = open_stream(stub, "w-two", ["two.attempts"], 1)
    (first,) = stream.take_assignments(1)
    # The first attempt's lease lapses (a stall, or its timeout) and the
    # watchdog sends the job back; this worker gets the next attempt.
    sql.execute(
        "UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = %s",
        (job.id,),
    )
    stream.give_credits(1)
    (second,) = stream.take_assignments(1)
    assert (first.attempt, second.attempt) == (1, 2)

    # Both reports in one message, so in one batch of the result writer.
    stream.report(
        [
            pb.JobResult(job_id=job.id, attempt=1, outcome=pb.OUTCOME_SUCCEEDED),
            pb.JobResult(job_id=job.id, attempt=2, outcome=pb.OUTCOME_SUCCEEDED),
        ]
    )
    acks = {ack.attempt: ack.accepted for ack in stream.take_acks(2)}

    assert acks == {1: False, 2: True}
    time.sleep(0.2)
    assert sql.one("SELECT status, attempt FROM jobs WHERE id = %s", (job.id,)) == (
        "completed",
        2,
    )
