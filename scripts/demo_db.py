"""A Postgres URL for the demo, whatever the machine has.

Usage:
  python scripts/demo_db.py [options]              print the URL; hold an
                                                   embedded server until Ctrl-C
  python scripts/demo_db.py [options] -- CMD ...   run CMD with DB_URL set, then
                                                   stop any embedded server

Options (see --help): --dbname NAME (default pulse_demo), --probe HOST:PORT,
--embedded auto|pgserver|system|none.

The choice, in order:

1. ``DB_URL`` (or ``DB_HOST`` with ``DB_PORT``, ``DB_USER``, ``DB_PASSWORD``
   and ``DB_NAME``) from the environment, as pulsed reads them.
2. A server at the probe address (user ``postgres``, no password).
3. An embedded server in a temporary folder: the ``pgserver`` package
   (PostgreSQL 16, listening on a Unix socket only), else the machine's own
   PostgreSQL binaries (``initdb``/``pg_ctl``, run as the ``postgres`` OS user
   when we are root) on a free loopback port. It is stopped and its folder
   removed when the demo ends.

In every case the database is created if it is missing. What was chosen is
printed on stderr; with no command, the URL alone is printed on stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import glob
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from types import FrameType
from urllib.parse import quote

import psycopg2
import psycopg2.errors
import psycopg2.extensions
from psycopg2 import sql

DEFAULT_DBNAME = "pulse_demo"
DEFAULT_PROBE = "127.0.0.1:5432"
EMBEDDED_KINDS = ("auto", "pgserver", "system", "none")
_CONNECT_TIMEOUT_SECONDS = 3
_START_TIMEOUT_SECONDS = 60


class DemoDatabaseError(Exception):
    """No usable database could be found or started."""


@dataclasses.dataclass
class DemoDatabase:
    """A database URL and, for an embedded server, how to stop it.

    ``source`` is ``env``, ``local``, ``pgserver`` or ``system``. ``stop()``
    is idempotent and does nothing for a server we did not start.
    """

    url: str
    source: str
    description: str
    _stopper: Callable[[], None] | None = dataclasses.field(default=None, repr=False)

    @property
    def embedded(self) -> bool:
        return self._stopper is not None

    def stop(self) -> None:
        stopper, self._stopper = self._stopper, None
        if stopper is not None:
            stopper()

    def __enter__(self) -> DemoDatabase:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def find_database(
    dbname: str = DEFAULT_DBNAME,
    *,
    probe: str | None = None,
    embedded: str | None = None,
    env: Mapping[str, str] | None = None,
    log: Callable[[str], None] | None = None,
) -> DemoDatabase:
    """Choose a database as the module docstring says; the caller must stop()."""
    env = os.environ if env is None else env
    say = log or _stderr
    probe = probe or env.get("PULSE_DEMO_PROBE") or DEFAULT_PROBE
    embedded = embedded or env.get("PULSE_DEMO_EMBEDDED") or "auto"
    if embedded not in EMBEDDED_KINDS:
        raise DemoDatabaseError(
            f"embedded server kind {embedded!r} is unknown; "
            f"use one of {', '.join(EMBEDDED_KINDS)}"
        )

    url = _url_from_env(env, dbname)
    if url is not None:
        created = _ensure_database(url)
        say(f"using the database from the environment: {_redact(url)}{created}")
        return DemoDatabase(url, "env", "the database from DB_URL/DB_HOST")

    host, port = _split_probe(probe)
    answered, why = _probe(host, port)
    if answered:
        url = f"postgresql://postgres@{_url_host(host)}:{port}/{quote(dbname, safe='')}"
        try:
            created = _ensure_database(url)
        except DemoDatabaseError as exc:
            say(f"the server at {host}:{port} answered but cannot be used: {exc}")
        else:
            say(f"using the local server at {host}:{port}, database {dbname}{created}")
            return DemoDatabase(url, "local", f"the server at {host}:{port}")
    else:
        say(f"no server answers at {host}:{port} ({why})")

    return _start_embedded(dbname, embedded, say)


# -- the environment and the probe -------------------------------------------


def _url_from_env(env: Mapping[str, str], dbname: str) -> str | None:
    if env.get("DB_URL"):
        return env["DB_URL"]
    if not env.get("DB_HOST"):
        return None
    user = quote(env.get("DB_USER", "postgres"), safe="")
    if env.get("DB_PASSWORD"):
        user += ":" + quote(env["DB_PASSWORD"], safe="")
    port = env.get("DB_PORT", "5432")
    name = quote(env.get("DB_NAME", dbname), safe="")
    return f"postgresql://{user}@{_url_host(env['DB_HOST'])}:{port}/{name}"


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _split_probe(probe: str) -> tuple[str, int]:
    host, sep, port = probe.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise DemoDatabaseError(f"probe address {probe!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def _probe(host: str, port: int) -> tuple[bool, str]:
    """Whether anything accepts TCP connections there (not yet whether we
    may log in: _ensure_database finds that out)."""
    try:
        with socket.create_connection((host, port), timeout=_CONNECT_TIMEOUT_SECONDS):
            return True, "accepting connections"
    except OSError as exc:
        return False, exc.strerror or type(exc).__name__


def _ensure_database(url: str) -> str:
    """Create the URL's database if it is missing; returns a note for the log."""
    params = psycopg2.extensions.parse_dsn(url)
    dbname = params.get("dbname") or params.get("user") or "postgres"
    try:
        conn = psycopg2.connect(url, connect_timeout=_CONNECT_TIMEOUT_SECONDS)
        conn.close()
        return ""
    except psycopg2.OperationalError as exc:
        if f'database "{dbname}" does not exist' not in str(exc):
            raise DemoDatabaseError(_first_line(exc)) from exc

    params["dbname"] = "postgres"
    maintenance = psycopg2.extensions.make_dsn(**params)
    try:
        conn = psycopg2.connect(maintenance, connect_timeout=_CONNECT_TIMEOUT_SECONDS)
    except psycopg2.OperationalError as exc:
        raise DemoDatabaseError(_first_line(exc)) from exc
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    except psycopg2.errors.DuplicateDatabase:
        return ""  # another process created it between our two connections
    except psycopg2.Error as exc:
        raise DemoDatabaseError(
            f"cannot create database {dbname!r}: {_first_line(exc)}"
        ) from exc
    finally:
        conn.close()
    return " (created)"


# -- embedded servers ---------------------------------------------------------


def _start_embedded(dbname: str, kind: str, say: Callable[[str], None]) -> DemoDatabase:
    if kind == "none":
        raise DemoDatabaseError(
            "no database: set DB_URL, start Postgres on the probe address, "
            "or allow an embedded server (--embedded auto)"
        )
    failures = []
    if kind in ("auto", "pgserver"):
        try:
            return _start_pgserver(dbname, say)
        except Exception as exc:  # any pgserver failure: try the next kind
            failures.append(f"pgserver: {_first_line(exc)}")
            say(f"pgserver could not start a server: {_first_line(exc)}")
    if kind in ("auto", "system"):
        try:
            return _start_system(dbname, say)
        except (OSError, subprocess.SubprocessError, DemoDatabaseError) as exc:
            failures.append(f"system binaries: {_first_line(exc)}")
            say(f"the machine's PostgreSQL binaries could not start a server: {exc}")
    raise DemoDatabaseError(
        "no embedded server could be started ("
        + "; ".join(failures)
        + "); install Postgres or `pip install pgserver`, or set DB_URL"
    )


def _start_pgserver(dbname: str, say: Callable[[str], None]) -> DemoDatabase:
    with warnings.catch_warnings():
        # platformdirs warns that XDG_RUNTIME_DIR is unset and uses /tmp.
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
        from pgserver.postgres_server import get_server  # the "demo" extra

    # A folder under /tmp rather than the user's state folder: as root,
    # pgserver runs Postgres as its own OS user and opens every parent folder
    # of the data directory to it, which we do not want done to $HOME.
    pgdata = pathlib.Path(tempfile.mkdtemp(prefix="pulse-demo-pgserver-"))
    say(f"starting an embedded PostgreSQL (pgserver) in {pgdata} ...")
    try:
        server = get_server(pgdata, cleanup_mode="delete")
    except BaseException:
        shutil.rmtree(pgdata, ignore_errors=True)
        raise
    info = server.get_postmaster_info()

    def stop() -> None:
        server.cleanup()
        shutil.rmtree(pgdata, ignore_errors=True)

    try:
        # pgserver listens on a Unix socket only.
        url = (
            f"postgresql://postgres@/{quote(dbname, safe='')}"
            f"?host={quote(str(info.socket_dir), safe='')}"
            + (f"&port={info.port}" if info.port else "")
        )
        created = _ensure_database(url)
    except BaseException:
        stop()
        raise
    say(
        f"using an embedded PostgreSQL (pgserver, socket in {info.socket_dir}), "
        f"database {dbname}{created}"
    )
    return DemoDatabase(url, "pgserver", f"pgserver in {pgdata}", stop)


def _system_bindir() -> pathlib.Path:
    candidates = [pathlib.Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin")]
    candidates.sort(key=lambda p: _version_key(p.parent.name), reverse=True)
    for bindir in candidates:
        if (bindir / "initdb").exists() and (bindir / "pg_ctl").exists():
            return bindir
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return pathlib.Path(on_path).parent
    raise DemoDatabaseError(
        "no initdb/pg_ctl under /usr/lib/postgresql/*/bin or on PATH"
    )


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())


def _start_system(dbname: str, say: Callable[[str], None]) -> DemoDatabase:
    bindir = _system_bindir()
    as_user: list[str] = []
    owner = None
    if os.geteuid() == 0:
        # Postgres refuses to run as root.
        import pwd

        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            raise DemoDatabaseError(
                "running as root and there is no 'postgres' OS user to run Postgres as"
            ) from None
        as_user = ["runuser", "-u", "postgres", "--"]

    root = pathlib.Path(tempfile.mkdtemp(prefix="pulse-demo-pg-"))
    pgdata = root / "data"
    logfile = root / "postgres.log"
    if owner is not None:
        os.chown(root, owner.pw_uid, owner.pw_gid)
    port = free_port()
    say(f"starting an embedded PostgreSQL ({bindir}) in {root} on 127.0.0.1:{port} ...")

    started = False

    def stop() -> None:
        if started:
            subprocess.run(
                [
                    *as_user,
                    str(bindir / "pg_ctl"),
                    "-D",
                    str(pgdata),
                    "-m",
                    "fast",
                    "-w",
                    "stop",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=False,
                timeout=_START_TIMEOUT_SECONDS,
            )
        shutil.rmtree(root, ignore_errors=True)

    try:
        _run(
            "initdb",
            [
                *as_user,
                str(bindir / "initdb"),
                "-D",
                str(pgdata),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
            ],
        )
        started = True  # from here on, stop() must try pg_ctl stop
        _run(
            "pg_ctl start",
            [
                *as_user,
                str(bindir / "pg_ctl"),
                "-D",
                str(pgdata),
                "-l",
                str(logfile),
                "-w",
                "-t",
                str(_START_TIMEOUT_SECONDS),
                "-o",
                f"-h 127.0.0.1 -p {port} -k {root}",
                "start",
            ],
        )
        url = f"postgresql://postgres@127.0.0.1:{port}/{quote(dbname, safe='')}"
        created = _ensure_database(url)
    except BaseException:
        stop()
        raise
    say(
        f"using an embedded PostgreSQL ({bindir.parent.name}) on 127.0.0.1:{port}, "
        f"database {dbname}{created}"
    )
    return DemoDatabase(url, "system", f"{bindir} in {root}", stop)


def _run(name: str, command: list[str]) -> None:
    done = subprocess.run(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
        timeout=_START_TIMEOUT_SECONDS,
    )
    if done.returncode != 0:
        tail = " | ".join(done.stdout.strip().splitlines()[-5:])
        raise DemoDatabaseError(f"{name} exited with {done.returncode}: {tail}")


# -- small shared pieces ------------------------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (another process may take it
    before the caller does; callers retry on a bind failure)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _redact(url: str) -> str:
    try:
        params = psycopg2.extensions.parse_dsn(url)
    except psycopg2.ProgrammingError:
        return "(unparsable URL)"
    if "password" in params:
        return url.replace(quote(params["password"], safe=""), "***").replace(
            params["password"], "***"
        )
    return url


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _stderr(message: str) -> None:
    print(f"demo_db: {message}", file=sys.stderr, flush=True)


# -- the command line ---------------------------------------------------------


def _parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    command: list[str] = []
    if "--" in argv:
        split = argv.index("--")
        argv, command = argv[:split], argv[split + 1 :]
    parser = argparse.ArgumentParser(
        prog="demo_db.py",
        description="Find or start a Postgres for the pulse demo.",
        epilog="With `-- CMD ...`, runs CMD with DB_URL set and returns its exit code.",
    )
    parser.add_argument(
        "--dbname",
        default=DEFAULT_DBNAME,
        help=f"database to use, created if missing (default {DEFAULT_DBNAME})",
    )
    parser.add_argument(
        "--probe",
        help="where to look for a running server, HOST:PORT "
        f"(default: $PULSE_DEMO_PROBE or {DEFAULT_PROBE})",
    )
    parser.add_argument(
        "--embedded",
        choices=EMBEDDED_KINDS,
        help="which embedded server may be started if the probe finds none "
        "(default: $PULSE_DEMO_EMBEDDED or auto: pgserver, then the system's)",
    )
    return parser.parse_args(argv), command


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every ``finally`` runs."""


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    def on_term(signum: int, frame: FrameType | None) -> None:
        raise _Terminated

    previous_term = signal.signal(signal.SIGTERM, on_term)
    # Also when started in the background, where SIGINT comes ignored.
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        signal.signal(signal.SIGINT, previous_int)


def _run_command(command: list[str], url: str) -> int:
    child = subprocess.Popen(command, env={**os.environ, "DB_URL": url})
    try:
        return child.wait()
    except KeyboardInterrupt as interrupt:
        # Ctrl-C in a terminal reached the child too; a SIGTERM sent to us
        # alone is passed on. Either way the child gets time to shut down
        # before its database goes away.
        if isinstance(interrupt, _Terminated):
            child.terminate()
        return _stop_child(child, grace_seconds=15.0)


def _stop_child(child: subprocess.Popen[bytes], grace_seconds: float) -> int:
    """Wait for a child that was asked to stop; SIGTERM, then SIGKILL it."""
    for ask in (None, child.terminate, child.kill):
        if ask is not None:
            ask()
        try:
            return child.wait(grace_seconds)
        except subprocess.TimeoutExpired:
            continue
    return child.wait()


def main(argv: list[str] | None = None) -> int:
    args, command = _parse_args(sys.argv[1:] if argv is None else argv)
    with _terminate_as_interrupt():
        try:
            database = find_database(
                args.dbname, probe=args.probe, embedded=args.embedded
            )
        except DemoDatabaseError as exc:
            _stderr(f"error: {exc}")
            return 1
        except KeyboardInterrupt:
            return 130
        try:
            if command:
                return _run_command(command, database.url)
            print(database.url, flush=True)
            if database.embedded:
                _stderr("the embedded server runs until Ctrl-C")
                while True:
                    time.sleep(3600)
            return 0
        except KeyboardInterrupt:
            return 130
        finally:
            if database.embedded:
                _stderr("stopping the embedded server")
            database.stop()


if __name__ == "__main__":
    sys.exit(main())
