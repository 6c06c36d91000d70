"""The dashboard in a real headless Chromium, against a real pulsed with
auth, served by the real ``pulse-web`` command (waitress).

Needs /usr/bin/chromium (Debian's ``chromium`` package): without it the
test is skipped on a developer's machine and fails in CI (``CI=true``).
Set ``WEB_SCREENSHOTS_DIR`` (for example to ``docs/screenshots``) to keep
the screenshots of the main pages it takes.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import Browser, Dialog, Page, expect, sync_playwright

from pulse_client import Cron, Every, JobStatus, Pulse
from tests.fixtures.databases import Sql
from tests.fixtures.servers import PulsedProcess, free_port
from tests.web.conftest import Relay, finish_jobs
from tests.web.test_server import PULSE_WEB, _environment

CHROMIUM = pathlib.Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
USERS = "alice:wonderland:admin"
_ALICE = {"user": "alice", "password": "wonderland"}
# Polls come every second here, so anything the page waits for shows up
# within a few seconds.
WAIT_MS = 15_000


@pytest.fixture
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        message = (
            f"{CHROMIUM} is missing: install it with `apt-get install -y chromium`"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI runs the browser tests: {message}", pytrace=False)
        pytest.skip(message)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def dashboard(tmp_path: pathlib.Path) -> Iterator[Callable[[str], str]]:
    """Factory: runs ``pulse-web`` for a pulsed address; returns its URL."""
    processes: list[subprocess.Popen[bytes]] = []

    def start(addr: str) -> str:
        port = free_port()
        log_path = tmp_path / "pulse-web.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [str(PULSE_WEB)],
                env=_environment(
                    tmp_path,
                    PULSE_ADDR=addr,
                    PULSE_UI_PORT=str(port),
                    PULSE_UI_REFRESH_SECONDS="1",
                ),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        processes.append(process)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=2):
                    return url
            except OSError:
                assert process.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.1)

    yield start

    for process in processes:
        process.terminate()
        assert process.wait(15) == 0
    log_text = (tmp_path / "pulse-web.log").read_text()
    assert "Traceback" not in log_text, log_text


def test_an_operator_signs_in_watches_and_steers_the_queue(
    start_pulsed: Callable[..., PulsedProcess],
    sql: Sql,
    browser: Browser,
    dashboard: Callable[[str], str],
    tmp_path: pathlib.Path,
) -> None:
    pulsed = start_pulsed(env={"PULSE_AUTH_USERS": USERS})
    relay = Relay(pulsed.addr)
    pulse = Pulse(pulsed.addr, timeout_seconds=10, user="alice", password="wonderland")
    try:
        waiting, dead = _seed(pulse, pulsed.addr, sql)
        url = dashboard(relay.addr)
        page = browser.new_page(viewport={"width": 1360, "height": 900})
        page.on("dialog", _accept)
        errors: list[str] = []
        page.on(
            "console", lambda m: errors.append(m.text) if m.type == "error" else None
        )
        shots = _Screenshots(page, tmp_path / "screenshots")

        # Signing in
        page.goto(f"{url}/")
        expect(page.get_by_role("heading", name="Sign in to pulse")).to_be_visible()
        shots.take("login")
        page.get_by_label("User").fill("alice")
        page.get_by_label("Password").fill("wonderland")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name="Overview")).to_be_visible()
        expect(page.locator(".top .user")).to_have_text("alice")

        # A new job appears in the overview without a reload
        page.evaluate("window.notReloaded = true")
        pulse.enqueue("browser.seen", {"hello": "world"})
        expect(page.locator("#overview-panel")).to_contain_text(
            "browser.seen", timeout=WAIT_MS
        )
        assert page.evaluate("window.notReloaded") is True
        expect(page.locator("#overview-panel svg.chart")).to_be_visible()
        shots.take("overview")

        # Cancel one
        page.goto(f"{url}/jobs/{waiting}")
        page.get_by_role("button", name="Cancel").click()
        expect(page.locator(".flash-ok")).to_contain_text("Job canceled")
        assert pulse.get_job(waiting).status == JobStatus.CANCELED

        # Requeue a dead one
        page.goto(f"{url}/jobs/{dead}")
        shots.take("job")
        page.get_by_role("button", name="Requeue").click()
        expect(page.locator(".flash-ok")).to_contain_text("Job requeued")
        assert pulse.get_job(dead).status == JobStatus.PENDING

        # The job browser, dead letters and schedules
        page.goto(f"{url}/jobs?status=dead_lettered")
        expect(page.locator("table.jobs")).to_be_visible()
        shots.take("jobs")
        page.goto(f"{url}/dead-letters")
        expect(page.locator("table.groups")).to_be_visible()
        shots.take("dead-letters")
        page.goto(f"{url}/schedules")
        expect(page.locator("table.schedules")).to_contain_text("reports.hourly")
        shots.take("schedules")

        # Pause and resume dispatch
        page.goto(f"{url}/dispatch")
        page.get_by_label("Reason").first.fill("database upgrade")
        page.get_by_role("button", name="Pause dispatch").click()
        expect(page.locator(".flash-ok")).to_contain_text("Dispatch paused")
        expect(page.locator(".paused-by").first).to_have_text("alice")
        assert pulse.dispatch_status().paused
        shots.take("dispatch")
        page.get_by_role("button", name="Resume dispatch").click()
        expect(page.locator(".flash-ok")).to_contain_text("Dispatch resumed")
        assert not pulse.dispatch_status().paused

        # The audit names the signed-in user for each action
        page.goto(f"{url}/audit")
        for action in (
            "job.cancel",
            "job.requeue",
            "dispatch.pause",
            "dispatch.resume",
        ):
            row = page.locator("table.audit tr", has_text=action).first
            expect(row.locator(".audit-user")).to_have_text("alice")
        shots.take("audit")
        assert errors == [], errors

        # pulsed goes away: the banner comes in the polled panel, and goes
        # once pulsed is back
        page.goto(f"{url}/")
        relay.cut()
        banner = page.locator("#overview-panel .banner-down")
        expect(banner).to_contain_text("pulsed cannot be reached", timeout=WAIT_MS)
        shots.take("pulsed-down")
        relay.restore()
        expect(banner).to_have_count(0, timeout=WAIT_MS)
        expect(page.locator("#overview-panel")).to_contain_text("browser.seen")

        # Logout ends the session
        page.get_by_role("button", name="Log out").click()
        expect(page.get_by_role("heading", name="Sign in to pulse")).to_be_visible()
        page.goto(f"{url}/jobs")
        expect(page.get_by_role("heading", name="Sign in to pulse")).to_be_visible()
        page.close()
    finally:
        pulse.close()
        relay.close()
    shots.publish()


def _seed(pulse: Pulse, addr: str, sql: Sql) -> tuple[str, str]:
    """A queue worth looking at; returns a waiting job and a dead one."""
    for n in range(12):
        pulse.enqueue("emails.send", {"to": f"user{n}@example.com"})
    waiting = pulse.enqueue("thumbnails.make", {"path": "cat.png"}, delay=3600)
    for n in range(4):
        pulse.enqueue("thumbnails.make", {"path": f"{n}.png"}, delay=3600)
    finish_jobs(
        addr, "thumbnails.make", [{"path": f"{n}.png"} for n in range(30)], **_ALICE
    )
    finish_jobs(
        addr,
        "reports.build",
        [{}] * 20 + [{"fail": f"ValueError: bad row {n}"} for n in (17, 42, 99)],
        **_ALICE,
    )
    dead, *_ = finish_jobs(
        addr,
        "webhooks.deliver",
        [
            {
                "url": "https://example.com/hook",
                "fail": "ConnectionError: timeout after 30s",
            }
        ]
        * 5
        + [{"fail": "HTTP 410 Gone"}],
        **_ALICE,
    )
    # Spread the finished jobs over the last hour, for a chart worth seeing.
    sql.execute(
        "UPDATE jobs SET finished_at = now() - random() * interval '58 minutes'"
        " WHERE finished_at IS NOT NULL"
    )
    pulse.schedule(
        "reports.build",
        {"span": "1h"},
        Cron("0 * * * *", "Europe/Berlin"),
        name="reports.hourly",
    )
    pulse.schedule("cache.warm", {}, Every(300), name="cache.warm")
    pulse.schedule("legacy.sync", {}, Every(3600), name="legacy.sync")
    pulse.pause_schedule("legacy.sync")
    pulse.pause_dispatch("partner API outage", topic="webhooks.deliver")
    return waiting, dead


def _accept(dialog: Dialog) -> None:
    dialog.accept()


class _Screenshots:
    def __init__(self, page: Page, folder: pathlib.Path) -> None:
        self._page = page
        self._folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def take(self, name: str) -> None:
        self._page.screenshot(path=str(self._folder / f"{name}.png"), full_page=True)

    def publish(self) -> None:
        target = os.environ.get("WEB_SCREENSHOTS_DIR")
        if not target:
            return
        pathlib.Path(target).mkdir(parents=True, exist_ok=True)
        for shot in self._folder.glob("*.png"):
            shutil.copy(shot, pathlib.Path(target) / shot.name)
