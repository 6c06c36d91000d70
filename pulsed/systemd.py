"""systemd's notify protocol: tell the service manager when pulsed is ready.

With ``Type=notify`` systemd sets ``NOTIFY_SOCKET``; pulsed sends
``READY=1`` once it serves (migrations applied, port bound, threads up) and
``STOPPING=1`` when it starts to drain. Without the variable nothing is sent.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


def notify(state: str) -> bool:
    """Send ``state`` (for example ``READY=1``); True if systemd was told."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError as exc:
        log.warning("systemd.notify_failed state=%s error=%s", state, exc)
        return False
    return True
