"""The audit log: every operator action, who took it, on what, from where.

An action is recorded in the same transaction as the change it describes,
so the log never shows a change that did not happen, nor misses one that
did.
"""

from __future__ import annotations

import base64
import datetime
import json
from typing import Any

from pulse_client._proto.pulse.v1 import pulse_pb2 as pb
from pulse_client.errors import InvalidArgument
from pulse_client.limits import MAX_PAGE_SIZE
from pulsed.auth import Caller
from pulsed.database import Cursor
from pulsed.jobs import from_timestamp, to_timestamp

INSERT_ENTRY = """
INSERT INTO audit_log (username, action, target, detail, peer)
VALUES (%(user)s, %(action)s, %(target)s, %(detail)s, %(peer)s)
"""

LIST_ENTRIES = """
SELECT id, at, username, action, target, detail::text, peer
FROM audit_log
WHERE (%(user)s = '' OR username = %(user)s)
  AND (%(action)s = '' OR action = %(action)s)
  AND (%(since)s::timestamptz IS NULL OR at >= %(since)s)
  AND (%(until)s::timestamptz IS NULL OR at < %(until)s)
  AND (%(before_id)s::bigint IS NULL OR id < %(before_id)s)
ORDER BY id DESC
LIMIT %(limit)s
"""

DEFAULT_PAGE_SIZE = 100


def record(
    cur: Cursor,
    caller: Caller,
    action: str,
    target: str,
    detail: dict[str, Any] | None = None,
) -> None:
    """Log ``action`` on ``target`` inside the caller's transaction."""
    cur.execute(
        INSERT_ENTRY,
        {
            "user": caller.user,
            "action": action,
            "target": target,
            "detail": json.dumps(detail or {}, sort_keys=True, default=str),
            "peer": caller.peer,
        },
    )


def list_entries(
    cur: Cursor, request: pb.ListAuditRequest
) -> tuple[list[pb.AuditEntry], str]:
    """One page, newest first, and the token of the next ('' at the end)."""
    page_size = request.page_size or DEFAULT_PAGE_SIZE
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise InvalidArgument(
            f"page_size {page_size} is out of range 1..{MAX_PAGE_SIZE}"
        )
    cur.execute(
        LIST_ENTRIES,
        {
            "user": request.user,
            "action": request.action,
            "since": _moment(request, "since"),
            "until": _moment(request, "until"),
            "before_id": _decode_page_token(request.page_token),
            "limit": page_size + 1,
        },
    )
    rows = cur.fetchall()
    token = ""
    if len(rows) > page_size:
        rows = rows[:page_size]
        token = _encode_page_token(rows[-1][0])
    entries = [
        pb.AuditEntry(
            id=entry_id,
            at=to_timestamp(at),
            user=user,
            action=action,
            target=target,
            detail=detail,
            peer=peer,
        )
        for entry_id, at, user, action, target, detail, peer in rows
    ]
    return entries, token


def _moment(request: pb.ListAuditRequest, field: str) -> datetime.datetime | None:
    if not request.HasField(field):  # type: ignore[arg-type]
        return None
    return from_timestamp(getattr(request, field), field)


def _encode_page_token(entry_id: int) -> str:
    return base64.urlsafe_b64encode(f"audit:{entry_id}".encode()).decode()


def _decode_page_token(token: str) -> int | None:
    if not token:
        return None
    try:
        text = base64.urlsafe_b64decode(token.encode()).decode()
        kind, _, value = text.partition(":")
        if kind != "audit":
            raise ValueError(kind)
        return int(value)
    except (ValueError, UnicodeError):
        raise InvalidArgument(f"page_token {token[:60]!r} is not valid") from None
