"""pulse-worker: run an application's Pulse handlers in worker processes.

Usage:
  pulse-worker MODULE:OBJECT [--processes=N] [--concurrency=N] [--addr=ADDR]
               [--grace=SECONDS] [--log-level=LEVEL]
  pulse-worker (-h | --help)

Arguments:
  MODULE:OBJECT      The module to import and the name of its Pulse object,
                     for example myapp.tasks:pulse.

Options:
  --processes=N      Worker processes to run [default: 1].
  --concurrency=N    Handler threads per process (default: the object's own).
  --addr=ADDR        Server address(es), comma-separated; sets PULSE_ADDR for
                     the application.
  --grace=SECONDS    How long running jobs get to finish on SIGTERM
                     (default: the object's own).
  --log-level=LEVEL  DEBUG, INFO, WARNING or ERROR [default: INFO].
  -h --help          Show this screen.

SIGTERM or SIGINT drains every process: no new work is taken, running jobs
finish (within the grace period) and report, then the processes exit. A
process that dies is started again after a short pause.
"""

from __future__ import annotations

import importlib
import logging
import multiprocessing
import os
import signal
import sys
import time
from multiprocessing.process import BaseProcess
from typing import Any

from docopt import DocoptExit, docopt

log = logging.getLogger("pulse_client.worker_cli")

_RESTART_PAUSE_SECONDS = 1.0
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class UsageError(Exception):
    """The command line cannot be used as given."""


def load_pulse(target: str) -> Any:
    """Import ``module:object`` and return the object (a Pulse)."""
    from pulse_client.client import Pulse

    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise UsageError(
            f"{target!r} is not MODULE:OBJECT (for example myapp.tasks:pulse)"
        )
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"cannot import {module_name!r}: {exc}") from None
    obj = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise UsageError(
                f"module {module_name!r} has no attribute {attr!r}"
            ) from None
    if not isinstance(obj, Pulse):
        raise UsageError(
            f"{target} is a {type(obj).__name__}, not a pulse_client.Pulse"
        )
    if not obj.topics:
        raise UsageError(f"{target} has no handlers registered")
    return obj


def _child(
    target: str, concurrency: int | None, grace: float | None, level: str
) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(processName)s %(name)s %(message)s",
    )
    pulse = load_pulse(target)
    if concurrency is not None:
        pulse.concurrency = concurrency
    if grace is not None:
        pulse.grace_seconds = grace
    try:
        pulse.run()
    finally:
        pulse.close()


def _number(options: dict[str, Any], name: str, kind: type, minimum: float) -> Any:
    raw = options[name]
    if raw is None:
        return None
    try:
        value = kind(raw)
    except ValueError:
        raise UsageError(f"{name} must be a number, got {raw!r}") from None
    if value < minimum:
        raise UsageError(f"{name} must be at least {minimum}, got {raw!r}")
    return value


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``pulse-worker`` command."""
    try:
        options = docopt(__doc__, argv)
    except DocoptExit as exc:
        print(exc, file=sys.stderr)
        sys.exit(2)
    try:
        processes = _number(options, "--processes", int, 1)
        concurrency = _number(options, "--concurrency", int, 1)
        grace = _number(options, "--grace", float, 0)
        level = options["--log-level"].upper()
        if level not in _LOG_LEVELS:
            raise UsageError(f"--log-level must be one of {', '.join(_LOG_LEVELS)}")
        if options["--addr"]:
            os.environ["PULSE_ADDR"] = options["--addr"]
        target = options["MODULE:OBJECT"]
        load_pulse(target)  # fail fast, in the parent, with a clear message
    except UsageError as exc:
        print(f"pulse-worker: {exc}", file=sys.stderr)
        sys.exit(2)
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    sys.exit(_supervise(target, processes, concurrency, grace, level))


def _supervise(
    target: str,
    processes: int,
    concurrency: int | None,
    grace: float | None,
    level: str,
) -> int:
    context = multiprocessing.get_context("spawn")
    stopping = False

    def start(index: int) -> BaseProcess:
        process = context.Process(
            target=_child,
            args=(target, concurrency, grace, level),
            name=f"pulse-worker-{index}",
        )
        process.start()
        log.info("worker_cli.started process=%s pid=%s", process.name, process.pid)
        return process

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        if not stopping:
            log.info("worker_cli.draining signal=%s", signal.Signals(signum).name)
        stopping = True
        for process in children:
            if process.is_alive() and process.pid:
                os.kill(process.pid, signal.SIGTERM)

    children = [start(i) for i in range(processes)]
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while any(p.is_alive() for p in children) or not stopping:
        time.sleep(0.2)
        if stopping:
            continue
        for index, process in enumerate(children):
            if not process.is_alive():
                log.warning(
                    "worker_cli.process_died process=%s exitcode=%s; restarting",
                    process.name,
                    process.exitcode,
                )
                time.sleep(_RESTART_PAUSE_SECONDS)
                if not stopping:
                    children[index] = start(index)
    codes = [p.exitcode for p in children]
    log.info("worker_cli.stopped exitcodes=%s", codes)
    return 0 if all(code == 0 for code in codes) else 1


if __name__ == "__main__":
    main()
