"""pulse_web: the pulse dashboard (``pulse-web``).

A Flask app that talks to pulsed only through the SDK::

    from pulse_web.app import create_app
    from pulse_web.config import WebConfig

    app = create_app(WebConfig.from_environ(os.environ))

``pulse_web.server.main`` serves it with waitress.
"""
