"""Commands about the deployment as a whole: the dispatch pause, statistics,
the audit log and who the server takes the caller for."""

from __future__ import annotations

import datetime
import json
from typing import Any

from pulse_client import DispatchPause, DispatchStatus, Stats
from pulse_client.limits import MAX_PAGE_SIZE
from pulse_ops import arguments, render
from pulse_ops.session import Session

DEFAULT_AUDIT_LIMIT = 50
STATS_HEADERS = (
    "TOPIC",
    "SCHEDULED",
    "PENDING",
    "RUNNING",
    "RETRYING",
    "COMPLETED",
    "DEAD",
    "CANCELED",
)
_COUNTS = (
    "scheduled",
    "pending",
    "running",
    "retrying",
    "completed",
    "dead_lettered",
    "canceled",
)


# -- dispatch ------------------------------------------------------------------


def pause(session: Session) -> int:
    status = session.client().pause_dispatch(
        session.args["--reason"] or "", topic=session.args["--topic"]
    )
    _show_dispatch(session, status)
    return 0


def resume(session: Session) -> int:
    topic = session.args["--topic"]
    before = session.client().dispatch_status()
    status = session.client().resume_dispatch(topic=topic)
    was_paused = before.paused if topic is None else _topic_pause(before, topic)
    if not was_paused and not session.as_json:
        scope = "every topic" if topic is None else f"topic {topic!r}"
        session.note(f"dispatch of {scope} was not paused")
    _show_dispatch(session, status)
    return 0


def status(session: Session) -> int:
    _show_dispatch(session, session.client().dispatch_status())
    return 0


def _topic_pause(status: DispatchStatus, topic: str) -> bool:
    return any(pause.topic == topic for pause in status.topics)


def _show_dispatch(session: Session, status: DispatchStatus) -> None:
    session.emit(
        {
            "paused": status.paused,
            "all": status.all,
            "topics": status.topics,
        },
        lambda: dispatch_text(status),
    )


def dispatch_text(status: DispatchStatus) -> str:
    now = datetime.datetime.now(datetime.UTC)
    if status.all is not None:
        lines = [f"dispatch: paused for every topic, {_paused_text(status.all, now)}"]
    else:
        lines = ["dispatch: running"]
    if status.topics:
        lines.append("topics paused on their own:")
        width = max(len(pause.topic or "") for pause in status.topics)
        lines += [
            f"  {pause.topic or '':<{width}}  {_paused_text(pause, now)}"
            for pause in status.topics
        ]
    elif status.all is None:
        lines.append("no topic is paused")
    return "\n".join(lines)


def _paused_text(pause: DispatchPause, now: datetime.datetime) -> str:
    text = f"by {pause.paused_by or '?'}"
    if pause.paused_at is not None:
        since = render.when(pause.paused_at)
        text += f" since {since} ({render.age(now - pause.paused_at)} ago)"
    reason = pause.reason or "(no reason given)"
    return f"{text}: {reason}"


# -- statistics ----------------------------------------------------------------


def stats(session: Session) -> int:
    result = session.client().stats()
    totals = {name: sum(getattr(t, name) for t in result.topics) for name in _COUNTS}
    session.emit(
        {
            "topics": result.topics,
            "total": totals,
            "oldest_pending": result.oldest_pending,
            "oldest_pending_age_seconds": render.to_json(result.oldest_pending_age),
        },
        lambda: stats_text(result, totals),
    )
    return 0


def stats_text(result: Stats, totals: dict[str, int]) -> str:
    rows: list[list[object]] = [
        [t.topic, *(getattr(t, name) for name in _COUNTS)] for t in result.topics
    ]
    rows.append(["TOTAL", *(totals[name] for name in _COUNTS)])
    lines = [render.table(STATS_HEADERS, rows)]
    oldest = result.oldest_pending
    if oldest is None:
        lines.append("oldest waiting job: none; nothing is pending")
    else:
        lines.append(
            f"oldest waiting job: {oldest.id} (topic {oldest.topic}), "
            f"waiting {render.age(result.oldest_pending_age)}"
        )
    return "\n".join(lines)


# -- audit and identity ----------------------------------------------------------


def audit(session: Session) -> int:
    args = session.args
    limit = DEFAULT_AUDIT_LIMIT
    if args["--limit"] is not None:
        limit = arguments.integer("--limit", args["--limit"], 1, MAX_PAGE_SIZE)
    page = session.client().list_audit(
        user=args["--by"], action=args["--action"], limit=limit
    )
    session.emit(
        {"entries": page.entries, "next_page_token": page.next_page_token or None},
        lambda: (
            render.table(
                ("AT", "USER", "ACTION", "TARGET", "DETAIL"),
                (
                    (
                        render.when(e.at),
                        e.user,
                        e.action,
                        e.target or render.NONE,
                        _compact(e.detail),
                    )
                    for e in page.entries
                ),
            )
            if page.entries
            else "no audit entries match"
        ),
    )
    return 0


def _compact(detail: dict[str, Any]) -> str:
    if not detail:
        return render.NONE
    return json.dumps(detail, separators=(",", ":"), sort_keys=True, default=str)


def whoami(session: Session) -> int:
    identity = session.client().whoami()
    session.emit(
        {"addr": session.addr, **render.to_json(identity)},
        lambda: render.fields(
            [
                ("server", session.addr),
                ("user", identity.user),
                ("role", identity.role),
                ("authenticated", render.yes_no(identity.authenticated)),
                ("server requires credentials", render.yes_no(identity.auth_required)),
            ]
        ),
    )
    return 0
