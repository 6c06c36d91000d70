"""A Pulse object with no handlers: nothing for ``pulse-worker`` to run."""

from __future__ import annotations

from pulse_client import Pulse

pulse = Pulse()
