"""A throwaway PostgreSQL cluster that a test may stop, start and break.

The shared server that ``TEST_DB_URL`` names is never touched: this one
lives in its own temporary directory, listens on a free loopback port and
keeps its socket in that directory. Postgres refuses to run as root, so
when the tests run as root every command runs as the ``postgres`` OS user
(``runuser``) and the directory is handed to that user.

Use the ``pg_cluster`` fixture (a started cluster, destroyed after the test)
or ``PgCluster`` directly.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pathlib
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Mapping

import psycopg2
import pytest

from tests.fixtures.reports import register_log

_SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
_SETTINGS = """
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = '{socket_dir}'
max_connections = 100
shared_buffers = 32MB
# Durability is not under test here; speed is welcome.
fsync = off
synchronous_commit = off
full_page_writes = off
log_min_messages = warning
"""


def find_bindir() -> pathlib.Path:
    """Where initdb and pg_ctl live: PG_BINDIR, pg_config, or the newest
    /usr/lib/postgresql/*/bin."""
    if os.environ.get("PG_BINDIR"):
        return pathlib.Path(os.environ["PG_BINDIR"])
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2])
    )
    if candidates:
        return pathlib.Path(candidates[-1])
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        return pathlib.Path(out.stdout.strip())
    raise FileNotFoundError("no PostgreSQL binaries found; set PG_BINDIR")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PgCluster:
    """A private PostgreSQL cluster: ``init()``, ``start()``, ``stop()``,
    ``destroy()``. Not thread-safe.

    ``settings`` are written to ``postgresql.conf`` after the defaults, so
    they win: ``{"synchronous_commit": "on"}`` for a test that crashes the
    cluster and expects every acknowledged commit to survive.
    """

    def __init__(
        self,
        bindir: pathlib.Path | None = None,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        self.bindir = bindir or find_bindir()
        self.settings = dict(settings or {})
        self.root = pathlib.Path(tempfile.mkdtemp(prefix="pulse-pg-"))
        self.data_dir = self.root / "data"
        self.socket_dir = self.root / "socket"
        self.log_path = self.root / "postgres.log"
        self.port = _free_port()
        self._as_postgres = os.geteuid() == 0
        self.running = False

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def init(self) -> None:
        self.socket_dir.mkdir()
        if self._as_postgres:
            # mkdtemp made the directory 0700 for root; postgres needs it.
            user = pwd.getpwnam("postgres")
            for path in (self.root, self.socket_dir):
                os.chown(path, user.pw_uid, user.pw_gid)
        self._run(
            "initdb",
            "-D",
            str(self.data_dir),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )
        settings = _SETTINGS.format(port=self.port, socket_dir=self.socket_dir)
        settings += "".join(
            f"{name} = '{value}'\n" for name, value in self.settings.items()
        )
        self._run_shell_append(self.data_dir / "postgresql.conf", settings)

    def start(self) -> None:
        self._run(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_path),
            "-w",
            "-t",
            "60",
            "start",
        )
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        """Stop the cluster: ``fast`` (disconnect clients), ``immediate``
        (as a crash would) or ``smart``."""
        self._run(
            "pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "-t", "60", "stop"
        )
        self.running = False

    def create_database(self, name: str) -> str:
        conn = psycopg2.connect(self.admin_url, connect_timeout=5)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        return self.url(name)

    def drop_database(self, name: str) -> None:
        conn = psycopg2.connect(self.admin_url, connect_timeout=5)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            conn.close()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def destroy(self) -> None:
        if self.running:
            with contextlib.suppress(subprocess.CalledProcessError):
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def _command(self, program: str, *args: str) -> list[str]:
        command = [str(self.bindir / program), *args]
        if self._as_postgres:
            runuser = shutil.which("runuser", path=_SYSTEM_PATH) or "runuser"
            command = [runuser, "-u", "postgres", "--", *command]
        return command

    def _run(self, program: str, *args: str) -> None:
        result = subprocess.run(
            self._command(program, *args),
            capture_output=True,
            text=True,
            env={"PATH": _SYSTEM_PATH, "LANG": "C", "LC_ALL": "C"},
            cwd=self.root,
            timeout=120,
        )
        if result.returncode != 0:
            raise subprocess.CalledProcessError(
                result.returncode, result.args, result.stdout, result.stderr
            )

    def _run_shell_append(self, path: pathlib.Path, text: str) -> None:
        # The file belongs to postgres; appending as root keeps its owner.
        with open(path, "a") as conf:
            conf.write(text)


@pytest.fixture
def pg_cluster(request: pytest.FixtureRequest) -> Iterator[PgCluster]:
    """A started throwaway cluster, destroyed after the test."""
    cluster = PgCluster()
    register_log(
        request.node, f"throwaway postgres on port {cluster.port}", cluster.log
    )
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()
