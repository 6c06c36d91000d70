"""pulse-worker: run an application's Pulse handlers in worker processes.

Usage:
  pulse-worker MODULE:OBJECT [--processes=N] [--concurrency=N] [--prefetch=N]
               [--addr=ADDR] [--grace=SECONDS] [--log-level=LEVEL]
               [--log-format=FORMAT]
  pulse-worker (-h | --help)

Arguments:
  MODULE:OBJECT      The module to import and the name of its Pulse object,
                     for example myapp.tasks:pulse.

Options:
  --processes=N      Worker processes to run [default: 1].
  --concurrency=N    Handler threads per process (default: the object's own).
  --prefetch=N       Jobs each process holds beyond its busy threads, ready
                     to start (default: the object's own; see Pulse).
  --addr=ADDR        Server address(es), comma-separated; sets PULSE_ADDR for
                     the application.
  --grace=SECONDS    How long running jobs get to finish on SIGTERM
                     (default: the object's own).
  --log-level=LEVEL  DEBUG, INFO, WARNING or ERROR [default: INFO].
  --log-format=FORMAT
                     text or json (one JSON object per line); default:
                     PULSE_LOG_FORMAT, else text.
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
import re
import signal
import sys
import time
from multiprocessing.process import BaseProcess
from typing import Any

from docopt import DocoptExit, docopt

from pulse_client.errors import PulseError
from pulse_client.limits import MAX_PREFETCH
from pulse_client.logs import LOG_FORMATS, configure_logging
from pulse_client.worker import FATAL_ERRORS

log = logging.getLogger("pulse_client.worker_cli")

_RESTART_PAUSE_SECONDS = 1.0
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_LOG_FORMAT = "%(asctime)s %(levelname)s %(processName)s %(name)s %(message)s"
# A child exits with this code when a restart cannot help (EX_CONFIG).
EXIT_FATAL = 78


class UsageError(Exception):
    """The command line cannot be used as given."""


def load_pulse(target: str) -> Any:
    """Import ``module:object`` and return the object (a Pulse)."""
    from pulse_client.client import Pulse  # late: keeps --help fast

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
    except (PulseError, TypeError) as exc:
        # register() refusing a topic or a handler while the module loads.
        raise UsageError(f"{module_name!r} failed to load: {exc}") from None
    obj: Any = module
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
    target: str,
    concurrency: int | None,
    prefetch: int | None,
    grace: float | None,
    level: str,
) -> None:
    # Only the supervisor hears the terminal's Ctrl-C and forwards one
    # SIGTERM per signal, so a child never mistakes one Ctrl-C for two.
    os.setpgrp()
    pulse: Any = None
    stop_requested = False

    def early_stop(signum: int, frame: object) -> None:
        # A stop that arrives while the application is still importing.
        nonlocal stop_requested
        stop_requested = True
        if pulse is not None:
            pulse.stop()

    signal.signal(signal.SIGTERM, early_stop)
    signal.signal(signal.SIGINT, early_stop)
    _configure_logging(level)
    try:
        pulse = load_pulse(target)
        if concurrency is not None:
            pulse.concurrency = concurrency
        if prefetch is not None:
            pulse.prefetch = prefetch
        if grace is not None:
            pulse.grace_seconds = grace
        if stop_requested:
            pulse.stop()
        pulse.run()
    except (UsageError, *FATAL_ERRORS) as exc:
        log.error("worker_cli.fatal error=%s", exc)
        sys.exit(EXIT_FATAL)
    finally:
        if pulse is not None:
            pulse.close()


def unknown_options(doc: str, argv: list[str]) -> list[str]:
    """Options in ``argv`` that the usage text does not define."""
    known = set(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", doc))
    return [
        arg.split("=", 1)[0]
        for arg in argv
        if arg.startswith("-") and arg != "-" and arg.split("=", 1)[0] not in known
    ]


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
    doc = __doc__ or ""
    args = sys.argv[1:] if argv is None else argv
    unknown = unknown_options(doc, args)
    if unknown:
        usage = doc.split("\n\n")[1].strip()
        print(f"pulse-worker: unknown option {unknown[0]}\n{usage}", file=sys.stderr)
        sys.exit(2)
    try:
        options = docopt(doc, args)
    except DocoptExit as exc:
        print(exc, file=sys.stderr)
        sys.exit(2)
    try:
        processes = _number(options, "--processes", int, 1)
        concurrency = _number(options, "--concurrency", int, 1)
        prefetch = _number(options, "--prefetch", int, 0)
        if prefetch is not None and prefetch > MAX_PREFETCH:
            raise UsageError(
                f"--prefetch must be at most {MAX_PREFETCH}, got {prefetch}"
            )
        grace = _number(options, "--grace", float, 0)
        level = options["--log-level"].upper()
        if level not in _LOG_LEVELS:
            raise UsageError(f"--log-level must be one of {', '.join(_LOG_LEVELS)}")
        log_format = options["--log-format"] or os.environ.get(
            "PULSE_LOG_FORMAT", "text"
        )
        if log_format not in LOG_FORMATS:
            raise UsageError(
                f"log format {log_format!r} is not one of {', '.join(LOG_FORMATS)} "
                "(--log-format or PULSE_LOG_FORMAT)"
            )
        # The processes are spawned: they read both from the environment.
        os.environ["PULSE_LOG_FORMAT"] = log_format
        if options["--addr"]:
            os.environ["PULSE_ADDR"] = options["--addr"]
        target = options["MODULE:OBJECT"]
        load_pulse(target)  # fail fast, in the parent, with a clear message
    except UsageError as exc:
        print(f"pulse-worker: {exc}", file=sys.stderr)
        sys.exit(2)
    _configure_logging(level)
    sys.exit(_supervise(target, processes, concurrency, prefetch, grace, level))


def _configure_logging(level: str) -> None:
    configure_logging(
        level, os.environ.get("PULSE_LOG_FORMAT", "text"), text_format=_LOG_FORMAT
    )


def _supervise(
    target: str,
    processes: int,
    concurrency: int | None,
    prefetch: int | None,
    grace: float | None,
    level: str,
) -> int:
    context = multiprocessing.get_context("spawn")
    stopping = False
    fatal = False

    def start(index: int) -> BaseProcess:
        process = context.Process(
            target=_child,
            args=(target, concurrency, prefetch, grace, level),
            name=f"pulse-worker-{index}",
        )
        process.start()
        log.info("worker_cli.started process=%s pid=%s", process.name, process.pid)
        return process

    def stop_all(signum: int, frame: object) -> None:
        nonlocal stopping
        if not stopping:
            log.info("worker_cli.draining signal=%s", signal.Signals(signum).name)
        stopping = True
        for process in children:
            if process.is_alive() and process.pid:
                os.kill(process.pid, signal.SIGTERM)

    children = [start(i) for i in range(processes)]
    signal.signal(signal.SIGTERM, stop_all)
    signal.signal(signal.SIGINT, stop_all)
    while any(p.is_alive() for p in children) or not stopping:
        time.sleep(0.2)
        if stopping:
            continue
        if any(p.exitcode == EXIT_FATAL for p in children):
            log.error("worker_cli.fatal: a worker cannot run (see above); stopping")
            fatal = True
            stop_all(signal.SIGTERM, None)
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
    if fatal:
        return 1
    # A child stopped by our SIGTERM before it could install a handler
    # (still starting up) stopped cleanly too.
    return 0 if all(code in (0, -signal.SIGTERM) for code in codes) else 1


if __name__ == "__main__":
    main()
