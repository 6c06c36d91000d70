"""The files in deploy/ and the Dockerfile, checked as far as this machine
can: systemd's own verifier on the units, and the paths the image copies.
(Docker cannot run here; the image itself is not built by the tests.)"""

from __future__ import annotations

import pathlib
import re
import shutil
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
UNITS = sorted((REPO / "deploy" / "systemd").glob("*.service"))
BIN = pathlib.Path(sys.executable).parent


def test_there_are_units_for_the_server_the_dashboard_and_workers() -> None:
    assert [unit.name for unit in UNITS] == [
        "pulse-web.service",
        "pulse-worker@.service",
        "pulsed.service",
    ]


@pytest.mark.parametrize("unit", UNITS, ids=lambda unit: unit.name)
def test_systemd_analyze_verify_accepts_the_unit(
    unit: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed on this machine")
    # The unit as installed: the commands from this environment's bin, the
    # environment files in a temporary /etc/pulse.
    text = unit.read_text().replace("/opt/pulse/bin/", f"{BIN}/")
    text = text.replace("/etc/pulse/", f"{tmp_path}/")
    for env_file in re.findall(r"^EnvironmentFile=(.+)$", text, re.MULTILINE):
        pathlib.Path(env_file).touch(mode=0o600)
    installed = tmp_path / unit.name
    installed.write_text(text)

    result = subprocess.run(
        [analyze, "verify", str(installed)], capture_output=True, text=True
    )

    assert (result.returncode, result.stderr.strip()) == (0, "")


def test_pulsed_waits_for_readiness_and_gets_more_than_its_grace_to_stop() -> None:
    text = (REPO / "deploy" / "systemd" / "pulsed.service").read_text()

    assert "Type=notify" in text
    assert "Restart=on-failure" in text
    assert "NoNewPrivileges=yes" in text
    assert "User=pulse" in text
    # PULSE_SHUTDOWN_GRACE_SECONDS defaults to 10 s.
    stop_timeout = re.search(r"^TimeoutStopSec=(\d+)$", text, re.MULTILINE)
    assert stop_timeout is not None
    assert int(stop_timeout.group(1)) > 10


def test_the_dockerfile_copies_only_paths_that_exist_and_runs_as_non_root() -> None:
    text = (REPO / "Dockerfile").read_text()

    sources = [
        part
        for line in re.findall(r"^COPY (?!--from)(.+)$", text, re.MULTILINE)
        for part in line.split()[:-1]
    ]
    assert sources
    assert [s for s in sources if not (REPO / s).exists()] == []
    assert re.search(r"^USER pulse$", text, re.MULTILINE)
    assert re.search(r"^FROM python:3\.11\.\d+-slim-bookworm", text, re.MULTILINE)
