"""The audit log, newest first, filtered by user and action."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template, request, url_for

from pulse_web.sessions import client

blueprint = Blueprint("audit", __name__)

PAGE_SIZE = 100


@blueprint.get("/audit")
def index() -> str:
    user = request.args.get("user", "").strip()
    action = request.args.get("action", "").strip()
    page_token = request.args.get("page", "")
    page = client().list_audit(
        user=user or None, action=action or None, limit=PAGE_SIZE, page_token=page_token
    )
    next_page = ""
    if page.next_page_token:
        values: dict[str, Any] = {"page": page.next_page_token}
        values.update((k, v) for k, v in (("user", user), ("action", action)) if v)
        next_page = url_for("audit.index", **values)
    return render_template(
        "audit.html",
        entries=page.entries,
        user=user,
        action=action,
        next_page=next_page,
        paged=bool(page_token),
    )
