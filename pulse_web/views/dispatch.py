"""The dispatch switch: pause (with a reason) and resume, for every topic or
one, showing who paused it and when."""

from __future__ import annotations

from flask import Blueprint, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from pulse_client import InvalidArgument
from pulse_client.limits import validate_topic
from pulse_web.errors import run_action
from pulse_web.sessions import actor, client

blueprint = Blueprint("dispatch", __name__)

MAX_REASON_CHARS = 500


@blueprint.get("/dispatch")
def index() -> tuple[str, int]:
    return _page(error="", status=200)


@blueprint.post("/dispatch/pause")
def pause() -> BaseResponse | tuple[str, int]:
    topic = request.form.get("topic", "").strip()
    reason = request.form.get("reason", "").strip()
    try:
        if not reason:
            raise InvalidArgument("give a reason, so that others know why it is paused")
        if len(reason) > MAX_REASON_CHARS:
            raise InvalidArgument(
                f"the reason is at most {MAX_REASON_CHARS} characters long"
            )
        if topic:
            validate_topic(topic)
    except InvalidArgument as exc:
        return _page(error=str(exc), status=400, topic=topic, reason=reason)
    scope = f"topic {topic!r}" if topic else "every topic"

    def act() -> str:
        client().pause_dispatch(reason, topic=topic or None)
        return f"Dispatch paused for {scope} by {actor().user}."

    return run_action(act, back=url_for("dispatch.index"))


@blueprint.post("/dispatch/resume")
def resume() -> BaseResponse | tuple[str, int]:
    topic = request.form.get("topic", "").strip()
    if topic:
        validate_topic(topic)
    scope = f"topic {topic!r}" if topic else "every topic"

    def act() -> str:
        client().resume_dispatch(topic=topic or None)
        return f"Dispatch resumed for {scope}."

    return run_action(act, back=url_for("dispatch.index"))


def _page(
    *, error: str, status: int, topic: str = "", reason: str = ""
) -> tuple[str, int]:
    pulse = client()
    dispatch = pulse.dispatch_status()
    topics = sorted(t.topic for t in pulse.stats().topics)
    return (
        render_template(
            "dispatch.html",
            dispatch=dispatch,
            topics=topics,
            error=error,
            topic=topic,
            reason=reason,
        ),
        status,
    )
