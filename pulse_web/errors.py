"""How failures become pages: SDK errors, bad input, CSRF refusals.

A page never shows a traceback. pulsed being unreachable gives a banner that
retries by itself; a refused value gives 400, an unknown job 404, and so on.
An operator action (a POST button) that pulsed refuses because of the job's
state comes back as a message on the page it was pressed on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from flask import (
    Flask,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
)
from flask_wtf.csrf import CSRFError  # type: ignore[import-untyped]
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as BaseResponse

from pulse_client import (
    ClientClosed,
    DeadlineExceeded,
    InvalidArgument,
    InvalidState,
    JobConflict,
    JobNotFound,
    PermissionDenied,
    PulseError,
    ResourceExhausted,
    ScheduleNotFound,
    Unauthenticated,
    Unavailable,
)
from pulse_web.sessions import SESSION_KEY, access, login_redirect

log = logging.getLogger(__name__)

# Flashed messages ride in the session cookie: keep them short.
_MAX_MESSAGE_CHARS = 400
_STATUS_BY_ERROR: list[tuple[type[PulseError], int, str]] = [
    (InvalidArgument, 400, "Bad request"),
    (JobNotFound, 404, "Not found"),
    (ScheduleNotFound, 404, "Not found"),
    (InvalidState, 409, "Not possible now"),
    (JobConflict, 409, "Conflict"),
    (PermissionDenied, 403, "Not allowed"),
    (ResourceExhausted, 503, "pulsed is busy"),
]
# Refusals an operator can read and act on; anything else is an error page.
ACTION_REFUSALS = (InvalidState, PermissionDenied, InvalidArgument)
UNREACHABLE = (Unavailable, DeadlineExceeded)


def register(app: Flask) -> None:
    app.register_error_handler(PulseError, _pulse_error)
    app.register_error_handler(CSRFError, _csrf_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)


def error_page(status: int, title: str, message: str) -> tuple[str, int]:
    return render_template("error.html", title=title, message=message), status


def run_action(action: Callable[[], str], *, back: str) -> BaseResponse:
    """Run an operator action and go back to ``back`` with its outcome.

    ``action`` returns the success message. A refusal pulsed gives (wrong
    status, role not allowed, a bad value) or pulsed being unreachable
    becomes an error message on the page; other errors get their page.
    """
    user = g.actor.user if g.get("actor") is not None else ""
    try:
        message = action()
    except ACTION_REFUSALS as exc:
        log.info(
            "web.action path=%s user=%s outcome=refused error=%s",
            request.path,
            user,
            type(exc).__name__,
        )
        flash(clip(str(exc)), "error")
    except UNREACHABLE as exc:
        log.warning(
            "web.action path=%s user=%s outcome=unreachable", request.path, user
        )
        flash(
            clip(
                f"pulsed could not be reached, so the action may not have "
                f"happened; check and try again ({exc})"
            ),
            "error",
        )
    else:
        log.info("web.action path=%s user=%s outcome=done", request.path, user)
        flash(clip(message), "ok")
    return redirect(back, 303)


def clip(message: str) -> str:
    if len(message) <= _MAX_MESSAGE_CHARS:
        return message
    return message[: _MAX_MESSAGE_CHARS - 1] + "…"


def unreachable_page(exc: PulseError) -> tuple[str, int]:
    """The banner that says pulsed is down; it retries by itself."""
    template = (
        "_unreachable.html" if request.headers.get("HX-Request") else "error.html"
    )
    return (
        render_template(
            template,
            title="pulsed is unreachable",
            message=str(exc),
            unreachable=True,
            retry=request.method == "GET",
        ),
        503,
    )


def _pulse_error(exc: PulseError) -> BaseResponse | tuple[str, int]:
    if isinstance(exc, UNREACHABLE):
        return unreachable_page(exc)
    if isinstance(exc, Unauthenticated | ClientClosed):
        return _credentials_refused(exc)
    for cls, status, title in _STATUS_BY_ERROR:
        if isinstance(exc, cls):
            return error_page(status, title, str(exc))
    # Anything else pulsed answered, for example a call an older replica
    # does not know yet.
    log.warning("web.pulsed_error error=%s message=%s", type(exc).__name__, exc)
    return error_page(502, "pulsed could not do this", str(exc))


def _credentials_refused(exc: PulseError) -> BaseResponse | tuple[str, int]:
    web = access(current_app)
    if web.config.fixed_credentials:
        return error_page(
            502,
            "pulsed refused the dashboard's credentials",
            f"pulsed does not accept PULSE_USER={web.config.user!r} with its "
            f"PULSE_PASSWORD: {exc}",
        )
    actor = g.get("actor")
    if actor is not None and actor.session_id:
        web.forget_session(actor.session_id)
        flash("pulsed no longer accepts your credentials; sign in again", "error")
    session.pop(SESSION_KEY, None)
    web.forget_probe()
    return login_redirect()


def _csrf_error(exc: CSRFError) -> tuple[str, int]:
    return error_page(
        400,
        "Form refused",
        "This form did not carry a valid token from this dashboard "
        f"({exc.description}). Reload the page and try again.",
    )


def _http_error(exc: HTTPException) -> BaseResponse | tuple[str, int]:
    if exc.code is None or exc.code < 400:
        return exc.get_response()
    return error_page(exc.code, exc.name, exc.description or exc.name)


def _unexpected_error(exc: Exception) -> tuple[str, int]:
    log.exception("web.unexpected_error path=%s", request.path)
    return error_page(
        500,
        "Internal error",
        "The dashboard hit an error it did not expect; its log has the details.",
    )
