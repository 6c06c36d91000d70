"""pulsed.config: every variable is read, and a bad value names its variable."""

from __future__ import annotations

import dataclasses

import pytest

from pulsed.config import Config, ConfigError

# field: (variable, a good raw value, what it parses to, a value out of range)
KNOBS: dict[str, tuple[str, str, object, str]] = {
    "db_pool_size": ("PULSE_DB_POOL_SIZE", "7", 7, "0"),
    "db_connect_timeout_seconds": ("PULSE_DB_CONNECT_TIMEOUT_SECONDS", "3", 3, "0"),
    "max_streams": ("PULSE_MAX_STREAMS", "50", 50, "0"),
    "rpc_threads": ("PULSE_RPC_THREADS", "4", 4, "0"),
    "lease_seconds": ("PULSE_LEASE_SECONDS", "1.5", 1.5, "0.05"),
    "default_max_attempts": ("PULSE_DEFAULT_MAX_ATTEMPTS", "5", 5, "1001"),
    "backoff_ceiling_seconds": ("PULSE_BACKOFF_CEILING_SECONDS", "60", 60.0, "-1"),
    "backoff_base_seconds": ("PULSE_BACKOFF_BASE_SECONDS", "0.25", 0.25, "-0.5"),
    "max_payload_bytes": ("PULSE_MAX_PAYLOAD_BYTES", "1024", 1024, str((32 << 20) + 1)),
    "retention_seconds": ("PULSE_RETENTION_SECONDS", "3600", 3600.0, "-1"),
    "poll_seconds": ("PULSE_POLL_SECONDS", "0.5", 0.5, "0.001"),
    "watchdog_seconds": ("PULSE_WATCHDOG_SECONDS", "0.2", 0.2, "0"),
    "prune_seconds": ("PULSE_PRUNE_SECONDS", "10", 10.0, "0"),
    "claim_batch": ("PULSE_CLAIM_BATCH", "100", 100, "10001"),
    "flush_ms": ("PULSE_FLUSH_MS", "5", 5.0, "1001"),
    "claim_linger_ms": ("PULSE_CLAIM_LINGER_MS", "3", 3.0, "1001"),
    "vacuum_seconds": ("PULSE_VACUUM_SECONDS", "7", 7.0, "-1"),
    "hello_timeout_seconds": ("PULSE_HELLO_TIMEOUT_SECONDS", "2", 2.0, "0"),
    "notify_coalesce_ms": ("PULSE_NOTIFY_COALESCE_MS", "4", 4.0, "1001"),
    "flush_batch": ("PULSE_FLUSH_BATCH", "200", 200, "0"),
    "gate_poll_seconds": ("PULSE_GATE_POLL_SECONDS", "0.1", 0.1, "61"),
    "health_seconds": ("PULSE_HEALTH_SECONDS", "0.5", 0.5, "0.01"),
    "scheduler_poll_seconds": ("PULSE_SCHEDULER_POLL_SECONDS", "0.2", 0.2, "0"),
    "shutdown_grace_seconds": ("PULSE_SHUTDOWN_GRACE_SECONDS", "3", 3.0, "-1"),
}
INT_KNOBS = [
    name for name, (_, _, parsed, _) in KNOBS.items() if isinstance(parsed, int)
]
FLOAT_KNOBS = [
    name for name, (_, _, parsed, _) in KNOBS.items() if isinstance(parsed, float)
]


# Fields that are not numbers, each tested below (and auth_users in
# test_auth_users.py).
OTHER_FIELDS = {
    "db_dsn",
    "grpc_addr",
    "log_level",
    "log_format",
    "metrics_addr",
    "auth_users",
    "tls_cert",
    "tls_key",
}


def test_every_config_field_has_a_variable_under_test() -> None:
    fields = {field.name for field in dataclasses.fields(Config)}

    assert fields == set(KNOBS) | OTHER_FIELDS


def test_auth_users_and_tls_files_are_read_from_their_variables() -> None:
    config = Config.from_env(
        {
            "PULSE_AUTH_USERS": "ops:pw,dash:pw2:viewer",
            "PULSE_TLS_CERT": "/c.pem",
            "PULSE_TLS_KEY": "/k.pem",
        }
    )

    assert [(u.name, u.role) for u in config.auth_users] == [
        ("ops", "admin"),
        ("dash", "viewer"),
    ]
    assert (config.tls_cert, config.tls_key) == ("/c.pem", "/k.pem")
    assert (Config().auth_users, Config().tls_cert, Config().tls_key) == (
        (),
        None,
        None,
    )


def test_an_empty_environment_gives_the_documented_defaults() -> None:
    config = Config.from_env({})

    assert config == Config()
    assert config.db_dsn == "postgresql://postgres@127.0.0.1:5432/pulse"
    assert config.grpc_addr == "127.0.0.1:50051"
    assert (config.lease_seconds, config.default_max_attempts) == (30.0, 20)
    assert (config.max_payload_bytes, config.poll_seconds) == (1024 * 1024, 5.0)
    assert config.backoff_ceiling_seconds == 3600.0


@pytest.mark.parametrize("field", sorted(KNOBS))
def test_each_variable_sets_its_field(field: str) -> None:
    variable, raw, parsed, _ = KNOBS[field]

    config = Config.from_env({variable: raw})

    assert getattr(config, field) == parsed
    assert type(getattr(config, field)) is type(parsed)
    others = {f: getattr(config, f) for f in KNOBS if f != field}
    assert others == {f: getattr(Config(), f) for f in KNOBS if f != field}


def test_all_variables_together_set_every_field() -> None:
    env = {variable: raw for variable, raw, _, _ in KNOBS.values()}
    env["PULSE_GRPC_ADDR"] = "0.0.0.0:6000"
    env["DB_URL"] = "postgresql://u@db:5433/q"

    config = Config.from_env(env)

    assert {field: getattr(config, field) for field in KNOBS} == {
        field: parsed for field, (_, _, parsed, _) in KNOBS.items()
    }
    assert (config.grpc_addr, config.db_dsn) == (
        "0.0.0.0:6000",
        "postgresql://u@db:5433/q",
    )


def test_blank_values_and_surrounding_spaces_are_tolerated() -> None:
    config = Config.from_env({"PULSE_LEASE_SECONDS": "  ", "PULSE_MAX_STREAMS": " 12 "})

    assert (config.lease_seconds, config.max_streams) == (30.0, 12)


def test_from_env_reads_the_process_environment_when_given_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PULSE_LEASE_SECONDS", "9")

    assert Config.from_env().lease_seconds == 9.0


@pytest.mark.parametrize("field", sorted(KNOBS))
def test_a_value_that_is_not_a_number_names_its_variable(field: str) -> None:
    variable = KNOBS[field][0]

    with pytest.raises(ConfigError) as excinfo:
        Config.from_env({variable: "lots"})

    assert str(excinfo.value).startswith(f"{variable}='lots' is not a")


@pytest.mark.parametrize("field", sorted(INT_KNOBS))
def test_a_fraction_for_a_whole_number_names_its_variable(field: str) -> None:
    variable = KNOBS[field][0]

    with pytest.raises(ConfigError) as excinfo:
        Config.from_env({variable: "2.5"})

    assert f"{variable}='2.5' is not a whole number" in str(excinfo.value)


@pytest.mark.parametrize("field", sorted(KNOBS))
def test_a_value_out_of_range_names_its_variable_and_the_range(field: str) -> None:
    variable, _, _, out_of_range = KNOBS[field]

    with pytest.raises(ConfigError) as excinfo:
        Config.from_env({variable: out_of_range})

    message = str(excinfo.value)
    assert message.startswith(
        f"{variable}={out_of_range!r} is out of range; expected from"
    )


@pytest.mark.parametrize("raw", ["nan", "inf", "-inf"])
def test_not_a_number_and_infinity_are_refused(raw: str) -> None:
    # NaN passes every range comparison; an infinite lease breaks the SQL
    # (interval out of range) and Event.wait (OverflowError).
    with pytest.raises(ConfigError) as excinfo:
        Config.from_env({"PULSE_LEASE_SECONDS": raw})

    assert "PULSE_LEASE_SECONDS" in str(excinfo.value)


def test_not_a_number_is_refused_for_every_decimal_variable() -> None:
    accepted = []
    for field in FLOAT_KNOBS:
        variable = KNOBS[field][0]
        try:
            Config.from_env({variable: "nan"})
        except ConfigError:
            continue
        accepted.append(variable)

    assert accepted == []


def test_db_url_wins_over_the_db_parts() -> None:
    config = Config.from_env(
        {"DB_URL": "postgresql://a@b:1/c", "DB_HOST": "elsewhere", "DB_NAME": "other"}
    )

    assert config.db_dsn == "postgresql://a@b:1/c"


def test_db_parts_build_a_url_with_user_and_password_quoted() -> None:
    config = Config.from_env(
        {
            "DB_HOST": "db.example",
            "DB_PORT": "6543",
            "DB_NAME": "pulse prod",
            "DB_USER": "app@corp",
            "DB_PASSWORD": "p:w/d@#",
        }
    )

    assert (
        config.db_dsn
        == "postgresql://app%40corp:p%3Aw%2Fd%40%23@db.example:6543/pulse%20prod"
    )


def test_an_ipv6_db_host_is_bracketed() -> None:
    assert (
        Config.from_env({"DB_HOST": "::1"}).db_dsn
        == "postgresql://postgres@[::1]:5432/pulse"
    )


def test_db_host_alone_keeps_the_other_defaults() -> None:
    config = Config.from_env({"DB_HOST": "10.0.0.5"})

    assert config.db_dsn == "postgresql://postgres@10.0.0.5:5432/pulse"


def test_the_log_level_is_read_and_a_bad_one_names_the_variable() -> None:
    assert Config.from_env({"PULSE_LOG_LEVEL": "debug"}).log_level == "DEBUG"
    with pytest.raises(ConfigError, match="PULSE_LOG_LEVEL='loud'"):
        Config.from_env({"PULSE_LOG_LEVEL": "loud"})


def test_the_log_format_is_text_or_json() -> None:
    assert Config.from_env({}).log_format == "text"
    assert Config.from_env({"PULSE_LOG_FORMAT": "JSON"}).log_format == "json"
    with pytest.raises(ConfigError, match="PULSE_LOG_FORMAT='xml' is not a log"):
        Config.from_env({"PULSE_LOG_FORMAT": "xml"})


def test_metrics_are_off_unless_an_address_is_given() -> None:
    assert Config.from_env({}).metrics_addr is None
    assert Config.from_env({"PULSE_METRICS_ADDR": " "}).metrics_addr is None
    assert (
        Config.from_env({"PULSE_METRICS_ADDR": "127.0.0.1:9464"}).metrics_addr
        == "127.0.0.1:9464"
    )
    with pytest.raises(ConfigError, match="PULSE_METRICS_ADDR='9464' is not HOST"):
        Config.from_env({"PULSE_METRICS_ADDR": "9464"})
