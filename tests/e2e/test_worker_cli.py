"""``pulse-worker`` refuses a command line it cannot use: exit status 2 and
one line saying what is wrong, never a traceback."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess

import pytest

from tests.e2e.conftest import PULSE_WORKER, worker_environment
from tests.fixtures.servers import REPO_ROOT


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            ["myapp.tasks"],
            "'myapp.tasks' is not MODULE:OBJECT (for example myapp.tasks:pulse)",
        ),
        (
            ["no_such_module_e2e:pulse"],
            "cannot import 'no_such_module_e2e': No module named 'no_such_module_e2e'",
        ),
        (
            ["tests.e2e.apps.bulk:missing"],
            "module 'tests.e2e.apps.bulk' has no attribute 'missing'",
        ),
        (
            ["tests.e2e.apps.shapes:Order"],
            "tests.e2e.apps.shapes:Order is a type, not a pulse_client.Pulse",
        ),
        (
            ["tests.e2e.apps.empty:pulse"],
            "tests.e2e.apps.empty:pulse has no handlers registered",
        ),
        (
            ["tests.e2e.apps.bulk:pulse", "--processes=0"],
            "--processes must be at least 1, got '0'",
        ),
        (
            ["tests.e2e.apps.bulk:pulse", "--processes=two"],
            "--processes must be a number, got 'two'",
        ),
        (
            ["tests.e2e.apps.bulk:pulse", "--prefetch=-1"],
            "--prefetch must be at least 0, got '-1'",
        ),
        (
            ["tests.e2e.apps.bulk:pulse", "--prefetch=10001"],
            "--prefetch must be at most 10000, got 10001",
        ),
    ],
    ids=[
        "no-colon",
        "unknown-module",
        "unknown-object",
        "not-a-pulse",
        "no-handlers",
        "zero-processes",
        "processes-not-a-number",
        "negative-prefetch",
        "prefetch-too-large",
    ],
)
def test_pulse_worker_rejects_a_bad_command_line_with_status_2_and_one_line(
    tmp_path: pathlib.Path, arguments: list[str], message: str
) -> None:
    done = subprocess.run(
        [str(PULSE_WORKER), *arguments, "--addr=127.0.0.1:9"],
        cwd=REPO_ROOT,
        env=worker_environment("postgresql://unused", tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert (done.returncode, done.stdout, done.stderr) == (
        2,
        "",
        f"pulse-worker: {message}\n",
    )


def test_pulse_worker_refuses_a_handler_topic_pulse_does_not_accept(
    tmp_path: pathlib.Path,
) -> None:
    # Regression: the topic was first checked by the server, in each worker
    # process; the process died with a traceback and pulse-worker restarted
    # it every second, forever.
    process = subprocess.Popen(
        [str(PULSE_WORKER), "tests.e2e.apps.bad_topic:pulse", "--addr=127.0.0.1:9"],
        cwd=REPO_ROOT,
        env=worker_environment("postgresql://unused", tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
    if process.returncode == -signal.SIGKILL:
        pytest.fail(f"pulse-worker was still running after 10 s:\n{stderr[-3000:]}")

    assert (process.returncode, stdout) == (2, "")
    assert stderr.startswith("pulse-worker: ")
    assert "topic 'has space' is invalid" in stderr
    assert len(stderr.splitlines()) == 1, stderr
