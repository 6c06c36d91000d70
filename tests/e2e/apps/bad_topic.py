"""A handler registered for a topic pulse does not accept."""

from __future__ import annotations

from typing import Any

from pulse_client import Pulse

pulse = Pulse()


@pulse.handler("has space")
def handle(args: Any) -> None:
    pass
