"""Jobs: the filterable browser, the job page with cancel and requeue, and
the bulk requeue of dead-lettered jobs (with a confirmation that counts
them first)."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

from flask import Blueprint, Response, abort, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from pulse_client import InvalidArgument, JobStatus, RequeueProgress
from pulse_web.errors import run_action
from pulse_web.formatting import STATUSES
from pulse_web.payloads import describe_payload
from pulse_web.sessions import client

blueprint = Blueprint("jobs", __name__)

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
_MAX_FILTER_CHARS = 500
# Where a bulk requeue returns to.
_BACK_ENDPOINTS = {"jobs": "jobs.index", "dead_letters": "dead_letters.index"}


@dataclasses.dataclass(frozen=True)
class JobFilter:
    """The browser's filter, as the query string gives it."""

    status: str = ""
    topic: str = ""
    error: str = ""

    @classmethod
    def from_args(cls, args: Any) -> JobFilter:
        found = cls(
            status=args.get("status", "").strip(),
            topic=args.get("topic", "").strip(),
            error=args.get("error", "").strip(),
        )
        if found.status and found.status not in STATUSES:
            raise InvalidArgument(
                f"unknown status {found.status!r}; use one of {', '.join(STATUSES)}"
            )
        if len(found.topic) > _MAX_FILTER_CHARS or len(found.error) > _MAX_FILTER_CHARS:
            raise InvalidArgument(
                f"filters are at most {_MAX_FILTER_CHARS} characters long"
            )
        return found

    def args(self) -> dict[str, str]:
        """The non-empty fields, for links that keep the filter."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v}

    @property
    def bulk_requeue_possible(self) -> bool:
        return self.status in ("", JobStatus.DEAD_LETTERED.value)


@dataclasses.dataclass(frozen=True)
class RequeueFilter:
    """Which dead-lettered jobs a bulk requeue takes."""

    topic: str = ""
    error: str = ""
    signature: str = ""

    @classmethod
    def from_args(cls, args: Any) -> RequeueFilter:
        found = cls(
            topic=args.get("topic", "").strip(),
            error=args.get("error", "").strip(),
            signature=args.get("signature", ""),
        )
        if max(len(found.topic), len(found.error), len(found.signature)) > 2000:
            raise InvalidArgument("the requeue filter is too long")
        return found

    def args(self) -> dict[str, str]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v}

    def run(self, *, dry_run: bool) -> RequeueProgress:
        return client().requeue_jobs(
            status=JobStatus.DEAD_LETTERED,
            topic=self.topic or None,
            error_contains=self.error or None,
            error_signature=self.signature or None,
            dry_run=dry_run,
        )


@blueprint.get("/jobs")
def index() -> tuple[str, int]:
    page_token = request.args.get("page", "")
    try:
        limit = int(request.args.get("limit", DEFAULT_PAGE_SIZE))
    except ValueError:
        limit = 0
    try:
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise InvalidArgument(f"limit must be a number from 1 to {MAX_PAGE_SIZE}")
        job_filter = JobFilter.from_args(request.args)
        page = client().list_jobs(
            status=job_filter.status or None,
            topic=job_filter.topic or None,
            error_contains=job_filter.error or None,
            limit=limit,
            page_token=page_token,
        )
    except InvalidArgument as exc:
        # The form stays, with what was typed and what is wrong with it.
        return (
            render_template(
                "jobs.html",
                jobs=[],
                next_page="",
                filter=_raw_filter(),
                error=str(exc),
                paged=bool(page_token),
                limit=DEFAULT_PAGE_SIZE,
            ),
            400,
        )
    next_page = ""
    if page.next_page_token:
        values: dict[str, Any] = {**job_filter.args(), "page": page.next_page_token}
        if limit != DEFAULT_PAGE_SIZE:
            values["limit"] = str(limit)
        next_page = url_for("jobs.index", **values)
    return (
        render_template(
            "jobs.html",
            jobs=page.jobs,
            next_page=next_page,
            filter=job_filter,
            error="",
            paged=bool(page_token),
            limit=limit,
        ),
        200,
    )


@blueprint.get("/jobs/<job_id>")
def detail(job_id: str) -> str:
    job = client().get_job(_known_id(job_id))
    return render_template("job.html", job=job, payload=describe_payload(job.payload))


@blueprint.get("/jobs/<job_id>/payload")
def payload(job_id: str) -> Response:
    job = client().get_job(_known_id(job_id))
    # An attachment, never rendered: the payload is whatever the client sent.
    return Response(
        job.payload,
        mimetype="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="{job.id}.payload"'},
    )


@blueprint.post("/jobs/<job_id>/cancel")
def cancel(job_id: str) -> BaseResponse | tuple[str, int]:
    job_id = _known_id(job_id)

    def act() -> str:
        job = client().cancel(job_id)
        if job.status == JobStatus.RUNNING:
            return "Cancel requested: the worker stops the job at its next heartbeat."
        return f"Job canceled (status {job.status})."

    return run_action(act, back=url_for("jobs.detail", job_id=job_id))


@blueprint.post("/jobs/<job_id>/requeue")
def requeue(job_id: str) -> BaseResponse | tuple[str, int]:
    job_id = _known_id(job_id)

    def act() -> str:
        job = client().requeue(job_id)
        return f"Job requeued with a fresh budget of {job.max_attempts} attempts."

    return run_action(act, back=url_for("jobs.detail", job_id=job_id))


@blueprint.get("/requeue")
def confirm_requeue() -> str:
    requeue_filter = RequeueFilter.from_args(request.args)
    counted = requeue_filter.run(dry_run=True)
    return render_template(
        "requeue_confirm.html",
        filter=requeue_filter,
        matched=counted.matched,
        back=_back_key(),
    )


@blueprint.post("/requeue")
def requeue_matching() -> BaseResponse | tuple[str, int]:
    requeue_filter = RequeueFilter.from_args(request.form)
    expected = request.form.get("expected", "")
    back_key = _back_key(request.form)
    back_args: dict[str, Any] = {}
    if back_key == "jobs":
        # Back to the browser, showing what is left of the same filter.
        back_args = {"status": JobStatus.DEAD_LETTERED.value, **requeue_filter.args()}
        back_args.pop("signature", None)

    def act() -> str:
        done = requeue_filter.run(dry_run=False)
        message = f"Requeued {done.requeued} dead-lettered job(s)"
        if expected.isdigit() and int(expected) != done.matched:
            message += f" ({expected} matched when you confirmed, {done.matched} now)"
        return message + "."

    return run_action(act, back=url_for(_BACK_ENDPOINTS[back_key], **back_args))


def _known_id(job_id: str) -> str:
    try:
        return str(uuid.UUID(job_id))
    except ValueError:
        abort(404, description=f"No job has the id {job_id!r}: it is not a job id.")


def _back_key(args: Any = None) -> str:
    key = (args if args is not None else request.args).get("back", "jobs")
    return key if key in _BACK_ENDPOINTS else "jobs"


def _raw_filter() -> JobFilter:
    # The filter as typed, even when it is not valid, to show it again.
    return JobFilter(
        status=request.args.get("status", "")[:_MAX_FILTER_CHARS],
        topic=request.args.get("topic", "")[:_MAX_FILTER_CHARS],
        error=request.args.get("error", "")[:_MAX_FILTER_CHARS],
    )
