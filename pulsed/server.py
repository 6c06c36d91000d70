"""pulsed: the pulse server.

Usage:
  pulsed
  pulsed (-h | --help)

pulsed takes its settings from the environment, applies its database
migrations and serves pulse.v1 over gRPC until SIGTERM or SIGINT, which
drain it: no new calls, open streams end (their workers reconnect to
another replica), running calls get PULSE_SHUTDOWN_GRACE_SECONDS.

Environment:
  DB_URL                 postgresql://user:password@host:port/dbname; or
                         DB_HOST, DB_PORT, DB_NAME, DB_USER, DB_PASSWORD
                         [default: postgresql://postgres@127.0.0.1:5432/pulse]
  PULSE_GRPC_ADDR        host:port to listen on [default: 127.0.0.1:50051]
  PULSE_LOG_LEVEL        DEBUG, INFO, WARNING or ERROR [default: INFO]
  PULSE_LOG_FORMAT       text, or json for one JSON object per line
  PULSE_METRICS_ADDR     host:port of a Prometheus /metrics endpoint (off
                         unless set)
  PULSE_AUTH_USERS       user:password[:role],... (password plaintext or a
                         bcrypt hash; role admin, operator, worker or
                         viewer); unset, the server is open to anyone
  PULSE_TLS_CERT         PEM certificate (chain) and private key files;
  PULSE_TLS_KEY          both or neither
  PULSE_*                tuning knobs: pool size, stream limit, lease,
                         backoff, payload limit, retention, polls; see the
                         configuration table in README.md.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
import sys
import threading
from concurrent import futures
from types import FrameType

import grpc
from docopt import DocoptExit, docopt
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from pulse_client._proto.pulse.v1 import pulse_pb2, pulse_pb2_grpc
from pulse_client.errors import PulseError
from pulse_client.logs import configure_logging
from pulsed import systemd, tls
from pulsed.auth import Authenticator, AuthInterceptor
from pulsed.config import Config, ConfigError
from pulsed.database import Database
from pulsed.dispatch import Dispatcher
from pulsed.gate import PauseGate
from pulsed.loops import BackgroundLoop, Promoter, Pruner, Vacuumer, Watchdog
from pulsed.metrics import MetricsEndpoint, ServerCollector
from pulsed.migrate import apply_migrations
from pulsed.notifications import Listener, Notifier
from pulsed.parsing import RequestParsing
from pulsed.readiness import DatabaseProbe
from pulsed.schedules import Scheduler
from pulsed.service import PulseService

log = logging.getLogger(__name__)

SERVICE_NAME = pulse_pb2.DESCRIPTOR.services_by_name["Pulse"].full_name
# Large enough for a SubmitJobs batch of several maximum-size payloads.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


class Server:
    """One pulsed replica: the gRPC server and its background threads."""

    def __init__(self, config: Config) -> None:
        self.config = config
        # First: a bad certificate stops start-up before anything is opened.
        self._tls_credentials = (
            tls.server_credentials(config.tls_cert, config.tls_key)
            if config.tls_cert and config.tls_key
            else None
        )
        # The pool serves the RPCs, the dispatcher, the three writers and
        # the loops; the LISTEN connection comes on top.
        self.db = Database(
            config.db_dsn,
            config.db_pool_size,
            connect_timeout_seconds=config.db_connect_timeout_seconds,
        )
        self.dispatcher = Dispatcher(self.db, config)
        self.promoter = Promoter(self.db, config, on_pending=self.dispatcher.wake)
        self.notifier = Notifier(
            self.db,
            config.notify_coalesce_ms / 1000,
            own_listener_pid=lambda: self.listener.backend_pid,
        )
        self.gate = PauseGate(self.db, config, on_change=self.dispatcher.set_paused)
        self.scheduler = Scheduler(self.db, config, on_fired=self._on_fired)
        self.service = PulseService(
            self.db,
            config,
            self.dispatcher,
            self.promoter,
            self.notifier,
            self.gate,
            self.scheduler,
        )
        self.watchdog = Watchdog(self.db, config, on_retrying=self.promoter.wake)
        self.pruner = Pruner(self.db, config)
        self.vacuumer = Vacuumer(self.db, config)
        self.listener = Listener(
            self.db,
            on_pending=self.dispatcher.wake,
            on_due=self.promoter.wake,
            on_gate=self.gate.wake,
        )
        self.health = health.HealthServicer()
        self.database_probe = DatabaseProbe(
            self.db,
            config,
            on_change=self._set_serving,
            interval_seconds=config.health_seconds,
        )
        self.metrics = (
            MetricsEndpoint(
                config.metrics_addr,
                ServerCollector(
                    self.db, self.dispatcher.streams, lambda: self.gate.paused
                ),
            )
            if config.metrics_addr
            else None
        )
        # None on an open server: no interceptor, every caller anonymous.
        self.authenticator = (
            Authenticator(config.auth_users) if config.auth_users else None
        )
        threads = config.max_streams + config.rpc_threads
        self._executor = futures.ThreadPoolExecutor(
            max_workers=threads, thread_name_prefix="pulse-rpc"
        )
        self.grpc_server = grpc.server(
            self._executor,
            # Parsing first: a request must be a message before anyone
            # looks at who sent it.
            interceptors=[
                RequestParsing(),
                *([AuthInterceptor(self.authenticator)] if self.authenticator else []),
            ],
            # Beyond this the server answers RESOURCE_EXHAUSTED at once
            # instead of queueing calls behind busy threads.
            maximum_concurrent_rpcs=threads,
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.keepalive_time_ms", 20_000),
                ("grpc.keepalive_timeout_ms", 10_000),
                # grpcio times a keepalive ping out by this (default 60 s),
                # not by keepalive_timeout_ms: without it a frozen worker's
                # stream held its slot and thread for 80 s instead of 30 s.
                ("grpc.http2.ping_timeout_ms", 10_000),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
                ("grpc.so_reuseport", 0),
            ],
        )
        pulse_pb2_grpc.add_PulseServicer_to_server(self.service, self.grpc_server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.grpc_server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME),
            self.grpc_server,
        )
        self.port = 0
        self._stopped = threading.Event()

    def start(self) -> None:
        """Migrate, bind, and start every thread. Returns once serving."""
        applied = apply_migrations(self.db)
        if applied:
            log.info("server.migrated ids=%s", ",".join(applied))
        try:
            if self._tls_credentials is not None:
                self.port = self.grpc_server.add_secure_port(
                    self.config.grpc_addr, self._tls_credentials
                )
            else:
                self.port = self.grpc_server.add_insecure_port(self.config.grpc_addr)
        except RuntimeError:  # grpcio reports a failed bind this way
            self.port = 0
        if self.port == 0:
            raise ConfigError(
                f"PULSE_GRPC_ADDR={self.config.grpc_addr!r}: cannot listen there "
                "(address in use or not local)"
            )
        self.service.start()
        self.notifier.start()
        # Come up paused if dispatch is paused (the claim checks anyway;
        # this spares the claims that could not succeed).
        self.gate.refresh()
        self.dispatcher.start()
        for loop in self._loops():
            loop.start()
        self.listener.start()
        if self.metrics is not None:
            try:
                self.metrics.start()
            except OSError as exc:
                raise ConfigError(
                    f"PULSE_METRICS_ADDR={self.config.metrics_addr!r}: cannot "
                    f"listen there ({exc.strerror or exc})"
                ) from None
        self.grpc_server.start()
        self._set_serving(True)
        log.info(
            "server.started addr=%s port=%d pid=%d auth=%s tls=%s",
            self.config.grpc_addr,
            self.port,
            os.getpid(),
            "on" if self.config.auth_users else "off",
            "on" if self._tls_credentials is not None else "off",
        )
        self._warn_about_exposure()

    def stop(self) -> None:
        """Stop taking calls, end the streams, flush, close. Idempotent."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        log.info("server.stopping grace=%.1fs", self.config.shutdown_grace_seconds)
        self.health.enter_graceful_shutdown()
        done = self.grpc_server.stop(self.config.shutdown_grace_seconds)
        # Streams end now, so their workers reconnect to another replica;
        # unary calls in flight get the grace period.
        self.service.stop()
        done.wait(self.config.shutdown_grace_seconds)
        # grpcio leaves its executor's threads alive; they are ours to end.
        self._executor.shutdown(wait=True, cancel_futures=True)
        self.notifier.stop()
        self.listener.stop()
        for loop in self._loops():
            loop.stop()
        self.dispatcher.stop()
        if self.metrics is not None:
            self.metrics.stop()
        self.db.close()
        log.info("server.stopped")

    def _loops(self) -> list[BackgroundLoop]:
        loops: list[BackgroundLoop] = [
            self.promoter,
            self.watchdog,
            self.pruner,
            self.gate,
            self.scheduler,
            self.database_probe,
        ]
        if self.config.vacuum_seconds > 0:
            loops.append(self.vacuumer)
        return loops

    def _warn_about_exposure(self) -> None:
        addr = self.config.grpc_addr
        if not self.config.auth_users:
            log.warning(
                "auth.off addr=%s: PULSE_AUTH_USERS is not set, so anyone who "
                "can reach this address may do anything, as 'anonymous' with "
                "the admin role; set PULSE_AUTH_USERS to require credentials",
                addr,
            )
        elif self._tls_credentials is None and not _is_loopback(addr):
            log.warning(
                "auth.without_tls addr=%s: passwords cross the network in clear "
                "text; set PULSE_TLS_CERT and PULSE_TLS_KEY",
                addr,
            )

    def _set_serving(self, serving: bool) -> None:
        """Health follows the database; never back to SERVING once stopping."""
        if self._stopped.is_set():
            return
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", SERVICE_NAME):
            self.health.set(name, status)

    def _on_fired(self, pending_topics: set[str], any_scheduled: bool) -> None:
        """A schedule fired jobs: wake who can use them, here and elsewhere."""
        if pending_topics:
            self.dispatcher.wake(pending_topics)
        if any_scheduled:
            self.promoter.wake()
        self.notifier.announce(pending_topics, due=any_scheduled)

    def wait(self) -> None:
        self.grpc_server.wait_for_termination()


def _is_loopback(addr: str) -> bool:
    host = addr.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``pulsed`` command."""
    try:
        docopt(__doc__ or "", sys.argv[1:] if argv is None else argv)
    except DocoptExit as exc:
        print(exc, file=sys.stderr)
        sys.exit(2)
    try:
        config = Config.from_env()
    except ConfigError as exc:
        print(f"pulsed: {exc}", file=sys.stderr)
        sys.exit(2)
    configure_logging(config.log_level, config.log_format)
    try:
        server = Server(config)
        server.start()
    except ConfigError as exc:
        print(f"pulsed: {exc}", file=sys.stderr)
        sys.exit(2)
    except PulseError as exc:
        print(f"pulsed: cannot start: {exc}", file=sys.stderr)
        sys.exit(1)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("server.signal signal=%s", signal.Signals(signum).name)
        threading.Thread(target=server.stop, name="pulse-shutdown").start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    systemd.notify("READY=1")
    server.wait()
    systemd.notify("STOPPING=1")
    server.stop()


if __name__ == "__main__":
    main()
