"""Dead letters grouped by topic and error signature. pulsed groups and
counts every dead-lettered job (its own RPC), never one page of them."""

from __future__ import annotations

from flask import Blueprint, render_template, request

from pulse_client.limits import validate_topic
from pulse_web.sessions import client

blueprint = Blueprint("dead_letters", __name__)

MAX_GROUPS = 200


@blueprint.get("/dead-letters")
def index() -> str:
    topic = request.args.get("topic", "").strip()
    if topic:
        validate_topic(topic)
    groups = client().dead_letter_groups(topic=topic or None, limit=MAX_GROUPS)
    return render_template(
        "dead_letters.html",
        groups=groups,
        topic=topic,
        total=sum(g.count for g in groups),
        limited=len(groups) >= MAX_GROUPS,
    )
