"""Any query or form the dashboard's routes receive is answered with a page,
a redirect or a clear 400/403/404, never a 500 or a traceback, and the
stored data stays as it was (issue 8, "bad input at the edges").

The Flask test client drives ``create_app`` against the shared seeded
pulsed. State-changing posts carry the session's CSRF token, except when
the property leaves it out on purpose (then 400), and name only ids,
names and topics that are not seeded.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from flask.testing import FlaskClient
from hypothesis import given, settings
from hypothesis import strategies as st

from pulse_web.app import close_app, create_app
from pulse_web.config import WebConfig
from tests.property.conftest import Stored
from tests.property.strategies import TOPICS, TRICKY_TEXT

ALLOWED_STATUSES = {200, 303, 400, 403, 404}
_CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')

# Text as a browser might send it; the huge tricky texts stay out (the
# dashboard caps its form size, which its own tests hold).
_TEXT = st.one_of(st.text(max_size=30), st.sampled_from(TRICKY_TEXT[:-3]), TOPICS)
_STATUSES = st.one_of(
    st.sampled_from(["", "pending", "dead_lettered", "canceled", "DONE", "running "]),
    _TEXT,
)
_NUMBERS = st.one_of(
    st.integers(-(2**70), 2**70).map(str), st.sampled_from(["", "0", "1e3", "nan"])
)
_TOKENS = st.one_of(_TEXT, st.binary(max_size=40).map(lambda b: b.hex()))


@pytest.fixture(scope="module")
def browser(stored: Stored) -> Iterator[tuple[FlaskClient, str]]:
    """The dashboard's test client and its session's CSRF token."""
    app = create_app(WebConfig(addr=stored.addr, timeout_seconds=10.0))
    try:
        http = app.test_client()
        page = http.get("/dispatch").get_data(as_text=True)
        match = _CSRF_INPUT.search(page)
        assert match, "no CSRF token on /dispatch"
        yield http, match.group(1)
    finally:
        close_app(app)


def _segment(value: str) -> str:
    # The WSGI path arrives decoded, so a "/" (even as %2F) would pick
    # another route (405) and an empty segment makes "//", which Werkzeug
    # redirects (308) before any view runs. Query and form values keep both.
    return quote(value.replace("/", "|") or " ", safe="")


def requests(stored: Stored) -> st.SearchStrategy[tuple[str, str, dict[str, Any]]]:
    """(method, path, query-or-form) for every route of the dashboard."""

    def unseeded(values: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return values.map(lambda v: v + "-other" if stored.is_seeded(v.strip()) else v)

    ids = st.one_of(st.uuids().map(str), _TEXT)
    read_ids = st.one_of(ids, st.sampled_from(sorted(stored.job_ids.values())))
    read_names = st.one_of(_TEXT, st.sampled_from(stored.schedule_names))

    def query(**fields: st.SearchStrategy[str]) -> st.SearchStrategy[dict[str, str]]:
        return st.fixed_dictionaries({}, optional=fields)

    gets = st.one_of(
        st.tuples(st.sampled_from(["/", "/overview/panel", "/dispatch"]), query()),
        st.tuples(
            st.just("/jobs"),
            query(
                status=_STATUSES, topic=_TEXT, error=_TEXT, page=_TOKENS, limit=_NUMBERS
            ),
        ),
        st.tuples(
            read_ids.map(lambda i: f"/jobs/{_segment(i)}"),
            query(back=_TEXT, status=_STATUSES),
        ),
        st.tuples(read_ids.map(lambda i: f"/jobs/{_segment(i)}/payload"), query()),
        st.tuples(
            st.just("/requeue"),
            query(topic=_TEXT, error=_TEXT, signature=_TEXT, back=_TEXT),
        ),
        st.tuples(st.just("/dead-letters"), query(topic=_TEXT)),
        st.tuples(st.just("/schedules"), query(topic=_TEXT, page=_TOKENS)),
        st.tuples(read_names.map(lambda n: f"/schedules/{_segment(n)}"), query()),
        st.tuples(st.just("/audit"), query(user=_TEXT, action=_TEXT, page=_TOKENS)),
    ).map(lambda pair: ("GET", pair[0], pair[1]))

    # A bulk requeue without a topic takes every dead letter, the seeded
    # ones too: these always name a topic that is not seeded.
    requeue_topics = unseeded(_TEXT).map(lambda t: t if t.strip() else "prop.none")
    posts = st.one_of(
        st.tuples(
            st.sampled_from(["cancel", "requeue"]).flatmap(
                lambda verb: unseeded(ids).map(lambda i: f"/jobs/{_segment(i)}/{verb}")
            ),
            query(back=_TEXT),
        ),
        st.tuples(
            st.just("/requeue"),
            st.builds(
                lambda topic, rest: {"topic": topic, **rest},
                requeue_topics,
                query(error=_TEXT, signature=_TEXT, expected=_NUMBERS, back=_TEXT),
            ),
        ),
        st.tuples(
            st.just("/dispatch/pause"),
            query(topic=unseeded(_TEXT), reason=_TEXT),
        ),
        st.tuples(st.just("/dispatch/resume"), query(topic=unseeded(_TEXT))),
        st.tuples(
            st.sampled_from(["pause", "resume", "delete"]).flatmap(
                lambda verb: unseeded(_TEXT).map(
                    lambda n: f"/schedules/{_segment(n)}/{verb}"
                )
            ),
            query(back=_TEXT),
        ),
    ).map(lambda pair: ("POST", pair[0], pair[1]))
    return st.one_of(gets, posts)


def test_any_query_or_form_gets_a_page_or_a_clear_refusal(
    stored: Stored, browser: tuple[FlaskClient, str]
) -> None:
    http, csrf_token = browser
    before = stored.snapshot()

    @settings(max_examples=150)
    @given(request=requests(stored), with_token=st.booleans() | st.just(True))
    def check(request: tuple[str, str, dict[str, Any]], with_token: bool) -> None:
        method, path, fields = request
        stored.new_log()
        if method == "GET":
            response = http.get(path, query_string=fields)
        else:
            form = {**fields, "csrf_token": csrf_token} if with_token else fields
            response = http.post(path, data=form)
        body = response.get_data(as_text=True)

        assert response.status_code in ALLOWED_STATUSES, (response.status, body)
        assert "Traceback" not in body
        if method == "POST" and not with_token:
            assert response.status_code == 400, response.status
        stored.assert_healthy()
        assert stored.snapshot() == before

    check()
