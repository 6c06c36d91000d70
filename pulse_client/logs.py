"""Log output for pulse's commands: one line per event.

Every pulse log message is an event name followed by ``key=value`` fields
(``job.lease_expired job_id=… attempt=2 status=retrying``). The text format
prints it as is; ``PULSE_LOG_FORMAT=json`` prints one JSON object per line
with the event and each field as its own key, for log shippers. Only
entry points call ``configure_logging``: the library never sets handlers.
"""

from __future__ import annotations

import datetime
import logging
import re
import sys
from typing import Any

from pythonjsonlogger.json import JsonFormatter

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

# A field starts at a space followed by name=; its value runs to the next.
_FIELD = re.compile(r"\s(\w+)=")
_EVENT = re.compile(r"^[a-z_]+(\.[a-z_]+)+$")
_INTEGER = re.compile(r"-?\d{1,18}")
_DECIMAL = re.compile(r"-?\d+\.\d+")


def split_event(message: str) -> tuple[str | None, dict[str, str]]:
    """The event name and fields of a message, or (None, {}) if it is not
    written as an event."""
    head, _, rest = message.partition(" ")
    if not _EVENT.match(head):
        return None, {}
    fields: dict[str, str] = {}
    matches = list(_FIELD.finditer(" " + rest))
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else None
        fields[match.group(1)] = (" " + rest)[match.end() : end]
    return head, fields


class EventJsonFormatter(JsonFormatter):
    """One JSON object per record: time, level, logger, event and fields."""

    def add_fields(
        self,
        log_data: dict[str, Any],
        record: logging.LogRecord,
        message_dict: dict[str, Any],
    ) -> None:
        super().add_fields(log_data, record, message_dict)
        log_data["time"] = datetime.datetime.fromtimestamp(
            record.created, datetime.UTC
        ).isoformat(timespec="milliseconds")
        log_data["level"] = record.levelname
        log_data["logger"] = record.name
        event, fields = split_event(record.getMessage())
        if event is not None:
            log_data["event"] = event
            for key, value in fields.items():
                log_data.setdefault(key, _typed(value))


def _typed(value: str) -> Any:
    """A field's text as the JSON value it reads as: a whole number, a
    number, or text (without the quotes of a value logged with %r)."""
    if _INTEGER.fullmatch(value):
        return int(value)
    if _DECIMAL.fullmatch(value):
        return float(value)
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def configure_logging(
    level: str = "INFO", fmt: str = "text", *, text_format: str = TEXT_FORMAT
) -> None:
    """Send pulse's logs to stderr, as text lines or JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(EventJsonFormatter("%(message)s"))
    else:
        handler.setFormatter(logging.Formatter(text_format))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
