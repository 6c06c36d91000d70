"""The dashboard's settings from the environment."""

from __future__ import annotations

import pytest

from pulse_web.config import ConfigError, WebConfig


def test_defaults_bind_loopback_and_follow_pulsed_for_sign_in() -> None:
    config = WebConfig.from_environ({})

    assert (config.addr, config.host, config.port) == (
        "localhost:50051",
        "127.0.0.1",
        8080,
    )
    assert not config.fixed_credentials
    assert not config.secret_from_environment and len(config.secret_key) >= 32
    assert WebConfig.from_environ({}).secret_key != config.secret_key


def test_every_variable_is_read() -> None:
    config = WebConfig.from_environ(
        {
            "PULSE_ADDR": "a:1,b:2",
            "PULSE_UI_HOST": "0.0.0.0",
            "PULSE_UI_PORT": "9090",
            "PULSE_USER": "svc",
            "PULSE_PASSWORD": "pw",
            "PULSE_TLS": "1",
            "PULSE_CA_FILE": "/etc/ca.pem",
            "PULSE_UI_SECRET": "s" * 32,
            "PULSE_UI_SESSION_IDLE_SECONDS": "600",
            "PULSE_UI_MAX_SESSIONS": "5",
            "PULSE_UI_REFRESH_SECONDS": "2.5",
            "PULSE_UI_TIMEOUT_SECONDS": "3",
        }
    )

    assert config.addr == "a:1,b:2"
    assert (config.host, config.port) == ("0.0.0.0", 9090)
    assert (config.user, config.password, config.fixed_credentials) == (
        "svc",
        "pw",
        True,
    )
    assert (config.tls, config.ca_file) == (True, "/etc/ca.pem")
    assert config.secret_key == "s" * 32 and config.secret_from_environment
    assert (config.session_idle_seconds, config.max_sessions) == (600, 5)
    assert (config.refresh_seconds, config.timeout_seconds) == (2.5, 3)
    assert "pw" not in repr(config) and "s" * 32 not in repr(config)


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"PULSE_UI_PORT": "http"}, "PULSE_UI_PORT='http' is not an integer"),
        ({"PULSE_UI_PORT": "70000"}, "PULSE_UI_PORT='70000' is out of range"),
        ({"PULSE_TLS": "maybe"}, "PULSE_TLS='maybe' is not a flag"),
        ({"PULSE_PASSWORD": "pw"}, "PULSE_PASSWORD is set without PULSE_USER"),
        ({"PULSE_UI_SECRET": "short"}, "PULSE_UI_SECRET is too short"),
        ({"PULSE_UI_REFRESH_SECONDS": "nan"}, "PULSE_UI_REFRESH_SECONDS='nan'"),
    ],
)
def test_bad_values_name_the_variable(environ: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named.replace("(", r"\(")):
        WebConfig.from_environ(environ)
