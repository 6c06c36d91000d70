"""pulsed.submits.validate: a JobSpec becomes a NewJob or InvalidArgument."""

from __future__ import annotations

import datetime
import uuid
from typing import Any

import pytest
from google.protobuf import timestamp_pb2

from pulse_client._proto.pulse.v1 import pulse_pb2 as pb
from pulse_client.errors import InvalidArgument
from pulse_client.limits import MAX_DELAY_MS, MAX_TIMEOUT_MS, validate_topic
from pulsed.config import Config
from pulsed.submits import validate

CONFIG = Config(max_payload_bytes=10, default_max_attempts=7)
JOB_ID = "0190a0b0-c0d0-7e00-8000-000000000001"


def job(**fields: Any) -> pb.JobSpec:
    return pb.JobSpec(**{"id": JOB_ID, "topic": "t", **fields})


def timestamp(seconds: int, nanos: int = 0) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)


def test_a_minimal_spec_takes_the_defaults() -> None:
    new = validate(job(payload=b"abc"), CONFIG)

    assert new.id == JOB_ID
    assert (new.topic, new.payload, new.priority) == ("t", b"abc", 0)
    assert (new.max_attempts, new.run_at, new.delay_ms, new.timeout_ms) == (
        7,
        None,
        0,
        0,
    )


def test_a_spec_without_an_id_gets_a_fresh_uuid7_each_time() -> None:
    first = validate(job(id=""), CONFIG)
    second = validate(job(id=""), CONFIG)

    assert uuid.UUID(first.id).version == uuid.UUID(second.id).version == 7
    assert uuid.UUID(first.id) < uuid.UUID(second.id)


def test_every_field_is_carried_over() -> None:
    new = validate(
        job(
            payload=b"\x00\xff",
            priority=-7,
            max_attempts=3,
            delay_ms=500,
            timeout_ms=9000,
        ),
        CONFIG,
    )

    assert (new.payload, new.priority, new.max_attempts) == (b"\x00\xff", -7, 3)
    assert (new.delay_ms, new.timeout_ms) == (500, 9000)


def test_run_at_becomes_an_aware_utc_datetime() -> None:
    new = validate(job(run_at=timestamp(1_700_000_000, 500_000_000)), CONFIG)

    assert new.run_at == datetime.datetime(
        2023, 11, 14, 22, 13, 20, 500_000, tzinfo=datetime.UTC
    )


def test_an_uppercase_id_is_the_same_job() -> None:
    assert validate(job(id=JOB_ID.upper()), CONFIG).id == JOB_ID


@pytest.mark.parametrize(
    "spelling",
    [
        "{0190a0b0-c0d0-7e00-8000-000000000001}",
        "urn:uuid:0190a0b0-c0d0-7e00-8000-000000000001",
        "0190a0b0c0d07e008000000000000001",
    ],
)
def test_every_spelling_python_reads_as_a_uuid_becomes_the_canonical_id(
    spelling: str,
) -> None:
    assert validate(job(id=spelling), CONFIG).id == JOB_ID


REFUSED: dict[str, tuple[dict[str, Any], str]] = {
    "empty topic": ({"topic": ""}, "topic '' is invalid"),
    "201-char topic": ({"topic": "x" * 201}, "use 1-200 letters, digits or '._:-'"),
    "topic with a slash": ({"topic": "a/b"}, "topic 'a/b' is invalid"),
    "topic with a newline": ({"topic": "a\n"}, "is invalid"),
    "payload over the limit": (
        {"payload": b"x" * 11},
        "payload of 11 bytes is over the limit of 10 bytes",
    ),
    "priority 1001": ({"priority": 1001}, "priority 1001 is out of range -1000..1000"),
    "priority -1001": ({"priority": -1001}, "priority -1001 is out of range"),
    "max_attempts -1": (
        {"max_attempts": -1},
        "max_attempts -1 is out of range 1..1000",
    ),
    "max_attempts 1001": ({"max_attempts": 1001}, "max_attempts 1001 is out of range"),
    "malformed id": ({"id": "123"}, "job id '123' is not a UUID"),
    "id with a line break": ({"id": JOB_ID + "\n"}, "is not a UUID"),
    # int() would read these, and uuid.UUID with it: as another job.
    "id with an underscore for a digit": (
        {"id": "0190a0b0-c0d0-7e00-8000-0000_0000001"},
        "is not a UUID",
    ),
    "id with Arabic-Indic digits": (
        {"id": JOB_ID[:-1] + "\u0661"},
        "is not a UUID",
    ),
    "id with fullwidth digits": ({"id": JOB_ID[:-1] + "\uff11"}, "is not a UUID"),
    "negative delay": ({"delay_ms": -5}, "delay_ms -5 is out of range"),
    "delay beyond a century": ({"delay_ms": MAX_DELAY_MS + 1}, "delay_ms"),
    "negative timeout": ({"timeout_ms": -1}, "timeout_ms -1 is out of range"),
    "timeout beyond a year": ({"timeout_ms": MAX_TIMEOUT_MS + 1}, "timeout_ms"),
    "run_at with delay": (
        {"run_at": timestamp(1_700_000_000), "delay_ms": 1},
        "give run_at or delay_ms, not both",
    ),
    "run_at after 9999": ({"run_at": timestamp(253_402_300_800)}, "run_at"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_a_value_outside_the_limits_is_refused_with_a_message_naming_it(
    case: str,
) -> None:
    fields, message = REFUSED[case]

    with pytest.raises(InvalidArgument) as excinfo:
        validate(job(**fields), CONFIG)

    assert message in str(excinfo.value)


ACCEPTED: dict[str, dict[str, Any]] = {
    "200-char topic": {"topic": "x" * 200},
    "every allowed character": {"topic": "aZ09._:-"},
    "payload at the limit": {"payload": b"x" * 10},
    "priority 1000": {"priority": 1000},
    "priority -1000": {"priority": -1000},
    "max_attempts 1": {"max_attempts": 1},
    "max_attempts 1000": {"max_attempts": 1000},
    "longest delay": {"delay_ms": MAX_DELAY_MS},
    "longest timeout": {"timeout_ms": MAX_TIMEOUT_MS},
    "run_at in 9999": {"run_at": timestamp(253_402_300_799)},
}


@pytest.mark.parametrize("case", sorted(ACCEPTED))
def test_values_at_the_limits_are_accepted(case: str) -> None:
    validate(job(**ACCEPTED[case]), CONFIG)


def test_a_long_bad_topic_is_cut_short_in_the_message() -> None:
    with pytest.raises(InvalidArgument) as excinfo:
        validate_topic("y" * 5000)

    assert len(str(excinfo.value)) < 400
