"""The audit log page."""

from __future__ import annotations

from tests.web.conftest import Web


def test_audit_lists_actions_newest_first_with_filters(web: Web) -> None:
    job_id = web.pulse.enqueue("emails.send", {}, delay=3600)
    web.post(f"/jobs/{job_id}/cancel")
    web.post("/dispatch/pause", {"reason": "window"})
    web.post("/dispatch/resume")

    page = web.get("/audit")

    resume = page.index("<code>dispatch.resume</code>")
    pause = page.index("<code>dispatch.pause</code>")
    cancel = page.index("<code>job.cancel</code>")
    assert resume < pause < cancel
    assert f'href="/jobs/{job_id}"' in page
    assert '<td class="audit-user">anonymous</td>' in page
    assert "&#34;reason&#34;: &#34;window&#34;" in page

    only_cancels = web.get("/audit?action=job.cancel")
    assert "<code>dispatch.pause</code>" not in only_cancels
    assert "<code>job.cancel</code>" in only_cancels
    assert "<code>job.cancel</code>" not in web.get("/audit?user=somebody-else")


def test_audit_with_a_bad_page_token_answers_400(web: Web) -> None:
    assert "Bad request" in web.get("/audit?page=%%%", status=400)
