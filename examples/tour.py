"""A tour of pulse: real jobs through a real server.

    python examples/tour.py --addr 127.0.0.1:50051

It starts a small HTTP server and a worker in this process, then shows:

1. files hashed and pages fetched by handlers, results written to disk;
2. a flaky payment that fails twice and succeeds on attempt 3, charging
   exactly once thanks to (job_id, attempt) as its idempotency key;
3. a poison job retried with backoff and then dead-lettered, error kept;
4. an urgent job jumping a backlog of routine ones;
5. a long job kept alive by heartbeats well past its lease.

Each section checks what it shows; the tour exits 1 if anything is off.
Start the server with a short lease (PULSE_LEASE_SECONDS=2) and backoff
(PULSE_BACKOFF_BASE_SECONDS=0.5) to see everything within a minute;
``scripts/demo.py`` does that for you.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import http.server
import json
import logging
import pathlib
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from typing import TypedDict

from pulse_client import JobContext, NewJob, Pulse


@dataclasses.dataclass
class HashFile:
    path: str


class FetchPage(TypedDict):
    url: str


@dataclasses.dataclass
class Charge:
    order: str
    cents: int


@dataclasses.dataclass
class Report:
    name: str


class Tour:
    def __init__(
        self, addr: str, workdir: pathlib.Path, long_job_seconds: float
    ) -> None:
        self.workdir = workdir
        self.results = workdir / "results"
        self.results.mkdir()
        self.long_job_seconds = long_job_seconds
        self.pulse = Pulse(addr, concurrency=4, heartbeat_seconds=0.5, grace_seconds=10)
        self.lock = threading.Lock()
        self.ledger: dict[str, int] = {}  # the "payment provider": order -> cents
        self.payment_attempts: list[int] = []
        self.started_order: list[str] = []
        self.failures = 0
        self._register()

    # -- handlers: real work, in this process ---------------------------------

    def _register(self) -> None:
        p = self.pulse

        @p.handler("files.hash")
        def hash_file(args: HashFile, ctx: JobContext) -> None:
            digest = hashlib.sha256(pathlib.Path(args.path).read_bytes()).hexdigest()
            self._write(ctx, {"path": args.path, "sha256": digest})

        @p.handler("pages.fetch")
        def fetch_page(args: FetchPage, ctx: JobContext) -> None:
            with urllib.request.urlopen(args["url"], timeout=5) as response:
                body = response.read().decode()
            self._write(ctx, {"url": args["url"], "words": len(body.split())})

        @p.handler("payments.charge")
        def charge(args: Charge, ctx: JobContext) -> None:
            with self.lock:
                self.payment_attempts.append(ctx.attempt)
                # Idempotency: a retried delivery of the same job never
                # charges twice, whatever attempt it is.
                already = args.order in self.ledger
            if ctx.attempt < 3:
                raise ConnectionError(
                    f"payment provider timed out (attempt {ctx.attempt})"
                )
            if not already:
                with self.lock:
                    self.ledger[args.order] = args.cents

        @p.handler("reports.parse")
        def parse_report(args: Report, ctx: JobContext) -> None:
            raise ValueError(f"report {args.name!r} is corrupt: no header row")

        @p.handler("reports.routine")
        def routine(args: Report, ctx: JobContext) -> None:
            with self.lock:
                self.started_order.append(args.name)
            time.sleep(0.05)

        @p.handler("video.transcode")
        def transcode(args: dict[str, str], ctx: JobContext) -> None:
            # Far longer than the lease: only heartbeats keep the job ours.
            if ctx.wait(self.long_job_seconds):
                raise RuntimeError("asked to stop")
            self._write(ctx, {"video": args["video"], "attempt": ctx.attempt})

    def _write(self, ctx: JobContext, result: dict[str, object]) -> None:
        (self.results / f"{ctx.topic}-{ctx.job_id}.json").write_text(json.dumps(result))

    # -- the tour --------------------------------------------------------------

    def check(self, ok: bool, what: str) -> None:
        print(f"   {'ok ' if ok else 'FAIL'} {what}")
        if not ok:
            self.failures += 1

    def wait_for(
        self, job_ids: list[str], final: set[str], seconds: float = 60
    ) -> None:
        deadline = time.monotonic() + seconds
        pending = list(job_ids)
        while pending and time.monotonic() < deadline:
            pending = [
                j for j in pending if self.pulse.get_job(j).status.value not in final
            ]
            if pending:
                time.sleep(0.1)

    def clear_leftovers(self) -> None:
        """Cancel waiting jobs of the tour's topics left by an interrupted run,
        so they cannot skew the priority section."""
        for topic in self.pulse.topics:
            for job in self.pulse.iter_jobs(
                status=["pending", "scheduled", "retrying"], topic=topic
            ):
                self.pulse.cancel(job.id)

    def run(self, page_url: Callable[[str], str]) -> int:
        self.clear_leftovers()
        # The priority section needs a backlog waiting before any worker
        # starts, so it is queued first.
        routine = self.pulse.enqueue_many(
            [NewJob("reports.routine", Report(f"routine-{i:02d}")) for i in range(40)]
        )
        urgent = self.pulse.enqueue("reports.routine", Report("URGENT"), priority=10)

        worker = threading.Thread(target=self.pulse.run, name="tour-worker")
        worker.start()
        try:
            self.section_real_work(page_url)
            self.section_priority([*routine, urgent])
            self.section_flaky()
            self.section_poison()
            self.section_long_job()
        finally:
            self.pulse.stop()
            worker.join(30)
            self.pulse.close()
        print()
        print(
            "Tour finished:",
            "all checks passed"
            if not self.failures
            else f"{self.failures} check(s) FAILED",
        )
        return 0 if not self.failures else 1

    def section_real_work(self, page_url: Callable[[str], str]) -> None:
        print("1. Real work: hashing files and fetching pages")
        files = []
        for i in range(5):
            path = self.workdir / f"file-{i}.txt"
            path.write_text(f"pulse tour file {i}\n" * (i + 1) * 100)
            files.append(path)
        jobs = [NewJob("files.hash", HashFile(str(f))) for f in files]
        jobs += [
            NewJob("pages.fetch", FetchPage(url=page_url(f"page-{i}.html")))
            for i in range(3)
        ]
        ids = self.pulse.enqueue_many(jobs)
        self.wait_for(ids, {"completed", "dead_lettered"})
        statuses = [self.pulse.get_job(j).status.value for j in ids]
        written = sorted(p.name for p in self.results.glob("*.json"))
        self.check(statuses == ["completed"] * len(ids), f"{len(ids)} jobs completed")
        expected = hashlib.sha256(files[0].read_bytes()).hexdigest()
        stored = json.loads((self.results / f"files.hash-{ids[0]}.json").read_text())
        self.check(
            stored["sha256"] == expected,
            f"sha256 of {files[0].name} = {expected[:16]}…",
        )
        self.check(
            len(written) == len(ids), f"{len(written)} result files in {self.results}"
        )

    def section_priority(self, ids: list[str]) -> None:
        print("2. Priority: an urgent job jumps a backlog of 40 routine ones")
        self.wait_for(ids, {"completed"})
        position = (
            self.started_order.index("URGENT") + 1
            if "URGENT" in self.started_order
            else -1
        )
        self.check(
            1 <= position <= 4,
            f"URGENT started at position {position} of {len(self.started_order)}",
        )
        routine = [n for n in self.started_order if n != "URGENT"]
        # Four handler threads start each claimed batch in any order, so
        # FIFO holds to within the worker's concurrency.
        displacement = max(
            abs(i - sorted(routine).index(n)) for i, n in enumerate(routine)
        )
        self.check(
            displacement < self.pulse.concurrency,
            f"routine jobs ran first-in, first-out (within {displacement} places)",
        )

    def section_flaky(self) -> None:
        print("3. A flaky dependency: fails twice, succeeds on attempt 3, charges once")
        job_id = self.pulse.enqueue(
            "payments.charge", Charge("order-1001", 4200), max_attempts=5
        )
        self.wait_for([job_id], {"completed", "dead_lettered"})
        job = self.pulse.get_job(job_id)
        self.check(
            job.status.value == "completed",
            f"status {job.status.value}, attempt {job.attempt}",
        )
        self.check(
            self.payment_attempts == [1, 2, 3], f"attempts seen {self.payment_attempts}"
        )
        self.check(self.ledger == {"order-1001": 4200}, f"ledger {self.ledger}")
        gap = (
            (job.finished_at - job.created_at).total_seconds()
            if job.finished_at and job.created_at
            else 0
        )
        print(
            "      (backoff: two waits of about base×1² and base×2²,"
            f" {gap:.1f}s in all)"
        )

    def section_poison(self) -> None:
        print("4. A poison job: retried with backoff, then dead-lettered")
        job_id = self.pulse.enqueue("reports.parse", Report("q3.csv"), max_attempts=3)
        self.wait_for([job_id], {"dead_lettered", "completed"})
        job = self.pulse.get_job(job_id)
        self.check(
            job.status.value == "dead_lettered",
            f"status {job.status.value} after {job.attempt} attempts",
        )
        last_line = job.last_error.strip().splitlines()[-1] if job.last_error else ""
        self.check("corrupt" in last_line, f"last error kept: {last_line}")

    def section_long_job(self) -> None:
        print(f"5. A long job ({self.long_job_seconds:g}s) kept alive by heartbeats")
        job_id = self.pulse.enqueue("video.transcode", {"video": "talk.mp4"})
        self.wait_for(
            [job_id], {"completed", "dead_lettered"}, seconds=self.long_job_seconds + 30
        )
        job = self.pulse.get_job(job_id)
        ran = (
            (job.finished_at - job.started_at).total_seconds()
            if job.finished_at and job.started_at
            else 0
        )
        self.check(
            job.status.value == "completed" and job.attempt == 1,
            f"status {job.status.value}, attempt {job.attempt}, ran {ran:.1f}s",
        )


def serve_pages(
    root: pathlib.Path,
) -> tuple[http.server.ThreadingHTTPServer, Callable[[str], str]]:
    for i in range(3):
        (root / f"page-{i}.html").write_text(
            f"<html><body><p>{' '.join(['pulse'] * (10 * (i + 1)))}</p></body></html>"
        )
    handler = functools.partial(QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    return server, lambda name: f"http://127.0.0.1:{port}/{name}"


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--addr",
        default=None,
        help="pulsed address (default: PULSE_ADDR or localhost:50051)",
    )
    parser.add_argument("--long-job-seconds", type=float, default=6.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="      log: %(message)s")
    with tempfile.TemporaryDirectory(prefix="pulse-tour-") as tmp:
        workdir = pathlib.Path(tmp)
        pages = workdir / "site"
        pages.mkdir()
        http_server, page_url = serve_pages(pages)
        try:
            code = Tour(args.addr, workdir, args.long_job_seconds).run(page_url)
        finally:
            http_server.shutdown()
    sys.exit(code)


if __name__ == "__main__":
    main()
