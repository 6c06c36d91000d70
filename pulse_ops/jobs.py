"""Job commands: submit, list, get, cancel and requeue (one by one, or every
dead-lettered or canceled job that matches a filter)."""

from __future__ import annotations

import functools
from collections.abc import Callable

from pulse_client import Job, JobNotFound, PulseError, RequeueProgress
from pulse_client.limits import MAX_ATTEMPTS_LIMIT, MAX_PAGE_SIZE, MAX_PRIORITY
from pulse_ops import arguments, render
from pulse_ops.arguments import UsageError
from pulse_ops.progress import ProgressBar
from pulse_ops.session import Session

DEFAULT_LIST_LIMIT = 50
REQUEUABLE = ("dead_lettered", "canceled")


def submit(session: Session) -> int:
    args = session.args
    payload = arguments.payload(args["PAYLOAD"], session.stdin.buffer)
    priority = 0
    if args["--priority"] is not None:
        priority = arguments.integer(
            "--priority", args["--priority"], -MAX_PRIORITY, MAX_PRIORITY
        )
    max_attempts = None
    if args["--max-attempts"] is not None:
        max_attempts = arguments.integer(
            "--max-attempts", args["--max-attempts"], 1, MAX_ATTEMPTS_LIMIT
        )
    delay = None
    if args["--delay"] is not None:
        delay = arguments.duration("--delay", args["--delay"])
    run_at = None
    if args["--at"] is not None:
        run_at = arguments.moment("--at", args["--at"])

    job_id = session.client().enqueue(
        args["TOPIC"],
        payload,
        priority=priority,
        delay=delay,
        run_at=run_at,
        max_attempts=max_attempts,
    )
    session.emit({"id": job_id}, job_id)
    return 0


def list_jobs(session: Session) -> int:
    args = session.args
    statuses = None
    if args["--status"] is not None:
        statuses = arguments.statuses("--status", args["--status"])
    limit = DEFAULT_LIST_LIMIT
    if args["--limit"] is not None:
        limit = arguments.integer("--limit", args["--limit"], 1, MAX_PAGE_SIZE)
    since = None
    if args["--since"] is not None:
        since = arguments.moment_or_age("--since", args["--since"])

    page = session.client().list_jobs(
        status=statuses,
        topic=args["--topic"],
        limit=limit,
        since=since,
        error_contains=args["--error-like"],
    )
    session.emit(
        {"jobs": page.jobs, "next_page_token": page.next_page_token or None},
        lambda: (
            render.table(render.JOB_HEADERS, map(render.job_row, page.jobs))
            if page.jobs
            else "no jobs match"
        ),
    )
    if page.next_page_token and not session.as_json:
        session.note(
            f"({len(page.jobs)} shown, newest first; more match: raise --limit, "
            f"up to {MAX_PAGE_SIZE}, or narrow the filter)"
        )
    return 0


def get(session: Session) -> int:
    job = session.client().get_job(arguments.job_id(session.args["ID"][0]))
    session.emit(job, lambda: render.job_details(job))
    return 0


def cancel(session: Session) -> int:
    return _each_job(session, "cancel", _describe_cancel)


def requeue(session: Session) -> int:
    if session.args["--status"] is not None:
        return _requeue_matching(session)
    return _each_job(
        session,
        "requeue",
        lambda job: f"{job.id}  requeued (status {job.status.value})",
    )


def _describe_cancel(job: Job) -> str:
    if job.status.value == "running":
        return f"{job.id}  cancel requested: it is running; its worker is told"
    return f"{job.id}  {job.status.value}"


def _each_job(session: Session, verb: str, describe: Callable[[Job], str]) -> int:
    """Apply ``verb`` to every ID; one failure does not stop the others."""
    ids = [arguments.job_id(text) for text in session.args["ID"]]
    client = session.client()
    act: Callable[[str], Job] = client.cancel if verb == "cancel" else client.requeue
    done: list[Job] = []
    failures: list[dict[str, str]] = []
    for job_id in ids:
        try:
            job = act(job_id)
        except JobNotFound:
            failures.append({"id": job_id, "error": f"job {job_id} not found"})
        except PulseError as exc:
            if _is_connection_trouble(exc):
                raise
            failures.append({"id": job_id, "error": str(exc)})
        else:
            done.append(job)
            if not session.as_json:
                print(describe(job), file=session.out)
    if session.as_json:
        session.emit({"jobs": done, "errors": failures}, "")
    for failure in failures:
        print(f"pulse-ops: {failure['error']}", file=session.err)
    return 1 if failures else 0


def _is_connection_trouble(exc: PulseError) -> bool:
    # Unreachable servers and refused credentials fail every id alike: stop
    # at the first and say so once.
    return exc.code in ("unavailable", "unauthenticated", "permission_denied")


def _requeue_matching(session: Session) -> int:
    args = session.args
    statuses = arguments.statuses("--status", args["--status"])
    refused = [status for status in statuses if status not in REQUEUABLE]
    if refused:
        raise UsageError(
            f"--status {refused[0]!r} cannot be requeued: use dead_lettered or canceled"
        )
    since = None
    if args["--since"] is not None:
        since = arguments.moment_or_age("--since", args["--since"])
    requeue_matching = functools.partial(
        session.client().requeue_jobs,
        status=statuses,
        topic=args["--topic"],
        error_contains=args["--error-like"],
        since=since,
    )
    what = _describe_filter(statuses, args["--topic"], args["--error-like"])

    matched = requeue_matching(dry_run=True).matched
    if matched == 0:
        session.emit(
            {"matched": 0, "requeued": 0}, f"no {what} match; nothing requeued"
        )
        return 0
    if not args["--yes"]:
        if not session.stdin.isatty():
            raise UsageError(
                f"{matched} {what} match; pass --yes to requeue them "
                "(there is no terminal to confirm on)"
            )
        session.err.write(f"Requeue {matched} {what}? [y/N] ")
        session.err.flush()
        answer = session.stdin.readline().strip().lower()
        if answer not in ("y", "yes"):
            print("pulse-ops: nothing requeued", file=session.err)
            return 1

    bar = None
    if session.err.isatty():
        bar = ProgressBar(session.err, matched, "requeued")

    def show(progress: RequeueProgress) -> None:
        if bar is not None:
            bar.update(progress.requeued)

    try:
        last = requeue_matching(on_progress=show)
    finally:
        if bar is not None:
            bar.close()
    session.emit(
        {"matched": last.matched, "requeued": last.requeued},
        f"requeued {last.requeued} of {last.matched} matching jobs",
    )
    return 0


def _describe_filter(statuses: list[str], topic: str | None, error: str | None) -> str:
    text = " or ".join(statuses) + " jobs"
    if topic:
        text += f" of topic {topic!r}"
    if error:
        text += f" with {error!r} in their error"
    return text
