"""The overview page and its self-refreshing panel."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from tests.web.conftest import Relay, Web, finish_jobs


def test_overview_shows_queue_composition_oldest_waiting_job_and_dispatch(
    web: Web,
) -> None:
    # Given jobs waiting in two topics and finished ones in a third
    oldest = web.pulse.enqueue("emails.send", {"to": "a@example.com"})
    web.pulse.enqueue("emails.send", {"to": "b@example.com"})
    web.pulse.enqueue("thumbs.make", {"path": "a.png"}, delay=3600)
    finish_jobs(web.addr, "reports.build", [{}, {"fail": "disk full"}])

    page = web.get("/")

    # The table has a row per topic with its counts per status and a bar
    row = _row(page, "emails.send")
    assert _counts(row)["pending"] == 2
    assert 'class="seg s-pending" style="width: 100.00%"' in row
    reports = _counts(_row(page, "reports.build"))
    assert reports["completed"] == 1 and reports["dead_lettered"] == 1
    assert _counts(_row(page, "thumbs.make"))["scheduled"] == 1
    assert f"/jobs/{oldest}" in page
    assert "Running" in page
    # The throughput chart is an SVG drawn on the server
    chart = re.search(r"<svg.*?</svg>", page, re.S)
    assert chart, "no chart on the overview"
    assert "1 completed, 1 dead-lettered" in chart.group(0)
    # The panel polls itself
    assert 'hx-get="/overview/panel"' in page
    assert 'hx-trigger="every 5.0s"' in page


def test_panel_fragment_is_the_panel_alone_and_follows_the_queue(web: Web) -> None:
    first = web.get("/overview/panel", headers={"HX-Request": "true"})
    assert "<html" not in first
    assert "No jobs yet." in first

    web.pulse.enqueue("emails.send", {})
    web.pulse.pause_dispatch("maintenance window")
    second = web.get("/overview/panel", headers={"HX-Request": "true"})

    assert "emails.send" in second
    assert "Paused for every topic" in second
    assert "maintenance window" in second
    assert "anonymous" in second


def test_pulsed_down_shows_a_banner_and_the_page_recovers_by_itself(
    relay: Relay, make_web: Callable[..., Web]
) -> None:
    web = make_web(relay.addr)
    web.pulse.enqueue("emails.send", {})
    assert "emails.send" in web.get("/")

    # When pulsed goes away, the overview still loads, with a banner in its
    # polled panel; the fragment answers 503 with the banner alone
    relay.cut()
    page = web.get("/", status=503)
    assert "pulsed cannot be reached" in page
    assert "Traceback" not in page
    fragment = web.get("/overview/panel", status=503, headers={"HX-Request": "true"})
    assert "pulsed cannot be reached" in fragment
    assert "<html" not in fragment
    # Other pages show the banner and reload themselves
    jobs = web.get("/jobs", status=503)
    assert "pulsed cannot be reached" in jobs
    assert '<meta http-equiv="refresh"' in jobs

    # When it is back, the next poll shows the figures again
    relay.restore()
    deadline = time.monotonic() + 15
    while True:
        response = web.http.get("/overview/panel", headers={"HX-Request": "true"})
        if response.status_code == 200:
            break
        assert time.monotonic() < deadline, "the dashboard did not recover"
        time.sleep(0.2)
    assert "emails.send" in response.get_data(as_text=True)


def _row(page: str, topic: str) -> str:
    for row in re.findall(r"<tr>.*?</tr>", page, re.S):
        if f">{topic}</a>" in row:
            return str(row)
    raise AssertionError(f"no row for {topic} in:\n{page}")


def _counts(row: str) -> dict[str, int]:
    counts = {}
    for status, value in re.findall(r"status=(\w+)\">(\d+)</a>", row):
        counts[status] = int(value)
    return {
        s: counts.get(s, 0)
        for s in (
            "scheduled",
            "pending",
            "running",
            "retrying",
            "completed",
            "dead_lettered",
            "canceled",
        )
    }
