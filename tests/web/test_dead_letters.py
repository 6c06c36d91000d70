"""Dead letters grouped by error, and requeueing a group."""

from __future__ import annotations

import re

from pulse_client import JobStatus
from tests.web.conftest import Web, finish_jobs


def test_groups_count_every_dead_letter_and_a_group_requeues(web: Web) -> None:
    # More than one page of the job browser, so that a count taken from a
    # page would be wrong
    timeouts = finish_jobs(
        web.addr, "emails.send", [{"fail": f"timeout after {n}s"} for n in range(120)]
    )
    (refused,) = finish_jobs(web.addr, "emails.send", [{"fail": "recipient refused"}])
    finish_jobs(web.addr, "thumbs.make", [{"fail": "timeout after 9s"}])

    page = web.get("/dead-letters")

    assert "<strong>122</strong> jobs in 3 groups" in page
    rows = re.findall(r"<tr>.*?</tr>", page, re.S)
    counts = sorted(
        (re.search(r"<td>([\w.]+)</td>", r).group(1), int(c))  # type: ignore[union-attr]
        for r in rows
        for c in re.findall(r'<td class="num">(\d+)</td>', r)
    )
    assert counts == [("emails.send", 1), ("emails.send", 120), ("thumbs.make", 1)]
    assert "recipient refused" in page
    only_thumbs = web.get("/dead-letters?topic=thumbs.make")
    assert "<strong>1</strong> job in 1 group" in only_thumbs

    # Largest group first: the timeouts
    group = web.pulse.dead_letter_groups(topic="emails.send")[0].error_signature
    link = re.search(r'href="(/requeue\?back=dead_letters[^"]+)"', page)
    assert link is not None
    confirm = web.get(link.group(1).replace("&amp;", "&"))
    assert "<strong>120</strong> dead-lettered jobs match" in confirm

    answer = web.post(
        "/requeue",
        {
            "topic": "emails.send",
            "signature": group,
            "expected": "120",
            "back": "dead_letters",
        },
    )
    assert answer.headers["Location"] == "/dead-letters"
    after = web.follow(answer)

    assert "Requeued 120 dead-lettered job(s)." in after
    assert {web.pulse.get_job(i).status for i in timeouts} == {JobStatus.PENDING}
    assert web.pulse.get_job(refused).status == JobStatus.DEAD_LETTERED
    assert "<strong>2</strong> jobs in 2 groups" in after


def test_bad_topic_filter_answers_400(web: Web) -> None:
    assert "topic" in web.get("/dead-letters?topic=no%20spaces", status=400)
