"""The schedules pages: list, detail with preview and history, pause,
resume, delete."""

from __future__ import annotations

import time

from pulse_client import Cron, Every
from tests.web.conftest import Web


def test_schedules_list_and_page_show_next_fires_and_last_outcomes(web: Web) -> None:
    web.pulse.schedule(
        "reports.rollup", {"span": "1h"}, Cron("0 * * * *"), name="hourly"
    )
    web.pulse.schedule("pings.send", {}, Every(1), name="ping")
    deadline = time.monotonic() + 15
    while not web.pulse.get_schedule("ping").last_job_id:
        assert time.monotonic() < deadline, "the schedule did not fire"
        time.sleep(0.1)

    listing = web.get("/schedules")

    assert "cron 0 * * * * (UTC)" in listing
    assert "every 1.0s" in listing
    hourly = web.pulse.get_schedule("hourly")
    assert hourly.next_fire_at is not None
    assert f'datetime="{hourly.next_fire_at.isoformat()}"' in listing
    ping = web.pulse.get_schedule("ping")
    assert f"/jobs/{ping.last_job_id}" in listing

    page = web.get("/schedules/hourly")
    upcoming = web.pulse.preview_schedule("hourly", count=10)
    assert len(upcoming) == 10
    for moment in upcoming:
        assert f'<time datetime="{moment.isoformat()}">' in page
    assert "&#34;span&#34;: &#34;1h&#34;" in page
    assert "It has not fired yet." in page
    history = web.get("/schedules/ping")
    assert f"/jobs/{ping.last_job_id}" in history
    assert "It has not fired yet." not in history


def test_schedule_buttons_pause_resume_and_delete(web: Web) -> None:
    web.pulse.schedule("reports.rollup", {}, Cron("0 * * * *"), name="hourly")

    paused = web.follow(web.post("/schedules/hourly/pause", {"back": "list"}))
    assert "Schedule &#39;hourly&#39; paused" in paused
    assert "Resume</button>" in paused
    assert web.pulse.get_schedule("hourly").paused

    resumed = web.follow(web.post("/schedules/hourly/resume"))
    assert "Schedule &#39;hourly&#39; resumed" in resumed
    assert not web.pulse.get_schedule("hourly").paused

    deleted = web.follow(web.post("/schedules/hourly/delete"))
    assert "deleted" in deleted
    assert "No schedules." in deleted
    actions = [e.action for e in web.pulse.list_audit().entries]
    assert actions[:3] == ["schedule.delete", "schedule.resume", "schedule.pause"]


def test_unknown_schedule_answers_404(web: Web) -> None:
    assert "not found" in web.get("/schedules/nope", status=404).lower()
    web.post("/schedules/nope/pause", status=404)
