"""Who acts on pulsed for each browser request, and through which SDK client.

Sign-in follows the server:

- **fixed credentials** (``PULSE_USER``/``PULSE_PASSWORD``): one shared
  client, every visitor acts under that service account, no login page;
- **open server** (``whoami().auth_required`` is false): one shared client
  without credentials, no login page;
- **server with auth**: a login page. The credentials are checked by
  pulsed itself (``whoami`` with them), and each signed-in browser session
  gets its own client, so the audit log names the person. Sessions live in
  memory, keyed by a random id that is all the cookie holds: the password
  never leaves this process, and every session ends when it restarts.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import threading
import time
from collections.abc import Callable

from flask import Flask, g, redirect, request, url_for
from werkzeug.wrappers import Response

from pulse_client import Pulse, Unauthenticated
from pulse_web.config import WebConfig

log = logging.getLogger(__name__)

EXTENSION = "pulse_web"
# The one thing the session cookie holds besides the CSRF token.
SESSION_KEY = "sid"
# How long the answer to "does pulsed want credentials?" is trusted.
_PROBE_SECONDS = 5.0

ClientFactory = Callable[[str | None, str | None], Pulse]


@dataclasses.dataclass(frozen=True)
class Actor:
    """The identity one request acts under, and the client that carries it."""

    user: str
    role: str
    client: Pulse
    # The browser session's id; None when no sign-in is involved.
    session_id: str | None = None


@dataclasses.dataclass
class _Session:
    actor: Actor
    last_used: float


class SessionStore:
    """Signed-in sessions: bounded, expiring after ``idle_seconds`` unused.

    Thread-safe. A session that ends, by logout, expiry or eviction of the
    least recently used one, has its client closed.
    """

    def __init__(
        self,
        *,
        max_sessions: int,
        idle_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_sessions = max_sessions
        self._idle_seconds = idle_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._sessions: dict[str, _Session] = {}

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)

    def add(self, user: str, role: str, client: Pulse) -> Actor:
        """Start a session for ``client``; the actor carries its new id."""
        actor = Actor(user, role, client, secrets.token_urlsafe(32))
        with self._lock:
            ended = self._expired()
            self._sessions[actor.session_id or ""] = _Session(actor, self._clock())
            while len(self._sessions) > self._max_sessions:
                oldest = min(self._sessions, key=lambda k: self._sessions[k].last_used)
                ended.append(("evicted", self._sessions.pop(oldest)))
        self._close(ended)
        log.info("web.session.opened user=%s sessions=%d", user, len(self))
        return actor

    def get(self, session_id: str) -> Actor | None:
        """The session's actor, if it is still open; marks it used."""
        with self._lock:
            ended = self._expired()
            session = self._sessions.get(session_id)
            if session is not None:
                session.last_used = self._clock()
        self._close(ended)
        return session.actor if session is not None else None

    def end(self, session_id: str, reason: str = "logout") -> None:
        with self._lock:
            session = self._sessions.pop(session_id, None)
        if session is not None:
            self._close([(reason, session)])

    def close(self) -> None:
        """End every session (the dashboard is stopping)."""
        with self._lock:
            ended = [("shutdown", s) for s in self._sessions.values()]
            self._sessions.clear()
        self._close(ended)

    def _expired(self) -> list[tuple[str, _Session]]:
        # Called with the lock held; closing happens after it is released,
        # since closing a client waits for its channels.
        cutoff = self._clock() - self._idle_seconds
        stale = [k for k, s in self._sessions.items() if s.last_used < cutoff]
        return [("expired", self._sessions.pop(k)) for k in stale]

    @staticmethod
    def _close(ended: list[tuple[str, _Session]]) -> None:
        for reason, session in ended:
            session.actor.client.close()
            log.info("web.session.closed user=%s reason=%s", session.actor.user, reason)


class Access:
    """Decides, per request, who acts and with which client. Thread-safe."""

    def __init__(self, config: WebConfig, make_client: ClientFactory) -> None:
        self.config = config
        self._make_client = make_client
        self._shared = make_client(config.user, config.password)
        self.sessions = SessionStore(
            max_sessions=config.max_sessions, idle_seconds=config.session_idle_seconds
        )
        self._lock = threading.Lock()
        self._probe: tuple[bool, str, str, float] | None = None

    @property
    def login_possible(self) -> bool:
        """Whether a login page makes sense at all (no fixed credentials)."""
        return not self.config.fixed_credentials

    def actor(self, session_id: str | None) -> Actor | None:
        """Who acts for a request carrying ``session_id``; None when the
        visitor must sign in first. Raises ``Unavailable`` when pulsed
        cannot be asked whether it wants credentials."""
        if self.config.fixed_credentials:
            return Actor(self.config.user or "", "", self._shared)
        if session_id:
            actor = self.sessions.get(session_id)
            if actor is not None:
                return actor
        auth_required, user, role = self._probe_server()
        if auth_required:
            return None
        return Actor(user, role, self._shared)

    def auth_required(self) -> bool:
        """Whether pulsed wants credentials (always false with fixed ones)."""
        if self.config.fixed_credentials:
            return False
        return self._probe_server()[0]

    def sign_in(self, user: str, password: str) -> Actor:
        """Check the credentials with pulsed and open a session for them.

        Raises ``Unauthenticated`` when pulsed refuses them, ``Unavailable``
        when it cannot be reached.
        """
        client = self._make_client(user, password)
        try:
            identity = client.whoami()
            if not identity.authenticated:
                raise Unauthenticated("wrong user name or password")
        except BaseException:
            client.close()
            log.info("web.login.refused user=%s", user)
            raise
        return self.sessions.add(identity.user or user, identity.role, client)

    def sign_out(self, session_id: str) -> None:
        self.sessions.end(session_id)

    def forget_session(self, session_id: str) -> None:
        """End a session whose credentials pulsed no longer accepts."""
        self.sessions.end(session_id, "refused")

    def forget_probe(self) -> None:
        """Ask pulsed again next time whether it wants credentials."""
        with self._lock:
            self._probe = None

    def close(self) -> None:
        self.sessions.close()
        self._shared.close()

    def _probe_server(self) -> tuple[bool, str, str]:
        now = time.monotonic()
        with self._lock:
            probe = self._probe
        if probe is not None and probe[3] > now:
            return probe[0], probe[1], probe[2]
        try:
            identity = self._shared.whoami()
            answer = (identity.auth_required, identity.user, identity.role)
        except Unauthenticated:
            # A server that refuses even to say whether it wants credentials.
            answer = (True, "", "")
        with self._lock:
            self._probe = (*answer, now + _PROBE_SECONDS)
        return answer


def client_factory(config: WebConfig) -> ClientFactory:
    """Makes SDK clients for ``config``'s pulsed with the given credentials."""

    def make(user: str | None, password: str | None) -> Pulse:
        return Pulse(
            config.addr,
            user=user,
            password=password if user is not None else None,
            tls=config.tls,
            ca_file=config.ca_file,
            timeout_seconds=config.timeout_seconds,
        )

    return make


def access(app: Flask) -> Access:
    """The app's ``Access``."""
    extension: Access = app.extensions[EXTENSION]
    return extension


def actor() -> Actor:
    """Who the current request acts as."""
    current: Actor = g.actor
    return current


def client() -> Pulse:
    """The SDK client the current request acts through."""
    return actor().client


def login_redirect() -> Response:
    """Send the visitor to the login page, and back here afterwards."""
    target = url_for("auth.login", next=request.full_path.rstrip("?"))
    if request.headers.get("HX-Request"):
        # A polled fragment: move the whole page, not the fragment.
        response = Response(status=401)
        response.headers["HX-Redirect"] = target
        return response
    return redirect(target, 303)
