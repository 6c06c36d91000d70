"""The dispatch pause: a durable switch the claim itself reads.

While paused, submits land, running jobs finish and report, the watchdog
recovers lapsed leases, and nothing new is handed out; on resume the
backlog drains in priority order. Per-topic pauses hold one topic while the
rest flows.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import psycopg2
import pytest

from pulse_client import DispatchStatus, InvalidArgument, JobStatus, Pulse
from pulse_client._proto.pulse.v1 import pulse_pb2 as pb
from pulsed.gate import GATE_LOCK_KEY
from tests.fixtures.databases import Sql
from tests.fixtures.servers import InProcessServer
from tests.fixtures.streams import WorkerStream

OpenStream = Callable[..., WorkerStream]

# Long enough for several safety polls and gate polls to have passed.
QUIET_SECONDS = 1.0
FAST = {"poll_seconds": 0.1, "gate_poll_seconds": 0.1}


@pytest.fixture
def fast_server(start_inprocess: Callable[..., InProcessServer]) -> InProcessServer:
    return start_inprocess(**FAST)


@pytest.fixture
def client(fast_server: InProcessServer) -> Iterator[Pulse]:
    with Pulse(fast_server.addr) as pulse:
        yield pulse


def wait_until(condition: Callable[[], bool], what: str, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds:g}s waiting for {what}")
        time.sleep(0.02)


def test_pause_reports_who_paused_when_and_why_and_resume_clears_it(
    client: Pulse, sql: Sql
) -> None:
    before = sql.scalar("SELECT now()")

    paused = client.pause_dispatch("database upgrade")
    status = client.dispatch_status()
    resumed = client.resume_dispatch()

    assert paused == status
    assert status.paused is True
    assert status.all is not None
    assert (status.all.topic, status.all.reason, status.all.paused_by) == (
        None,
        "database upgrade",
        "anonymous",
    )
    assert status.all.paused_at is not None and status.all.paused_at >= before
    assert status.topics == []
    assert resumed == DispatchStatus(paused=False, all=None, topics=[])
    assert sql.all("SELECT scope FROM dispatch_pauses") == []


def test_nothing_is_handed_out_while_paused_but_submits_land(
    client: Pulse, fast_server: InProcessServer, open_stream: OpenStream
) -> None:
    client.pause_dispatch("maintenance")
    worker = open_stream(fast_server.stub(), "w1", ["t"], 10)

    job_ids = [client.enqueue("t", {"n": n}) for n in range(5)]
    time.sleep(QUIET_SECONDS)

    assert worker.untaken_assignments() == []
    assert {client.get_job(j).status for j in job_ids} == {JobStatus.PENDING}

    client.resume_dispatch()
    assigned = worker.take_assignments(5)
    assert sorted(a.job_id for a in assigned) == sorted(job_ids)


def test_resume_drains_the_backlog_in_priority_order(
    client: Pulse, fast_server: InProcessServer, open_stream: OpenStream
) -> None:
    client.pause_dispatch()
    priorities = [0, 5, -3, 10, 5, 0, 1000, -1000]
    ids = [client.enqueue("t", {"i": i}, priority=p) for i, p in enumerate(priorities)]
    expected = [
        job_id
        for _, _, job_id in sorted(
            zip(priorities, range(len(ids)), ids, strict=True),
            key=lambda entry: (-entry[0], entry[1]),
        )
    ]
    worker = open_stream(fast_server.stub(), "w1", ["t"], 1)
    time.sleep(QUIET_SECONDS)
    assert worker.untaken_assignments() == []

    client.resume_dispatch()
    order = []
    for _ in expected:
        (assignment,) = worker.take_assignments(1)
        order.append(assignment.job_id)
        worker.succeed([assignment], credits=1)

    assert order == expected


def test_running_jobs_finish_heartbeat_and_report_while_paused(
    client: Pulse, fast_server: InProcessServer, open_stream: OpenStream
) -> None:
    worker = open_stream(fast_server.stub(), "w1", ["t"], 2)
    ids = [client.enqueue("t", {"n": n}) for n in range(4)]
    running = worker.take_assignments(2)

    client.pause_dispatch("hold")
    worker.heartbeat([(a.job_id, a.attempt) for a in running])
    # A heartbeat is answered only when a job is lost: give it time to be.
    time.sleep(QUIET_SECONDS)
    assert worker.lost == []
    worker.succeed(running, credits=2)
    acks = worker.take_acks(2)
    time.sleep(QUIET_SECONDS)

    assert {(ack.accepted, ack.status) for ack in acks} == {
        (True, pb.JOB_STATUS_COMPLETED)
    }
    assert worker.untaken_assignments() == []
    waiting = set(ids) - {a.job_id for a in running}
    assert {client.get_job(j).status for j in waiting} == {JobStatus.PENDING}


def test_a_topic_pause_holds_that_topic_while_the_rest_flows(
    client: Pulse, fast_server: InProcessServer, open_stream: OpenStream
) -> None:
    status = client.pause_dispatch("bad deploy of billing", topic="billing")
    worker = open_stream(fast_server.stub(), "w1", ["billing", "email"], 10)
    billing = client.enqueue("billing", {})
    email = client.enqueue("email", {})

    (assignment,) = worker.take_assignments(1)
    time.sleep(QUIET_SECONDS)

    assert assignment.job_id == email
    assert worker.untaken_assignments() == []
    assert status.paused is False
    assert [(p.topic, p.reason) for p in status.topics] == [
        ("billing", "bad deploy of billing")
    ]
    assert status.is_paused("billing") and not status.is_paused("email")

    # Resuming every topic does not end a topic's own pause.
    client.pause_dispatch()
    assert client.resume_dispatch().topics[0].topic == "billing"
    time.sleep(QUIET_SECONDS)
    assert worker.untaken_assignments() == []

    client.resume_dispatch(topic="billing")
    (assignment,) = worker.take_assignments(1)
    assert assignment.job_id == billing


def test_a_stream_of_only_paused_topics_is_not_claimed_for(
    client: Pulse, fast_server: InProcessServer, open_stream: OpenStream
) -> None:
    client.pause_dispatch(topic="a")
    client.pause_dispatch(topic="b")
    open_stream(fast_server.stub(), "w1", ["a", "b"], 10)
    claims_before = fast_server.server.dispatcher.claims

    client.enqueue("a", {})
    client.enqueue("b", {})
    time.sleep(QUIET_SECONDS)

    # The replica's copy of the pause spares the claims that cannot succeed.
    assert fast_server.server.dispatcher.claims == claims_before


def test_the_claim_reads_the_pause_row_even_when_the_replica_has_not_heard(
    start_inprocess: Callable[..., InProcessServer],
    open_stream: OpenStream,
    sql: Sql,
) -> None:
    server = start_inprocess(poll_seconds=0.1, gate_poll_seconds=60)
    with Pulse(server.addr) as client:
        worker = open_stream(server.stub(), "w1", ["t"], 10)
        sql.execute(
            "INSERT INTO dispatch_pauses (scope, reason, paused_by)"
            " VALUES ('*', 'behind the replica''s back', 'test')"
        )
        # The replica's copy says nothing is paused (no NOTIFY was sent and
        # the next gate poll is a minute away): only the claim can stop it.
        server.server.dispatcher.set_paused(frozenset())
        client.enqueue("t", {})
        time.sleep(QUIET_SECONDS)

        assert worker.untaken_assignments() == []
        assert client.get_job(client.list_jobs().jobs[0].id).status == "pending"


def test_a_pause_waits_for_a_claim_already_under_way(
    client: Pulse, db_url: str
) -> None:
    # A claim in flight holds the gate lock shared until it commits.
    claim = psycopg2.connect(db_url)
    try:
        with claim.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock_shared(%s)", (GATE_LOCK_KEY,))
        returned = threading.Event()
        pausing = threading.Thread(
            target=lambda: (client.pause_dispatch(), returned.set())
        )
        pausing.start()

        assert not returned.wait(0.5), "the pause did not wait for the claim"
        claim.commit()
        assert returned.wait(5.0), "the pause did not go on after the claim"
        pausing.join()
    finally:
        claim.close()
    assert client.dispatch_status().paused is True


def test_every_replica_sees_a_pause_and_a_resume_within_a_second(
    start_inprocess: Callable[..., InProcessServer], db_url: str
) -> None:
    first = start_inprocess(db_url=db_url)
    second = start_inprocess(db_url=db_url)
    with Pulse(first.addr) as client:
        client.pause_dispatch("everyone stop")
        wait_until(
            lambda: second.server.gate.paused == frozenset({"*"}),
            "the other replica to see the pause",
            seconds=1.0,
        )
        client.resume_dispatch()
        wait_until(
            lambda: second.server.gate.paused == frozenset(),
            "the other replica to see the resume",
            seconds=1.0,
        )


def test_a_replica_that_starts_while_paused_comes_up_paused(
    start_inprocess: Callable[..., InProcessServer], db_url: str
) -> None:
    first = start_inprocess(db_url=db_url)
    with Pulse(first.addr) as client:
        client.pause_dispatch(topic="t")
    first.stop()

    second = start_inprocess(db_url=db_url)

    assert second.server.gate.paused == frozenset({"t"})


def test_the_watchdog_recovers_lapsed_leases_while_paused_without_redispatch(
    start_inprocess: Callable[..., InProcessServer], open_stream: OpenStream
) -> None:
    server = start_inprocess(
        lease_seconds=0.5, watchdog_seconds=0.1, backoff_base_seconds=0, **FAST
    )
    with Pulse(server.addr) as client:
        silent = open_stream(server.stub(), "silent", ["t"], 1)
        job_id = client.enqueue("t", {})
        (first,) = silent.take_assignments(1)
        client.pause_dispatch()
        other = open_stream(server.stub(), "other", ["t"], 5)

        wait_until(
            lambda: client.get_job(job_id).status == JobStatus.PENDING,
            "the lapsed lease to come back as pending",
        )
        time.sleep(QUIET_SECONDS)
        job = client.get_job(job_id)

        assert (job.attempt, job.status) == (1, JobStatus.PENDING)
        assert "lease" in job.last_error
        assert other.untaken_assignments() == []

        client.resume_dispatch()
        (again,) = other.take_assignments(1)
        assert (again.job_id, again.attempt) == (first.job_id, 2)


def test_bad_topics_are_refused_and_change_nothing(client: Pulse, sql: Sql) -> None:
    with pytest.raises(InvalidArgument, match="topic"):
        client.pause_dispatch(topic="no spaces allowed")
    with pytest.raises(InvalidArgument, match="topic"):
        client._connection.call(  # the server checks too, not only the SDK
            lambda stub: stub.PauseDispatch(
                pb.PauseDispatchRequest(topic="x" * 201), timeout=5
            )
        )

    assert sql.all("SELECT scope FROM dispatch_pauses") == []
    assert sql.all("SELECT action FROM audit_log") == []


def test_pause_and_resume_are_audited_with_their_scope(client: Pulse) -> None:
    client.pause_dispatch("upgrade", topic="t")
    client.resume_dispatch(topic="t")
    client.resume_dispatch()

    entries = client.list_audit().entries

    assert [(e.action, e.target, e.user) for e in entries] == [
        ("dispatch.resume", "*", "anonymous"),
        ("dispatch.resume", "t", "anonymous"),
        ("dispatch.pause", "t", "anonymous"),
    ]
    assert entries[0].detail == {"was_paused": False}
    assert entries[1].detail == {"was_paused": True}
    assert entries[2].detail == {"reason": "upgrade"}


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("x" * 501, "the reason is 501 characters long; at most 500"),
        ("line1\nline2", "control characters"),
        ("red \x1b[31malert", "control characters"),
    ],
    ids=["too-long", "line-break", "terminal-escape"],
)
def test_a_reason_that_is_too_long_or_not_one_line_is_refused(
    client: Pulse, sql: Sql, reason: str, expected: str
) -> None:
    with pytest.raises(InvalidArgument, match=expected):
        client.pause_dispatch(reason)

    assert sql.all("SELECT scope FROM dispatch_pauses") == []
    assert sql.all("SELECT action FROM audit_log") == []
