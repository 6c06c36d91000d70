"""The Flask application: ``create_app(config)`` wires sign-in, CSRF
protection, the pages and their error handling."""

from __future__ import annotations

import datetime
import json
from typing import Any

from flask import Flask, Response, current_app, g, request, session
from flask_wtf.csrf import CSRFProtect  # type: ignore[import-untyped]
from werkzeug.wrappers import Response as BaseResponse

from pulse_web import errors, formatting
from pulse_web.config import WebConfig
from pulse_web.sessions import (
    EXTENSION,
    SESSION_KEY,
    Access,
    ClientFactory,
    access,
    client_factory,
    login_redirect,
)
from pulse_web.views import (
    audit,
    auth,
    dead_letters,
    dispatch,
    jobs,
    overview,
    schedules,
)

# Endpoints anyone may reach without signing in.
_PUBLIC_ENDPOINTS = frozenset({"static", "auth.login", "auth.logout", "health"})
# htmx settings: swap a 503 answer (the "pulsed is down" banner) into a
# polled fragment so that polling carries on and recovers; never evaluate
# scripts that arrive in fragments.
_HTMX_CONFIG = {
    "includeIndicatorStyles": False,
    "allowEval": False,
    "allowScriptTags": False,
    "responseHandling": [
        {"code": "204", "swap": False},
        {"code": "[23]..", "swap": True},
        {"code": "503", "swap": True},
        {"code": "[45]..", "swap": False, "error": True},
    ],
}
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; "
        "base-uri 'none'; object-src 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}
# Forms are small; anything larger is not from this dashboard.
_MAX_FORM_BYTES = 64 * 1024


def create_app(config: WebConfig, *, make_client: ClientFactory | None = None) -> Flask:
    """The dashboard for the pulsed that ``config`` names.

    Call ``close_app`` when done with it: it closes the SDK clients.
    """
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=config.secret_key,
        SESSION_COOKIE_NAME="pulse_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        # The token lives as long as the session: a dashboard left open all
        # day still has working buttons.
        WTF_CSRF_TIME_LIMIT=None,
        MAX_CONTENT_LENGTH=_MAX_FORM_BYTES,
    )
    access = Access(config, make_client or client_factory(config))
    app.extensions[EXTENSION] = access
    CSRFProtect(app)

    for module in (overview, jobs, dead_letters, schedules, dispatch, audit, auth):
        app.register_blueprint(module.blueprint)
    app.add_url_rule("/healthz", "health", _health)
    errors.register(app)
    formatting.register(app)

    app.before_request(_resolve_actor)
    app.after_request(_security_headers)
    app.context_processor(_template_globals)
    return app


def close_app(app: Flask) -> None:
    """Close every SDK client the app holds (shared and per session)."""
    access(app).close()


def _health() -> Response:
    # The dashboard's own liveness; says nothing about pulsed.
    return Response("ok\n", mimetype="text/plain")


def _resolve_actor() -> BaseResponse | None:
    if request.endpoint in _PUBLIC_ENDPOINTS or request.endpoint is None:
        return None
    session_id = session.get(SESSION_KEY)
    found = access(current_app).actor(session_id)
    if found is None:
        session.pop(SESSION_KEY, None)
        return login_redirect()
    g.actor = found
    return None


def _security_headers(response: Response) -> Response:
    for name, value in _SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if "text/html" in response.content_type:
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def _template_globals() -> dict[str, Any]:
    return {
        "actor": g.get("actor"),
        "web_config": access(current_app).config,
        "htmx_config": json.dumps(_HTMX_CONFIG),
        "now": datetime.datetime.now(datetime.UTC),
    }
