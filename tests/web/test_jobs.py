"""The job browser, the job page and its buttons, and bulk requeue."""

from __future__ import annotations

import re
import uuid

from pulse_client import JobStatus
from tests.web.conftest import Web, finish_jobs


def test_browser_lists_jobs_newest_first_filtered_by_status_and_topic(web: Web) -> None:
    first = web.pulse.enqueue("emails.send", {"n": 1})
    second = web.pulse.enqueue("emails.send", {"n": 2})
    other = web.pulse.enqueue("thumbs.make", {"n": 3}, delay=3600)

    everything = web.get("/jobs")
    assert everything.index(other) < everything.index(second) < everything.index(first)

    emails = web.get("/jobs?topic=emails.send&status=pending")
    assert first in emails and second in emails
    assert other not in emails
    scheduled = web.get("/jobs?status=scheduled")
    assert other in scheduled and first not in scheduled


def test_browser_filters_by_text_in_the_error(web: Web) -> None:
    timeout, refused = finish_jobs(
        web.addr,
        "emails.send",
        [{"fail": "SMTP timeout after 30s"}, {"fail": "recipient refused"}],
    )

    page = web.get("/jobs?status=dead_lettered&error=TIMEOUT")

    assert timeout in page
    assert refused not in page
    assert "SMTP timeout after 30s" in page


def test_browser_pages_through_jobs(web: Web) -> None:
    ids = [web.pulse.enqueue("emails.send", {"n": n}) for n in range(3)]

    first = web.get("/jobs?topic=emails.send&limit=2")
    link = re.search(r'href="([^"]+)" rel="next"', first)
    assert link, "no link to the next page"
    second = web.get(link.group(1).replace("&amp;", "&"))

    assert ids[2] in first and ids[1] in first and ids[0] not in first
    assert ids[0] in second and ids[2] not in second
    assert 'rel="next"' not in second


def test_bad_input_answers_400_and_unknown_jobs_404(web: Web) -> None:
    page = web.get("/jobs?status=exploded&topic=emails.send", status=400)
    assert "unknown status &#39;exploded&#39;" in page
    assert 'value="emails.send"' in page
    assert "is not valid" in web.get("/jobs?page=garbage", status=400)
    assert "limit" in web.get("/jobs?limit=0", status=400)
    assert "topic" in web.get("/jobs?topic=bad%20topic!", status=400)

    unknown = str(uuid.uuid4())
    assert "not found" in web.get(f"/jobs/{unknown}", status=404)
    assert "not a job id" in web.get("/jobs/not-a-uuid", status=404)
    web.post(f"/jobs/{unknown}/cancel", status=404)


def test_job_page_shows_every_field_and_the_payload_pretty_printed(web: Web) -> None:
    job_id = web.pulse.enqueue(
        "emails.send", {"to": "a@example.com", "tags": ["x"]}, priority=7
    )

    page = web.get(f"/jobs/{job_id}")

    for label in (
        "topic",
        "status",
        "priority",
        "attempt",
        "attempts used",
        "timeout",
        "created",
        "run at",
        "started",
        "finished",
        "lease expires",
        "worker",
    ):
        assert f"<th>{label}</th>" in page
    assert "<td>7</td>" in page
    assert "JSON" in page
    assert "{\n  &#34;to&#34;: &#34;a@example.com&#34;,\n  &#34;tags&#34;: [" in page
    assert "Cancel</button>" in page
    assert "Requeue</button>" not in page


def test_payloads_and_errors_are_shown_as_text_whatever_they_hold(web: Web) -> None:
    (scripted,) = finish_jobs(
        web.addr,
        "emails.send",
        [{"body": "<script>alert(1)</script>", "fail": "<img src=x onerror=alert(2)>"}],
    )
    raw = b"\x00\x01<b>\xff\xfe"
    binary = web.pulse.enqueue("blobs.store", raw)

    pages = [web.get(f"/jobs/{scripted}"), web.get("/jobs?status=dead_lettered")]
    for page in pages:
        assert "<script>alert" not in page
        assert "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[0]
    assert "&lt;img src=x onerror=alert(2)&gt;" in pages[0]

    dump = web.get(f"/jobs/{binary}")
    assert "Binary" in dump
    assert "00 01 3c 62 3e ff fe" in dump
    assert "|..&lt;b&gt;..|" in dump
    download = web.http.get(f"/jobs/{binary}/payload")
    assert download.status_code == 200
    assert download.data == raw
    assert download.headers["Content-Type"] == "application/octet-stream"
    assert download.headers["Content-Disposition"].startswith("attachment")


def test_cancel_button_cancels_and_the_audit_names_the_caller(web: Web) -> None:
    job_id = web.pulse.enqueue("emails.send", {}, delay=3600)

    answer = web.post(f"/jobs/{job_id}/cancel")
    page = web.follow(answer)

    assert answer.headers["Location"] == f"/jobs/{job_id}"
    assert "Job canceled" in page
    assert web.pulse.get_job(job_id).status == JobStatus.CANCELED
    (entry,) = web.pulse.list_audit(action="job.cancel").entries
    assert (entry.user, entry.target) == ("anonymous", job_id)


def test_requeue_button_puts_a_dead_letter_back_and_a_refusal_is_a_message(
    web: Web,
) -> None:
    (job_id,) = finish_jobs(web.addr, "emails.send", [{"fail": "boom"}])
    assert "Requeue</button>" in web.get(f"/jobs/{job_id}")

    page = web.follow(web.post(f"/jobs/{job_id}/requeue"))

    assert "Job requeued" in page
    assert web.pulse.get_job(job_id).status == JobStatus.PENDING

    # Pressed again (say, in a second tab): pulsed refuses, the page says why
    again = web.follow(web.post(f"/jobs/{job_id}/requeue"))
    assert "cannot requeue job" in again
    assert "flash-error" in again
    assert web.pulse.get_job(job_id).status == JobStatus.PENDING


def test_posts_without_a_valid_csrf_token_are_refused(web: Web) -> None:
    job_id = web.pulse.enqueue("emails.send", {}, delay=3600)

    missing = web.post(f"/jobs/{job_id}/cancel", csrf=False, status=400)
    forged = web.post(
        f"/jobs/{job_id}/cancel", {"csrf_token": "forged"}, csrf=False, status=400
    )

    for answer in (missing, forged):
        assert "did not carry a valid token" in answer.get_data(as_text=True)
    assert web.pulse.get_job(job_id).status == JobStatus.SCHEDULED
    # GETs never change anything, so they need no token
    web.get(f"/jobs/{job_id}")


def test_bulk_requeue_confirms_the_count_then_requeues_every_match(web: Web) -> None:
    ids = finish_jobs(
        web.addr,
        "emails.send",
        [{"fail": "SMTP timeout"}] * 3 + [{"fail": "recipient refused"}],
    )
    finish_jobs(web.addr, "thumbs.make", [{"fail": "SMTP timeout"}])

    listing = web.get("/jobs?status=dead_lettered&topic=emails.send&error=timeout")
    assert "/requeue?back=jobs&amp;topic=emails.send&amp;error=timeout" in listing
    confirm = web.get("/requeue?back=jobs&topic=emails.send&error=timeout")
    assert "<strong>3</strong> dead-lettered jobs match" in confirm

    answer = web.post(
        "/requeue",
        {"topic": "emails.send", "error": "timeout", "expected": "3", "back": "jobs"},
    )
    page = web.follow(answer)

    assert "Requeued 3 dead-lettered job(s)." in page
    statuses = [web.pulse.get_job(i).status for i in ids]
    assert statuses == [JobStatus.PENDING] * 3 + [JobStatus.DEAD_LETTERED]
    # Nothing left to requeue: no button
    again = web.get("/requeue?back=jobs&topic=emails.send&error=timeout")
    assert "nothing to requeue" in again
    assert "<button" not in again.split("<main>")[1]
