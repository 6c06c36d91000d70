"""Property-based tests of bad input at the edges: every RPC, the CLI and the
dashboard, against one real pulsed shared by the directory.

``stored`` is a pulsed subprocess on a database of its own, seeded with
jobs in every finished and waiting status, schedules that will not fire
during the run and a per-topic dispatch pause. The properties send their
mutating calls only at ids, names and topics that are not the seeded ones,
so ``stored.snapshot()`` must read the same before and after each example.

Hypothesis runs under the ``pulse-ci`` profile: derandomized, so CI sees
the same examples on every run and a failure reproduces from the test name
alone; with no example database, so a run never depends on an earlier
one. Set ``HYPOTHESIS_PROFILE=pulse-explore`` to search with fresh random
examples, many more of them, when changing validation code.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, settings

from pulse_client._proto.pulse.v1 import pulse_pb2 as pb
from pulse_client._proto.pulse.v1 import pulse_pb2_grpc
from tests.fixtures.databases import PostgresServer, Sql
from tests.fixtures.servers import (
    TRACEBACK_MARKER,
    PulsedProcess,
    spawn_serving,
)

# The autouse guards of tests/conftest.py are function-scoped on purpose:
# they wrap the whole test, not each example.
_SHARED_SETTINGS: dict[str, Any] = {
    "deadline": None,
    "database": None,
    "suppress_health_check": [HealthCheck.function_scoped_fixture],
}
settings.register_profile("pulse-ci", derandomize=True, **_SHARED_SETTINGS)
settings.register_profile(
    "pulse-explore", derandomize=False, max_examples=500, **_SHARED_SETTINGS
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "pulse-ci"))

SEED_TOPIC = "seed.jobs"
SEED_PAUSED_TOPIC = "seed.paused"
SEED_SCHEDULES = ("seed-yearly", "seed-paused")
# Far enough that the seeded schedules never fire while the tests run.
_FAR_FUTURE = datetime.datetime(2099, 1, 1, tzinfo=datetime.UTC)
# The statuses the seeded jobs are put in, one job each.
_SEED_STATUSES = ("pending", "scheduled", "completed", "dead_lettered", "canceled")


@dataclasses.dataclass
class Stored:
    """The shared pulsed, its database and what was seeded into it."""

    server: PulsedProcess
    sql: Sql
    job_ids: dict[str, str]
    schedule_names: tuple[str, ...]
    topics: tuple[str, ...]
    last_seeded_audit_id: int
    _log_offset: int = 0

    @property
    def addr(self) -> str:
        return self.server.addr

    def snapshot(self) -> list[list[tuple[Any, ...]]]:
        """Every seeded row, as stored now."""
        ids = list(self.job_ids.values())
        names = list(self.schedule_names)
        return [
            self.sql.all(
                "SELECT * FROM jobs WHERE id = ANY(%s::uuid[]) ORDER BY id", (ids,)
            ),
            self.sql.all(
                "SELECT * FROM schedules WHERE name = ANY(%s) ORDER BY name", (names,)
            ),
            self.sql.all(
                "SELECT o.* FROM schedule_occurrences o JOIN schedules s"
                " ON s.id = o.schedule_id WHERE s.name = ANY(%s)"
                " ORDER BY o.schedule_id, o.occurrence",
                (names,),
            ),
            self.sql.all(
                "SELECT * FROM dispatch_pauses WHERE scope = %s", (SEED_PAUSED_TOPIC,)
            ),
            self.sql.all(
                "SELECT * FROM audit_log WHERE id <= %s ORDER BY id",
                (self.last_seeded_audit_id,),
            ),
        ]

    def is_seeded(self, value: str) -> bool:
        """Whether ``value`` names a seeded job, schedule or topic."""
        return value in self.job_ids.values() or value in (
            *self.schedule_names,
            *self.topics,
        )

    def new_log(self) -> str:
        """What pulsed logged since the last call."""
        text = self.server.log()
        fresh, self._log_offset = text[self._log_offset :], len(text)
        return fresh

    def assert_healthy(self) -> None:
        """pulsed still runs, answers, and logged no crash meanwhile."""
        fresh = self.new_log()
        assert TRACEBACK_MARKER not in fresh, fresh
        assert "rpc.crashed" not in fresh, fresh
        assert self.server.alive(), self.server.log()[-4000:]
        with grpc.insecure_channel(self.addr) as channel:
            answer = pulse_pb2_grpc.PulseStub(channel).WhoAmI(
                pb.WhoAmIRequest(), timeout=10
            )
        assert answer.role == "admin"


@pytest.fixture(scope="package")
def start_package_pulsed(
    postgres_server: PostgresServer,
    migrated_template: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., tuple[PulsedProcess, str]]]:
    """Factory: ``start(**knobs)`` gives a pulsed on a fresh database and
    that database's URL; both end with the directory's tests. A server that
    does not stop cleanly or wrote a traceback fails the last test."""
    started: list[tuple[str, PulsedProcess]] = []
    log_dir = tmp_path_factory.mktemp("property-pulsed")

    def start(**knobs: Any) -> tuple[PulsedProcess, str]:
        name = postgres_server.new_database_name("property")
        db_url = postgres_server.create_database(name, migrated_template)
        server = spawn_serving(db_url, log_dir, **knobs)
        started.append((name, server))
        return server, db_url

    yield start

    problems = []
    for name, server in started:
        problems += [f"pulsed {server.pid}: {p}" for p in server.stop()]
        deadline = time.monotonic() + 5
        while postgres_server.connections_to(name) and time.monotonic() < deadline:
            time.sleep(0.05)
        postgres_server.drop_database(name)
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)


@pytest.fixture(scope="package")
def stored(
    start_package_pulsed: Callable[..., tuple[PulsedProcess, str]],
) -> Iterator[Stored]:
    """The shared, seeded pulsed (see the module docstring)."""
    server, db_url = start_package_pulsed(max_payload_bytes=64 * 1024)
    sql = Sql(db_url)
    try:
        with grpc.insecure_channel(server.addr) as channel:
            job_ids = _seed(pulse_pb2_grpc.PulseStub(channel), sql)
        stored = Stored(
            server=server,
            sql=sql,
            job_ids=job_ids,
            schedule_names=SEED_SCHEDULES,
            topics=(SEED_TOPIC, SEED_PAUSED_TOPIC),
            last_seeded_audit_id=int(sql.scalar("SELECT max(id) FROM audit_log")),
        )
        stored.new_log()
        yield stored
    finally:
        sql.close()


def _seed(stub: pulse_pb2_grpc.PulseStub, sql: Sql) -> dict[str, str]:
    job_ids = {status: str(uuid.uuid4()) for status in _SEED_STATUSES}
    for status, job_id in job_ids.items():
        spec = pb.JobSpec(
            id=job_id,
            topic=SEED_PAUSED_TOPIC if status == "pending" else SEED_TOPIC,
            payload=f'{{"seeded": "{status}"}}'.encode(),
            priority=7,
        )
        if status == "scheduled":
            spec.run_at.FromDatetime(_FAR_FUTURE)
        stub.SubmitJob(pb.SubmitJobRequest(job=spec), timeout=10)
    # Finished jobs are made by hand: running real workers is not the point.
    sql.execute(
        "UPDATE jobs SET status = 'dead_lettered', attempt = 3, finished_at = now(),"
        " last_error = 'ValueError: seeded failure 42' WHERE id = %s",
        (job_ids["dead_lettered"],),
    )
    for status in ("completed", "canceled"):
        sql.execute(
            "UPDATE jobs SET status = %s, attempt = 1, finished_at = now()"
            " WHERE id = %s",
            (status, job_ids[status]),
        )

    # The pending job stays pending: its topic is paused.
    stub.PauseDispatch(
        pb.PauseDispatchRequest(topic=SEED_PAUSED_TOPIC, reason="seeded pause"),
        timeout=10,
    )
    for name in SEED_SCHEDULES:
        rule = pb.ScheduleRule()
        rule.at.FromDatetime(_FAR_FUTURE)
        definition = pb.ScheduleDefinition(
            name=name, topic=SEED_TOPIC, payload=b'{"seeded": true}', rule=rule
        )
        stub.PutSchedule(pb.PutScheduleRequest(schedule=definition), timeout=10)
    stub.PauseSchedule(pb.PauseScheduleRequest(name="seed-paused"), timeout=10)
    return job_ids
