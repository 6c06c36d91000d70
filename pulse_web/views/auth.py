"""Login and logout, for a pulsed that wants credentials.

pulsed checks the credentials (``whoami`` with them); the session then acts
through its own SDK client, so the audit log names the person.
"""

from __future__ import annotations

from flask import (
    Blueprint,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.wrappers import Response as BaseResponse

from pulse_client import Unauthenticated
from pulse_web.errors import UNREACHABLE
from pulse_web.sessions import SESSION_KEY, access

blueprint = Blueprint("auth", __name__)

_MAX_FIELD_CHARS = 1000


@blueprint.route("/login", methods=["GET", "POST"])
def login() -> BaseResponse | tuple[str, int]:
    web = access(current_app)
    target = _safe_next(request.values.get("next", ""))
    if not web.login_possible:
        return redirect(target, 303)
    signed_in = session.get(SESSION_KEY)
    if signed_in and web.sessions.get(signed_in) is not None:
        return redirect(target, 303)
    try:
        if not web.auth_required():
            # An open server: nothing to sign in to.
            return redirect(target, 303)
    except UNREACHABLE as exc:
        return _form(target, f"pulsed cannot be reached: {exc}", 503)
    if request.method == "GET":
        return _form(target, "", 200)

    user = request.form.get("user", "").strip()
    password = request.form.get("password", "")
    if not user or not password:
        return _form(target, "Give a user name and a password.", 400, user)
    if len(user) > _MAX_FIELD_CHARS or len(password) > _MAX_FIELD_CHARS:
        return _form(target, "The user name or password is too long.", 400)
    try:
        signed = web.sign_in(user, password)
    except Unauthenticated:
        return _form(target, "pulsed refused this user name or password.", 401, user)
    except UNREACHABLE as exc:
        return _form(target, f"pulsed cannot be reached: {exc}", 503, user)

    # A fresh cookie for the new identity: nothing from before carries over,
    # not even the CSRF token (no session fixation).
    session.clear()
    session[SESSION_KEY] = signed.session_id
    return redirect(target, 303)


@blueprint.post("/logout")
def logout() -> BaseResponse:
    session_id = session.get(SESSION_KEY)
    if session_id:
        access(current_app).sign_out(session_id)
    session.clear()
    flash("Signed out.", "ok")
    return redirect(url_for("auth.login"), 303)


def _form(target: str, error: str, status: int, user: str = "") -> tuple[str, int]:
    return (
        render_template("login.html", next=target, error=error, user=user),
        status,
    )


def _safe_next(target: str) -> str:
    # Only a path on this dashboard: never an open redirect elsewhere.
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return url_for("overview.index")
    return target
