"""Limits of the wire contract that both the SDK and the server enforce."""

from __future__ import annotations

import functools
import re

from pulse_client.errors import InvalidArgument

TOPIC_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,200}")
MAX_PRIORITY = 1000
MAX_ATTEMPTS_LIMIT = 1000
# Far enough for any real delay, near enough to stay inside timestamptz.
MAX_DELAY_MS = 100 * 365 * 24 * 3600 * 1000
MAX_TIMEOUT_MS = 365 * 24 * 3600 * 1000
# The longest delay a handler may ask for with RetryLater.
MAX_RETRY_DELAY_MS = 30 * 24 * 3600 * 1000
MAX_PAGE_SIZE = 1000
# Jobs a worker may hold beyond its handler threads (Pulse's prefetch).
MAX_PREFETCH = 10_000
# Jobs one worker stream holds at once (its credits): concurrency + prefetch.
MAX_CREDITS_PER_STREAM = 10_000
# Topics one worker stream serves (each topic is one index probe per claim).
MAX_TOPICS_PER_WORKER = 1000


def validate_topic(topic: str) -> str:
    """Return ``topic`` if pulse accepts it; raise InvalidArgument otherwise."""
    if not isinstance(topic, str) or not _is_topic(topic):
        raise InvalidArgument(
            f"topic {str(topic)[:220]!r} is invalid: "
            "use 1-200 letters, digits or '._:-'"
        )
    return topic


# A bulk submit checks the same few topics over and over: remember them.
@functools.lru_cache(maxsize=1024)
def _is_topic(text: str) -> bool:
    return TOPIC_PATTERN.fullmatch(text) is not None


def validate_text(name: str, text: str) -> str:
    """Return ``text`` if Postgres can store and match it; raise
    InvalidArgument naming the field ``name`` otherwise (it holds NUL)."""
    if "\x00" in text:
        raise InvalidArgument(
            f"{name} {text[:60]!r} holds a NUL character, which pulse cannot "
            "store or match; remove it"
        )
    return text
