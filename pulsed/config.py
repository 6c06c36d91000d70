"""Server configuration, read from the environment at start-up."""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Callable, Mapping
from typing import TypeVar
from urllib.parse import quote

import psycopg2
import psycopg2.extensions

from pulse_client.errors import PulseError
from pulse_client.logs import LOG_FORMATS
from pulsed import passwords
from pulsed.auth import DEFAULT_ROLE, ROLES, User


class ConfigError(PulseError):
    """An environment variable holds a value pulsed cannot use."""

    code = "config_error"


_T = TypeVar("_T", int, float)


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything pulsed can be tuned by. Field docs name the variable."""

    # Database: DB_URL (postgresql://user:password@host:port/dbname) wins;
    # otherwise DB_HOST, DB_PORT, DB_NAME, DB_USER, DB_PASSWORD.
    db_dsn: str = "postgresql://postgres@127.0.0.1:5432/pulse"
    # PULSE_GRPC_ADDR: host:port to listen on (port 0: any free port)
    grpc_addr: str = "127.0.0.1:50051"
    # PULSE_LOG_LEVEL
    log_level: str = "INFO"
    # PULSE_LOG_FORMAT: text, or json for one JSON object per line.
    log_format: str = "text"
    # PULSE_METRICS_ADDR: host:port of the Prometheus endpoint (/metrics);
    # unset: no endpoint.
    metrics_addr: str | None = None
    # PULSE_HEALTH_SECONDS: how often the database is probed; the gRPC
    # health service answers NOT_SERVING while it is unreachable.
    health_seconds: float = 1.0
    # PULSE_DB_POOL_SIZE: connections shared by RPCs and background loops
    # (the LISTEN connection comes on top).
    db_pool_size: int = 10
    # PULSE_DB_CONNECT_TIMEOUT_SECONDS
    db_connect_timeout_seconds: int = 5
    # PULSE_MAX_STREAMS: open worker streams; more get RESOURCE_EXHAUSTED.
    max_streams: int = 200
    # PULSE_HELLO_TIMEOUT_SECONDS: a stream that sends no hello within this
    # long is cancelled, so silent connections cannot hold stream slots.
    hello_timeout_seconds: float = 10.0
    # PULSE_RPC_THREADS: threads for unary RPCs, beside one per stream.
    rpc_threads: int = 16
    # PULSE_LEASE_SECONDS
    lease_seconds: float = 30.0
    # PULSE_DEFAULT_MAX_ATTEMPTS
    default_max_attempts: int = 20
    # PULSE_BACKOFF_CEILING_SECONDS: the n² backoff never waits longer.
    backoff_ceiling_seconds: float = 3600.0
    # PULSE_BACKOFF_BASE_SECONDS: attempt n waits base × n² (tests shrink it).
    backoff_base_seconds: float = 1.0
    # PULSE_MAX_PAYLOAD_BYTES
    max_payload_bytes: int = 1024 * 1024
    # PULSE_RETENTION_SECONDS: finished jobs are deleted after this long.
    retention_seconds: float = 7 * 24 * 3600.0
    # PULSE_POLL_SECONDS: the safety poll behind LISTEN/NOTIFY.
    poll_seconds: float = 5.0
    # PULSE_WATCHDOG_SECONDS: how often lapsed leases are looked for.
    watchdog_seconds: float = 1.0
    # PULSE_PRUNE_SECONDS: how often the pruner runs.
    prune_seconds: float = 60.0
    # PULSE_VACUUM_SECONDS: how often the jobs table's churn is checked and,
    # past a threshold, vacuumed and analyzed by the server; 0 turns it off
    # (leaving it to autovacuum).
    vacuum_seconds: float = 5.0
    # PULSE_CLAIM_BATCH: most jobs one claim statement takes.
    claim_batch: int = 500
    # PULSE_FLUSH_MS: how long the result and heartbeat writers wait to fill
    # a batch (acknowledgements wait, new work does not). 0: each flush takes
    # whatever queued while the previous one ran. Submits never wait.
    flush_ms: float = 10.0
    # PULSE_NOTIFY_COALESCE_MS: at most one NOTIFY to the other replicas per
    # this interval; this replica's own streams wake at once.
    notify_coalesce_ms: float = 10.0
    # PULSE_CLAIM_LINGER_MS: how long a busy stream with few free slots
    # waits for more to free up before the dispatcher claims for it. Idle
    # streams (a quarter or more of their slots free) never wait.
    claim_linger_ms: float = 10.0
    # PULSE_GATE_POLL_SECONDS: how often each replica re-reads the dispatch
    # pause (it also re-reads at once on NOTIFY). Only saves claims while
    # paused: the claim statement itself checks the pause.
    gate_poll_seconds: float = 0.5
    # PULSE_SCHEDULER_POLL_SECONDS: the longest the scheduler sleeps; it
    # wakes earlier for the next due occurrence it knows of.
    scheduler_poll_seconds: float = 1.0
    # PULSE_FLUSH_BATCH: most results or submits in one commit.
    flush_batch: int = 1000
    # PULSE_SHUTDOWN_GRACE_SECONDS: how long open streams get to finish.
    shutdown_grace_seconds: float = 10.0
    # PULSE_AUTH_USERS: comma-separated user:password[:role] entries, the
    # password plaintext or a bcrypt hash ($2a$, $2b$, $2y$), the role one
    # of admin (the default), operator, worker, viewer. Unset: an open
    # server, every caller anonymous with the admin role.
    auth_users: tuple[User, ...] = ()
    # PULSE_TLS_CERT, PULSE_TLS_KEY: PEM files of the server's certificate
    # (chain) and its unencrypted private key; both or neither.
    tls_cert: str | None = None
    tls_key: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        """Read the configuration, naming the variable of any bad value."""
        env = os.environ if env is None else env
        reader = _Reader(env)
        tls_cert, tls_key = _tls_files(env)
        return cls(
            db_dsn=_dsn_from_env(env),
            grpc_addr=_grpc_addr(env.get("PULSE_GRPC_ADDR", cls.grpc_addr)),
            log_level=_log_level(env.get("PULSE_LOG_LEVEL", cls.log_level)),
            log_format=_log_format(env.get("PULSE_LOG_FORMAT", cls.log_format)),
            metrics_addr=_metrics_addr(env.get("PULSE_METRICS_ADDR")),
            health_seconds=reader.number(
                "PULSE_HEALTH_SECONDS", float, cls.health_seconds, 0.05, 60
            ),
            db_pool_size=reader.number("PULSE_DB_POOL_SIZE", int, cls.db_pool_size, 1),
            db_connect_timeout_seconds=reader.number(
                "PULSE_DB_CONNECT_TIMEOUT_SECONDS", int, 5, 1
            ),
            max_streams=reader.number("PULSE_MAX_STREAMS", int, cls.max_streams, 1),
            hello_timeout_seconds=reader.number(
                "PULSE_HELLO_TIMEOUT_SECONDS", float, cls.hello_timeout_seconds, 0.01
            ),
            rpc_threads=reader.number("PULSE_RPC_THREADS", int, cls.rpc_threads, 1),
            lease_seconds=reader.number(
                "PULSE_LEASE_SECONDS", float, cls.lease_seconds, 0.1
            ),
            default_max_attempts=reader.number(
                "PULSE_DEFAULT_MAX_ATTEMPTS", int, cls.default_max_attempts, 1, 1000
            ),
            backoff_ceiling_seconds=reader.number(
                "PULSE_BACKOFF_CEILING_SECONDS", float, cls.backoff_ceiling_seconds, 0
            ),
            backoff_base_seconds=reader.number(
                "PULSE_BACKOFF_BASE_SECONDS", float, cls.backoff_base_seconds, 0
            ),
            max_payload_bytes=reader.number(
                "PULSE_MAX_PAYLOAD_BYTES", int, cls.max_payload_bytes, 0, 32 << 20
            ),
            retention_seconds=reader.number(
                "PULSE_RETENTION_SECONDS", float, cls.retention_seconds, 0
            ),
            poll_seconds=reader.number(
                "PULSE_POLL_SECONDS", float, cls.poll_seconds, 0.01
            ),
            watchdog_seconds=reader.number(
                "PULSE_WATCHDOG_SECONDS", float, cls.watchdog_seconds, 0.01
            ),
            prune_seconds=reader.number(
                "PULSE_PRUNE_SECONDS", float, cls.prune_seconds, 0.01
            ),
            vacuum_seconds=reader.number(
                "PULSE_VACUUM_SECONDS", float, cls.vacuum_seconds, 0
            ),
            claim_batch=reader.number(
                "PULSE_CLAIM_BATCH", int, cls.claim_batch, 1, 10000
            ),
            claim_linger_ms=reader.number(
                "PULSE_CLAIM_LINGER_MS", float, cls.claim_linger_ms, 0, 1000
            ),
            flush_ms=reader.number("PULSE_FLUSH_MS", float, cls.flush_ms, 0, 1000),
            notify_coalesce_ms=reader.number(
                "PULSE_NOTIFY_COALESCE_MS", float, cls.notify_coalesce_ms, 0, 1000
            ),
            gate_poll_seconds=reader.number(
                "PULSE_GATE_POLL_SECONDS", float, cls.gate_poll_seconds, 0.01, 60
            ),
            scheduler_poll_seconds=reader.number(
                "PULSE_SCHEDULER_POLL_SECONDS",
                float,
                cls.scheduler_poll_seconds,
                0.01,
                3600,
            ),
            flush_batch=reader.number(
                "PULSE_FLUSH_BATCH", int, cls.flush_batch, 1, 100000
            ),
            shutdown_grace_seconds=reader.number(
                "PULSE_SHUTDOWN_GRACE_SECONDS", float, cls.shutdown_grace_seconds, 0
            ),
            auth_users=_auth_users(env.get("PULSE_AUTH_USERS")),
            tls_cert=tls_cert,
            tls_key=tls_key,
        )


class _Reader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def number(
        self,
        name: str,
        kind: Callable[[str], _T],
        default: _T,
        minimum: float,
        maximum: float | None = None,
    ) -> _T:
        raw = self._env.get(name)
        if raw is None or raw.strip() == "":
            return default
        bounds = f"from {minimum}" + (f" to {maximum}" if maximum is not None else "")
        kind_name = "a whole number" if kind is int else "a number"
        try:
            value = kind(raw.strip())
        except ValueError:
            raise ConfigError(
                f"{name}={raw!r} is not {kind_name}; expected {kind_name} {bounds}"
            ) from None
        if not math.isfinite(value):
            raise ConfigError(
                f"{name}={raw!r} is not a finite number; expected {bounds}"
            )
        if value < minimum or (maximum is not None and value > maximum):
            raise ConfigError(f"{name}={raw!r} is out of range; expected {bounds}")
        return value


_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _host_port(variable: str, raw: str, example: str) -> str:
    """``raw`` if it is HOST:PORT with a port from 0 to 65535."""
    host, _, port = raw.strip().rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(
            f"{variable}={raw!r} is not HOST:PORT with a port from 0 to 65535 "
            f"(for example {example})"
        )
    return raw.strip()


def _grpc_addr(raw: str) -> str:
    return _host_port("PULSE_GRPC_ADDR", raw, "127.0.0.1:50051 or [::]:50051")


def _log_format(raw: str) -> str:
    fmt = raw.strip().lower()
    if fmt not in LOG_FORMATS:
        raise ConfigError(
            f"PULSE_LOG_FORMAT={raw!r} is not a log format; use one of "
            + ", ".join(LOG_FORMATS)
        )
    return fmt


def _metrics_addr(raw: str | None) -> str | None:
    if raw is None or not raw.strip():
        return None
    return _host_port("PULSE_METRICS_ADDR", raw, "127.0.0.1:9464")


def _log_level(raw: str) -> str:
    level = raw.strip().upper()
    if level not in _LOG_LEVELS:
        raise ConfigError(
            f"PULSE_LOG_LEVEL={raw!r} is not a log level; use one of "
            + ", ".join(_LOG_LEVELS)
        )
    return level


_USER_NAME = re.compile(r"[A-Za-z0-9._@+-]{1,100}")


def _auth_users(raw: str | None) -> tuple[User, ...]:
    """Parse PULSE_AUTH_USERS. Messages name an entry by its position and
    user, never by its text: a misplaced separator could put a password
    anywhere in it."""
    if raw is None:
        return ()
    if not raw.strip():
        raise ConfigError(
            "PULSE_AUTH_USERS is set but empty; list user:password[:role] "
            "entries, or unset it to run an open server"
        )
    users: list[User] = []
    for position, entry in enumerate(raw.split(","), start=1):
        user = _auth_user(position, entry.strip())
        if any(other.name == user.name for other in users):
            raise ConfigError(
                f"PULSE_AUTH_USERS entry {position}: user {user.name!r} is listed twice"
            )
        users.append(user)
    return tuple(users)


def _auth_user(position: int, entry: str) -> User:
    where = f"PULSE_AUTH_USERS entry {position}"
    if not entry:
        raise ConfigError(f"{where} is empty (two commas in a row, or a trailing one)")
    fields = entry.split(":")
    if not 2 <= len(fields) <= 3:
        raise ConfigError(
            f"{where} has {len(fields)} ':'-separated fields; expected "
            "user:password or user:password:role (user names and passwords "
            "cannot contain ':' or ',')"
        )
    name, password = fields[0], fields[1]
    if not _USER_NAME.fullmatch(name):
        raise ConfigError(
            f"{where}: the user name is not 1-100 letters, digits or ._@+-"
        )
    where += f" (user {name!r})"
    role = fields[2] if len(fields) == 3 else DEFAULT_ROLE
    if role not in ROLES:
        # Not echoed: with a ':' too many, this is part of the password.
        raise ConfigError(
            f"{where}: the third field is not a role; use one of "
            + ", ".join(reversed(ROLES))
        )
    if passwords.looks_like_other_hash(password):
        raise ConfigError(
            f"{where}: the password looks like a bcrypt hash of a variant pulse "
            "does not take; use $2a$, $2b$ or $2y$ (pulse-ops passwd makes $2b$)"
        )
    if passwords.is_bcrypt_hash(password):
        problem = passwords.bcrypt_hash_problem(password)
        if problem is not None:
            raise ConfigError(f"{where}: the bcrypt hash is unusable: {problem}")
    else:
        problem = passwords.password_problem(password)
        if problem is not None:
            raise ConfigError(f"{where}: {problem}")
    return User(name, password, role)


def _tls_files(env: Mapping[str, str]) -> tuple[str | None, str | None]:
    cert = (env.get("PULSE_TLS_CERT") or "").strip() or None
    key = (env.get("PULSE_TLS_KEY") or "").strip() or None
    if (cert is None) != (key is None):
        given, missing = (
            ("PULSE_TLS_CERT", "PULSE_TLS_KEY")
            if key is None
            else ("PULSE_TLS_KEY", "PULSE_TLS_CERT")
        )
        raise ConfigError(
            f"{given} is set but {missing} is not; TLS needs both (the "
            "certificate and its private key, as PEM files) or neither"
        )
    return cert, key


def _dsn_from_env(env: Mapping[str, str]) -> str:
    if env.get("DB_URL"):
        try:
            psycopg2.extensions.parse_dsn(env["DB_URL"])
        except psycopg2.ProgrammingError as exc:
            reason = str(exc).strip().splitlines()[0]
            raise ConfigError(
                "DB_URL is not a PostgreSQL connection string "
                f"(postgresql://user:password@host:port/dbname): {reason}"
            ) from None
        return env["DB_URL"]
    user = quote(env.get("DB_USER", "postgres"), safe="")
    password = env.get("DB_PASSWORD")
    if password:
        user += ":" + quote(password, safe="")
    host = env.get("DB_HOST", "127.0.0.1")
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    port = env.get("DB_PORT", "5432")
    dbname = quote(env.get("DB_NAME", "pulse"), safe="")
    return f"postgresql://{user}@{host}:{port}/{dbname}"
