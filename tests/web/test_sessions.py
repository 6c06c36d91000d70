"""The in-memory session store: bounded, expiring, closing what it drops."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pulse_client import ClientClosed, Pulse
from pulse_web.sessions import SessionStore

# Nothing listens there; these clients are never used for a call that
# reaches a server, only to see whether they were closed.
NOWHERE = "127.0.0.1:9"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clients() -> Iterator[list[Pulse]]:
    made: list[Pulse] = []
    yield made
    for client in made:
        client.close()


def _client(clients: list[Pulse]) -> Pulse:
    client = Pulse(NOWHERE, timeout_seconds=0.5)
    clients.append(client)
    return client


def _closed(client: Pulse) -> bool:
    try:
        client.whoami()
    except ClientClosed:
        return True
    except Exception:
        return False
    return False


def test_ids_are_random_and_name_their_session(clients: list[Pulse]) -> None:
    store = SessionStore(max_sessions=10, idle_seconds=60)

    alice = store.add("alice", "operator", _client(clients))
    bob = store.add("bob", "viewer", _client(clients))

    assert alice.session_id and bob.session_id
    assert alice.session_id != bob.session_id and len(alice.session_id) >= 40
    assert store.get(alice.session_id) == alice
    assert store.get("made-up") is None


def test_an_idle_session_expires_and_its_client_is_closed(clients: list[Pulse]) -> None:
    clock = Clock()
    store = SessionStore(max_sessions=10, idle_seconds=60, clock=clock)
    idle = store.add("alice", "operator", _client(clients))
    busy = store.add("bob", "operator", _client(clients))

    clock.now += 50
    assert store.get(busy.session_id or "") is not None
    clock.now += 20

    assert store.get(idle.session_id or "") is None
    assert _closed(idle.client)
    assert store.get(busy.session_id or "") is not None
    assert not _closed(busy.client)


def test_beyond_the_limit_the_least_recently_used_session_ends(
    clients: list[Pulse],
) -> None:
    clock = Clock()
    store = SessionStore(max_sessions=2, idle_seconds=3600, clock=clock)
    first = store.add("a", "viewer", _client(clients))
    clock.now += 1
    second = store.add("b", "viewer", _client(clients))
    clock.now += 1
    store.get(first.session_id or "")  # used again: now the newest
    clock.now += 1

    store.add("c", "viewer", _client(clients))

    assert len(store) == 2
    assert store.get(second.session_id or "") is None
    assert _closed(second.client)
    assert store.get(first.session_id or "") is not None


def test_ending_and_closing_close_the_clients(clients: list[Pulse]) -> None:
    store = SessionStore(max_sessions=10, idle_seconds=60)
    ended = store.add("a", "viewer", _client(clients))
    kept = store.add("b", "viewer", _client(clients))

    store.end(ended.session_id or "")
    assert _closed(ended.client) and not _closed(kept.client)

    store.close()
    assert _closed(kept.client)
    assert len(store) == 0
