"""How pulse-ops shows things: aligned tables and labelled fields for people,
one JSON document with stable keys for programs (``--json``).

Times are shown in UTC (``2025-06-01 12:00:00Z``) in text and as ISO 8601
with their offset in JSON; durations as ``3m12s`` in text and as seconds in
JSON.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import enum
import json
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any

from pulse_client import Job

NONE = "-"
ERROR_COLUMN_CHARS = 60


def printable(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` safe to write to a terminal: control characters (escape
    sequences, carriage returns, line breaks unless kept) shown as escapes,
    so that stored text can neither restyle nor rewrite an operator's
    screen."""
    return "".join(
        char
        if unicodedata.category(char) != "Cc" or (keep_newlines and char == "\n")
        else repr(char)[1:-1]
        for char in text
    )


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Columns padded to their widest cell, two spaces apart."""
    cells = [[printable(str(h)) for h in headers]] + [
        [printable(str(c)) for c in row] for row in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in cells
    ]
    return "\n".join(line.rstrip() for line in lines)


def fields(pairs: Sequence[tuple[str, object]]) -> str:
    """``label:  value`` lines with the values aligned."""
    width = max(len(label) for label, _ in pairs) + 1
    return "\n".join(
        f"{label + ':':<{width}}  {printable(str(value))}".rstrip()
        for label, value in pairs
    )


def when(moment: datetime.datetime | None) -> str:
    if moment is None:
        return NONE
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def age(span: datetime.timedelta | None) -> str:
    """A duration in its two largest units: ``45s``, ``3m12s``, ``2h05m``, ``4d3h``."""
    if span is None:
        return NONE
    seconds = max(0, int(span.total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def span(duration: datetime.timedelta | None) -> str:
    """A configured length of time, exactly: ``90s``, ``5m``, ``1h30m``, ``250ms``."""
    if duration is None:
        return NONE
    milliseconds = round(duration.total_seconds() * 1000)
    if milliseconds % 1000:
        return f"{milliseconds}ms"
    seconds = milliseconds // 1000
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def one_line(text: str, chars: int = ERROR_COLUMN_CHARS) -> str:
    """The first line of ``text``, cut to ``chars`` with an ellipsis."""
    lines = text.strip().splitlines()
    line = lines[0] if lines else ""
    if len(line) > chars or len(lines) > 1:
        return line[: chars - 1].rstrip() + "…"
    return line


def yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


# -- JSON ----------------------------------------------------------------------


def to_json(value: Any) -> Any:
    """``value`` as plain JSON data: dataclasses as objects, times as ISO
    8601, durations as seconds, bytes as base64."""
    if isinstance(value, Job):
        return job_json(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            field.name: to_json(getattr(value, field.name))
            for field in dataclasses.fields(value)
        }
    if isinstance(value, enum.Enum):
        return to_json(value.value)
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, dict):
        return {str(key): to_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_json(item) for item in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def dump_json(value: Any) -> str:
    return json.dumps(to_json(value), indent=2, sort_keys=True, ensure_ascii=False)


def job_json(job: Job) -> dict[str, Any]:
    """A job with every field. ``payload`` is the decoded JSON value when the
    payload is JSON (``payload_base64`` null); otherwise ``payload`` is null
    and ``payload_base64`` holds the bytes."""
    return {
        "id": job.id,
        "topic": job.topic,
        "status": job.status.value,
        "priority": job.priority,
        "attempt": job.attempt,
        "attempts_used": job.attempts_used,
        "max_attempts": job.max_attempts,
        **payload_json(job.payload),
        "run_at": to_json(job.run_at),
        "created_at": to_json(job.created_at),
        "started_at": to_json(job.started_at),
        "finished_at": to_json(job.finished_at),
        "lease_expires_at": to_json(job.lease_expires_at),
        "worker_id": job.worker_id or None,
        "last_error": job.last_error or None,
        "timeout_seconds": to_json(job.timeout),
        "cancel_requested_at": to_json(job.cancel_requested_at),
    }


def payload_json(payload: bytes) -> dict[str, Any]:
    """``payload``: the decoded JSON value, or null when the bytes are not
    JSON, in which case ``payload_base64`` holds them (else it is null)."""
    decoded, is_json = decode_payload(payload)
    return {
        "payload": decoded if is_json else None,
        "payload_base64": None if is_json else base64.b64encode(payload).decode(),
    }


def decode_payload(payload: bytes) -> tuple[Any, bool]:
    """The payload's JSON value and True, or (None, False) if it is not JSON."""
    try:
        return json.loads(payload.decode("utf-8")), True
    except (UnicodeDecodeError, ValueError):
        return None, False


# -- jobs ------------------------------------------------------------------------

JOB_HEADERS = ("ID", "TOPIC", "STATUS", "PRIO", "ATTEMPTS", "SUBMITTED", "ERROR")


def job_row(job: Job) -> tuple[object, ...]:
    return (
        job.id,
        job.topic,
        job.status.value,
        job.priority,
        f"{job.attempts_used}/{job.max_attempts}",
        when(job.created_at),
        one_line(job.last_error) if job.last_error else NONE,
    )


def job_details(job: Job) -> str:
    """Every field of a job, the payload pretty-printed, the full last error."""
    pairs: list[tuple[str, object]] = [
        ("id", job.id),
        ("topic", job.topic),
        ("status", job.status.value),
        ("priority", job.priority),
        ("attempts", f"{job.attempts_used} of {job.max_attempts} used"),
        ("attempt", f"{job.attempt} (counts every attempt, also before requeues)"),
        ("timeout", span(job.timeout) if job.timeout else NONE),
        ("submitted", when(job.created_at)),
        ("run at", when(job.run_at)),
        ("started", when(job.started_at)),
        ("finished", when(job.finished_at)),
        ("lease expires", when(job.lease_expires_at)),
        ("worker", job.worker_id or NONE),
        ("cancel requested", when(job.cancel_requested_at)),
    ]
    sections = [fields(pairs), payload_section(job.payload)]
    if job.last_error:
        sections.append("last error:\n" + indent(job.last_error))
    else:
        sections.append(f"last error: {NONE}")
    return "\n".join(sections)


def payload_section(payload: bytes) -> str:
    decoded, is_json = decode_payload(payload)
    if is_json:
        pretty = json.dumps(decoded, indent=2, ensure_ascii=False, sort_keys=False)
        return "payload:\n" + indent(pretty)
    if not payload:
        return "payload: (empty)"
    encoded = base64.b64encode(payload).decode()
    chunks = [encoded[i : i + 76] for i in range(0, len(encoded), 76)]
    return f"payload: (not JSON: {len(payload)} bytes, shown as base64)\n" + indent(
        "\n".join(chunks)
    )


def indent(text: str, prefix: str = "  ") -> str:
    text = printable(text, keep_newlines=True)
    return "\n".join(prefix + line if line else line for line in text.split("\n"))
