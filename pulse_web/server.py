"""pulse-web: the pulse dashboard, served by waitress.

Usage:
  pulse-web
  pulse-web (-h | --help)

pulse-web takes its settings from the environment and serves the dashboard
until SIGTERM or SIGINT. It talks to pulsed through the SDK, like any
other client.

Environment:
  PULSE_ADDR                 pulsed address(es), comma-separated
                             [default: localhost:50051]
  PULSE_UI_HOST              address to listen on [default: 127.0.0.1]
  PULSE_UI_PORT              port to listen on [default: 8080]
  PULSE_USER, PULSE_PASSWORD fixed service credentials: every visitor acts
                             under them and there is no login page. Unset,
                             the dashboard asks pulsed: an open server needs
                             no login, one with auth gets a login page.
  PULSE_TLS, PULSE_CA_FILE   reach pulsed over TLS (1 to turn on), with this
                             CA certificate
  PULSE_UI_SECRET            key that signs the session cookie; unset, one is
                             made at start and sessions end on restart
  PULSE_UI_*                 more: session idle time and count, refresh
                             interval, call timeout; see README.md.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from types import FrameType

from docopt import DocoptExit, docopt
from waitress.server import create_server  # type: ignore[import-untyped]

from pulse_web.app import close_app, create_app
from pulse_web.config import ConfigError, WebConfig

log = logging.getLogger(__name__)

# Requests served at once; each holds one thread while pulsed answers.
THREADS = 8


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``pulse-web`` command."""
    try:
        docopt(__doc__ or "", sys.argv[1:] if argv is None else argv)
    except DocoptExit as exc:
        print(exc, file=sys.stderr)
        sys.exit(2)
    try:
        config = WebConfig.from_environ(os.environ)
    except ConfigError as exc:
        print(f"pulse-web: {exc}", file=sys.stderr)
        sys.exit(2)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )

    app = create_app(config)
    try:
        server = create_server(
            app, host=config.host, port=config.port, threads=THREADS, ident="pulse-web"
        )
    except OSError as exc:
        close_app(app)
        print(
            f"pulse-web: cannot listen on {config.host}:{config.port}: {exc}; "
            "set PULSE_UI_PORT (or PULSE_UI_HOST) to a free one",
            file=sys.stderr,
        )
        sys.exit(1)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("web.stopping signal=%s", signal.Signals(signum).name)
        # waitress's loop lets SystemExit through (and only that, besides
        # KeyboardInterrupt), stops its threads and returns.
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info(
        "web.started url=http://%s:%d pulsed=%s sign_in=%s secret=%s",
        config.host,
        config.port,
        config.addr,
        "fixed" if config.fixed_credentials else "follows pulsed",
        "PULSE_UI_SECRET" if config.secret_from_environment else "generated",
    )
    try:
        server.run()
    finally:
        server.close()
        close_app(app)
    log.info("web.stopped")


if __name__ == "__main__":
    main()
