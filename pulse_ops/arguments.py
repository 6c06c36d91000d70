"""The command line's values, checked: numbers, statuses, job ids, durations,
points in time and payloads. A bad value raises ``UsageError`` naming the
option and what it accepts."""

from __future__ import annotations

import datetime
import json
import re
import sys
import uuid
from typing import Any, BinaryIO

from pulse_client import JobStatus


class UsageError(Exception):
    """A value on the command line is not acceptable (exit status 2)."""


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_SECONDS_PER_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}
STATUS_NAMES = [status.value for status in JobStatus]


def integer(option: str, text: str, low: int, high: int) -> int:
    """``text`` as an integer within ``low..high``."""
    try:
        value = int(text, 10)
    except ValueError:
        raise UsageError(f"{option} {text!r} is not a whole number") from None
    if not low <= value <= high:
        raise UsageError(f"{option} {value} is out of range {low}..{high}")
    return value


def positive_seconds(option: str, text: str) -> float:
    """``text`` as a number of seconds above zero (for --timeout)."""
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"{option} {text!r} is not a number of seconds") from None
    if not 0 < value <= 86400:
        raise UsageError(f"{option} {text!r} is out of range (0, 86400] seconds")
    return value


def statuses(option: str, text: str) -> list[str]:
    """One status name or several separated by commas."""
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    if not names:
        raise UsageError(f"{option} needs a status: one of {', '.join(STATUS_NAMES)}")
    for name in names:
        if name not in STATUS_NAMES:
            raise UsageError(
                f"unknown status {name!r} for {option}; use one of "
                f"{', '.join(STATUS_NAMES)}"
            )
    return names


def job_id(text: str) -> str:
    """``text`` if it is a job id (a UUID)."""
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise UsageError(f"{text!r} is not a job id (a UUID)") from None


def duration(option: str, text: str) -> datetime.timedelta:
    """``"30s"``, ``"5m"``, ``"2h"``, ``"1d"``, ``"1h30m"`` or plain seconds."""
    cleaned = text.strip().lower()
    try:
        seconds = float(cleaned)
    except ValueError:
        parts = _DURATION_PART.findall(cleaned)
        if not parts or "".join(n + u for n, u in parts) != cleaned:
            raise UsageError(
                f"{option} {text!r} is not a duration: use 30s, 5m, 2h, 1d "
                "(or 1h30m), or plain seconds"
            ) from None
        seconds = sum(float(n) * _SECONDS_PER_UNIT[u] for n, u in parts)
    if not 0 <= seconds <= 100 * 365 * 86400:
        raise UsageError(f"{option} {text!r} is out of range (0 to 100 years)")
    return datetime.timedelta(seconds=seconds)


def moment(option: str, text: str) -> datetime.datetime:
    """An ISO 8601 time with its offset (``2025-06-01T12:00:00+02:00``, or
    ``Z`` for UTC). A time without an offset is refused rather than guessed:
    the operator's zone, the server's and the database's may all differ."""
    try:
        value = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(
            f"{option} {text!r} is not an ISO 8601 time "
            "(like 2025-06-01T12:00:00Z or 2025-06-01T14:00:00+02:00)"
        ) from None
    if value.tzinfo is None:
        raise UsageError(
            f"{option} {text!r} has no UTC offset; add one, such as Z for UTC or +02:00"
        )
    try:
        return value.astimezone(datetime.UTC)
    except OverflowError:
        # 0001-01-01T00:00:00+05:00 is a valid time that UTC cannot hold.
        raise UsageError(
            f"{option} {text!r} is out of range: in UTC it falls outside "
            "the years 1 to 9999"
        ) from None


def moment_or_age(
    option: str, text: str, now: datetime.datetime | None = None
) -> datetime.datetime:
    """An ISO 8601 time with offset, or a duration meaning that long ago."""
    try:
        age = duration(option, text)
    except UsageError:
        return moment(option, text)
    return (now or datetime.datetime.now(datetime.UTC)) - age


def payload(text: str | None, stdin: BinaryIO | None = None) -> bytes | None:
    """The JSON payload argument: JSON text, ``@file``, or ``-`` for stdin.

    Returns compact JSON bytes (None when there is no argument). Invalid
    JSON is refused with the line and column of the first error.
    """
    if text is None:
        return None
    where = "PAYLOAD"
    if text == "-":
        where = "PAYLOAD from stdin"
        raw = (stdin or sys.stdin.buffer).read()
    elif text.startswith("@"):
        where = f"PAYLOAD file {text[1:]!r}"
        try:
            with open(text[1:], "rb") as source:
                raw = source.read()
        except OSError as exc:
            raise UsageError(f"cannot read {where}: {exc.strerror}") from None
    else:
        raw = text.encode()
    return _compact_json(raw, where)


def _compact_json(raw: bytes, where: str) -> bytes:
    try:
        decoded = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"{where} is not UTF-8 text (byte {exc.start + 1} is not valid)"
        ) from None
    try:
        value: Any = json.loads(decoded, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"{where} is not valid JSON: {exc.msg} at line {exc.lineno} "
            f"column {exc.colno}"
        ) from None
    except ValueError as exc:
        raise UsageError(f"{where} is not valid JSON: {exc}") from None
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _refuse_constant(name: str) -> Any:
    # Python's json reads NaN and Infinity, which JSON does not have.
    raise ValueError(f"{name} is not a JSON value")
