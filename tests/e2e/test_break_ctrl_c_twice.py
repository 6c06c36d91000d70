"""A second Ctrl-C makes pulse-worker exit at once, without a traceback.

Found by breaking: the second Ctrl-C (the supervisor forwards it as a second
SIGTERM) makes the worker raise KeyboardInterrupt from its signal handler;
nothing in the child catches it, so multiprocessing prints "Process
pulse-worker-0:" and a full traceback ending in ``KeyboardInterrupt`` for
what is a normal, asked-for way to stop.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from pulse_client import Pulse
from tests.e2e.conftest import FAST_KNOBS, Deployment, WorkerProcess, wait_for

EXIT_SECONDS = 15


@pytest.fixture(scope="module")
def deployment(start_deployment: Callable[..., Deployment]) -> Deployment:
    return start_deployment(**FAST_KNOBS)


def test_a_second_ctrl_c_exits_at_once_without_a_traceback(
    client: Pulse, deployment: Deployment, start_worker: Callable[..., WorkerProcess]
) -> None:
    worker = start_worker(
        "drain:stuck", db_url=deployment.db_url, addr=deployment.addr, grace_seconds=60
    )
    worker.expect_clean_exit = False  # asserted below
    job_id = client.enqueue("drain.stuck", {"seconds": 120})
    deployment.wait_for_runs(job_id, "start")

    worker.interrupt()
    wait_for(lambda: "worker.draining" in worker.log(), "the first Ctrl-C to drain")
    worker.interrupt()

    started = time.monotonic()
    worker.process.wait(EXIT_SECONDS)
    assert time.monotonic() - started < EXIT_SECONDS
    assert "Traceback" not in worker.log(), worker.log()
