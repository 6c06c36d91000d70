"""pulsed's command line: --help and bad settings end with one clear line.

Found by breaking:
- ``pulsed --help`` ignored the flag: it connected to the database, applied
  the migrations and started serving.
- ``PULSE_LOG_LEVEL=loud`` and ``DB_URL=garbage`` ended in Python tracebacks
  (``ValueError: Unknown level``, ``psycopg2.ProgrammingError: invalid
  dsn``) instead of naming the variable.
- ``PULSE_GRPC_ADDR=127.0.0.1:99999`` (or ``:-5``) was accepted and the
  server listened on another port (gRPC wrapped the number: 99999 became
  34463, -5 became 65531), while the log claimed ``addr=127.0.0.1:99999``.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.fixtures.servers import REPO_ROOT, free_port

# Long enough for a failing start-up; a server that starts serving instead
# is killed after it.
EXIT_TIMEOUT_SECONDS = 20.0


def run_pulsed(
    env: dict[str, str], args: list[str] | None = None
) -> tuple[int | None, str, str]:
    """Run pulsed; (exit code, stdout, stderr). None: it was still running."""
    process = subprocess.Popen(
        [sys.executable, "-m", "pulsed.server", *(args or [])],
        cwd=REPO_ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = process.communicate(timeout=EXIT_TIMEOUT_SECONDS)
        return process.returncode, out, err
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        return None, out, err


def test_help_prints_usage_and_exits_0_without_touching_the_database() -> None:
    code, out, err = run_pulsed(
        {
            # Nothing listens here: --help must not need a database.
            "DB_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/nothing",
            "PULSE_GRPC_ADDR": f"127.0.0.1:{free_port()}",
        },
        ["--help"],
    )

    assert code == 0, err
    assert "usage" in (out + err).lower()
    assert "PULSE_GRPC_ADDR" in out + err
    assert "Traceback" not in err


def test_a_bad_log_level_is_named_without_a_traceback(db_url: str) -> None:
    code, _, err = run_pulsed(
        {
            "DB_URL": db_url,
            "PULSE_GRPC_ADDR": f"127.0.0.1:{free_port()}",
            "PULSE_LOG_LEVEL": "loud",
        }
    )

    assert "Traceback" not in err, err
    assert code == 2
    assert "PULSE_LOG_LEVEL" in err


def test_a_malformed_db_url_is_named_without_a_traceback() -> None:
    code, _, err = run_pulsed(
        {"DB_URL": "garbage", "PULSE_GRPC_ADDR": f"127.0.0.1:{free_port()}"}
    )

    assert "Traceback" not in err, err
    assert code in (1, 2)
    assert "DB_URL" in err


@pytest.mark.parametrize("port", ["99999", "-5", "65536"])
def test_a_port_out_of_range_is_refused_naming_the_variable(
    db_url: str, port: str
) -> None:
    code, _, err = run_pulsed(
        {"DB_URL": db_url, "PULSE_GRPC_ADDR": f"127.0.0.1:{port}"}
    )

    assert code == 2, f"pulsed did not refuse port {port}; stderr:\n{err}"
    assert f"PULSE_GRPC_ADDR='127.0.0.1:{port}'" in err
    assert "Traceback" not in err
