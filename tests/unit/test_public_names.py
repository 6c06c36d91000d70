"""The SDK's public names are a promise: adding or removing one is a
deliberate change, made here as well."""

from __future__ import annotations

import importlib

import pytest

import pulse_client

PUBLIC_NAMES = [
    "After",
    "At",
    "AuditEntry",
    "AuditPage",
    "ClientClosed",
    "Cron",
    "DeadLetterGroup",
    "DeadlineExceeded",
    "DispatchPause",
    "DispatchStatus",
    "Every",
    "Identity",
    "InvalidArgument",
    "InvalidState",
    "Job",
    "JobConflict",
    "JobContext",
    "JobNotFound",
    "JobPage",
    "JobStatus",
    "MissedRuns",
    "NewJob",
    "Occurrence",
    "PermanentError",
    "PermissionDenied",
    "Pulse",
    "PulseError",
    "RequeueProgress",
    "ResourceExhausted",
    "RetryLater",
    "Schedule",
    "ScheduleNotFound",
    "Stats",
    "SubmitRefused",
    "ThroughputBucket",
    "TopicStats",
    "Unauthenticated",
    "Unavailable",
    "new_job_id",
]


def test_the_sdk_exports_exactly_the_pinned_names_in_sorted_order() -> None:
    assert pulse_client.__all__ == PUBLIC_NAMES


@pytest.mark.parametrize("name", PUBLIC_NAMES)
def test_each_public_name_is_importable_from_pulse_client(name: str) -> None:
    module = importlib.import_module("pulse_client")

    assert getattr(module, name) is not None


def test_every_exception_the_sdk_exports_derives_from_pulse_error() -> None:
    errors = [
        getattr(pulse_client, name)
        for name in PUBLIC_NAMES
        if isinstance(getattr(pulse_client, name), type)
        and issubclass(getattr(pulse_client, name), Exception)
        and name not in ("PermanentError", "RetryLater")
    ]

    assert [error.__name__ for error in errors] == [
        "ClientClosed",
        "DeadlineExceeded",
        "InvalidArgument",
        "InvalidState",
        "JobConflict",
        "JobNotFound",
        "PermissionDenied",
        "PulseError",
        "ResourceExhausted",
        "ScheduleNotFound",
        "SubmitRefused",
        "Unauthenticated",
        "Unavailable",
    ]
    assert all(issubclass(error, pulse_client.PulseError) for error in errors)


def test_a_worker_refuses_more_topics_than_a_stream_may_carry() -> None:
    from pulse_client import InvalidArgument, Pulse
    from pulse_client.limits import MAX_TOPICS_PER_WORKER

    pulse = Pulse("127.0.0.1:1")
    try:
        for i in range(MAX_TOPICS_PER_WORKER):
            pulse.register(f"t{i}", lambda args: None)
        with pytest.raises(InvalidArgument, match="at most 1000 topics"):
            pulse.register("one.more", lambda args: None)
    finally:
        pulse.close()
