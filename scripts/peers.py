"""pulse beside its peers: the loadgen and the peer benchmarks, taking turns.

Each round runs pulse's ``scripts/loadgen.py``, then each peer benchmark of
``../shared/bench/peers/`` (PgQueuer, Procrastinate, Celery with Redis; see
``../shared/bench/README.md``), on the same number of no-op jobs, with the
same shapes:

  one-by-one enqueue  ``--jobs`` jobs, one call at a time from one thread
  bulk enqueue        ``--jobs`` jobs in chunks of 1,000
  drain               a backlog of ``--jobs`` jobs, drained by 2 worker
                      processes; first handler start to last completion
  dispatch latency    ``--latency-jobs`` jobs enqueued one at a time at 100/s
                      to idle workers (2 processes); p50 and p95

The table shows each system's median over the rounds and pulse ÷ peer; the
raw JSON of every run stays in ``--output`` (default: a new temp directory).

The peer benchmarks run under ``--peer-python`` (a virtualenv with pgqueuer,
procrastinate and celery) and reach Postgres through PGHOST, PGPORT, PGUSER
and PGPASSWORD, as documented there. They keep to their own databases
(``bench_pgqueuer``, ``bench_procrastinate``), which they reset on every run.
For Celery this script starts a redis-server of its own on a free loopback
port and stops it at the end. The loadgen creates the database named by
``--db-url`` and drops it after each run. ``../shared`` is only read.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import os
import pathlib
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
LOADGEN = REPO_ROOT / "scripts" / "loadgen.py"
DEFAULT_PEERS_DIR = REPO_ROOT.parent / "shared" / "bench" / "peers"

BULK_CHUNK = 1_000
LATENCY_RATE = 100.0
WORKER_PROCESSES = 2
STOP_TIMEOUT_SECONDS = 30.0
REDIS_START_TIMEOUT_SECONDS = 10.0


@dataclasses.dataclass(frozen=True)
class Peer:
    name: str
    script: str
    # The worker configuration of the peer's drain with 2 worker processes.
    drain_config: str
    needs_redis: bool = False


PEERS = {
    peer.name: peer
    for peer in (
        Peer("pgqueuer", "bench_pgqueuer.py", "2proc-batch100"),
        Peer("procrastinate", "bench_procrastinate.py", "2proc-conc10"),
        # One celery worker with 2 prefork children.
        Peer("celery", "bench_celery.py", "prefork-c2", needs_redis=True),
    )
}


@dataclasses.dataclass(frozen=True)
class Metric:
    key: str
    label: str
    higher_is_better: bool


METRICS = (
    Metric("drain_jobs_per_s", "drain, jobs/s", True),
    Metric("bulk_enqueue_jobs_per_s", "bulk enqueue, jobs/s", True),
    Metric("single_enqueue_jobs_per_s", "one-by-one enqueue, jobs/s", True),
    Metric("latency_p50_ms", "dispatch latency p50, ms", False),
    Metric("latency_p95_ms", "dispatch latency p95, ms", False),
)


class PeersError(Exception):
    """The comparison cannot go on; the message says why."""


# -- child processes -------------------------------------------------------------


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGINT to the child's process group (each cleans up on it), then
    SIGKILL to whatever is left after a timeout."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _run(
    command: list[str],
    *,
    env: dict[str, str],
    cwd: pathlib.Path,
    log_path: pathlib.Path,
    timeout_seconds: float,
) -> tuple[int, bytes]:
    """Run a benchmark to its end; returns (exit code, stdout). Its stderr
    goes to ``log_path``; its stdout is copied there too."""
    with open(log_path, "wb") as log_file:
        # A session of its own: an interrupt here stops its whole process
        # group in order, workers included.
        process = subprocess.Popen(
            command,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log_file,
            start_new_session=True,
        )
        try:
            stdout, _ = process.communicate(timeout=timeout_seconds)
        except subprocess.TimeoutExpired:
            raise PeersError(
                f"{command[1]} ran longer than {timeout_seconds:.0f}s; see {log_path}"
            ) from None
        finally:
            _stop_group(process)
        log_file.write(stdout)
    return process.returncode, stdout


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def redis_server(binary: str, directory: pathlib.Path) -> Iterator[str]:
    """A redis-server on a free loopback port, persisted as the peers' README
    sets it up (AOF, fsync every second); yields the URL of its db 15."""
    port = _free_port()
    process = subprocess.Popen(
        [
            binary,
            "--bind", "127.0.0.1",
            "--port", str(port),
            "--save", "",
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--dir", str(directory),
            "--logfile", str(directory / "redis.log"),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + REDIS_START_TIMEOUT_SECONDS
        while not _redis_answers(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise PeersError(
                    f"redis-server did not start on port {port}; "
                    f"see {directory / 'redis.log'}"
                )
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/15"
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# -- one run of each kind ------------------------------------------------------


def run_pulse(args: argparse.Namespace, run_dir: pathlib.Path) -> dict[str, Any]:
    command = [
        sys.executable,
        str(LOADGEN),
        "--json",
        "--scenario=submit-single,submit-batch,drain,latency",
        f"--db-url={args.db_url}",
        f"--log-dir={run_dir}",
        f"--submit-jobs={args.jobs}",
        f"--batch-jobs={args.jobs}",
        f"--batch-size={BULK_CHUNK}",
        f"--jobs={args.jobs}",
        f"--processes={WORKER_PROCESSES}",
        f"--latency-jobs={args.latency_jobs}",
        f"--latency-rate={LATENCY_RATE:g}",
    ]
    # The loadgen measures the checkout it sits in, whatever is installed.
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, (str(REPO_ROOT), env.get("PYTHONPATH")))
    )
    code, stdout = _run(
        command,
        env=env,
        cwd=REPO_ROOT,
        log_path=run_dir / "loadgen.log",
        timeout_seconds=args.run_timeout,
    )
    if code != 0:
        raise PeersError(f"the loadgen exited with {code}; see {run_dir}")
    report = json.loads(stdout)
    (run_dir / "pulse.json").write_bytes(stdout)
    return {
        "drain_jobs_per_s": report["drain"]["jobs_per_s"],
        "bulk_enqueue_jobs_per_s": report["submit_batch"]["jobs_per_s"],
        "single_enqueue_jobs_per_s": report["submit_single"]["jobs_per_s"],
        "latency_p50_ms": report["latency"]["p50_ms"],
        "latency_p95_ms": report["latency"]["p95_ms"],
    }


def run_peer(
    peer: Peer,
    args: argparse.Namespace,
    run_dir: pathlib.Path,
    redis_url: str | None,
) -> dict[str, Any]:
    command = [
        args.peer_python,
        str(args.peers_dir / peer.script),
        f"--n={args.jobs}",
        f"--bulk-chunk={BULK_CHUNK}",
        f"--configs={peer.drain_config}",
        f"--lat-n={args.latency_jobs}",
        f"--lat-rate={LATENCY_RATE:g}",
    ]
    env = dict(os.environ)
    env.setdefault("PGHOST", "127.0.0.1")
    env.setdefault("PGUSER", "postgres")
    env.setdefault("PGPASSWORD", "postgres")
    # Each run's JSON lands in a directory of its own, so it is the only one.
    env["PULSE_BENCH_RESULTS"] = str(run_dir)
    # ../shared may not be writable: no __pycache__ beside the peer scripts.
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    if redis_url is not None:
        env["PEERS_REDIS_URL"] = redis_url
    code, _ = _run(
        command,
        env=env,
        cwd=run_dir,
        log_path=run_dir / f"{peer.name}.log",
        timeout_seconds=args.run_timeout,
    )
    results = sorted(run_dir.glob("*.json"))
    if code != 0 or len(results) != 1:
        raise PeersError(f"{peer.script} exited with {code}; see {run_dir}")
    report = json.loads(results[0].read_text())
    (drain,) = [row for row in report["process"] if row["config"] == peer.drain_config]
    return {
        "version": report.get("version"),
        "drain_jobs_per_s": drain["jobs_s"],
        "bulk_enqueue_jobs_per_s": report["enqueue_bulk_jobs_s"],
        "single_enqueue_jobs_per_s": report["enqueue_one_by_one_jobs_s"],
        "latency_p50_ms": report["latency"]["p50_ms"],
        "latency_p95_ms": report["latency"]["p95_ms"],
    }


# -- the summary -------------------------------------------------------------------


def summarize(runs: list[dict[str, Any]], systems: list[str]) -> dict[str, Any]:
    """Medians and ranges per system and metric, and pulse ÷ each peer."""
    medians: dict[str, dict[str, float | None]] = {}
    ranges: dict[str, dict[str, list[float]]] = {}
    for system in systems:
        figures = [
            r["figures"] for r in runs if r["system"] == system and "figures" in r
        ]
        medians[system], ranges[system] = {}, {}
        for metric in METRICS:
            values = [f[metric.key] for f in figures if f.get(metric.key) is not None]
            medians[system][metric.key] = (
                round(statistics.median(values), 3) if values else None
            )
            if values:
                ranges[system][metric.key] = [min(values), max(values)]
    ratios: dict[str, dict[str, float | None]] = {}
    for peer in systems[1:]:
        ratios[peer] = {}
        for metric in METRICS:
            ours, theirs = medians["pulse"][metric.key], medians[peer][metric.key]
            ratios[peer][metric.key] = (
                round(ours / theirs, 3) if ours is not None and theirs else None
            )
    return {"medians": medians, "ranges": ranges, "pulse_over_peer": ratios}


def _figure(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:.2f}"


def print_table(summary: dict[str, Any], meta: dict[str, Any]) -> None:
    systems = meta["systems"]
    headers = ["metric", "better", "pulse"]
    for peer in systems[1:]:
        headers += [peer, "÷"]
    rows = []
    for metric in METRICS:
        row = [
            metric.label,
            "higher" if metric.higher_is_better else "lower",
            _figure(summary["medians"]["pulse"][metric.key]),
        ]
        for peer in systems[1:]:
            ratio = summary["pulse_over_peer"][peer][metric.key]
            row += [
                _figure(summary["medians"][peer][metric.key]),
                "-" if ratio is None else f"{ratio:.2f}",
            ]
        rows.append(row)
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]

    print(
        f"pulse ÷ peers, {meta['jobs']:,} jobs, medians of {meta['rounds']} "
        f"round(s), {meta['date_utc']}"
    )
    for cells in (headers, ["-" * w for w in widths], *rows):
        print(
            "  ".join(
                cell.ljust(w) if i < 2 else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(cells, widths, strict=True))
            )
        )
    for failure in meta["failures"]:
        print(f"failed: {failure}")
    print(f"raw results: {meta['output']}")


# -- main ------------------------------------------------------------------------------


def _default_db_url() -> str:
    user = quote(os.environ.get("PGUSER", "postgres"), safe="")
    password = quote(os.environ.get("PGPASSWORD", "postgres"), safe="")
    host = os.environ.get("PGHOST", "127.0.0.1")
    port = os.environ.get("PGPORT", "5432")
    return f"postgresql://{user}:{password}@{host}:{port}/pulse_peers"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--latency-jobs", type=int, default=500, help="jobs of the latency runs"
    )
    parser.add_argument(
        "--peers",
        default=",".join(PEERS),
        help=f"comma-separated peers (default: {','.join(PEERS)})",
    )
    parser.add_argument(
        "--peer-python",
        default="/tmp/peers-venv/bin/python",
        help="the interpreter of the peers' virtualenv",
    )
    parser.add_argument(
        "--peers-dir",
        type=pathlib.Path,
        default=DEFAULT_PEERS_DIR,
        help="where bench_pgqueuer.py and the others are",
    )
    parser.add_argument(
        "--redis-server",
        default=shutil.which("redis-server"),
        help="the redis-server binary for the Celery broker",
    )
    parser.add_argument(
        "--db-url",
        default=_default_db_url(),
        help="the database the loadgen creates for pulse (dropped after each run)",
    )
    parser.add_argument("--output", type=pathlib.Path, help="where raw results go")
    parser.add_argument(
        "--run-timeout",
        type=float,
        default=3600.0,
        help="longest a single benchmark run may take, seconds",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    for name in ("jobs", "rounds", "latency_jobs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    args.peer_names = [p.strip() for p in args.peers.split(",") if p.strip()]
    unknown = sorted(set(args.peer_names) - set(PEERS))
    if unknown:
        parser.error(
            f"unknown peer {', '.join(unknown)}; choose from {', '.join(PEERS)}"
        )
    if args.peer_names and not os.access(args.peer_python, os.X_OK):
        parser.error(f"--peer-python {args.peer_python!r} is not an executable")
    missing = [
        PEERS[p].script
        for p in args.peer_names
        if not (args.peers_dir / PEERS[p].script).is_file()
    ]
    if missing:
        parser.error(f"{', '.join(missing)} not found in --peers-dir {args.peers_dir}")
    if "celery" in args.peer_names and not args.redis_server:
        parser.error("celery needs a redis-server: pass --redis-server or drop it")
    return args


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run(args: argparse.Namespace) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    output = args.output or pathlib.Path(tempfile.mkdtemp(prefix="pulse-peers-"))
    output.mkdir(parents=True, exist_ok=True)
    if any(output.glob("round*")):
        raise PeersError(f"{output} holds the results of an earlier run; pick another")
    peers = [PEERS[name] for name in args.peer_names]
    meta: dict[str, Any] = {
        "date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "host": f"{os.cpu_count()} cpus, {platform.system()} {platform.release()}",
        "jobs": args.jobs,
        "rounds": args.rounds,
        "latency_jobs": args.latency_jobs,
        "latency_rate": LATENCY_RATE,
        "bulk_chunk": BULK_CHUNK,
        "worker_processes": WORKER_PROCESSES,
        "systems": ["pulse", *args.peer_names],
        "peer_drain_configs": {peer.name: peer.drain_config for peer in peers},
        "output": str(output),
        "failures": [],
    }
    runs: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        redis_url = None
        if any(peer.needs_redis for peer in peers):
            redis_dir = output / "redis"
            redis_dir.mkdir(exist_ok=True)
            redis_url = stack.enter_context(redis_server(args.redis_server, redis_dir))
            meta["redis_url"] = redis_url

        for round_number in range(1, args.rounds + 1):
            for system in meta["systems"]:
                run_dir = output / f"round{round_number}-{system}"
                run_dir.mkdir()
                entry: dict[str, Any] = {"round": round_number, "system": system}
                _status(args, f"round {round_number}/{args.rounds}: {system}")
                started = time.monotonic()
                try:
                    if system == "pulse":
                        entry["figures"] = run_pulse(args, run_dir)
                    else:
                        entry["figures"] = run_peer(
                            PEERS[system], args, run_dir, redis_url
                        )
                except PeersError as exc:
                    entry["error"] = str(exc)
                    meta["failures"].append(f"round {round_number}, {system}: {exc}")
                entry["seconds"] = round(time.monotonic() - started, 1)
                runs.append(entry)
    return meta, runs


def _status(args: argparse.Namespace, text: str) -> None:
    print(f"peers: {text}", file=sys.stderr if args.json else sys.stdout, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGINT explicitly too: a shell starts background jobs with it ignored.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _interrupt)
    try:
        meta, runs = run(args)
    except PeersError as exc:
        print(f"peers: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("peers: interrupted; the runs it started were stopped", file=sys.stderr)
        return 130

    summary = summarize(runs, meta["systems"])
    (pathlib.Path(meta["output"]) / "summary.json").write_text(
        json.dumps({"meta": meta, "runs": runs, **summary}, indent=2)
    )
    if args.json:
        print(json.dumps({"meta": meta, "runs": runs, **summary}, indent=2))
    else:
        print_table(summary, meta)
    return 1 if meta["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
