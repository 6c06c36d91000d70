"""Guards that every pulse test runs under.

- The environment is stripped of ``PULSE_*`` and ``DB_*`` variables, so a
  test reaches Postgres only through ``TEST_DB_URL`` and a server only
  through the fixtures that start one.
- A test that leaves a non-daemon thread or a child process running fails.
- When a test fails, the logs of the servers it started are printed.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Generator, Iterator

import psutil
import pytest

from tests.fixtures.reports import attach_logs_to_failures

pytest_plugins = [
    "tests.fixtures.databases",
    "tests.fixtures.servers",
    "tests.fixtures.streams",
    "tests.pgcluster",
]

_DB_VARIABLES = ("DB_HOST", "DB_URL", "DB_NAME", "DB_PORT", "DB_USER", "DB_PASSWORD")
# Threads get this long to finish after a test before they count as leaked.
_LEAK_GRACE_SECONDS = 2.0


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("PULSE_") or name in _DB_VARIABLES:
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def _no_leaked_threads_or_processes() -> Iterator[None]:
    # Autouse fixtures are set up first and torn down last, so the servers,
    # streams and pools a test used are already closed when this runs.
    threads_before = set(threading.enumerate())
    me = psutil.Process()
    children_before = {child.pid for child in me.children(recursive=True)}
    yield

    deadline = time.monotonic() + _LEAK_GRACE_SECONDS
    while True:
        threads = [
            thread
            for thread in threading.enumerate()
            if thread not in threads_before and thread.is_alive() and not thread.daemon
        ]
        children = _live_children(me, children_before)
        if (not threads and not children) or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    for child in children:
        # Kill them so that one leak does not fail every later test.
        child.kill()
    problems = [f"thread {thread.name!r} still running" for thread in threads]
    problems += [
        f"child process {child.pid} ({' '.join(_cmdline(child))}) still running"
        for child in children
    ]
    if problems:
        pytest.fail("The test leaked: " + "; ".join(problems), pytrace=False)


def _live_children(me: psutil.Process, before: set[int]) -> list[psutil.Process]:
    alive = []
    for child in me.children(recursive=True):
        if child.pid in before:
            continue
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                alive.append(child)
        except psutil.NoSuchProcess:
            continue
    return alive


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return [str(part) for part in process.cmdline()[:4]]
    except psutil.Error:
        return ["?"]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report: pytest.TestReport = yield
    attach_logs_to_failures(item, report)
    return report
