"""pulse_client.logs: events as text lines or as JSON objects."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from pulse_client.logs import EventJsonFormatter, configure_logging, split_event


@pytest.fixture
def root_handlers() -> Iterator[None]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    yield
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


def test_an_event_splits_into_its_name_and_fields() -> None:
    event, fields = split_event(
        "loop.failed name=watchdog failures=2 error=Database unavailable: x=1"
    )

    assert event == "loop.failed"
    # A field's value runs to the next " name=": here the error's own "x=1"
    # becomes a field of its own, the price of a plain-text format.
    assert fields == {
        "name": "watchdog",
        "failures": "2",
        "error": "Database unavailable:",
        "x": "1",
    }


@pytest.mark.parametrize(
    "message", ["Traceback (most recent call last):", "ready", "Job.Done x=1"]
)
def test_a_message_that_is_not_an_event_has_no_event_name(message: str) -> None:
    assert split_event(message) == (None, {})


def test_the_json_format_gives_one_object_per_record_with_the_fields() -> None:
    formatter = EventJsonFormatter("%(message)s")
    record = logging.LogRecord(
        "pulsed.loops",
        logging.WARNING,
        __file__,
        1,
        "job.lease_expired job_id=%s attempt=%d status=%s",
        ("0190-abc", 2, "retrying"),
        None,
    )

    line = formatter.format(record)

    assert "\n" not in line
    document = json.loads(line)
    assert {k: document[k] for k in ("level", "logger", "event")} == {
        "level": "WARNING",
        "logger": "pulsed.loops",
        "event": "job.lease_expired",
    }
    assert (document["job_id"], document["attempt"], document["status"]) == (
        "0190-abc",
        2,
        "retrying",
    )
    assert document["time"].endswith("+00:00")


def test_a_traceback_stays_inside_its_json_line(
    root_handlers: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("INFO", "json")
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("pulsed.service").exception("rpc.crashed method=%s", "Get")

    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    document = json.loads(lines[0])
    assert document["event"] == "rpc.crashed"
    assert "ValueError: boom" in document["exc_info"]


def test_the_text_format_prints_the_message_as_it_is(
    root_handlers: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("WARNING", "text")
    logging.getLogger("pulsed.x").info("not shown")
    logging.getLogger("pulsed.x").warning("stream.closed worker_id=%s", "w1")

    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.endswith("WARNING pulsed.x stream.closed worker_id=w1")


def test_json_fields_read_as_numbers_and_lose_the_quotes_of_repr() -> None:
    formatter = EventJsonFormatter("%(message)s")
    record = logging.LogRecord(
        "pulsed.auth",
        logging.WARNING,
        __file__,
        1,
        "auth.failed peer=%s user=%r delay=%.2f failures=%d",
        ("ipv4:127.0.0.1:5", "ü", 0.25, 3),
        None,
    )

    document = json.loads(formatter.format(record))

    assert (document["user"], document["delay"], document["failures"]) == (
        "ü",
        0.25,
        3,
    )
