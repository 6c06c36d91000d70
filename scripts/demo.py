"""The main job in one command: a database, a pulsed, the SDK tour, cleanup.

Usage: python scripts/demo.py [--tour PATH] [--log-dir DIR] [-- TOUR_ARGS ...]

1. Finds or starts a Postgres (``scripts/demo_db.py``: ``DB_URL`` or
   ``DB_HOST``, else 127.0.0.1:5432, else an embedded server).
2. Starts ``pulsed`` on a free loopback port, with a 2 s lease and a 0.5 s
   backoff base unless the environment sets them, and waits until its gRPC
   health check answers SERVING.
3. Runs ``python examples/tour.py --addr 127.0.0.1:PORT``, its output shown
   here and kept in the log folder.
4. Stops pulsed (SIGTERM, so it drains), then any embedded Postgres, and
   says where the logs are.

Exits 0 only if every step succeeded. Ctrl-C or SIGTERM stops the tour, pulsed
and the embedded database before exiting; every child runs in its own process
group so that nothing it started is left behind.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import threading
from types import FrameType
from typing import IO

import demo_db

from pulse_client.connection import wait_until_serving

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEFAULT_TOUR = ROOT / "examples" / "tour.py"
PULSED_START_TIMEOUT_SECONDS = 60.0
# pulsed's own shutdown grace (PULSE_SHUTDOWN_GRACE_SECONDS, 10 s by default)
# plus time to flush and close.
PULSED_STOP_TIMEOUT_SECONDS = 20.0
TOUR_STOP_TIMEOUT_SECONDS = 15.0
_BIND_ATTEMPTS = 3
# A short lease and backoff, so that the tour's retries and its long job
# (kept alive by heartbeats past the lease) show within a minute. Variables
# already set in the environment win.
DEMO_SERVER_SETTINGS = {
    "PULSE_LEASE_SECONDS": "2",
    "PULSE_BACKOFF_BASE_SECONDS": "0.5",
}


class DemoFailed(Exception):
    """A step of the demo failed; the message says which and why."""


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every ``finally`` runs."""


def say(message: str) -> None:
    print(f"demo: {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args, tour_args = _parse_args(sys.argv[1:] if argv is None else argv)
    tour = args.tour.resolve()
    if not tour.is_file():
        say(f"FAILED: the tour {str(tour)!r} does not exist")
        return 1
    log_dir = _log_dir(args.log_dir)
    signal.signal(signal.SIGTERM, _raise_terminated)
    # Also when started in the background, where SIGINT comes ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    database: demo_db.DemoDatabase | None = None
    pulsed: subprocess.Popen[bytes] | None = None
    outcome = 1
    try:
        database = demo_db.find_database(
            log=lambda message: say(f"database: {message}")
        )
        pulsed, addr = start_pulsed(database.url, log_dir / "pulsed.log")
        tour_rc = run_tour(tour, addr, tour_args, database.url, log_dir)
        if tour_rc != 0:
            raise DemoFailed(f"the tour failed (exit code {tour_rc})")
        pulsed_rc = stop_pulsed(pulsed)
        pulsed = None
        if pulsed_rc != 0:
            raise DemoFailed(f"pulsed exited with code {pulsed_rc} on shutdown")
        say("the demo finished")
        outcome = 0
    except demo_db.DemoDatabaseError as exc:
        say(f"FAILED: no database: {exc}")
    except DemoFailed as exc:
        say(f"FAILED: {exc}")
    except KeyboardInterrupt as interrupt:
        signal_name = "SIGTERM" if isinstance(interrupt, _Terminated) else "Ctrl-C"
        say(f"interrupted ({signal_name}); cleaning up")
        outcome = 130
    finally:
        # A second Ctrl-C must not cut the cleanup short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if pulsed is not None:
            stop_pulsed(pulsed)
        if database is not None:
            if database.embedded:
                say("stopping the embedded database")
            database.stop()
        say(f"logs are in {log_dir}")
    return outcome


def _parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    tour_args: list[str] = []
    if "--" in argv:
        split = argv.index("--")
        argv, tour_args = argv[:split], argv[split + 1 :]
    parser = argparse.ArgumentParser(
        prog="demo.py",
        description="Run pulsed and the SDK tour against a local or embedded Postgres.",
        epilog="Arguments after -- are passed on to the tour.",
    )
    parser.add_argument(
        "--tour", type=pathlib.Path, default=DEFAULT_TOUR, help="the script to run"
    )
    parser.add_argument(
        "--log-dir",
        type=pathlib.Path,
        help="where pulsed.log and tour.log go (default: a new folder in /tmp)",
    )
    return parser.parse_args(argv), tour_args


def _log_dir(chosen: pathlib.Path | None) -> pathlib.Path:
    if chosen is None:
        return pathlib.Path(tempfile.mkdtemp(prefix="pulse-demo-logs-"))
    chosen.mkdir(parents=True, exist_ok=True)
    return chosen.resolve()


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise _Terminated


# -- pulsed -------------------------------------------------------------------


def start_pulsed(
    db_url: str, log_path: pathlib.Path
) -> tuple[subprocess.Popen[bytes], str]:
    """Start pulsed on a free port; returns the process and its address."""
    for attempt in range(1, _BIND_ATTEMPTS + 1):
        addr = f"127.0.0.1:{demo_db.free_port()}"
        say(f"starting pulsed on {addr} (log: {log_path})")
        with open(log_path, "ab") as log:
            pulsed = subprocess.Popen(
                [sys.executable, "-m", "pulsed.server"],
                cwd=ROOT,
                env={
                    **DEMO_SERVER_SETTINGS,
                    **os.environ,
                    "DB_URL": db_url,
                    "PULSE_GRPC_ADDR": addr,
                },
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            _wait_until_serving(pulsed, addr)
        except DemoFailed:
            rc = pulsed.poll()
            # Exit code 2 is a configuration error, such as a port that
            # another process took between our probe and pulsed's bind.
            if (
                rc == 2
                and attempt < _BIND_ATTEMPTS
                and _log_mentions(log_path, "listen")
            ):
                continue
            stop_pulsed(pulsed)
            raise DemoFailed(
                f"pulsed did not start; the end of {log_path}:\n{_tail(log_path)}"
            ) from None
        except BaseException:
            stop_pulsed(pulsed)
            raise
        say(f"pulsed is serving on {addr} (pid {pulsed.pid})")
        return pulsed, addr
    raise AssertionError("unreachable: the last attempt raises")


def _wait_until_serving(pulsed: subprocess.Popen[bytes], addr: str) -> None:
    if wait_until_serving(
        addr, PULSED_START_TIMEOUT_SECONDS, lambda: pulsed.poll() is None
    ):
        return
    if pulsed.poll() is not None:
        raise DemoFailed(f"pulsed exited with code {pulsed.returncode}")
    raise DemoFailed(f"pulsed did not serve within {PULSED_START_TIMEOUT_SECONDS:.0f}s")


def stop_pulsed(pulsed: subprocess.Popen[bytes]) -> int:
    """SIGTERM pulsed (it drains its streams), SIGKILL it if it hangs."""
    if pulsed.poll() is None:
        say(f"stopping pulsed (pid {pulsed.pid})")
    return _stop_group(pulsed, signal.SIGTERM, PULSED_STOP_TIMEOUT_SECONDS)


def _log_mentions(path: pathlib.Path, text: str) -> bool:
    try:
        return text in path.read_text(errors="replace")
    except OSError:
        return False


def _tail(path: pathlib.Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(cannot read it: {exc})"


# -- the tour -----------------------------------------------------------------


def run_tour(
    tour: pathlib.Path,
    addr: str,
    extra_args: list[str],
    db_url: str,
    log_dir: pathlib.Path,
) -> int:
    """Run the tour to its end, its output shown and kept in tour.log."""
    log_path = log_dir / "tour.log"
    say(f"running {tour.relative_to(ROOT) if tour.is_relative_to(ROOT) else tour}")
    child = subprocess.Popen(
        [sys.executable, "-u", str(tour), "--addr", addr, *extra_args],
        cwd=ROOT,
        env={**os.environ, "PULSE_ADDR": addr, "DB_URL": db_url},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    assert child.stdout is not None
    with open(log_path, "wb") as log:
        copier = threading.Thread(
            target=_tee, args=(child.stdout, log, sys.stdout.buffer), daemon=True
        )
        copier.start()
        try:
            rc = child.wait()
        except BaseException:
            say("stopping the tour")
            _stop_group(child, signal.SIGINT, TOUR_STOP_TIMEOUT_SECONDS)
            raise
        finally:
            copier.join(5.0)
        # Anything the tour started and left behind goes with it.
        _signal_group(child, signal.SIGTERM)
    return rc


def _tee(source: IO[bytes], *sinks: IO[bytes]) -> None:
    for line in iter(source.readline, b""):
        for sink in sinks:
            sink.write(line)
            sink.flush()


# -- child process groups -----------------------------------------------------


def _stop_group(
    child: subprocess.Popen[bytes], first: signal.Signals, grace_seconds: float
) -> int:
    """Signal the child's process group, then escalate to SIGTERM and SIGKILL.

    Returns the child's exit code."""
    steps: list[tuple[signal.Signals, float]] = [
        (first, grace_seconds),
        (signal.SIGTERM, 5.0),
        (signal.SIGKILL, 5.0),
    ]
    for sig, wait_seconds in steps:
        if child.poll() is not None:
            break
        _signal_group(child, sig)
        try:
            child.wait(wait_seconds)
        except subprocess.TimeoutExpired:
            say(f"pid {child.pid} still running after {wait_seconds:.0f}s")
    rc = child.wait()
    _signal_group(child, signal.SIGKILL)
    return rc


def _signal_group(child: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    # The child leads its own group (start_new_session), so the group id is
    # its pid; ProcessLookupError means the group is already empty.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, sig)


if __name__ == "__main__":
    sys.exit(main())
