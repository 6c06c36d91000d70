"""pulsed.auth.Authenticator and FailureThrottle, without a server.

The integration tests (tests/integration/test_auth.py) drive the same code
through a real pulsed; these pin the details that are hard to see from
outside: what is cached, what is slowed down, what is logged.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable

import pytest

from pulse_client.errors import Unauthenticated
from pulsed import auth, passwords
from pulsed.auth import Authenticator, FailureThrottle, User

PEER = "ipv4:10.1.2.3:40001"
SAME_HOST_OTHER_PORT = "ipv4:10.1.2.3:40002"
OTHER_HOST = "ipv4:10.9.9.9:40001"
# passwords.hash_password("bcrypt-pw", rounds=4)
BCRYPT_PW_HASH = "$2b$04$rnyn6ChaR7J2F73PQurpJ.DU3H6SNPLNWonWxiDAePIifCLtuOVDa"


def basic(user: str, password: str) -> tuple[tuple[str, str], ...]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return (("authorization", f"Basic {token}"),)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def verifications(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The passwords bcrypt was asked to verify, in order."""
    seen: list[str] = []
    real = passwords.verify_password

    def counting(password: str, hashed: str) -> bool:
        seen.append(password)
        return real(password, hashed)

    monkeypatch.setattr(passwords, "verify_password", counting)
    return seen


@pytest.fixture
def make_authenticator(clock: FakeClock) -> Callable[..., Authenticator]:
    def make(*users: User) -> Authenticator:
        return Authenticator(
            users
            or (User("ops", "s3cret", "admin"), User("w", BCRYPT_PW_HASH, "worker")),
            throttle=FailureThrottle(clock),
            sleep=clock.sleep,
        )

    return make


def test_the_sample_hash_is_real() -> None:
    assert passwords.verify_password("bcrypt-pw", BCRYPT_PW_HASH)


def test_plaintext_and_bcrypt_users_are_accepted_with_their_roles(
    make_authenticator: Callable[..., Authenticator],
) -> None:
    authenticator = make_authenticator()

    ops = authenticator.authenticate(basic("ops", "s3cret"), PEER)
    worker = authenticator.authenticate(basic("w", "bcrypt-pw"), PEER)

    assert ops == auth.Caller("ops", "admin", PEER, True)
    assert worker == auth.Caller("w", "worker", PEER, True)


def test_a_call_without_credentials_is_neither_accepted_nor_refused_here(
    make_authenticator: Callable[..., Authenticator],
) -> None:
    # The interceptor decides: WhoAmI answers, everything else is refused.
    assert make_authenticator().authenticate((), PEER) is None
    assert make_authenticator().authenticate((("other", "x"),), PEER) is None


@pytest.mark.parametrize(
    "metadata",
    [
        basic("ops", "wrong"),
        basic("nobody", "s3cret"),
        basic("w", "bcrypt-px"),
        basic("ops", ""),
        (("authorization", "Bearer abc"),),
        (("authorization", "Basic !!!not-base64"),),
        (("authorization", "Basic " + base64.b64encode(b"no-colon").decode()),),
        (("authorization", "Basic " + base64.b64encode(b":s3cret").decode()),),
        (("authorization", "Basic " + base64.b64encode(b"\xff\xfe:x").decode()),),
        basic("ops", "s3cret") + basic("ops", "s3cret"),
    ],
    ids=[
        "wrong-password",
        "unknown-user",
        "wrong-bcrypt-password",
        "empty-password",
        "not-basic",
        "not-base64",
        "no-colon",
        "no-user",
        "not-utf8",
        "two-headers",
    ],
)
def test_wrong_or_malformed_credentials_get_one_generic_refusal(
    make_authenticator: Callable[..., Authenticator],
    metadata: tuple[tuple[str, str], ...],
) -> None:
    with pytest.raises(Unauthenticated) as excinfo:
        make_authenticator().authenticate(metadata, PEER)

    assert str(excinfo.value) == auth.REFUSED_MESSAGE


def test_bcrypt_runs_once_per_credential_not_once_per_call(
    make_authenticator: Callable[..., Authenticator], verifications: list[str]
) -> None:
    authenticator = make_authenticator()

    for _ in range(50):
        authenticator.authenticate(basic("w", "bcrypt-pw"), PEER)
        authenticator.authenticate(basic("w", "bcrypt-pw"), OTHER_HOST)

    assert verifications == ["bcrypt-pw"]


@pytest.mark.parametrize("password", ["bcrypt-pw", "guess"], ids=["right", "wrong"])
def test_concurrent_first_calls_with_one_credential_share_one_bcrypt_check(
    monkeypatch: pytest.MonkeyPatch, password: str
) -> None:
    # A fleet of workers reconnecting after a restart, all at once.
    checks: list[str] = []
    release = threading.Event()
    real = passwords.verify_password

    def slow(presented: str, hashed: str) -> bool:
        checks.append(presented)
        release.wait(5)
        return real(presented, hashed)

    monkeypatch.setattr(passwords, "verify_password", slow)
    authenticator = Authenticator([User("w", BCRYPT_PW_HASH, "worker")])
    outcomes: list[str] = []
    arrived = threading.Barrier(9)

    def connect() -> None:
        arrived.wait(5)
        try:
            caller = authenticator.authenticate(basic("w", password), PEER)
            outcomes.append(caller.user if caller else "none")
        except Unauthenticated:
            outcomes.append("refused")

    threads = [threading.Thread(target=connect) for _ in range(8)]
    for thread in threads:
        thread.start()
    arrived.wait(5)
    while not checks:
        time.sleep(0.01)
    time.sleep(0.2)  # the others are waiting for the first check by now
    release.set()
    for thread in threads:
        thread.join(5)

    assert checks == [password]
    expected = "w" if password == "bcrypt-pw" else "refused"
    assert outcomes == [expected] * 8


def test_a_wrong_password_is_never_cached_as_valid(
    make_authenticator: Callable[..., Authenticator], verifications: list[str]
) -> None:
    authenticator = make_authenticator()

    for _ in range(3):
        with pytest.raises(Unauthenticated):
            authenticator.authenticate(basic("w", "guess"), PEER)
    caller = authenticator.authenticate(basic("w", "bcrypt-pw"), PEER)

    assert verifications == ["guess", "guess", "guess", "bcrypt-pw"]
    assert caller is not None and caller.user == "w"


def test_the_cached_credential_is_bound_to_its_user(
    make_authenticator: Callable[..., Authenticator],
) -> None:
    authenticator = make_authenticator(
        User("a", "same-password", "admin"), User("b", "other", "viewer")
    )
    authenticator.authenticate(basic("a", "same-password"), PEER)

    with pytest.raises(Unauthenticated):
        authenticator.authenticate(basic("b", "same-password"), PEER)


def test_an_unknown_user_costs_a_bcrypt_check_like_a_known_one(
    make_authenticator: Callable[..., Authenticator], verifications: list[str]
) -> None:
    with pytest.raises(Unauthenticated):
        make_authenticator().authenticate(basic("nobody", "guess"), PEER)

    assert verifications == ["guess"]


def test_a_presented_password_over_72_bytes_matches_no_bcrypt_user(
    make_authenticator: Callable[..., Authenticator],
) -> None:
    long_hash = passwords.hash_password("z" * 72, rounds=4)
    authenticator = make_authenticator(User("long", long_hash, "admin"))

    assert authenticator.authenticate(basic("long", "z" * 72), PEER) is not None
    with pytest.raises(Unauthenticated):
        authenticator.authenticate(basic("long", "z" * 72 + "tail"), PEER)


def test_repeated_failures_from_one_host_slow_its_next_attempts_within_a_bound(
    make_authenticator: Callable[..., Authenticator], clock: FakeClock
) -> None:
    authenticator = make_authenticator()

    for i in range(10):
        peer = PEER if i % 2 else SAME_HOST_OTHER_PORT  # new connections too
        with pytest.raises(Unauthenticated):
            authenticator.authenticate(basic("ops", f"guess-{i}"), peer)

    assert clock.sleeps == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0, 2.0, 2.0]


def test_the_wait_comes_before_the_check_so_a_right_guess_waits_too(
    make_authenticator: Callable[..., Authenticator], clock: FakeClock
) -> None:
    authenticator = make_authenticator()
    for _ in range(3):
        with pytest.raises(Unauthenticated):
            authenticator.authenticate(basic("ops", "guess"), PEER)
    clock.sleeps.clear()

    authenticator.authenticate(basic("ops", "s3cret"), PEER)

    assert clock.sleeps == [0.4]


def test_other_hosts_and_already_verified_credentials_are_not_slowed(
    make_authenticator: Callable[..., Authenticator], clock: FakeClock
) -> None:
    authenticator = make_authenticator()
    authenticator.authenticate(basic("ops", "s3cret"), PEER)
    for _ in range(5):
        with pytest.raises(Unauthenticated):
            authenticator.authenticate(basic("ops", "guess"), PEER)
    clock.sleeps.clear()

    authenticator.authenticate(basic("ops", "s3cret"), PEER)
    authenticator.authenticate(basic("w", "bcrypt-pw"), OTHER_HOST)

    assert clock.sleeps == []


def test_failures_are_forgotten_after_the_window(clock: FakeClock) -> None:
    throttle = FailureThrottle(clock, window_seconds=60)
    for _ in range(4):
        throttle.record("ipv4:10.1.2.3")
    assert throttle.delay_seconds("ipv4:10.1.2.3") == 0.8

    clock.now += 61

    assert throttle.recent_failures("ipv4:10.1.2.3") == 0
    assert throttle.delay_seconds("ipv4:10.1.2.3") == 0.0


def test_the_throttle_remembers_a_bounded_number_of_hosts(clock: FakeClock) -> None:
    throttle = FailureThrottle(clock, max_hosts=3)

    for host in ("a", "b", "c", "d"):
        throttle.record(host)

    assert [throttle.recent_failures(h) for h in ("a", "b", "c", "d")] == [0, 1, 1, 1]


def test_failures_are_logged_with_peer_and_user_but_never_the_password(
    make_authenticator: Callable[..., Authenticator], caplog: pytest.LogCaptureFixture
) -> None:
    authenticator = make_authenticator()
    caplog.set_level(logging.DEBUG, logger="pulsed")

    authenticator.authenticate(basic("ops", "s3cret"), PEER)
    authenticator.authenticate(basic("w", "bcrypt-pw"), PEER)
    for metadata in (basic("ops", "Wr0ngPassw0rd"), basic("eve", "Gu3ssw0rd")):
        with pytest.raises(Unauthenticated):
            authenticator.authenticate(metadata, PEER)

    text = "\n".join(record.getMessage() for record in caplog.records)
    failures = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(failures) == 2
    assert "peer=ipv4:10.1.2.3:40001 user='ops' reason=wrong password" in failures[0]
    assert "user='eve' reason=unknown user" in failures[1]
    token = basic("ops", "s3cret")[0][1].split()[1]
    for secret in ("s3cret", "bcrypt-pw", "Wr0ngPassw0rd", "Gu3ssw0rd", token):
        assert secret not in text
