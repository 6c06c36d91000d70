"""Schedules: each with its rule, next fire time, last occurrence and its
outcome; a page per schedule with the coming fire times and its history;
pause, resume, delete."""

from __future__ import annotations

from flask import Blueprint, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from pulse_client.limits import validate_topic
from pulse_web.errors import run_action
from pulse_web.payloads import describe_payload
from pulse_web.sessions import client

blueprint = Blueprint("schedules", __name__)

PREVIEW_COUNT = 10
HISTORY_LIMIT = 50


@blueprint.get("/schedules")
def index() -> str:
    topic = request.args.get("topic", "").strip()
    if topic:
        validate_topic(topic)
    found = client().list_schedules(topic=topic or None)
    return render_template("schedules.html", schedules=found, topic=topic)


@blueprint.get("/schedules/<name>")
def detail(name: str) -> str:
    pulse = client()
    schedule = pulse.get_schedule(name)
    upcoming = pulse.preview_schedule(name, count=PREVIEW_COUNT)
    history = pulse.schedule_history(name, limit=HISTORY_LIMIT)
    return render_template(
        "schedule.html",
        schedule=schedule,
        upcoming=upcoming,
        history=history,
        payload=describe_payload(schedule.payload),
    )


@blueprint.post("/schedules/<name>/pause")
def pause(name: str) -> BaseResponse | tuple[str, int]:
    def act() -> str:
        client().pause_schedule(name)
        return f"Schedule {name!r} paused: it fires nothing until resumed."

    return run_action(act, back=_back(name))


@blueprint.post("/schedules/<name>/resume")
def resume(name: str) -> BaseResponse | tuple[str, int]:
    def act() -> str:
        client().resume_schedule(name)
        return f"Schedule {name!r} resumed."

    return run_action(act, back=_back(name))


@blueprint.post("/schedules/<name>/delete")
def delete(name: str) -> BaseResponse | tuple[str, int]:
    def act() -> str:
        client().delete_schedule(name)
        return f"Schedule {name!r} deleted; the jobs it fired are kept."

    return run_action(act, back=url_for("schedules.index"))


def _back(name: str) -> str:
    # Buttons sit on the list and on the schedule's own page.
    if request.form.get("back") == "list":
        return url_for("schedules.index")
    return url_for("schedules.detail", name=name)
