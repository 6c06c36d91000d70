"""Dashboard configuration, read from the environment at start-up."""

from __future__ import annotations

import dataclasses
import math
import secrets
from collections.abc import Mapping
from typing import TypeVar

from pulse_client.connection import DEFAULT_ADDR
from pulse_client.errors import PulseError

_N = TypeVar("_N", int, float)
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


class ConfigError(PulseError):
    """An environment variable holds a value the dashboard cannot use."""

    code = "config_error"


@dataclasses.dataclass(frozen=True)
class WebConfig:
    """Everything ``pulse-web`` can be told. Field comments name the variable."""

    # PULSE_ADDR: pulsed replica(s), "host:port" or comma-separated.
    addr: str = DEFAULT_ADDR
    # PULSE_UI_HOST, PULSE_UI_PORT: where the dashboard listens.
    host: str = "127.0.0.1"
    port: int = 8080
    # PULSE_USER, PULSE_PASSWORD: fixed service credentials. Set, every
    # visitor acts under them and there is no login page.
    user: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    # PULSE_TLS, PULSE_CA_FILE: how the SDK reaches pulsed.
    tls: bool = False
    ca_file: str | None = None
    # PULSE_UI_SECRET: signs the session cookie. Unset, a random key is made
    # at start, so cookies (and the sessions they name) end on restart.
    secret_key: str = dataclasses.field(
        default_factory=lambda: secrets.token_urlsafe(32), repr=False
    )
    secret_from_environment: bool = False
    # PULSE_UI_SESSION_IDLE_SECONDS: a signed-in session unused this long ends.
    session_idle_seconds: float = 8 * 3600.0
    # PULSE_UI_MAX_SESSIONS: signed-in sessions kept; the least recently
    # used one ends when another signs in beyond it.
    max_sessions: int = 200
    # PULSE_UI_REFRESH_SECONDS: how often the overview refreshes itself.
    refresh_seconds: float = 5.0
    # PULSE_UI_TIMEOUT_SECONDS: deadline of each call to pulsed.
    timeout_seconds: float = 10.0

    @property
    def fixed_credentials(self) -> bool:
        return self.user is not None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> WebConfig:
        """The configuration the variables in ``environ`` describe."""
        user = environ.get("PULSE_USER") or None
        password = environ.get("PULSE_PASSWORD")
        if user is None and password:
            raise ConfigError("PULSE_PASSWORD is set without PULSE_USER; set both")
        secret = environ.get("PULSE_UI_SECRET") or ""
        if secret and len(secret) < 16:
            raise ConfigError(
                "PULSE_UI_SECRET is too short to sign cookies: use at least "
                "16 characters (for example `python -c 'import secrets; "
                "print(secrets.token_urlsafe(32))'`)"
            )
        extra = {"secret_key": secret} if secret else {}
        return cls(
            addr=environ.get("PULSE_ADDR") or DEFAULT_ADDR,
            host=environ.get("PULSE_UI_HOST") or "127.0.0.1",
            port=_number(environ, "PULSE_UI_PORT", 8080, int, 1, 65535),
            user=user,
            password=(password or "") if user is not None else None,
            tls=_flag(environ, "PULSE_TLS"),
            ca_file=environ.get("PULSE_CA_FILE") or None,
            secret_from_environment=bool(secret),
            session_idle_seconds=_number(
                environ, "PULSE_UI_SESSION_IDLE_SECONDS", 8 * 3600.0, float, 1, 1e7
            ),
            max_sessions=_number(
                environ, "PULSE_UI_MAX_SESSIONS", 200, int, 1, 100_000
            ),
            refresh_seconds=_number(
                environ, "PULSE_UI_REFRESH_SECONDS", 5.0, float, 0.5, 3600
            ),
            timeout_seconds=_number(
                environ, "PULSE_UI_TIMEOUT_SECONDS", 10.0, float, 0.1, 600
            ),
            **extra,
        )


def _flag(environ: Mapping[str, str], name: str) -> bool:
    value = environ.get(name, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name}={value!r} is not a flag; use 1 or 0 (true or false)")


def _number(
    environ: Mapping[str, str],
    name: str,
    default: _N,
    kind: type[_N],
    low: float,
    high: float,
) -> _N:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(
            f"{name}={raw!r} is not {'an integer' if kind is int else 'a number'}"
        ) from None
    if not (math.isfinite(value) and low <= value <= high):
        raise ConfigError(f"{name}={raw!r} is out of range {low:g}..{high:g}")
    return value
