"""Sign-in follows pulsed: open server, fixed service credentials, or a
login page whose credentials pulsed itself checks."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from pulse_client import JobStatus
from pulse_web.sessions import access
from tests.fixtures.servers import PulsedProcess
from tests.web.conftest import Web

USERS = "alice:wonderland:operator,bob:builder:operator,carol:readonly:viewer"


def _auth_pulsed(start_pulsed: Callable[..., PulsedProcess]) -> PulsedProcess:
    return start_pulsed(env={"PULSE_AUTH_USERS": USERS})


def _sign_in(web: Web, user: str, password: str, next_path: str = "/") -> Any:
    token = _login_token(web)
    return web.http.post(
        "/login",
        data={
            "user": user,
            "password": password,
            "next": next_path,
            "csrf_token": token,
        },
    )


def _login_token(web: Web) -> str:
    page = web.get("/login")
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match
    return match.group(1)


def test_open_server_needs_no_login(web: Web) -> None:
    page = web.get("/")

    assert '<span class="user" title="admin">anonymous</span>' in page
    assert "Log out" not in page
    answer = web.http.get("/login")
    assert answer.status_code == 303
    assert answer.headers["Location"] == "/"


def test_server_with_auth_gets_a_login_page_checked_by_pulsed(
    start_pulsed: Callable[..., PulsedProcess], make_web: Callable[..., Web]
) -> None:
    pulsed = _auth_pulsed(start_pulsed)
    web = make_web(pulsed.addr, sdk_user="alice", sdk_password="wonderland")

    # Every page sends the visitor to the login page, and back afterwards
    answer = web.http.get("/jobs?status=pending")
    assert answer.status_code == 303
    assert answer.headers["Location"] == "/login?next=/jobs?status%3Dpending"
    polled = web.http.get("/overview/panel", headers={"HX-Request": "true"})
    assert polled.status_code == 401
    assert polled.headers["HX-Redirect"].startswith("/login")
    assert "Sign in to pulse" in web.get("/login")

    # Wrong credentials are refused by pulsed; the form says so
    refused = _sign_in(web, "alice", "guess")
    assert refused.status_code == 401
    assert "pulsed refused this user name or password" in refused.get_data(as_text=True)
    assert len(access(web.app).sessions) == 0

    signed_in = _sign_in(web, "alice", "wonderland", "/jobs?status=pending")
    assert signed_in.status_code == 303
    assert signed_in.headers["Location"] == "/jobs?status=pending"
    page = web.get("/")
    assert '<span class="user" title="operator">alice</span>' in page
    assert "Log out" in page


def test_session_cookie_holds_no_password_and_is_http_only(
    start_pulsed: Callable[..., PulsedProcess], make_web: Callable[..., Web]
) -> None:
    pulsed = _auth_pulsed(start_pulsed)
    web = make_web(pulsed.addr)

    answer = _sign_in(web, "alice", "wonderland")

    cookie = answer.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    value = cookie.split(";", 1)[0].split("=", 1)[1]
    interface = web.app.session_interface
    serializer = interface.get_signing_serializer(web.app)  # type: ignore[attr-defined]
    content = serializer.loads(value)
    assert set(content) <= {"sid", "csrf_token", "_flashes"}
    assert "wonderland" not in repr(content) and "wonderland" not in cookie


def test_each_session_acts_as_its_user_and_logout_ends_it(
    start_pulsed: Callable[..., PulsedProcess], make_web: Callable[..., Web]
) -> None:
    pulsed = _auth_pulsed(start_pulsed)
    alice = make_web(pulsed.addr, sdk_user="alice", sdk_password="wonderland")
    bob = Web(alice.app, alice.app.test_client(), alice.pulse, alice.addr)
    carol = Web(alice.app, alice.app.test_client(), alice.pulse, alice.addr)
    for browser, (user, password) in (
        (alice, ("alice", "wonderland")),
        (bob, ("bob", "builder")),
        (carol, ("carol", "readonly")),
    ):
        assert _sign_in(browser, user, password).status_code == 303
    job_id = alice.pulse.enqueue("emails.send", {}, delay=3600)

    alice.post(f"/jobs/{job_id}/cancel")
    bob.post("/dispatch/pause", {"reason": "bob's window"})
    # A viewer may look but not act: pulsed refuses, the page says so
    refused = carol.follow(carol.post("/dispatch/resume"))
    assert "flash-error" in refused

    entries = {(e.action, e.user) for e in alice.pulse.list_audit().entries}
    assert ("job.cancel", "alice") in entries
    assert ("dispatch.pause", "bob") in entries
    assert not any(user == "carol" for _, user in entries)
    assert alice.pulse.get_job(job_id).status == JobStatus.CANCELED
    assert '<td class="paused-by">bob</td>' in carol.get("/dispatch")

    # Logout ends the session server-side: the old cookie is worth nothing
    old_cookie = bob.http.get_cookie("pulse_session")
    assert old_cookie is not None
    sessions = len(access(bob.app).sessions)
    bob.post("/logout")
    assert len(access(bob.app).sessions) == sessions - 1
    assert bob.http.get("/").status_code == 303
    bob.http.set_cookie("pulse_session", old_cookie.value)
    assert bob.http.get("/").status_code == 303


def test_login_form_needs_its_csrf_token(
    start_pulsed: Callable[..., PulsedProcess], make_web: Callable[..., Web]
) -> None:
    pulsed = _auth_pulsed(start_pulsed)
    web = make_web(pulsed.addr)
    web.get("/login")

    answer = web.http.post("/login", data={"user": "alice", "password": "wonderland"})

    assert answer.status_code == 400
    assert len(access(web.app).sessions) == 0


def test_fixed_credentials_need_no_login_and_act_as_the_service_user(
    start_pulsed: Callable[..., PulsedProcess], make_web: Callable[..., Web]
) -> None:
    pulsed = _auth_pulsed(start_pulsed)
    web = make_web(
        pulsed.addr,
        user="bob",
        password="builder",
        sdk_user="alice",
        sdk_password="wonderland",
    )
    job_id = web.pulse.enqueue("emails.send", {}, delay=3600)

    assert web.http.get("/login").status_code == 303
    web.post(f"/jobs/{job_id}/cancel")

    (entry,) = web.pulse.list_audit(action="job.cancel").entries
    assert entry.user == "bob"
    assert "Log out" not in web.get("/")

    wrong = make_web(pulsed.addr, user="bob", password="nope")
    page = wrong.get("/", status=502)
    assert "PULSE_USER=&#39;bob&#39;" in page
