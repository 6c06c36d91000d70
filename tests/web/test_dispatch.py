"""The dispatch switch page."""

from __future__ import annotations

from tests.web.conftest import Web


def test_pause_with_a_reason_shows_who_paused_and_resume_ends_it(web: Web) -> None:
    assert "Running" in web.get("/dispatch")

    paused = web.follow(web.post("/dispatch/pause", {"reason": "db upgrade"}))

    assert "Dispatch paused for every topic" in paused
    assert '<td class="paused-by">anonymous</td>' in paused
    assert "db upgrade" in paused
    status = web.pulse.dispatch_status()
    assert status.paused and status.all is not None
    assert status.all.reason == "db upgrade"

    resumed = web.follow(web.post("/dispatch/resume"))

    assert "Dispatch resumed for every topic" in resumed
    assert not web.pulse.dispatch_status().paused


def test_one_topic_pauses_and_resumes_on_its_own(web: Web) -> None:
    web.pulse.enqueue("emails.send", {})
    page = web.get("/dispatch")
    assert '<option value="emails.send">' in page

    web.post("/dispatch/pause", {"topic": "emails.send", "reason": "provider down"})
    paused = web.get("/dispatch")

    assert web.pulse.dispatch_status().is_paused("emails.send")
    assert not web.pulse.dispatch_status().paused
    assert "<td>emails.send</td>" in paused and "provider down" in paused

    web.post("/dispatch/resume", {"topic": "emails.send"})

    assert not web.pulse.dispatch_status().is_paused("emails.send")


def test_pause_without_a_reason_a_bad_topic_or_a_token_is_refused(web: Web) -> None:
    web.post("/dispatch/pause", {"reason": "x"}, csrf=False, status=400)
    no_reason = web.post("/dispatch/pause", {"reason": "  "}, status=400)
    bad_topic = web.post(
        "/dispatch/pause", {"topic": "no spaces!", "reason": "x"}, status=400
    )

    assert "give a reason" in no_reason.get_data(as_text=True)
    assert "no spaces!" in bad_topic.get_data(as_text=True)
    assert not web.pulse.dispatch_status().paused
    assert not web.pulse.dispatch_status().topics
