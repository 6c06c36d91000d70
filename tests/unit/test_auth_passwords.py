"""pulsed.passwords: bcrypt through libpass, and the 72-byte rule.

bcrypt reads at most 72 bytes of a password. pulse refuses longer passwords
where they are configured or hashed, and a longer password presented by a
client matches nothing: nothing is ever truncated silently.
"""

from __future__ import annotations

import bcrypt
import passlib
import pytest

from pulsed import passwords
from pulsed.passwords import PasswordRefused, hash_password, verify_password

# The cheapest cost bcrypt allows, so that these tests stay fast.
FAST = 4
# hash_password("valid", rounds=4)
VALID = "$2b$04$t63gIBZyk9/1fpP/0uBGMeT188kg0lfsSbjcDxh9zVaB.QMjIjUSG"


def test_the_installed_passlib_is_libpass_and_works_with_the_installed_bcrypt() -> None:
    # passlib 1.7.4 crashes on bcrypt 5 (it reads bcrypt.__about__); the
    # maintained fork libpass (1.9+) does not.
    assert tuple(int(part) for part in passlib.__version__.split(".")[:2]) >= (1, 9)
    assert tuple(int(part) for part in bcrypt.__version__.split(".")[:2]) >= (4, 1)

    hashed = hash_password("s3cret", rounds=FAST)

    assert hashed.startswith("$2b$04$")
    assert verify_password("s3cret", hashed)
    assert not verify_password("s3cret ", hashed)
    assert not verify_password("S3cret", hashed)


def test_hash_password_uses_cost_12_by_default() -> None:
    hashed = hash_password("correct horse battery staple")

    assert hashed.startswith("$2b$12$")
    assert len(hashed) == 60
    assert verify_password("correct horse battery staple", hashed)


@pytest.mark.parametrize("prefix", ["$2a$", "$2y$", "$2b$"])
def test_hashes_made_by_other_tools_verify_whatever_their_prefix(prefix: str) -> None:
    # htpasswd writes $2y$, older libraries $2a$; the hash body is the same.
    made = bcrypt.hashpw(b"from-elsewhere", bcrypt.gensalt(FAST)).decode()
    hashed = prefix + made[4:]

    assert passwords.bcrypt_hash_problem(hashed) is None
    assert verify_password("from-elsewhere", hashed)
    assert not verify_password("from-elsewhere!", hashed)


def test_a_password_of_exactly_72_bytes_hashes_and_verifies() -> None:
    password = "p" * 72

    hashed = hash_password(password, rounds=FAST)

    assert verify_password(password, hashed)
    assert not verify_password("p" * 71, hashed)


@pytest.mark.parametrize(
    "password",
    ["q" * 73, "€" * 25],  # the second: 25 characters, 75 bytes in UTF-8
    ids=["73-ascii-bytes", "25-euro-signs"],
)
def test_a_password_over_72_bytes_is_refused_for_hashing_without_echoing_it(
    password: str,
) -> None:
    with pytest.raises(PasswordRefused) as excinfo:
        hash_password(password, rounds=FAST)

    message = str(excinfo.value)
    assert "72" in message
    assert "bytes" in message
    assert password[:10] not in message


def test_a_presented_password_over_72_bytes_never_matches_its_first_72_bytes() -> None:
    # Plain bcrypt would compare only the first 72 bytes and accept this.
    hashed = hash_password("k" * 72, rounds=FAST)

    assert not verify_password("k" * 72 + "anything", hashed)


@pytest.mark.parametrize("password", ["", "nul\0inside"], ids=["empty", "nul"])
def test_empty_passwords_and_nul_characters_are_refused(password: str) -> None:
    with pytest.raises(PasswordRefused):
        hash_password(password, rounds=FAST)


def test_a_cost_outside_what_bcrypt_allows_is_refused() -> None:
    with pytest.raises(PasswordRefused, match="rounds 3"):
        hash_password("fine", rounds=3)


@pytest.mark.parametrize(
    "value",
    [
        "$2b$12$tooshort",
        "$2b$99$" + VALID[7:],
        "$2x$" + VALID[4:],
        "plain",
    ],
    ids=["short", "bad-cost", "unsupported-prefix", "not-a-hash"],
)
def test_malformed_bcrypt_hashes_are_reported_without_being_quoted(value: str) -> None:
    problem = passwords.bcrypt_hash_problem(value)

    assert problem is not None
    assert value not in problem
