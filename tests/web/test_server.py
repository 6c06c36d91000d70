"""The ``pulse-web`` command: waitress serving the dashboard."""

from __future__ import annotations

import pathlib
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

from tests.fixtures.servers import REPO_ROOT, PulsedProcess, free_port

PULSE_WEB = pathlib.Path(sys.executable).parent / "pulse-web"


def _environment(home: pathlib.Path, **variables: str) -> dict[str, str]:
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(REPO_ROOT),
        "PYTHONUNBUFFERED": "1",
        **variables,
    }


def _fetch(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_pulse_web_serves_the_dashboard_and_stops_on_sigterm(
    pulsed: PulsedProcess, tmp_path: pathlib.Path
) -> None:
    port = free_port()
    log_path = tmp_path / "pulse-web.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [str(PULSE_WEB)],
            env=_environment(tmp_path, PULSE_ADDR=pulsed.addr, PULSE_UI_PORT=str(port)),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                status, _ = _fetch(f"{base}/healthz")
                break
            except OSError:
                assert process.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.1)
        assert status == 200

        status, page = _fetch(f"{base}/")
        assert status == 200, page
        assert "<h1>Overview</h1>" in page
        status, script = _fetch(f"{base}/static/htmx.min.js")
        assert status == 200 and "htmx" in script

        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    log_text = log_path.read_text()
    assert "web.started" in log_text and "web.stopped" in log_text
    assert "Traceback" not in log_text


def test_a_bad_setting_stops_it_at_once_naming_the_variable(
    tmp_path: pathlib.Path,
) -> None:
    done = subprocess.run(
        [str(PULSE_WEB)],
        env=_environment(tmp_path, PULSE_UI_PORT="eighty"),
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert done.returncode == 2
    assert "PULSE_UI_PORT='eighty' is not an integer" in done.stderr
