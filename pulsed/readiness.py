"""Readiness: pulsed reports NOT_SERVING while its database is unreachable.

A probe runs ``SELECT 1`` every ``PULSE_HEALTH_SECONDS`` on a pooled
connection and flips the gRPC health status when the answer changes, so a
load balancer, Kubernetes or a container health check stops sending work
to a replica that could not store it, and sends it again once it can.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from pulse_client.errors import PulseError
from pulsed.config import Config
from pulsed.database import Database
from pulsed.loops import BackgroundLoop

log = logging.getLogger(__name__)

PROBE = "SELECT 1"


class DatabaseProbe(BackgroundLoop):
    """Calls ``on_change(reachable)`` whenever the database's reachability
    changes; starts out assuming it is reachable."""

    name = "database-probe"

    def __init__(
        self,
        db: Database,
        config: Config,
        on_change: Callable[[bool], None],
        interval_seconds: float = 1.0,
    ) -> None:
        super().__init__(db, config)
        self._on_change = on_change
        self._interval_seconds = interval_seconds
        self.reachable = True

    def step(self) -> float:
        try:
            with self.db.transaction() as cur:
                cur.execute(PROBE)
            reachable = True
        except PulseError as exc:
            reachable = False
            if self.reachable:
                log.warning("server.database_unreachable error=%s", exc)
        if reachable != self.reachable:
            if reachable:
                log.info("server.database_reachable")
            self.reachable = reachable
            self._on_change(reachable)
        return self._interval_seconds
