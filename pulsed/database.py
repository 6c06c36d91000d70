"""Database access: a bounded connection pool and the one place where driver
errors become pulse errors.

Every statement runs inside ``Database.transaction()``. A connection that
failed at the connection level (Postgres restarted, network cut) is closed
and dropped from the pool instead of being handed out again.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

import psycopg2
import psycopg2.errors
import psycopg2.extensions
import psycopg2.extras
import psycopg2.pool

from pulse_client.errors import PulseError, Unavailable

log = logging.getLogger(__name__)

Connection = psycopg2.extensions.connection
Cursor = psycopg2.extensions.cursor

psycopg2.extras.register_uuid()  # type: ignore[no-untyped-call]


class PoolTimeout(Unavailable):
    """No database connection became free in time."""


class _PulseConnection(psycopg2.extensions.connection):
    """A connection that remembers which statements it has prepared."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.prepared: set[str] = set()


class Prepared:
    """A hot-path statement, planned once per connection instead of per call.

    Written with named parameters like any other statement; every parameter
    must have a type Postgres can infer (cast it where it cannot).
    """

    def __init__(self, name: str, sql: str, *, settings: str = "") -> None:
        order: list[str] = []

        def number(match: re.Match[str]) -> str:
            if match.group(1) not in order:
                order.append(match.group(1))
            return f"${order.index(match.group(1)) + 1}"

        self.name = name
        self.sql = sql
        self.prepare_sql = f"PREPARE {name} AS {_PARAMETER.sub(number, sql)}"
        arguments = ", ".join(f"%({param})s" for param in order)
        # Settings go in the same round trip as the EXECUTE.
        self.execute_sql = f"{settings}EXECUTE {name}({arguments})"

    def execute(self, cur: Cursor, params: dict[str, Any]) -> None:
        conn = cur.connection
        prepared = getattr(conn, "prepared", None)
        if prepared is None:  # a plain connection: no plan cache
            cur.execute(self.sql, params)
            return
        if self.name not in prepared:
            cur.execute(self.prepare_sql)
            prepared.add(self.name)
        cur.execute(self.execute_sql, params)


# For hot statements that touch a batch of rows by key: their right plan is
# always a nested loop of index lookups, whatever the statistics say. Without
# this, stale statistics led to a bitmap scan of the whole backlog, and fresh
# ones to a hash join over every entry (live and dead) of the lease index.
# Disabled paths cost 1e10, which would also trip the JIT threshold: off.
INDEX_ONLY_PLANS = (
    "SET LOCAL enable_bitmapscan = off; SET LOCAL enable_seqscan = off; "
    "SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off; "
    "SET LOCAL jit = off; "
)

_PARAMETER = re.compile(r"%\((\w+)\)s")


def array_literal(values: Iterable[object]) -> str:
    """A Postgres array literal of values that need no quoting inside one
    (numbers, canonical job ids, NULL, elements quoted by the caller).

    For hot-path array parameters: psycopg2 turns a list into ARRAY[...] of
    as many quoted constants, adapting each item in Python (about a
    microsecond each), and Postgres parses one literal faster too.
    """
    return "{" + ",".join(map(str, values)) + "}"


class Database:
    """A bounded pool of connections. Thread-safe."""

    def __init__(
        self,
        dsn: str,
        size: int,
        *,
        connect_timeout_seconds: int = 5,
        acquire_timeout_seconds: float = 10.0,
        application_name: str = "pulsed",
    ) -> None:
        self._dsn = dsn
        self._connect_kwargs: dict[str, Any] = {
            "connect_timeout": connect_timeout_seconds,
            "application_name": application_name,
            # A dead peer is noticed within seconds instead of hanging.
            "keepalives": 1,
            "keepalives_idle": 5,
            "keepalives_interval": 2,
            "keepalives_count": 3,
        }
        self._size = size
        self._acquire_timeout_seconds = acquire_timeout_seconds
        self._idle: list[Connection] = []
        self._open = 0
        self._lock = threading.Condition()
        self._closed = False
        # The pool's connections (by object id) and their server process ids.
        self._backend_pids: dict[int, int] = {}

    @property
    def dsn(self) -> str:
        return self._dsn

    def connect(self, application_name: str | None = None) -> Connection:
        """A new connection outside the pool (for LISTEN and migrations)."""
        kwargs = dict(self._connect_kwargs)
        if application_name is not None:
            kwargs["application_name"] = application_name
        try:
            conn: Connection = psycopg2.connect(
                self._dsn, connection_factory=_PulseConnection, **kwargs
            )
        except psycopg2.OperationalError as exc:
            raise Unavailable(f"Database unreachable: {_first_line(exc)}") from exc
        return conn

    def is_own_backend(self, pid: int) -> bool:
        """Whether ``pid`` is the server process behind one of the pool's
        connections (so a replica can ignore notifications it sent itself)."""
        with self._lock:
            return pid in self._backend_pids.values()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Cursor]:
        """A cursor in a transaction that commits on success.

        Driver errors leave as pulse errors: connection trouble as
        ``Unavailable`` (the connection is discarded), anything else as
        ``PulseError`` with the driver's exception as its cause.
        """
        with self._cursor(autocommit=False) as cur:
            yield cur

    @contextlib.contextmanager
    def autocommit(self) -> Iterator[Cursor]:
        """A cursor on which every ``execute`` is a transaction of its own.

        For hot paths whose work is one statement: the driver sends no
        BEGIN and no COMMIT, so the statement costs one round trip instead
        of three. Several statements sent in one ``execute`` (semicolons, as
        ``Prepared`` does with its settings) still form one transaction,
        in which ``SET LOCAL`` and transaction-level locks hold. Errors
        leave as in ``transaction()``.
        """
        with self._cursor(autocommit=True) as cur:
            yield cur

    @contextlib.contextmanager
    def _cursor(self, *, autocommit: bool) -> Iterator[Cursor]:
        conn = self._acquire()
        broken = False
        try:
            if autocommit:
                conn.autocommit = True
            with conn.cursor() as cur:
                yield cur
            if not autocommit:
                conn.commit()
        except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
            broken = conn.closed != 0 or _is_connection_error(exc)
            _rollback_quietly(conn)
            if broken or isinstance(exc, psycopg2.InterfaceError):
                broken = True
                raise Unavailable(f"Database unavailable: {_first_line(exc)}") from exc
            raise PulseError(f"Database error: {_first_line(exc)}") from exc
        except psycopg2.Error as exc:
            _rollback_quietly(conn)
            raise PulseError(f"Database error: {_first_line(exc)}") from exc
        except BaseException:
            _rollback_quietly(conn)
            raise
        finally:
            if autocommit and not conn.closed:
                with contextlib.suppress(psycopg2.Error):
                    conn.autocommit = False
            self._release(conn, broken=broken or conn.closed != 0)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            self._open -= len(idle)
            for conn in idle:
                self._backend_pids.pop(id(conn), None)
            self._lock.notify_all()
        for conn in idle:
            conn.close()

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"size": self._size, "open": self._open, "idle": len(self._idle)}

    def _acquire(self) -> Connection:
        deadline = time.monotonic() + self._acquire_timeout_seconds
        with self._lock:
            while True:
                if self._closed:
                    raise Unavailable("Database pool is closed")
                if self._idle:
                    return self._idle.pop()
                if self._open < self._size:
                    self._open += 1
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise PoolTimeout(
                        f"No database connection free after "
                        f"{self._acquire_timeout_seconds:.0f}s "
                        f"(pool size {self._size}); "
                        "raise PULSE_DB_POOL_SIZE"
                    )
                self._lock.wait(remaining)
        try:
            conn = self.connect()
        except BaseException:
            with self._lock:
                self._open -= 1
                self._lock.notify()
            raise
        with self._lock:
            self._backend_pids[id(conn)] = conn.get_backend_pid()
        return conn

    def _release(self, conn: Connection, *, broken: bool) -> None:
        if broken or conn.closed:
            # One broken connection usually means the server restarted or
            # the network dropped: the idle ones are broken too, so drop
            # them now rather than fail one call on each.
            with self._lock:
                stale, self._idle = self._idle, []
                self._open -= 1 + len(stale)
                for dead in [conn, *stale]:
                    self._backend_pids.pop(id(dead), None)
                self._lock.notify_all()
            for dead in [conn, *stale]:
                with contextlib.suppress(psycopg2.Error):
                    dead.close()
            log.warning("db.connections_discarded count=%d", 1 + len(stale))
            return
        with self._lock:
            if self._closed:
                self._open -= 1
                self._backend_pids.pop(id(conn), None)
                conn.close()
                return
            self._idle.append(conn)
            self._lock.notify()


def _rollback_quietly(conn: Connection) -> None:
    if conn.closed:
        return
    with contextlib.suppress(psycopg2.Error):
        conn.rollback()


def _is_connection_error(exc: psycopg2.Error) -> bool:
    # Admin shutdown and friends arrive as OperationalError subclasses with a
    # SQLSTATE of class 08 (connection exception) or 57P (operator
    # intervention); a plain OperationalError without a code is a lost socket.
    code = getattr(exc, "pgcode", None)
    return code is None or code.startswith(("08", "57P"))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
