"""PULSE_AUTH_USERS and the TLS variables: what start-up accepts, and how it
refuses the rest (naming the entry, never echoing a password)."""

from __future__ import annotations

import pytest

from pulsed.auth import User
from pulsed.config import Config, ConfigError
from pulsed.passwords import hash_password

SECRET = "Hunter2Secret"
# hash_password(SECRET, rounds=4)
SECRET_HASH = "$2b$04$6AVWFRS0Y9mcMnhgrF8I5ezH7ZaDsGsluVi8tHP9leHUgM/hv4Zxe"


def users(raw: str) -> tuple[User, ...]:
    return Config.from_env({"PULSE_AUTH_USERS": raw}).auth_users


def refusal(raw: str) -> str:
    with pytest.raises(ConfigError) as excinfo:
        Config.from_env({"PULSE_AUTH_USERS": raw})
    return str(excinfo.value)


def test_unset_means_an_open_server() -> None:
    assert Config.from_env({}).auth_users == ()


def test_plaintext_and_bcrypt_entries_with_and_without_roles_are_read() -> None:
    parsed = users(f"ops:{SECRET}, worker:{SECRET_HASH}:worker ,dash:pw:viewer")

    assert [(u.name, u.password, u.role) for u in parsed] == [
        ("ops", SECRET, "admin"),
        ("worker", SECRET_HASH, "worker"),
        ("dash", "pw", "viewer"),
    ]


@pytest.mark.parametrize("role", ["admin", "operator", "worker", "viewer"])
def test_every_role_is_accepted(role: str) -> None:
    assert users(f"someone:pw:{role}")[0].role == role


@pytest.mark.parametrize("prefix", ["$2a$", "$2b$", "$2y$"])
def test_bcrypt_hashes_are_recognised_by_each_prefix(prefix: str) -> None:
    hashed = prefix + SECRET_HASH[4:]

    assert users(f"ops:{hashed}")[0].password == hashed


def test_the_passwords_stay_out_of_the_config_repr() -> None:
    config = Config.from_env({"PULSE_AUTH_USERS": f"ops:{SECRET},w:{SECRET_HASH}"})

    assert SECRET not in repr(config)
    assert SECRET_HASH not in repr(config)
    assert "ops" in repr(config)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (SECRET, "entry 1 has 1 ':'-separated fields"),
        (f"ops:{SECRET},{SECRET}", "entry 2 has 1 ':'-separated fields"),
        (f"ops:{SECRET[:5]}:{SECRET[5:]}:admin", "entry 1 has 4"),
        (f"ops:{SECRET[:5]}:{SECRET[5:]}", "entry 1 (user 'ops'): the third field"),
        (f"ops:{SECRET}:root", "the third field is not a role; use one of admin"),
        ("ops:", "entry 1 (user 'ops'): the password is empty"),
        ("ops::viewer", "the password is empty"),
        (f"ops:{SECRET},,dash:x", "entry 2 is empty"),
        (f"ops:{SECRET},", "entry 2 is empty"),
        (f"o ps:{SECRET}", "entry 1: the user name is not"),
        (f":{SECRET}", "entry 1: the user name is not"),
        (f"ops:{SECRET},ops:other", "entry 2: user 'ops' is listed twice"),
        (f"ops:{SECRET_HASH[:-3]}", "the bcrypt hash is unusable"),
        (
            "ops:" + SECRET_HASH[:4] + "31" + SECRET_HASH[6:],
            "its cost is 31 rounds; use 4 to 15",
        ),
        ("ops:$2x$" + SECRET_HASH[4:], "a variant pulse does not take"),
        ("ops:" + SECRET * 6, "bytes long in UTF-8; bcrypt reads at most 72"),
        ("  ", "PULSE_AUTH_USERS is set but empty"),
        ("", "unset it to run an open server"),
    ],
    ids=[
        "password-alone",
        "second-entry-without-colon",
        "colon-in-password",
        "colon-in-password-looks-like-a-role",
        "unknown-role",
        "empty-password",
        "empty-password-with-role",
        "empty-entry",
        "trailing-comma",
        "space-in-user-name",
        "no-user-name",
        "duplicate-user",
        "truncated-hash",
        "hash-cost-too-high",
        "unsupported-hash-variant",
        "password-over-72-bytes",
        "blank",
        "empty",
    ],
)
def test_a_malformed_entry_stops_start_up_naming_it_without_its_password(
    raw: str, expected: str
) -> None:
    message = refusal(raw)

    assert message.startswith("PULSE_AUTH_USERS")
    assert expected in message
    for secret in (SECRET, SECRET[:5], SECRET[5:], SECRET_HASH[:-3], "root"):
        assert secret not in message


def test_a_72_byte_plaintext_password_is_accepted_and_73_bytes_are_not() -> None:
    assert users("ops:" + "x" * 72)[0].password == "x" * 72

    assert "73 bytes" in refusal("ops:" + "x" * 73)


def test_the_sample_hash_in_this_file_is_a_real_one() -> None:
    from pulsed.passwords import verify_password

    assert verify_password(SECRET, SECRET_HASH)
    assert hash_password(SECRET, rounds=4) != SECRET_HASH  # a fresh salt


def test_tls_files_are_read_as_paths() -> None:
    config = Config.from_env(
        {"PULSE_TLS_CERT": "/etc/pulse/cert.pem", "PULSE_TLS_KEY": " /k.pem "}
    )

    assert (config.tls_cert, config.tls_key) == ("/etc/pulse/cert.pem", "/k.pem")
    assert (Config().tls_cert, Config().tls_key) == (None, None)


@pytest.mark.parametrize(
    ("given", "missing"),
    [("PULSE_TLS_CERT", "PULSE_TLS_KEY"), ("PULSE_TLS_KEY", "PULSE_TLS_CERT")],
)
def test_one_tls_file_without_the_other_names_both(given: str, missing: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        Config.from_env({given: "/some/file.pem"})

    message = str(excinfo.value)
    assert message.startswith(f"{given} is set but {missing} is not")
    assert "both" in message
