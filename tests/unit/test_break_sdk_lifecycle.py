"""Pulse.run() refuses a second concurrent run on the same client.

Found by breaking: ``Pulse.run()`` builds a new Runtime on every call, so the
Runtime's own guard ("Pulse.run() is already running (or has run) on this
client") never fires. A second ``run()`` from another thread started a
second worker with the same worker id beside the first; ``stop()`` then
stopped only the second, and the first kept running until ``close()``
made it raise ``ClientClosed``.

No server is needed: nothing listens on the address, so the first run()
keeps trying to connect until stopped.
"""

from __future__ import annotations

import threading

from pulse_client import Pulse
from tests.fixtures.servers import free_port

WAIT_SECONDS = 10.0


def _run_in_thread(pulse: Pulse) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def target() -> None:
        try:
            pulse.run()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, name="break-run", daemon=True)
    thread.start()
    return thread, errors


def test_a_second_concurrent_run_raises_and_stop_ends_the_first() -> None:
    pulse = Pulse(f"127.0.0.1:{free_port()}", concurrency=1, grace_seconds=1)
    pulse.register("break.lifecycle", lambda args: None)
    first, first_errors = _run_in_thread(pulse)
    try:
        first.join(0.5)
        assert first.is_alive(), f"run() ended early: {first_errors}"

        second, second_errors = _run_in_thread(pulse)
        second.join(WAIT_SECONDS)
        assert not second.is_alive(), "a second run() on the same client runs too"
        assert len(second_errors) == 1
        assert isinstance(second_errors[0], RuntimeError)

        # The one stop() ends the run that is really running.
        pulse.stop()
        first.join(WAIT_SECONDS)
        assert not first.is_alive(), "stop() did not end the first run()"
        assert first_errors == []
    finally:
        pulse.close()
        first.join(WAIT_SECONDS)
